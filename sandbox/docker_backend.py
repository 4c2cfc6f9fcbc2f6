"""Docker sandbox backend: a small pool of warm, locked-down containers, one job at a time each.

Every container runs the image built by `sandbox/docker/image.py` (the host's system
Python, nothing else) with no network at all (`network_mode="none"`), a read-only
root, every capability dropped, `no-new-privileges`, Docker's default seccomp profile
plus our own deny-list on top (the native backend's list, and `prlimit64` on other
processes), a private IPC namespace without /dev/shm, memory (swap equal to memory) and
pids limits, and a dedicated unprivileged uid per container. The only writable place
is a size-limited tmpfs at /scratch, emptied before and after every job.

What this deliberately does differently from "`docker exec` per job" (the textbook warm
container, about 75 ms per job here):
- The container's PID 1 is our supervisor (`sandbox/docker/supervisor.py`); the host
  sends it one JSON line per job over the container's attached stdin and reads one
  back. The job is a fresh interpreter forked by PID 1: a few ms of overhead, and
  because the kernel never delivers a signal from inside a PID namespace to its init
  (unless init has a handler, which it has not), the job cannot kill its supervisor
  even though both share the container's one uid (switching uids needs a capability,
  and the container has none). Being init, the supervisor adopts every orphan, so
  `kill(-1, SIGKILL)` plus reaping after each job leaves no process of it behind.
- Limits change per job without restarting anything: memory and pids through the
  engine's update API (only when they differ from the previous job's), the rest as
  rlimits set by the supervisor. Wall time is enforced by the supervisor and, should
  it ever fail to answer, from the host: the container is killed and replaced.
- Output is capped inside the container (the supervisor stops reading at the cap and
  kills the job), and again on the host while reading the reply, so 2 GiB of stdout
  never crosses the container boundary.
- Nothing is pulled from a registry; the image is imported locally if missing.
- If the calling process dies, the containers' stdin closes, each supervisor exits and
  the engine removes its container (`auto_remove`): nothing leaks.

Not covered here (beyond the package's threat model): the Docker daemon runs as root
and is trusted, as is the shared kernel; a job may lower its own `oom_score_adj` back
to 0, after which the OOM killer might pick the supervisor instead (the container is
then replaced and the job reported as `memory`); CPU is not shared out between
containers (a job may use every core until its wall time ends); the memory limit
covers the whole container, so a job gets `memory_bytes` plus the part of
MEMORY_OVERHEAD the supervisor does not use (a few MiB).
"""

from __future__ import annotations

import base64
import errno
import json
import os
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from sandbox.base import Limits, Program, RunResult
from sandbox.native import SandboxUnavailable, _error, _has_passwd, build_seccomp_bpf

DEFAULT_UID_BASE = 62000  # the native backend uses 61000..61031
MEMORY_OVERHEAD = 16 << 20  # the supervisor itself (about 10 MiB resident)
LABEL = "rlvr.sandbox"
SUPERVISOR_CMD = ["/usr/bin/python3", "-I", "-X", "utf8", "/opt/rlvr/supervisor.py"]
LANGUAGES = ("python",)


def build_job_filter() -> bytes:
    """Seccomp deny-list loaded on every job on top of Docker's default profile (BPF):
    the native backend's, plus one rule."""

    def same_uid_rules(f: Any, sc: Any) -> None:
        # Same uid as the supervisor: lowering its RLIMIT_CPU would kill it.
        f.add_rule(sc.ERRNO(errno.EPERM), "prlimit64", sc.Arg(0, sc.NE, 0))

    return build_seccomp_bpf(same_uid_rules)


class _Broken(Exception):
    """The container stopped answering properly; it is replaced."""


class _Container:
    """One warm container and the attached stream to its supervisor."""

    def __init__(self, backend: DockerBackend, uid: int) -> None:
        self.backend, self.uid = backend, uid
        self.limits_key: tuple[int, int] | None = None
        self._raw: bytes = b""
        self._out = bytearray()
        self._err = bytearray()
        api = backend.client.api
        lim = Limits()
        mem = lim.memory_bytes + MEMORY_OVERHEAD
        hc = api.create_host_config(
            network_mode="none", read_only=True, cap_drop=["ALL"],
            security_opt=["no-new-privileges"], ipc_mode="none",
            pids_limit=lim.max_processes + 1, mem_limit=mem, memswap_limit=mem,
            tmpfs={"/scratch": f"size={backend.scratch_bytes},nr_inodes=8192,mode=0700,"
                               f"uid={uid},gid={uid},nosuid,nodev"},
            auto_remove=True, log_config={"Type": "none", "Config": {}},
            ulimits=[{"Name": "core", "Soft": 0, "Hard": 0}],
        )
        c = api.create_container(
            backend.image, command=SUPERVISOR_CMD, user=f"{uid}:{uid}", stdin_open=True,
            detach=False, tty=False, working_dir="/scratch", host_config=hc,
            environment={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            labels={LABEL: "1", f"{LABEL}.uid": str(uid), f"{LABEL}.owner": str(os.getpid())},
        )
        self.id: str = c["Id"]
        try:
            self._sock_io = api.attach_socket(
                self.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self.sock: socket.socket = getattr(self._sock_io, "_sock", self._sock_io)
            api.start(self.id)
            hello = self.request({"config": {"seccomp_bpf": backend.seccomp_bpf.hex()}},
                                 timeout=backend.start_timeout_s, max_bytes=1 << 20)
        except BaseException:
            self.kill()
            raise
        if "hello" not in hello:
            self.kill()
            raise SandboxUnavailable(f"docker sandbox supervisor did not start: {hello}")
        self.hello: dict = hello["hello"]
        problems = self.check(self.hello)
        if problems:
            self.kill()
            raise SandboxUnavailable("docker sandbox refuses to run; container checks failed: "
                                     + "; ".join(problems))

    def check(self, h: dict) -> list[str]:
        """Every layer, as seen from inside: a missing one is named."""
        out = []
        if h.get("uid") != self.uid or h.get("euid") != self.uid or self.uid == 0:
            out.append(f"runs as uid {h.get('uid')}/{h.get('euid')}, expected {self.uid}")
        if h.get("pid") != 1:
            out.append(f"supervisor is pid {h.get('pid')}, not the container's init")
        if int(str(h.get("cap_eff", "1")), 16) or int(str(h.get("cap_bnd", "1")), 16):
            out.append(f"capabilities left: eff {h.get('cap_eff')} bnd {h.get('cap_bnd')}")
        if h.get("no_new_privs") != "1":
            out.append("no_new_privs is not set")
        if h.get("seccomp") != "2":
            out.append(f"no seccomp filter (mode {h.get('seccomp')})")
        if h.get("job_seccomp") is not True:
            out.append("the job seccomp filter did not load or does not deny")
        if h.get("net_ifaces") != ["lo"]:
            out.append(f"network interfaces {h.get('net_ifaces')}, expected only lo")
        if h.get("root_read_only") is not True:
            out.append("root file system is writable")
        if h.get("scratch_writable") is not True:
            out.append(f"scratch not writable: {h.get('scratch_writable')}")
        if h.get("oom_kills") is None:
            out.append("no OOM counter visible (memory status cannot be told apart)")
        return out

    # -- the attached stream -----------------------------------------------------------
    def request(self, msg: dict, *, timeout: float, max_bytes: int) -> dict:
        data = (json.dumps(msg) + "\n").encode()
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
            return json.loads(self._read_line(time.monotonic() + timeout, max_bytes))
        except (OSError, ValueError) as e:
            raise _Broken(f"{type(e).__name__}: {e}") from e

    def _read_line(self, deadline: float, max_bytes: int) -> bytes:
        while True:
            i = self._out.find(b"\n")
            if i >= 0:
                line = bytes(self._out[:i])
                del self._out[: i + 1]
                return line
            if len(self._out) > max_bytes:
                raise _Broken(f"supervisor reply over {max_bytes} bytes")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("supervisor did not answer in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 18)
            if not chunk:
                raise EOFError("container stream closed: "
                               + bytes(self._err[-2000:]).decode("utf-8", "replace"))
            self._demux(chunk)

    def _demux(self, chunk: bytes) -> None:
        """Docker's multiplexed stream: 8-byte header (stream, 0, 0, 0, size) + payload."""
        self._raw += chunk
        while len(self._raw) >= 8:
            stream, size = self._raw[0], struct.unpack(">I", self._raw[4:8])[0]
            if len(self._raw) < 8 + size:
                return
            payload = self._raw[8: 8 + size]
            self._raw = self._raw[8 + size:]
            if stream == 1:
                self._out += payload
            else:
                self._err += payload
                del self._err[:-8192]

    def set_limits(self, limits: Limits) -> None:
        key = (limits.memory_bytes, limits.max_processes)
        if key == self.limits_key:
            return
        mem = limits.memory_bytes + MEMORY_OVERHEAD
        api = self.backend.client.api
        r = api._post_json(api._url("/containers/{0}/update", self.id),
                           data={"Memory": mem, "MemorySwap": mem,
                                 "PidsLimit": limits.max_processes + 1})
        api._raise_for_status(r)
        self.limits_key = key

    def oom_killed(self) -> bool:
        try:
            return bool(self.backend.client.api.inspect_container(self.id)["State"]["OOMKilled"])
        except Exception:  # noqa: BLE001 - already gone
            return False

    def kill(self) -> None:
        api = self.backend.client.api
        try:
            api.remove_container(self.id, force=True)
        except Exception:  # noqa: BLE001 - auto-removed already
            pass
        try:
            self._sock_io.close()
        except Exception:  # noqa: BLE001
            pass


class _FairPool:
    """Free containers handed out first come, first served (a plain Queue lets a thread
    that just returned a container take it straight back and starve the waiters)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: deque[_Container] = deque()
        self._waiters: deque[list[Any]] = deque()

    def get(self, timeout: float) -> _Container | None:
        with self._lock:
            if self._free and not self._waiters:
                return self._free.popleft()
            w: list[Any] = [threading.Event(), None]
            self._waiters.append(w)
        w[0].wait(timeout)
        with self._lock:
            if w[1] is None:
                self._waiters.remove(w)
            return w[1]

    def put(self, c: _Container) -> None:
        with self._lock:
            if self._waiters:
                w = self._waiters.popleft()
                w[1] = c
                w[0].set()
            else:
                self._free.append(c)


class DockerBackend:
    """Warm-container sandbox; see the module docstring. Thread-safe; re-forks its pool
    in a child process that uses it after a fork."""

    name = "docker"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        pool_size: int | None = None,
        image: str | None = None,
        python: str = "/usr/bin/python3",
        uid_base: int | None = None,
        scratch_bytes: int = 64 << 20,
        start_timeout_s: float = 30.0,
    ) -> None:
        import docker
        import docker.errors

        env = os.environ
        self.base_url = base_url or env.get("DOCKER_HOST") or None
        self.pool_size = pool_size or int(env.get("RLVR_DOCKER_POOL", os.cpu_count() or 2))
        self.uid_base = uid_base or int(env.get("RLVR_DOCKER_UID_BASE", DEFAULT_UID_BASE))
        self.scratch_bytes = scratch_bytes
        self.start_timeout_s = start_timeout_s
        # How long past the wall time the host waits for the supervisor's reply before
        # it kills the container from outside and replaces it.
        self.reply_grace_s = 15.0
        self.python = python
        where = self.base_url or "the default socket (unix:///var/run/docker.sock)"
        try:
            self.client = (docker.DockerClient(base_url=self.base_url, timeout=60)
                           if self.base_url else docker.from_env(timeout=60))
            self.client.ping()
        except docker.errors.DockerException as e:
            raise SandboxUnavailable(f"docker backend: no Docker engine answers at {where} "
                                     f"({e}); start dockerd or use the native backend") from e
        try:
            if image is None:
                from sandbox.docker.image import ensure_image

                image = ensure_image(self.client, python)
            else:
                self.client.images.get(image)
        except (docker.errors.DockerException, OSError, subprocess.SubprocessError) as e:
            raise SandboxUnavailable(f"docker backend: sandbox image unavailable: {e}") from e
        self.image: str = image
        try:
            self.seccomp_bpf = build_job_filter()
        except Exception as e:  # noqa: BLE001 - reported as a missing layer
            raise SandboxUnavailable(f"docker backend: cannot build the job seccomp filter "
                                     f"(pyseccomp): {e}") from e
        self._lock = threading.Lock()
        self._owner_pid = -1
        self._free = _FairPool()
        self._all: list[_Container] = []
        self._start_pool()

    # -- pool ----------------------------------------------------------------------------
    def _used_uids(self) -> set[int]:
        used = set()
        for c in self.client.api.containers(all=True, filters={"label": f"{LABEL}.uid"}):
            try:
                used.add(int(c["Labels"][f"{LABEL}.uid"]))
            except (KeyError, ValueError):
                continue
        return used

    def _start_pool(self) -> None:
        self._owner_pid = os.getpid()
        self._free = _FairPool()
        self._all = []
        used = self._used_uids()
        # A uid of its own per container (RLIMIT_NPROC counts per uid, machine-wide), and
        # never one a host account has (no user namespace: it is the same uid outside).
        uids = [u for u in range(self.uid_base, self.uid_base + 10_000)
                if u not in used and not _has_passwd(u)]
        try:
            for uid in uids[: self.pool_size]:
                c = _Container(self, uid)
                self._all.append(c)
                self._free.put(c)
        except Exception:
            self.close()
            raise
        self.hello = self._all[0].hello

    @property
    def container_ids(self) -> list[str]:
        return [c.id for c in self._all]

    def _ensure(self) -> None:
        if self._owner_pid != os.getpid():
            with self._lock:
                if self._owner_pid != os.getpid():
                    import docker

                    # Forked: the parent's connections and containers are not ours.
                    self.client = (docker.DockerClient(base_url=self.base_url, timeout=60)
                                   if self.base_url else docker.from_env(timeout=60))
                    self._start_pool()

    def _replace(self, c: _Container) -> _Container | None:
        c.kill()
        try:
            self.client.api.wait(c.id, timeout=10)
        except Exception:  # noqa: BLE001 - removed already
            pass
        with self._lock:
            self._all = [x for x in self._all if x is not c]
        try:
            new = _Container(self, c.uid)
        except Exception:  # noqa: BLE001 - the next run() retries
            return None
        with self._lock:
            self._all.append(new)
        return new

    def close(self) -> None:
        if self._owner_pid != os.getpid():
            return
        for c in list(self._all):
            c.kill()
        self._all = []
        self._free = _FairPool()
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass

    # -- jobs ----------------------------------------------------------------------------
    def run(self, program: Program, limits: Limits | None = None) -> RunResult:
        limits = limits or Limits()
        if program.language not in LANGUAGES:
            return _error(f"unknown language {program.language!r} for the docker backend; "
                          f"known: {list(LANGUAGES)}")
        for name in program.files:
            if name.startswith("/") or ".." in Path(name).parts or not name:
                return _error(f"file name {name!r} must be relative, without '..'")
        try:
            self._ensure()
        except Exception as e:  # noqa: BLE001 - errors are data
            return _error(f"docker sandbox unavailable: {type(e).__name__}: {e}")
        if not self._all:  # every container failed and could not be replaced: try again
            try:
                with self._lock:
                    if not self._all:
                        self._start_pool()
            except Exception as e:  # noqa: BLE001 - errors are data
                return _error(f"docker sandbox: cannot start containers: {e}")
        c = self._free.get(timeout=limits.wall_time_s + 120)
        if c is None:
            return _error("docker sandbox: no free container")
        try:
            return self._run_on(c, program, limits)
        finally:
            if c in self._all:
                self._free.put(c)
            else:
                new = self._replace(c)
                if new is not None:
                    self._free.put(new)

    def _run_on(self, c: _Container, program: Program, limits: Limits) -> RunResult:
        job = {"code": program.code, "stdin": program.stdin, "files": dict(program.files),
               "limits": {"wall_time_s": limits.wall_time_s, "cpu_time_s": limits.cpu_time_s,
                          "memory_bytes": limits.memory_bytes,
                          "max_processes": limits.max_processes,
                          "max_output_bytes": limits.max_output_bytes,
                          "max_file_bytes": limits.max_file_bytes}}
        t0 = time.monotonic()
        try:
            c.set_limits(limits)
        except Exception as e:  # noqa: BLE001 - errors are data
            self._drop(c)
            return _error(f"docker sandbox: cannot set limits: {type(e).__name__}: {e}")
        # base64 grows output by 4/3; both streams plus the JSON around them.
        max_bytes = 3 * limits.max_output_bytes + (1 << 20)
        try:
            reply = c.request({"job": job}, timeout=limits.wall_time_s + self.reply_grace_s,
                              max_bytes=max_bytes)
        except _Broken as e:
            wall = time.monotonic() - t0
            oom = c.oom_killed()
            self._drop(c)
            if oom:
                return RunResult("memory", None, "", "", wall, 0.0,
                                 message="the container was OOM-killed; replaced")
            if "TimeoutError" in str(e) or "timed out" in str(e):
                return RunResult("timeout", None, "", "", wall, 0.0,
                                 message="supervisor did not answer within the wall time; "
                                         "container killed from outside and replaced")
            return _error(f"docker sandbox container failed ({e}); replaced")
        if "result" not in reply:
            self._drop(c)
            return _error(f"docker sandbox: {reply.get('error', reply)}")
        r = reply["result"]
        return RunResult(
            status=r["status"], exit_code=r.get("exit_code"),
            stdout=base64.b64decode(r.get("stdout_b64", "")).decode("utf-8", "replace"),
            stderr=base64.b64decode(r.get("stderr_b64", "")).decode("utf-8", "replace"),
            wall_time_s=float(r.get("wall_time_s", 0.0)),
            cpu_time_s=float(r.get("cpu_time_s", 0.0)),
            stdout_truncated=bool(r.get("stdout_truncated")),
            stderr_truncated=bool(r.get("stderr_truncated")),
            message=r.get("message", ""),
        )

    def _drop(self, c: _Container) -> None:
        with self._lock:
            self._all = [x for x in self._all if x is not c]

    def processes(self) -> dict[str, list[list]]:
        """Processes inside each idle container, as the engine sees them (`docker top`)."""
        out: dict[str, list[list]] = {}
        for c in list(self._all):
            top = self.client.api.top(c.id)
            out[c.id] = top.get("Processes") or []
        return out
