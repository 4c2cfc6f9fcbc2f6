"""`rlvr serve`: run the reward server under uvicorn."""

from __future__ import annotations

import argparse

from reward_server.settings import check_bind_policy, load_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlvr serve", description="Start the rlvr reward server.")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000; 0 = any free)")
    p.add_argument("--workers", type=int, default=None,
                   help="verification worker processes (default: number of cores)")
    p.add_argument("--config", default=None, help="TOML settings file")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' (or set RLVR_API_KEY)")
    p.add_argument("--insecure-no-auth", action="store_true", default=None,
                   help="allow a non-loopback bind without an API key")
    p.add_argument("--max-body-bytes", type=int, default=None, help="413 above this body size")
    p.add_argument("--log-level", default="warning")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(
        args.config, host=args.host, port=args.port, workers=args.workers,
        api_key=args.api_key, insecure_no_auth=args.insecure_no_auth,
        max_body_bytes=args.max_body_bytes,
    )
    check_bind_policy(settings)
    import uvicorn

    from reward_server.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=args.log_level, access_log=False)
    return 0
