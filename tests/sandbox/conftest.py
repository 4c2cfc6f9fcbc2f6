"""Fixtures for the sandbox suite: one `backend` per backend name, shared by every
adversarial test, and a check after the suite that nothing of the sandbox survived.

A secret is put into this process's environment at import time, before any backend
starts, so that `test_secret_env_not_visible` proves the server's environment does
not reach programs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from sandbox.base import SandboxBackend

SECRET_NAME = "RLVR_SANDBOX_TEST_SECRET"
SECRET_VALUE = os.environ.setdefault(SECRET_NAME, "s3cr3t-" + secrets.token_hex(12))


def sandbox_uid_processes(uids: range) -> list[tuple[int, int]]:
    """(pid, uid) of every live process whose real uid is in `uids` (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        uid = int(line.split()[1])
                        if uid in uids:
                            out.append((int(d), uid))
                        break
        except OSError:
            continue
    return out


@pytest.fixture(scope="session", params=["native", "docker"])
def backend(request: pytest.FixtureRequest) -> Iterator[SandboxBackend]:
    if request.param == "native":
        from sandbox.native import NativeBackend

        b = NativeBackend()
        yield b
        b.close()
        return
    try:
        from tests.sandbox.dockerd import docker_backend
    except ImportError:
        pytest.skip("docker backend not available (tests/sandbox/dockerd.py missing)")
    with docker_backend() as b:
        yield b
