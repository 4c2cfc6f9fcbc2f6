"""The native sandbox's privileged side: a pre-forked zygote, per-job supervisors, jobs.

This file runs as a *script* under the system interpreter (`/usr/bin/python3 -I -S`)
and imports only the standard library: the server's venv, its modules and its
environment never enter the process tree that untrusted code is forked from.

Process tree for one job (all forks, no exec for Python programs):

    caller (any process) --SCM_RIGHTS--> zygote (root, clean env, idle)
        zygote --fork--> supervisor S (root, child subreaper, one per job)
            S --fork--> job J: setsid, cgroups, empty netns, rlimits, landlock,
                         uid drop, no_new_privs, seccomp, then the program

What differs from the textbook "spawn a sandbox binary per run": the untrusted
Python program runs in a fork of an already-initialised interpreter (about 5 ms per
job instead of about 20 ms), and the caller talks to its supervisor over a private
socket: when the caller dies or gives up, S sees the hang-up and kills the job. A job
ends when its main process ends; S then kills every process of the slot's uid,
reaps them all (it is their subreaper) and checks the slot's cgroup is empty.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import gc
import json
import os
import resource
import secrets
import select
import shutil
import signal
import socket
import struct
import sys
import time

# -- constants ---------------------------------------------------------------------
CLONE_NEWNET = 0x40000000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
# Filesystem rights by ABI version (bit i of the mask), see linux/landlock.h.
_FS_BITS_BY_ABI = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16, 6: 16, 7: 16}
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1, 2, 4, 8
FS_IOCTL_DEV = 1 << 15
NET_ALL = 1 | 2  # BIND_TCP | CONNECT_TCP (ABI >= 4)
SCOPE_ALL = 1 | 2  # ABSTRACT_UNIX_SOCKET | SIGNAL (ABI >= 6)

LAYERS = ("uid", "cgroup_memory", "cgroup_pids", "netns", "landlock", "seccomp",
          "no_new_privs", "subreaper")

# How to build and run each language. "fork": run inside a fork of this interpreter
# (Python); "exec": run `steps` in the sandbox, all but the last as build steps whose
# failure ends the job (C++ next: compile, then run the binary).
LANGUAGES: dict[str, dict] = {
    "python": {"mode": "fork", "source": "main.py"},
    "cpp": {
        "mode": "exec", "source": "main.cpp",
        "steps": [["/usr/bin/g++", "-O2", "-std=c++17", "-o", "main", "main.cpp"], ["./main"]],
    },
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


# -- landlock ----------------------------------------------------------------------
def landlock_abi() -> int:
    r = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                      ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return int(r) if r > 0 else 0


def landlock_restrict(abi: int, read_paths: list[str], rw_paths: list[str],
                      dev_paths: list[str]) -> None:
    """Allow reading `read_paths`, everything beneath `rw_paths`, nothing else."""
    abi = min(abi, 7)
    fs_all = (1 << _FS_BITS_BY_ABI[abi]) - 1
    read = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
    if abi >= 6:
        attr = struct.pack("QQQ", fs_all, NET_ALL, SCOPE_ALL)
    elif abi >= 4:
        attr = struct.pack("QQ", fs_all, NET_ALL)
    else:
        attr = struct.pack("Q", fs_all)
    buf = ctypes.create_string_buffer(attr, len(attr))
    rfd = _check(_libc.syscall(SYS_LANDLOCK_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)),
                               ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        def add(path: str, access: int) -> None:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                return
            try:
                if not os.path.isdir(path):
                    # Directory-only rights are refused on a file.
                    access &= FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | (1 << 14) | FS_IOCTL_DEV
                rule = ctypes.create_string_buffer(struct.pack("=Qi", access & fs_all, fd), 12)
                _check(_libc.syscall(SYS_LANDLOCK_ADD_RULE, rfd, LANDLOCK_RULE_PATH_BENEATH,
                                     rule, ctypes.c_uint32(0)), f"landlock_add_rule {path}")
            finally:
                os.close(fd)

        for p in read_paths:
            add(p, read)
        for p in dev_paths:
            add(p, read | FS_WRITE_FILE | FS_IOCTL_DEV)
        for p in rw_paths:
            add(p, fs_all)
        _check(_libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, rfd, ctypes.c_uint32(0)),
               "landlock_restrict_self")
    finally:
        os.close(rfd)


# -- seccomp -----------------------------------------------------------------------
class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_load(bpf: bytes) -> None:
    """Install a classic-BPF seccomp filter (built by the caller with libseccomp)."""
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0),
           "seccomp")


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


# -- cgroups -----------------------------------------------------------------------
def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _set(path: str, value: str) -> None:
    """Write a cgroup knob only if it differs (reads are much cheaper than writes)."""
    try:
        if _read(path).strip() == value:
            return
    except OSError:
        pass
    _write(path, value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


class Cgroups:
    """Per-slot memory and pids cgroups, v1 (one hierarchy per controller) or v2."""

    def __init__(self, cfg: dict) -> None:
        self.version: int = cfg["version"]  # 1, 2 or 0 (none)
        self.mem_base: str | None = cfg.get("memory")
        self.pids_base: str | None = cfg.get("pids")

    def dirs(self, slot: int) -> tuple[str | None, str | None]:
        name = f"slot{slot}"
        mem = os.path.join(self.mem_base, name) if self.mem_base else None
        pids = os.path.join(self.pids_base, name) if self.pids_base else None
        return mem, pids

    def prepare(self, slot: int, mem_bytes: int, max_procs: int) -> None:
        mem, pids = self.dirs(slot)
        for d in {mem, pids} - {None}:
            if not os.path.isdir(d):  # mkdir on cgroupfs is slow even when it exists
                os.makedirs(d, exist_ok=True)
        if self.version == 1:
            if mem:
                lim = str(mem_bytes)
                memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
                has_sw = os.path.exists(memsw)
                # memsw must stay >= mem: order the two writes by direction.
                try:
                    _set(os.path.join(mem, "memory.limit_in_bytes"), lim)
                    if has_sw:
                        _set(memsw, lim)
                except OSError:
                    if has_sw:
                        _set(memsw, lim)
                    _set(os.path.join(mem, "memory.limit_in_bytes"), lim)
                _write(os.path.join(mem, "memory.max_usage_in_bytes"), "0")
            if pids:
                _set(os.path.join(pids, "pids.max"), str(max_procs))
        elif self.version == 2:
            if mem:
                _write(os.path.join(mem, "memory.max"), str(mem_bytes))
                if os.path.exists(os.path.join(mem, "memory.swap.max")):
                    _write(os.path.join(mem, "memory.swap.max"), "0")
            if pids:
                _write(os.path.join(pids, "pids.max"), str(max_procs))

    def join(self, slot: int, pid: int) -> None:
        for d in set(self.dirs(slot)) - {None}:
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def oom_kills(self, slot: int) -> int:
        mem, _ = self.dirs(slot)
        if not mem:
            return 0
        fname = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in _read(os.path.join(mem, fname)).splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill":
                    return int(v)
        except OSError:
            pass
        return 0

    def peak_memory(self, slot: int) -> int | None:
        mem, _ = self.dirs(slot)
        if not mem:
            return None
        fname = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            return int(_read(os.path.join(mem, fname)))
        except (OSError, ValueError):
            return None

    def procs(self, slot: int) -> list[int]:
        out: set[int] = set()
        for d in set(self.dirs(slot)) - {None}:
            try:
                out.update(int(x) for x in _read(os.path.join(d, "cgroup.procs")).split())
            except OSError:
                pass
        return sorted(out)

    def kill(self, slot: int) -> bool:
        """v2 `cgroup.kill`; True if it was available."""
        if self.version != 2:
            return False
        done = False
        for d in set(self.dirs(slot)) - {None}:
            p = os.path.join(d, "cgroup.kill")
            if os.path.exists(p):
                _write(p, "1")
                done = True
        return done


# -- probing the layers ------------------------------------------------------------
def probe(cfg: dict) -> dict[str, str | None]:
    """Check each layer on this machine: name -> None if usable, else the reason."""
    out: dict[str, str | None] = {k: None for k in LAYERS}
    if os.geteuid() != 0:
        out["uid"] = "not running as root: cannot switch to the per-slot uids"
    cg = cfg["cgroups"]
    if not cg.get("memory"):
        out["cgroup_memory"] = cg.get("memory_error", "no memory cgroup controller")
    if not cg.get("pids"):
        out["cgroup_pids"] = cg.get("pids_error", "no pids cgroup controller")
    if landlock_abi() < 1:
        out["landlock"] = "landlock not supported by this kernel (or disabled)"
    if not cfg.get("seccomp_bpf"):
        out["seccomp"] = cfg.get("seccomp_error") or "no seccomp filter was built"
    # Fork a throw-away child that tries the per-process layers for real.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        res: dict[str, str | None] = {}
        for name, fn in (
            ("netns", lambda: _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")),
            ("subreaper", lambda: prctl(PR_SET_CHILD_SUBREAPER, 1)),
            ("no_new_privs", lambda: prctl(PR_SET_NO_NEW_PRIVS, 1)),
            ("seccomp", lambda: cfg.get("seccomp_bpf") and seccomp_load(
                bytes.fromhex(cfg["seccomp_bpf"]))),
        ):
            try:
                fn()
                res[name] = None
            except Exception as e:  # noqa: BLE001 - reported, not raised
                res[name] = f"{type(e).__name__}: {e}"
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    for k, v in json.loads(data or b"{}").items():
        if v is not None and out.get(k) is None:
            out[k] = v
    return out


# -- framing -----------------------------------------------------------------------
def send_msg(sock: socket.socket, obj: object) -> None:
    data = json.dumps(obj).encode()
    sock.sendall(struct.pack("!Q", len(data)) + data)


def recv_msg(sock: socket.socket, limit: int = 1 << 31) -> object:
    def exact(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise EOFError("peer closed")
            buf += chunk
        return bytes(buf)

    (n,) = struct.unpack("!Q", exact(8))
    if n > limit:
        raise ValueError(f"message of {n} bytes over the limit")
    return json.loads(exact(n))


# -- the job (runs as the sandboxed process) ---------------------------------------
def _job_python(source: str) -> None:
    """Run `source` like `python main.py` in this (forked) interpreter, then _exit."""
    import atexit
    import builtins
    import io
    import traceback
    import types

    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8",
        errors="surrogateescape")
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8",
        errors="surrogateescape")
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)), encoding="utf-8",
        errors="backslashreplace", line_buffering=True)
    sys.argv = ["main.py"]
    sys.path.insert(0, os.getcwd())
    mod = types.ModuleType("__main__")
    mod.__file__ = "main.py"
    mod.__builtins__ = builtins
    sys.modules["__main__"] = mod
    rc = 0
    try:
        exec(compile(source, "main.py", "exec"), mod.__dict__)
    except SystemExit as e:
        rc = _exit_code(e)
    except BaseException as e:  # noqa: BLE001 - like the interpreter: traceback, status 1
        tb = e.__traceback__.tb_next if e.__traceback__ else None  # hide this frame
        traceback.print_exception(type(e), e, tb)
        rc = 1
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except SystemExit as e:
        rc = _exit_code(e)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        rc = rc or 1
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except BaseException:  # noqa: BLE001 - e.g. EPIPE
            rc = rc or 120
    os._exit(rc)


def _exit_code(e: SystemExit) -> int:
    c = e.code
    if c is None:
        return 0
    if isinstance(c, int):
        return c & 0xFF
    try:
        print(c, file=sys.stderr)
    except BaseException:  # noqa: BLE001
        pass
    return 1


def _job_exec(steps: list[list[str]], env: dict[str, str]) -> None:
    """Run build steps in the sandbox, then exec the last step."""
    for argv in steps[:-1]:
        pid = os.fork()
        if pid == 0:
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        _, st = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(st) != 0:
            os.write(2, f"\nbuild step failed: {' '.join(argv)}\n".encode())
            os._exit(1)
    argv = steps[-1]
    try:
        os.execve(argv[0], argv, env)
    finally:
        os._exit(127)


def _job_child(cfg: dict, req: dict, slot: int, uid: int, scratch: str, cg: Cgroups,
               fds: dict[str, int], skip: set[str]) -> None:
    """Set up every layer in order, then run the program. Never returns."""
    err_w = fds["err_w"]
    try:
        lim = req["limits"]
        os.setsid()
        if cg.version:
            cg.join(slot, os.getpid())
        if "netns" not in skip and cfg.get("netns_mode") != "shared":
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        os.dup2(fds["stdin"], 0)
        os.dup2(fds["out_w"], 1)
        os.dup2(fds["err_pipe_w"], 2)
        # Every other descriptor goes: close_range(2) in two calls, not ~1000 close()s.
        if err_w > 3:
            os.closerange(3, err_w)
        os.closerange(max(err_w + 1, 3), 1 << 20)
        os.chdir(scratch)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
               "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
        os.environ.clear()
        os.environ.update(env)
        if "landlock" not in skip:
            landlock_restrict(cfg["landlock_abi"], cfg["read_paths"], [scratch], cfg["dev_paths"])
        cpu = max(1, int(-(-lim["cpu_time_s"] // 1)))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim["max_file_bytes"],) * 2)
        resource.setrlimit(resource.RLIMIT_NPROC, (lim["max_processes"],) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if "cgroup_memory" in skip:  # weaker fallback: address-space limit
            resource.setrlimit(resource.RLIMIT_AS, (lim["memory_bytes"],) * 2)
        if "uid" not in skip:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        if "no_new_privs" not in skip:
            prctl(PR_SET_NO_NEW_PRIVS, 1)
        if "seccomp" not in skip:
            seccomp_load(bytes.fromhex(cfg["seccomp_bpf"]))
        lang = LANGUAGES[req["language"]]
        os.close(err_w)
    except BaseException as e:  # noqa: BLE001 - report the failed layer, then die
        try:
            os.write(err_w, f"sandbox setup failed: {type(e).__name__}: {e}".encode())
        finally:
            os._exit(127)
    if lang["mode"] == "fork":
        _job_python(req["code"])
    _job_exec(lang["steps"], env)


# -- the supervisor ----------------------------------------------------------------
class _Slot:
    def __init__(self, cfg: dict, deadline: float) -> None:
        self.fd = -1
        n = cfg["slots"]
        start = secrets.randbelow(n)
        while True:
            for i in range(n):
                s = (start + i) % n
                fd = os.open(os.path.join(cfg["state_dir"], f"slot{s}.lock"),
                             os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self.fd, self.index, self.uid = fd, s, cfg["uid_base"] + s
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no free sandbox slot out of {n}")
            time.sleep(0.005)


def _no_children() -> bool:
    try:  # returns None (no exception) while there are children that have not exited
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return False
    except ChildProcessError:
        return True


class _Deadline(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise _Deadline()


def kill_slot(uid: int, cg: Cgroups, slot: int, skip: set[str], deadline_s: float = 10.0) -> None:
    """SIGKILL every process of the slot and reap them all (we are their subreaper).

    `kill(-1, SIGKILL)` from a helper running as the slot's uid signals every process
    of that uid in one pass under the kernel's task-list lock, so a fork bomb cannot
    outrun it (a fork racing a fatal signal is aborted). cgroup v2 uses `cgroup.kill`.
    Every job process is our descendant, so blocking `waitpid(-1)` until ECHILD means
    all of them are gone; the cgroup is then checked to be empty.
    """
    if cg.pids_base and _no_children() and not cg.procs(slot):
        return  # fast path: the job left nothing behind
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, deadline_s)
    try:
        for _round in range(100):
            if not cg.kill(slot) and "uid" not in skip:
                pid = os.fork()
                if pid == 0:
                    try:
                        os.setresuid(uid, uid, uid)
                        os.kill(-1, signal.SIGKILL)
                    except BaseException:  # noqa: BLE001
                        pass
                    os._exit(0)
            for p in cg.procs(slot):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            while True:
                try:
                    os.waitpid(-1, 0)
                except ChildProcessError:
                    break
            if not cg.procs(slot):
                return
        raise RuntimeError(f"slot {slot} (uid {uid}) could not be emptied")
    except _Deadline:
        raise RuntimeError(f"slot {slot} (uid {uid}) not emptied within {deadline_s} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _decode(b: bytes) -> str:
    return b.decode("utf-8", errors="replace")


def supervise(cfg: dict, conn: socket.socket) -> None:
    """One job: read the request, run it under every layer, send one result."""
    t_start = time.monotonic()
    result: dict = {"status": "error", "exit_code": None, "stdout": "", "stderr": "",
                    "wall_time_s": 0.0, "cpu_time_s": 0.0, "message": ""}
    slot = None
    scratch = None
    skip = set(cfg["skip"])
    cg = Cgroups(cfg["cgroups"])
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        req = recv_msg(conn)
        assert isinstance(req, dict)
        lim = req["limits"]
        if req["language"] not in LANGUAGES:
            raise ValueError(f"unknown language {req['language']!r}")
        slot = _Slot(cfg, time.monotonic() + 30)
        # Anything left from a supervisor that was killed before it could clean up.
        if not cg.version or cg.procs(slot.index):
            kill_slot(slot.uid, cg, slot.index, skip)
        cg.prepare(slot.index, lim["memory_bytes"], lim["max_processes"])
        oom_before = cg.oom_kills(slot.index)
        scratch = os.path.join(cfg["state_dir"], "scratch", f"{slot.index}-{secrets.token_hex(6)}")
        os.mkdir(scratch, 0o700)
        lang = LANGUAGES[req["language"]]
        files = dict(req.get("files") or {})
        files[lang["source"]] = req["code"]
        for name, content in files.items():
            path = os.path.join(scratch, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(content)
        for root, dirs, fnames in os.walk(scratch):
            for n in [root] + [os.path.join(root, x) for x in dirs + fnames]:
                os.lchown(n, slot.uid, slot.uid)
        stdin_fd = os.memfd_create("stdin", os.MFD_CLOEXEC)
        os.write(stdin_fd, req.get("stdin", "").encode())
        os.lseek(stdin_fd, 0, os.SEEK_SET)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_pipe_w = os.pipe2(os.O_CLOEXEC)
        setup_r, setup_w = os.pipe2(os.O_CLOEXEC)
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            conn.close()
            _job_child(cfg, req, slot.index, slot.uid, scratch, cg,
                       {"stdin": stdin_fd, "out_w": out_w, "err_pipe_w": err_pipe_w,
                        "err_w": setup_w}, skip)
        for fd in (stdin_fd, out_w, err_pipe_w, setup_w):
            os.close(fd)
        result.update(_watch(pid, lim, conn, out_r, err_r, setup_r, t0))
        kill_slot(slot.uid, cg, slot.index, skip)
        result["wall_time_s"] = time.monotonic() - t0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["cpu_time_s"] = ru.ru_utime + ru.ru_stime
        oom = cg.oom_kills(slot.index) > oom_before
        peak = cg.peak_memory(slot.index)
        result["memory_peak_bytes"] = peak
        if result["status"] == "ok":
            sig = result.pop("_signal", None)
            if oom or (sig == signal.SIGKILL and peak is not None
                       and peak >= 0.95 * lim["memory_bytes"]):
                result["status"] = "memory"
                result["message"] = "memory limit exceeded"
            elif sig in (signal.SIGXCPU, signal.SIGKILL) and \
                    result["cpu_time_s"] >= lim["cpu_time_s"] * 0.9:
                result["status"] = "timeout"
                result["message"] = "CPU time limit exceeded"
            elif result["exit_code"] != 0 and "MemoryError" in result["stderr"][-2000:]:
                result["status"] = "memory"
                result["message"] = "MemoryError raised"
        result.pop("_signal", None)
    except BaseException as e:  # noqa: BLE001 - an infrastructure failure is status error
        result["status"] = "error"
        result["message"] = f"sandbox supervisor: {type(e).__name__}: {e}"
        if slot is not None:
            try:
                kill_slot(slot.uid, cg, slot.index, skip)
            except BaseException as e2:  # noqa: BLE001
                result["message"] += f"; cleanup failed: {e2}"
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        result["supervisor_time_s"] = time.monotonic() - t_start
    try:
        send_msg(conn, result)
    except OSError:
        pass


def _watch(pid: int, lim: dict, conn: socket.socket, out_r: int, err_r: int, setup_r: int,
           t0: float) -> dict:
    """Collect output until the main process exits, a limit trips or the caller leaves."""
    cap = lim["max_output_bytes"]
    bufs = {out_r: bytearray(), err_r: bytearray(), setup_r: bytearray()}
    trunc = {out_r: False, err_r: False}
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (out_r, err_r, setup_r):
        poller.register(fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    poller.register(conn.fileno(), select.POLLIN)
    deadline = t0 + lim["wall_time_s"]
    status, message, exited = "ok", "", False
    open_fds = {out_r, err_r, setup_r}
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            status, message = "timeout", f"wall time limit of {lim['wall_time_s']:g} s exceeded"
            break
        for fd, _ev in poller.poll(max(1, int(left * 1000))):
            if fd == pidfd:
                exited = True
            elif fd == conn.fileno():
                status, message = "error", "caller went away; job killed"
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
                        exited = True
        if exited or status != "ok":
            break
    if status == "ok":
        # The main process has ended: take what is already in the pipes, no more.
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
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, st = os.waitpid(pid, 0)
    for fd in (out_r, err_r, setup_r, pidfd):
        os.close(fd)
    res: dict = {"status": status, "message": message,
                 "stdout": _decode(bytes(bufs[out_r])), "stderr": _decode(bytes(bufs[err_r])),
                 "stdout_truncated": trunc[out_r], "stderr_truncated": trunc[err_r]}
    if os.WIFEXITED(st):
        res["exit_code"] = os.WEXITSTATUS(st)
    else:
        res["exit_code"] = -os.WTERMSIG(st)
        res["_signal"] = os.WTERMSIG(st)
    if bufs[setup_r]:
        res["status"] = "error"
        res["message"] = _decode(bytes(bufs[setup_r]))
    return res


# -- the zygote --------------------------------------------------------------------
def _preimport() -> None:
    """Modules most programs import: loaded once here, shared by every job's fork."""
    import atexit  # noqa: F401
    import bisect  # noqa: F401
    import collections  # noqa: F401
    import fractions  # noqa: F401
    import functools  # noqa: F401
    import hashlib  # noqa: F401
    import heapq  # noqa: F401
    import io  # noqa: F401
    import itertools  # noqa: F401
    import math  # noqa: F401
    import random  # noqa: F401
    import re  # noqa: F401
    import string  # noqa: F401
    import traceback  # noqa: F401
    import types  # noqa: F401
    import typing  # noqa: F401


def main() -> None:
    ctrl = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cfg = json.loads(ctrl.recv(1 << 20))  # SOCK_SEQPACKET: one message per packet
    os.makedirs(os.path.join(cfg["state_dir"], "scratch"), mode=0o711, exist_ok=True)
    cfg["landlock_abi"] = landlock_abi()
    layers = probe(cfg)
    ctrl.sendall(json.dumps({"layers": layers, "landlock_abi": cfg["landlock_abi"],
                             "pid": os.getpid()}).encode())
    answer = json.loads(ctrl.recv(1 << 20) or b'{"abort": true}')
    if answer.get("abort"):
        return
    cfg["skip"] = answer["skip"]
    skip = set(cfg["skip"])
    if "netns" not in skip and "landlock" not in skip and cfg["landlock_abi"] >= 6:
        # One empty network namespace for the zygote and every job forked from it:
        # no per-job namespace to create and tear down. Jobs cannot reach each other
        # in it: loopback is down, and landlock scopes abstract unix sockets and
        # signals to each job's own domain (ABI >= 6). Older ABIs: one netns per job.
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        cfg["netns_mode"] = "shared"
    _preimport()
    # Move everything allocated so far out of the collector's reach: a job's garbage
    # collections then never walk (and so never copy-on-write) the zygote's objects.
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped automatically
    while True:
        try:
            _msg, fds, _flags, _addr = socket.recv_fds(ctrl, 16, 4)
        except OSError as e:
            if e.errno == errno.EINTR:
                continue
            return
        if not fds:
            return  # caller closed the control socket: nothing more to do
        for fd in fds:
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                ctrl.close()
                conn = socket.socket(fileno=fd)
                try:
                    supervise(cfg, conn)
                finally:
                    os._exit(0)
            os.close(fd)


if __name__ == "__main__":
    main()
