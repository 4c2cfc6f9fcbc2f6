"""Start and stop loopback subprocess services for the reward tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from rlvr.reward_client import free_port

REPO = Path(__file__).resolve().parents[2]


def wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = log.read_text(errors="replace")
            raise RuntimeError(f"service exited with {proc.returncode}: {err[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    err = log.read_text(errors="replace")
    raise RuntimeError(f"{url} not healthy within {timeout_s} s: {err[-3000:]}")


@contextmanager
def run_service(cmd: list[str], health_url: str, env: dict[str, str] | None = None,
                timeout_s: float = 60.0) -> Iterator[subprocess.Popen[bytes]]:
    # output to a file, not a pipe: a chatty service (vLLM) blocks once a pipe is full
    log_f = tempfile.NamedTemporaryFile(prefix="rlvr-service-", suffix=".log", delete=False)
    log = Path(log_f.name)
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})},
                            stdout=log_f, stderr=subprocess.STDOUT)
    try:
        wait_healthy(proc, health_url, timeout_s, log)
        yield proc
    finally:
        log_f.close()
        log.unlink(missing_ok=True)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def keyword_service(port: int | None = None) -> Iterator[str]:
    """The example keyword verifier (with failure injection) under uvicorn; yields its base URL."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "uvicorn", "tests.rewards.flaky_service:app",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with run_service(cmd, f"http://127.0.0.1:{port}/healthz"):
        yield f"http://127.0.0.1:{port}"
