"""One adversarial program per sandbox property, run against every backend.

Order matters and is relied on: the self-limiting fork loop must prove the process
limit before the unbounded fork bomb is allowed to run (an escaped bomb takes the
whole machine down), and the last test checks the backend still answers and no
process of the sandbox's uids is left.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from sandbox.base import Limits, Program
from tests.sandbox.conftest import SECRET_VALUE, sandbox_uid_processes
from verifiers.base import ScoreItem
from verifiers.code_verifier import CodeVerifier

FAST = Limits(wall_time_s=5.0, cpu_time_s=5.0, memory_bytes=256 << 20, max_processes=8,
              max_output_bytes=1 << 20, max_file_bytes=1 << 20)
# backend name -> the bounded fork loop proved that the process limit holds
_PROCESS_LIMIT_PROVEN: dict[str, bool] = {}


def run(backend, code: str, limits: Limits = FAST, stdin: str = ""):
    return backend.run(Program(code=code, stdin=stdin), limits)


def test_infinite_loop_is_stopped(backend) -> None:
    lim = Limits(wall_time_s=1.5, cpu_time_s=1.0, max_processes=8)
    t0 = time.monotonic()
    r = run(backend, "while True:\n    pass\n", lim)
    assert r.status == "timeout", r
    assert time.monotonic() - t0 < 6.0


def test_sleeping_program_hits_the_wall_clock(backend) -> None:
    lim = Limits(wall_time_s=1.0, cpu_time_s=5.0)
    r = run(backend, "import time\nprint('start', flush=True)\ntime.sleep(60)\n", lim)
    assert r.status == "timeout", r
    assert r.stdout == "start\n"
    assert 0.9 < r.wall_time_s < 4.0


def test_bounded_fork_loop_stops_at_the_process_limit(backend) -> None:
    # Self-limiting: at most 60 forks, every child exits by itself after 2 s.
    code = (
        "import os, time\n"
        "ok = failed = 0\n"
        "for i in range(60):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        failed += 1\n"
        "        continue\n"
        "    if pid == 0:\n"
        "        time.sleep(2)\n"
        "        os._exit(0)\n"
        "    ok += 1\n"
        "print(ok, failed)\n"
    )
    r = run(backend, code, Limits(wall_time_s=10.0, max_processes=8))
    assert r.status == "ok" and r.exit_code == 0, r
    ok, failed = map(int, r.stdout.split())
    # 8 processes in all, the main one included: at most 7 children.
    assert 1 <= ok <= 7, r.stdout
    assert failed == 60 - ok
    _PROCESS_LIMIT_PROVEN[backend.name] = True


def test_unbounded_fork_bomb_is_contained(backend) -> None:
    if not _PROCESS_LIMIT_PROVEN.get(backend.name):
        pytest.skip("the bounded fork loop did not prove the process limit: not risking it")
    before = len([d for d in os.listdir("/proc") if d.isdigit()])
    code = (
        "import os\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        pass\n"
    )
    r = run(backend, code, Limits(wall_time_s=2.0, cpu_time_s=2.0, max_processes=8))
    assert r.status == "timeout", r
    after = len([d for d in os.listdir("/proc") if d.isdigit()])
    assert after < before + 20  # nothing of the bomb survived the job
    assert run(backend, "print(6 * 7)").stdout == "42\n"


def test_memory_bomb(backend) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n"
    r = run(backend, code, Limits(wall_time_s=10.0, memory_bytes=128 << 20))
    assert r.status == "memory", r


def test_two_gib_of_stdout(backend) -> None:
    code = (
        "import sys\n"
        "chunk = 'x' * (1 << 20)\n"
        "for _ in range(2048):\n"
        "    sys.stdout.write(chunk)\n"
    )
    t0 = time.monotonic()
    r = run(backend, code, Limits(wall_time_s=20.0, max_output_bytes=1 << 20))
    assert r.status == "output_limit", r
    assert r.stdout_truncated and len(r.stdout) == 1 << 20
    assert time.monotonic() - t0 < 10.0


def test_huge_file_is_cut_at_the_file_size_limit(backend) -> None:
    code = (
        "import os\n"
        "try:\n"
        "    with open('big', 'wb') as f:\n"
        "        for _ in range(1024):\n"
        "            f.write(b'x' * (1 << 20))\n"
        "    print('wrote all')\n"
        "except OSError as e:\n"
        "    print('error', e.errno)\n"
        "print(os.path.getsize('big'))\n"
    )
    r = run(backend, code, Limits(wall_time_s=10.0, max_file_bytes=1 << 20))
    assert r.status == "ok", r
    first, size = r.stdout.split("\n")[:2]
    assert first == "error 27"  # EFBIG
    assert int(size) <= 1 << 20


def test_no_writes_outside_scratch(backend, tmp_path) -> None:
    token = os.urandom(6).hex()
    targets = [f"/etc/rlvr-{token}", f"/tmp/rlvr-{token}", f"/dev/shm/rlvr-{token}",
               f"/root/rlvr-{token}", f"{tmp_path}/rlvr-{token}", f"../rlvr-{token}",
               f"/run/rlvr-{token}", "/etc/passwd"]
    code = (
        "import os\n"
        f"for p in {targets!r}:\n"
        "    try:\n"
        "        with open(p, 'a') as f:\n"
        "            f.write('pwned')\n"
        "        print('WROTE', p)\n"
        "    except OSError as e:\n"
        "        print('denied', p, e.errno)\n"
        "open('mine.txt', 'w').write('ok')\n"
        "print('scratch', open('mine.txt').read())\n"
    )
    r = run(backend, code)
    assert r.status == "ok" and r.exit_code == 0, r
    assert "WROTE" not in r.stdout, r.stdout
    assert r.stdout.count("denied") == len(targets)
    assert "scratch ok" in r.stdout
    for t in targets[:-2]:
        assert not os.path.exists(t.replace("..", "/"))
    assert "pwned" not in open("/etc/passwd").read()


def test_server_secret_is_not_visible(backend) -> None:
    code = (
        "import os\n"
        "print(dict(os.environ))\n"
        f"for p in ['/proc/self/environ', '/proc/1/environ', '/proc/{os.getpid()}/environ',\n"
        f"          '/proc/{os.getppid()}/environ']:\n"
        "    try:\n"
        "        print(open(p, 'rb').read())\n"
        "    except OSError as e:\n"
        "        print('denied', p, e.errno)\n"
    )
    assert os.environ["RLVR_SANDBOX_TEST_SECRET"] == SECRET_VALUE
    r = run(backend, code)
    assert r.status == "ok", r
    assert SECRET_VALUE not in r.stdout + r.stderr
    assert "RLVR_SANDBOX_TEST_SECRET" not in r.stdout


def test_loopback_listener_is_unreachable(backend) -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    tcp.settimeout(0.2)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    port, uport = tcp.getsockname()[1], udp.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(tcp.accept())
            except OSError:
                pass
            try:
                accepted.append(udp.recvfrom(100))
            except OSError:
                pass

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "    print('CONNECTED')\n"
        "except OSError as e:\n"
        "    print('tcp failed', e.errno)\n"
        "try:\n"
        f"    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'hi', ('127.0.0.1', {uport}))\n"
        "    print('udp sent')\n"
        "except OSError as e:\n"
        "    print('udp failed', e.errno)\n"
    )
    try:
        r = run(backend, code)
        time.sleep(0.3)
    finally:
        stop.set()
        th.join()
        tcp.close()
        udp.close()
    assert r.status == "ok", r
    assert "CONNECTED" not in r.stdout and "tcp failed" in r.stdout, r.stdout
    assert accepted == []


def test_killing_the_parent_fails(backend) -> None:
    got: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    try:
        code = (
            "import os, signal\n"
            "for pid, sig in [(os.getppid(), signal.SIGKILL),"
            f" ({os.getpid()}, signal.SIGUSR1)]:\n"
            "    try:\n"
            "        os.kill(pid, sig)\n"
            "        print('sent', pid)\n"
            "    except OSError as e:\n"
            "        print('denied', e.errno)\n"
            "print('still here')\n"
        )
        r = run(backend, code)
        time.sleep(0.2)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert got == []  # the test process (the "server") received nothing
    assert r.status == "ok" and "still here" in r.stdout, r
    # The supervisor survived and reported; the backend still answers.
    assert run(backend, "print('alive')").stdout == "alive\n"


def test_namespace_and_ptrace_syscalls_fail(backend) -> None:
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), libc.unshare(0x00020000))\n"  # NEWUSER, NEWNS
        "print(libc.ptrace(16, os.getppid(), 0, 0))\n"  # PTRACE_ATTACH
    )
    r = run(backend, code)
    assert r.status == "ok", r
    assert r.stdout.split() == ["-1", "-1", "-1"]


_FAKE_PASSES = {
    "exit_at_import": "import sys\nsys.exit(0)\n",
    "os_exit_in_function": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "systemexit_in_test": "def add(a, b):\n    raise SystemExit(0)\n",
    "kill_own_harness": "import os, signal\ndef add(a, b):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
    "fake_success_line": "import os\nprint('RLVR-PASS 0123456789abcdef0123456789abcdef', flush=True)\nos._exit(0)\n",
    "echo_stdin": "import sys, os\nprint('RLVR-PASS', sys.stdin.read().strip(), flush=True)\nos._exit(0)\n",
    "wrong_answer": "def add(a, b):\n    return a - b\n",
}


@pytest.mark.parametrize("case", list(_FAKE_PASSES))
def test_early_exit_is_not_a_pass(backend, case: str) -> None:
    v = CodeVerifier(backend=backend, timeout_s=5.0)
    ref = {"tests": "def check(f):\n    assert f(2, 3) == 5\n    assert f(-1, 1) == 0\n",
           "entry_point": "add"}
    r = v.verify(ScoreItem("code", _FAKE_PASSES[case], ref))
    assert r.status == "ok" and r.reward == 0.0, (case, r)
    good = v.verify(ScoreItem("code", "def add(a, b):\n    return a + b\n", ref))
    assert good.reward == 1.0, good


def test_daemonised_child_is_gone_after_the_job(backend) -> None:
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        print('daemon', os.getpid(), flush=True)\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(0.5)\n"
        "print('main done', flush=True)\n"
    )
    r = run(backend, code)
    assert r.status == "ok", r
    assert "daemon" in r.stdout and "main done" in r.stdout
    uids = getattr(backend, "uids", None)
    if uids is not None:
        assert sandbox_uid_processes(uids) == []
    if backend.name == "native":  # same pid namespace: the pid must be gone
        pid = int(r.stdout.split("daemon ")[1].split()[0])
        assert not os.path.exists(f"/proc/{pid}") or \
            f"\t{pid}\n" not in open(f"/proc/{pid}/status").read()


def test_zz_after_the_suite_sandbox_answers_and_nothing_is_left(backend) -> None:
    r = run(backend, "print(sum(range(10)))")
    assert r.status == "ok" and r.stdout == "45\n", r
    uids = getattr(backend, "uids", None)
    if uids is None:
        pytest.skip(f"backend {backend.name} does not expose its uids")
    assert sandbox_uid_processes(uids) == []
