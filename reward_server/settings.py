"""Reward server settings: one pydantic model, loadable from a small TOML file.

Example file (`rlvr serve --config FILE`):

    workers = 2
    default_verifier = "math"
    max_body_bytes = 16777216
    [verifiers.math]
    timeout_s = 5.0
    options = { float_rounding = 6 }
    [plugins.math_fmt]
    type = "composite"
    parts = [ { verifier = "math", weight = 1.0 }, { verifier = "format", weight = 0.2 } ]
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class VerifierSettings(BaseModel):
    """Per-verifier settings."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float | None = Field(
        None, gt=0, description="Hard wall-clock limit per item (pool) or per batch (loop); "
        "None uses the verifier's default."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword options passed to the verifier's constructor."
    )


class Settings(BaseModel):
    """Everything the server needs; CLI flags override values from the TOML file."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind (0: any free port).")
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1,
        description="Verification worker processes for pool verifiers (math, code).",
    )
    chunk_size: int = Field(
        16, ge=1, description="Items handed to a worker at once; larger amortises IPC."
    )
    default_verifier: str = Field(
        "math", description="Verifier used by the OpenRLHF endpoint POST /get_reward."
    )
    openrlhf_unscored: Literal["zero", "error"] = Field(
        "zero",
        description="What /get_reward does with an item that could not be scored: 'zero' "
        "returns 0.0 and flags it in extra_logs['scored']; 'error' fails the request (503) so "
        "the caller retries.",
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Requests with a larger body get 413."
    )
    max_items: int = Field(65536, ge=1, description="Most items accepted in one request.")
    api_key: str | None = Field(
        None, description="Bearer token required on every endpoint but /healthz; also read "
        "from the RLVR_API_KEY environment variable."
    )
    insecure_no_auth: bool = Field(
        False, description="Allow binding a non-loopback address without an API key."
    )
    verifiers: dict[str, VerifierSettings] = Field(
        default_factory=dict, description="Per-verifier timeouts and options, by name."
    )
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="User verifiers by name: remote HTTP services (`type = \"remote\"`), "
        "Python classes by dotted path (`class = \"pkg.mod:Cls\"`) and weighted composites "
        "(`type = \"composite\"`); see verifiers/plugins.py. Checked at start-up.",
    )

    def verifier(self, name: str) -> VerifierSettings:
        return self.verifiers.get(name) or VerifierSettings()


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from an optional TOML file, then explicit overrides (None values skipped),
    then RLVR_API_KEY from the environment if no key was given."""
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    data.update({k: v for k, v in overrides.items() if v is not None})
    if not data.get("api_key") and os.environ.get("RLVR_API_KEY"):
        data["api_key"] = os.environ["RLVR_API_KEY"]
    return Settings(**data)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind_policy(settings: Settings) -> None:
    """Refuse to serve a non-loopback address without auth unless explicitly allowed."""
    if is_loopback(settings.host) or settings.api_key or settings.insecure_no_auth:
        return
    raise SystemExit(
        f"refusing to bind {settings.host!r} without an API key: pass --api-key KEY (or set "
        "RLVR_API_KEY), or --insecure-no-auth to serve without authentication"
    )
