"""Native backend specifics: fail-closed start-up, concurrency, callers that fork or
die, limits and results, the language table."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import sandbox
from sandbox.base import Limits, Program
from sandbox.native import NativeBackend, SandboxUnavailable
from tests.sandbox.conftest import sandbox_uid_processes


@pytest.fixture(scope="module")
def native():
    b = NativeBackend()
    yield b
    b.close()


def test_every_layer_is_on_here(native: NativeBackend) -> None:
    assert native.layers == {k: None for k in native.layers}
    assert native.skipped == set()
    assert native.landlock_abi >= 1


def test_missing_layer_refuses_to_start_and_names_it(tmp_path) -> None:
    # uid 65534 (nobody) has a passwd entry: the per-slot uid layer is not usable.
    with pytest.raises(SandboxUnavailable, match=r"missing layers: uid .*RLVR_SANDBOX_ALLOW_MISSING=uid"):
        NativeBackend(uid_base=65534, slots=1, state_dir=str(tmp_path / "s1"))
    weak = NativeBackend(uid_base=65534, slots=1, state_dir=str(tmp_path / "s2"),
                         allow_missing={"uid"})
    assert weak.skipped == {"uid"}
    weak.close()
    with pytest.raises(ValueError, match="unknown layers"):
        NativeBackend(allow_missing={"firewall"})


def test_results_stdin_files_exit_codes(native: NativeBackend) -> None:
    prog = Program(
        code="import sys, helper\nprint(helper.X + int(input()))\n"
             "print('err', file=sys.stderr)\nsys.exit(3)\n",
        stdin="40\n", files={"helper.py": "X = 2\n"},
    )
    r = native.run(prog, Limits())
    assert (r.status, r.exit_code, r.stdout, r.stderr) == ("ok", 3, "42\n", "err\n")
    assert 0 < r.cpu_time_s < r.wall_time_s + 1
    r = native.run(Program("raise ValueError('boom')"), Limits())
    assert r.exit_code == 1 and r.stderr.startswith("Traceback") and "ValueError: boom" in r.stderr
    assert 'File "main.py", line 1' in r.stderr and "native_zygote" not in r.stderr
    assert native.run(Program("def f(:\n"), Limits()).exit_code == 1
    r = native.run(Program("import os\nos.kill(os.getpid(), 9)"), Limits())
    assert (r.status, r.exit_code) == ("ok", -9)


def test_bad_requests_are_errors_not_exceptions(native: NativeBackend) -> None:
    r = native.run(Program("print(1)", language="cobol"), Limits())
    assert r.status == "error" and "unknown language" in r.message
    r = native.run(Program("print(1)", files={"../x": ""}), Limits())
    assert r.status == "error" and "relative" in r.message
    r = sandbox.run(Program("print(1)"), backend="nope")
    assert r.status == "error" and "unknown sandbox backend" in r.message


def test_cpu_time_limit(native: NativeBackend) -> None:
    r = native.run(Program("while True:\n    pass\n"), Limits(cpu_time_s=1.0, wall_time_s=20.0))
    assert r.status == "timeout", r
    assert r.cpu_time_s >= 0.9


def test_concurrent_runs_from_threads(native: NativeBackend) -> None:
    def one(i: int) -> str:
        return native.run(Program(f"import time\ntime.sleep(0.05)\nprint({i} * {i})"),
                          Limits()).stdout

    with ThreadPoolExecutor(8) as ex:
        outs = list(ex.map(one, range(24)))
    assert outs == [f"{i * i}\n" for i in range(24)]


def _child_run(b: NativeBackend, q) -> None:
    q.put(b.run(Program("print('from the child')"), Limits()).stdout)


def test_forked_caller_gets_its_own_zygote(native: NativeBackend) -> None:
    native.run(Program("pass"), Limits())  # the parent's zygote is up
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_run, args=(native, q))
    p.start()
    assert q.get(timeout=60) == "from the child\n"
    p.join(30)
    assert native.run(Program("print('parent ok')"), Limits()).stdout == "parent ok\n"


def test_killed_caller_leaves_nothing_behind(native: NativeBackend) -> None:
    # The reward server SIGKILLs a worker whose item overran: its job must not survive.
    script = textwrap.dedent("""
        import sys
        from sandbox.native import NativeBackend
        from sandbox.base import Limits, Program
        b = NativeBackend()
        print("ready", flush=True)
        b.run(Program("import os, time\\nos.fork()\\ntime.sleep(120)"), Limits(wall_time_s=120))
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                         cwd=os.getcwd())
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    deadline = time.monotonic() + 20
    while not sandbox_uid_processes(native.uids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sandbox_uid_processes(native.uids)) >= 1  # the job is running
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 10
    while sandbox_uid_processes(native.uids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_uid_processes(native.uids) == []


@pytest.mark.skipif(not os.path.exists("/usr/bin/g++"), reason="g++ not installed")
def test_cpp_builds_and_runs(native: NativeBackend) -> None:
    code = '#include <cstdio>\nint main(){int a,b; scanf("%d %d",&a,&b); printf("%d\\n",a+b);}\n'
    r = native.run(Program(code, language="cpp", stdin="2 40"), Limits(wall_time_s=30))
    assert (r.status, r.exit_code, r.stdout) == ("ok", 0, "42\n"), r
    r = native.run(Program("int main({", language="cpp"), Limits(wall_time_s=30))
    assert r.exit_code == 1 and "build step failed" in r.stderr
