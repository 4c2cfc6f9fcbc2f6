"""Sandboxed execution of untrusted, model-written programs: `run(program, limits)`.

THREAT MODEL
============
The adversary is the program: code written by a policy under training, which will,
by accident or because reward pressure found it, loop, fork, allocate, print without
end, write files, probe the network, read what it can and try to fake a passing run.
The reward server, the trainer and the machine are trusted; the kernel is trusted.

Covered (each has an adversarial test in tests/sandbox/test_adversarial.py, run
against every backend):
- CPU and wall time: a wall clock enforced from outside (the job is killed), and
  RLIMIT_CPU per process (SIGXCPU, then SIGKILL at the hard limit).
- Memory: a memory cgroup per slot (swap included); the status says `memory`.
- Processes: a pids cgroup per slot and RLIMIT_NPROC on a dedicated uid, so a fork
  bomb stops at `max_processes`; the supervisor is the subreaper of the job, kills
  every process of the slot's uid when the main process ends (daemonised, `setsid`,
  double-forked children included) and reaps them, so no zombie lingers.
- Output: stdout/stderr read by the supervisor up to `max_output_bytes`; more is
  `output_limit` and the job is killed. Files: RLIMIT_FSIZE per file.
- File system: landlock allows reading only the interpreter and system libraries
  (/usr, /lib, ...) and writing only the private scratch directory; the uid owns
  nothing else. /etc, /tmp, the repository, /proc and other jobs' scratch are out
  of reach.
- Network: each job gets a fresh, empty network namespace (not even loopback
  works); landlock also denies TCP bind/connect on kernels with ABI >= 4.
- Environment: the program starts with a fixed minimal environment; the zygote it
  is forked from was itself started with an empty one, so no secret of the server
  (API keys, tokens) is in its memory or in /proc/self/environ.
- Other processes: a different uid (no signals, no ptrace), landlock signal and
  abstract-socket scoping (ABI >= 6), and seccomp denying ptrace,
  process_vm_*, namespaces (unshare, setns, clone with namespace flags), mounts,
  kernel modules, BPF, perf, keyrings, io_uring, ...; no_new_privs, no
  capabilities. Killing the parent fails (EPERM).
- Fake passes (code verifier): success is proven by a per-run nonce printed by the
  harness only after every test ran; see verifiers/code_verifier.py.

Not covered:
- Kernel exploits, CPU side channels (Spectre and friends), and denial of service
  through kernel resources not limited here (inodes or disk space through many
  files of at most `max_file_bytes` each, entropy, page cache pressure).
- Total CPU time across the processes of one job is bounded only by the wall
  clock (RLIMIT_CPU is per process).
- Information in the zygote's memory: jobs are forks of one interpreter, so a job
  can read what that interpreter holds (no secrets by construction, but the Python
  hash seed is shared by all jobs of a zygote).
- A program that deliberately introspects the verifier's in-process harness (frames,
  `gc`) to steal the nonce; that needs knowledge of the harness, and io-style
  problems are immune because the expected output never enters the sandbox.
- Reward hacking inside the rules (objects whose `__eq__` is always True against
  weak tests): that is the test's problem, not the sandbox's.

Backends: `native` (default; Linux layers, no Docker; `sandbox/native.py`) and
`docker` (warm containers; `sandbox/docker_backend.py`). `BACKENDS` maps names to
classes; `get_backend(name)` returns one shared instance per process.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from sandbox.base import Limits, Program, RunResult, SandboxBackend
from sandbox.docker_backend import DockerBackend
from sandbox.native import NativeBackend, SandboxUnavailable

BACKENDS: dict[str, Any] = {
    "native": NativeBackend,
    "docker": DockerBackend,
}

__all__ = ["BACKENDS", "Limits", "Program", "RunResult", "SandboxBackend",
           "SandboxUnavailable", "get_backend", "run"]

_instances: dict[tuple[int, str], SandboxBackend] = {}
_lock = threading.Lock()


def get_backend(name: str | None = None) -> SandboxBackend:
    """The shared backend `name` (default: $RLVR_SANDBOX_BACKEND or "native") of this process.

    Raises SandboxUnavailable if a required layer is missing, KeyError if unknown.
    """
    name = name or os.environ.get("RLVR_SANDBOX_BACKEND", "native")
    if name not in BACKENDS:
        raise KeyError(f"unknown sandbox backend {name!r}; known: {sorted(BACKENDS)}")
    key = (os.getpid(), name)
    with _lock:
        b = _instances.get(key)
        if b is None:
            b = _instances[key] = BACKENDS[name]()
        return b


def run(program: Program, limits: Limits | None = None, backend: str | None = None) -> RunResult:
    """Run `program` under `limits` in the sandbox. Never raises for a bad program;
    a sandbox that cannot run at all is a RunResult with status "error"."""
    try:
        b = get_backend(backend)
    except (SandboxUnavailable, KeyError) as e:
        return RunResult("error", None, "", "", 0.0, 0.0, message=str(e))
    return b.run(program, limits or Limits())
