"""In-container supervisor: PID 1 of every warm sandbox container (standard library only).

It runs inside the image built by `sandbox/docker/image.py`, under the image's own
interpreter, as the container's unprivileged uid. The host talks to it over the
container's attached stdin/stdout, one JSON line per message:

    host -> {"config": {...}}          sup -> {"hello": {...probe results...}}
    host -> {"job": {...}}             sup -> {"result": {...}}

What it does differently from "docker exec per job":
- The job is a child of PID 1. The kernel never delivers a signal from inside the
  PID namespace to its init unless init installed a handler (we install none), so
  `kill(getppid(), SIGKILL)` and `kill(-1, SIGKILL)` cannot stop the supervisor; it is
  also non-dumpable, so the job (same uid: no capability exists to switch uids) can
  neither ptrace it nor open /proc/1/{mem,fd,environ}.
- Being init, it adopts every orphan (daemonised, double-forked children included);
  after each job it sends `kill(-1, SIGKILL)` (everything but itself) and reaps until
  it has no child left, so nothing of a job survives into the next one.
- Each job is a fresh `execve` of the interpreter: the job shares no memory with the
  supervisor or earlier jobs.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import resource
import select
import signal
import sys
import time

PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SCRATCH = "/scratch"
PYTHON = "/usr/bin/python3"
JOB_ENV = {"PATH": "/usr/bin:/bin", "HOME": SCRATCH, "TMPDIR": SCRATCH, "LANG": "C.UTF-8"}

_libc = ctypes.CDLL(None, use_errno=True)
_cfg: dict = {}


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl({option}): {os.strerror(e)}")


def _seccomp_load(bpf: bytes) -> None:
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"seccomp: {os.strerror(e)}")


def _send(obj: dict) -> None:
    data = (json.dumps(obj) + "\n").encode()
    while data:
        n = os.write(1, data)
        data = data[n:]


def _status_field(name: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def _oom_kills() -> int | None:
    """The container's OOM-kill counter (cgroup v1 memory.oom_control or v2 memory.events)."""
    for path in ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"):
        try:
            with open(path) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill":
                        return int(v)
        except OSError:
            continue
    return None


def probe() -> dict:
    """What the host checks before it trusts this container (each value is a fact)."""
    out: dict = {"uid": os.getuid(), "euid": os.geteuid(), "pid": os.getpid(),
                 "cap_eff": _status_field("CapEff"), "cap_bnd": _status_field("CapBnd"),
                 "no_new_privs": _status_field("NoNewPrivs"),
                 "seccomp": _status_field("Seccomp"), "oom_kills": _oom_kills()}
    try:
        with open("/proc/net/dev") as f:
            out["net_ifaces"] = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
    except OSError as e:
        out["net_ifaces"] = f"unreadable: {e}"
    try:
        with open("/rlvr-probe", "w"):
            pass
        out["root_read_only"] = False
    except OSError:
        out["root_read_only"] = True
    try:
        with open(os.path.join(SCRATCH, ".probe"), "w") as f:
            f.write("x")
        os.unlink(os.path.join(SCRATCH, ".probe"))
        out["scratch_writable"] = True
    except OSError as e:
        out["scratch_writable"] = f"{e}"
    if _cfg.get("seccomp_bpf"):
        # Load the job's filter in a throw-away child to prove it works here.
        pid = os.fork()
        if pid == 0:
            try:
                _seccomp_load(bytes.fromhex(_cfg["seccomp_bpf"]))
                # prlimit64(1, RLIMIT_NOFILE, NULL, &old): allowed by Docker's own
                # profile for a same-uid target, denied (EPERM) only by our filter.
                old = ctypes.create_string_buffer(16)
                ret = _libc.syscall(302, 1, 7, None, old)
                os._exit(0 if ret == -1 and ctypes.get_errno() == 1 else 3)
            except BaseException:  # noqa: BLE001
                os._exit(2)
        _, st = os.waitpid(pid, 0)
        out["job_seccomp"] = os.waitstatus_to_exitcode(st) == 0
    return out


def clean_scratch() -> None:
    """Remove everything under the scratch tmpfs, whatever modes the job left."""
    try:
        os.chmod(SCRATCH, 0o700)
    except OSError:
        pass
    for root, dirs, _files in os.walk(SCRATCH, topdown=True):
        for d in dirs:
            try:
                os.chmod(os.path.join(root, d), 0o700)
            except OSError:
                pass
    for root, dirs, files in os.walk(SCRATCH, topdown=False):
        for name in files:
            try:
                os.unlink(os.path.join(root, name))
            except OSError:
                pass
        for name in dirs:
            p = os.path.join(root, name)
            try:
                if os.path.islink(p):
                    os.unlink(p)
                else:
                    os.rmdir(p)
            except OSError:
                pass


def kill_all() -> None:
    """SIGKILL every process of the container but ourselves, reap until none is left."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            while True:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
        except ChildProcessError:
            return
        time.sleep(0.001)


def _job_child(job: dict, fds: dict) -> None:
    """In the forked child: limits, filter, fds, then exec the interpreter. Never returns."""
    try:
        lim = job["limits"]
        os.setsid()
        cpu = max(1, int(lim["cpu_time_s"] + 0.999))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim["max_file_bytes"],) * 2)
        # RLIMIT_NPROC counts every task of this uid, the supervisor included.
        resource.setrlimit(resource.RLIMIT_NPROC, (lim["max_processes"] + 1,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:  # the job, not the supervisor, is the OOM killer's first choice
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass
        os.chdir(SCRATCH)
        os.dup2(fds["stdin"], 0)
        os.dup2(fds["out_w"], 1)
        os.dup2(fds["err_w"], 2)
        os.set_inheritable(fds["setup_w"], False)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        if _cfg.get("seccomp_bpf"):
            _seccomp_load(bytes.fromhex(_cfg["seccomp_bpf"]))
        os.closerange(3, fds["setup_w"])
        os.closerange(fds["setup_w"] + 1, 1 << 16)
        os.execve(PYTHON, [PYTHON, "-I", "-X", "utf8", "main.py"], JOB_ENV)
    except BaseException as e:  # noqa: BLE001 - reported as a setup failure (status error)
        try:
            os.write(fds["setup_w"], f"sandbox setup failed: {type(e).__name__}: {e}".encode())
        finally:
            os._exit(127)


def run_job(job: dict) -> dict:
    lim = job["limits"]
    clean_scratch()
    files = dict(job.get("files") or {})
    files["main.py"] = job["code"]
    for name, content in files.items():
        path = os.path.join(SCRATCH, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
    stdin_fd = os.memfd_create("stdin", os.MFD_CLOEXEC)
    os.write(stdin_fd, job.get("stdin", "").encode())
    os.lseek(stdin_fd, 0, os.SEEK_SET)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    setup_r, setup_w = os.pipe2(os.O_CLOEXEC)
    oom_before = _oom_kills()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _job_child(job, {"stdin": stdin_fd, "out_w": out_w, "err_w": err_w, "setup_w": setup_w})
    for fd in (stdin_fd, out_w, err_w, setup_w):
        os.close(fd)
    res = _watch(pid, lim, out_r, err_r, setup_r, t0)
    kill_all()
    res["wall_time_s"] = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["cpu_time_s"] = (ru.ru_utime - ru0.ru_utime) + (ru.ru_stime - ru0.ru_stime)
    oom_after = _oom_kills()
    oom = oom_before is not None and oom_after is not None and oom_after > oom_before
    sig = res.pop("_signal", None)
    if res["status"] == "ok":
        if oom:
            res["status"], res["message"] = "memory", "memory limit exceeded (OOM kill)"
        elif sig in (signal.SIGXCPU, signal.SIGKILL) and \
                res["cpu_time_s"] >= lim["cpu_time_s"] * 0.9:
            res["status"], res["message"] = "timeout", "CPU time limit exceeded"
        elif res["exit_code"] != 0 and b"MemoryError" in res["_stderr_tail"]:
            res["status"], res["message"] = "memory", "MemoryError raised"
    res.pop("_stderr_tail", None)
    clean_scratch()
    return res


def _watch(pid: int, lim: dict, out_r: int, err_r: int, setup_r: int, t0: float) -> dict:
    """Collect output until the main process exits, a limit trips, or the wall clock ends."""
    cap = lim["max_output_bytes"]
    bufs = {out_r: bytearray(), err_r: bytearray(), setup_r: bytearray()}
    trunc = {out_r: False, err_r: False}
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (out_r, err_r, setup_r, pidfd):
        poller.register(fd, select.POLLIN)
    open_fds = {out_r, err_r, setup_r}
    deadline = t0 + lim["wall_time_s"]
    status, message, exited = "ok", "", False
    while not exited and status == "ok":
        left = deadline - time.monotonic()
        if left <= 0:
            status, message = "timeout", f"wall time limit of {lim['wall_time_s']:g} s exceeded"
            break
        for fd, _ev in poller.poll(max(1, int(left * 1000))):
            if fd == pidfd:
                exited = True
            elif fd in open_fds:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    continue
                bufs[fd] += chunk
                if fd in trunc and len(bufs[fd]) > cap:
                    del bufs[fd][cap:]
                    trunc[fd] = True
                    if fd == out_r:
                        status, message = "output_limit", f"stdout exceeded {cap} bytes"
    if status == "ok":  # the main process ended: take what is already in the pipes, no more
        for fd in list(open_fds):
            os.set_blocking(fd, False)
            try:
                while len(bufs[fd]) <= cap and (chunk := os.read(fd, 1 << 16)):
                    bufs[fd] += chunk
            except BlockingIOError:
                pass
            if fd in trunc and len(bufs[fd]) > cap:
                del bufs[fd][cap:]
                trunc[fd] = True
    else:
        os.kill(pid, signal.SIGKILL)
    _, st = os.waitpid(pid, 0)
    for fd in (out_r, err_r, setup_r, pidfd):
        os.close(fd)
    res: dict = {"status": status, "message": message,
                 "stdout_b64": base64.b64encode(bytes(bufs[out_r])).decode(),
                 "stderr_b64": base64.b64encode(bytes(bufs[err_r])).decode(),
                 "stdout_truncated": trunc[out_r], "stderr_truncated": trunc[err_r],
                 "_stderr_tail": bytes(bufs[err_r][-2000:])}
    if os.WIFEXITED(st):
        res["exit_code"] = os.WEXITSTATUS(st)
    else:
        res["exit_code"] = -os.WTERMSIG(st)
        res["_signal"] = os.WTERMSIG(st)
    if bufs[setup_r]:
        res["status"] = "error"
        res["message"] = bytes(bufs[setup_r]).decode("utf-8", "replace")
    return res


def main() -> None:
    _prctl(PR_SET_DUMPABLE, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # no handler may exist: see the docstring
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return  # the host went away: the container ends (and is auto-removed)
        try:
            msg = json.loads(line)
            if "config" in msg:
                _cfg.clear()
                _cfg.update(msg["config"])
                _send({"hello": probe()})
            elif "job" in msg:
                _send({"result": run_job(msg["job"])})
            else:
                _send({"error": f"unknown message {sorted(msg)}"})
        except BaseException as e:  # noqa: BLE001 - the host maps this to status "error"
            try:
                kill_all()
            except BaseException:  # noqa: BLE001
                pass
            _send({"error": f"supervisor: {type(e).__name__}: {e}"})


if __name__ == "__main__":
    main()
