"""A private Docker engine for tests: `docker_backend()` starts its own `dockerd`.

The daemon gets a fresh temporary directory for everything it owns (data root, exec
root, socket, pid file, an empty config file so /etc/docker/daemon.json is ignored) and
no networking of its own (`--bridge=none`, no iptables): the sandbox containers use
`network_mode="none"` anyway. The sandbox image is imported into it locally (no
registry is reachable). On exit the backend is closed, the daemon is stopped by its
PID, anything it left running under our directory is killed by PID, its mounts are
unmounted and the directory is removed.

Skips (never fails) with a clear reason when `dockerd` is not installed or cannot
start here; installs nothing itself. CI installs it with
`apt-get install -y --no-install-recommends docker.io`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

START_TIMEOUT_S = 45.0


def _pids_mentioning(path: str) -> list[int]:
    """PIDs whose command line names `path` (shims and containerd started for our daemon)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if path.encode() in f.read():
                        out.append(int(d))
            except OSError:
                continue
    return out


def _unmount_under(path: str) -> None:
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for p in sorted((p for p in points if p.startswith(path + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)


def _stop(proc: subprocess.Popen[bytes], root: str) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    for pid in _pids_mentioning(root):  # a containerd or shim that outlived the daemon
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _unmount_under(root)
    shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_dockerd() -> Iterator[str]:
    """Start a private dockerd; yield its `unix://` URL; stop it by PID afterwards."""
    exe = shutil.which("dockerd") or ("/usr/sbin/dockerd" if os.path.exists(
        "/usr/sbin/dockerd") else None)
    if exe is None:
        pytest.skip("dockerd not installed: apt-get install docker.io")
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root here (rootless Docker is not set up)")
    import docker

    root = tempfile.mkdtemp(prefix="rlvr-dockerd-")
    sock = os.path.join(root, "docker.sock")
    with open(os.path.join(root, "daemon.json"), "w") as f:
        f.write("{}")
    log = open(os.path.join(root, "dockerd.log"), "wb")
    cmd = [exe, "--iptables=false", "--ip6tables=false", "--bridge=none",
           "--data-root", os.path.join(root, "data"), "--exec-root", os.path.join(root, "exec"),
           "-H", f"unix://{sock}", "--pidfile", os.path.join(root, "dockerd.pid"),
           "--config-file", os.path.join(root, "daemon.json")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"unix://{sock}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                tail = open(os.path.join(root, "dockerd.log"), "rb").read()[-1500:]
                pytest.skip(f"dockerd could not start (exit {proc.returncode}): "
                            f"{tail.decode('utf-8', 'replace')}")
            if os.path.exists(sock):
                try:
                    docker.DockerClient(base_url=url, timeout=5).ping()
                    break
                except Exception:  # noqa: BLE001 - not ready yet
                    pass
            if time.monotonic() > deadline:
                pytest.skip(f"dockerd did not answer within {START_TIMEOUT_S:g} s")
            time.sleep(0.1)
        yield url
    finally:
        _stop(proc, root)
        log.close()


@contextmanager
def docker_backend(**kwargs: Any) -> Iterator[Any]:
    """A `DockerBackend` on a private dockerd (image built locally), torn down after."""
    from sandbox.docker_backend import DockerBackend

    with running_dockerd() as url:
        b = DockerBackend(base_url=url, **kwargs)
        try:
            yield b
        finally:
            b.close()
