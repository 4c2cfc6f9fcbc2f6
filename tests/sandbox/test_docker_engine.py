"""Docker-specific checks beyond the shared adversarial suite.

They use the shared session `backend` fixture restricted to "docker" (one private
dockerd per session, see tests/sandbox/dockerd.py) and look at the engine's own view
of the containers: configuration, processes left, limits changed per job, a
supervisor that stops answering.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.base import Limits, Program
from sandbox.native import SandboxUnavailable

docker_only = pytest.mark.parametrize("backend", ["docker"], indirect=True)


def run(backend, code: str, limits: Limits | None = None):
    return backend.run(Program(code=code), limits or Limits(wall_time_s=5.0))


def test_refuses_without_an_engine(tmp_path) -> None:
    from sandbox.docker_backend import DockerBackend

    with pytest.raises(SandboxUnavailable, match="no Docker engine answers"):
        DockerBackend(base_url=f"unix://{tmp_path}/nothing.sock")


@docker_only
def test_containers_are_configured_locked_down(backend) -> None:
    api = backend.client.api
    assert len(backend.container_ids) == backend.pool_size
    for cid in backend.container_ids:
        info = api.inspect_container(cid)
        hc, cfg = info["HostConfig"], info["Config"]
        assert hc["NetworkMode"] == "none"
        assert hc["ReadonlyRootfs"] is True
        assert hc["CapDrop"] == ["ALL"] and not hc.get("CapAdd")
        assert "no-new-privileges" in hc["SecurityOpt"]
        assert hc["Privileged"] is False
        assert hc["Memory"] > 0 and hc["MemorySwap"] == hc["Memory"]
        assert hc["PidsLimit"] and hc["PidsLimit"] > 0
        assert hc["IpcMode"] == "none"
        assert not hc.get("PortBindings") and not hc.get("Binds")
        assert list(hc["Tmpfs"]) == ["/scratch"]
        uid = int(cfg["User"].split(":")[0])
        assert uid >= 1000
        assert info["NetworkSettings"]["Networks"].keys() == {"none"}
    # The supervisor's own view, checked at start-up (see DockerBackend._Container.check).
    h = backend.hello
    assert h["cap_eff"] == "0000000000000000" and h["no_new_privs"] == "1"
    assert h["seccomp"] == "2" and h["net_ifaces"] == ["lo"] and h["root_read_only"]


@docker_only
def test_only_the_supervisor_remains_after_a_daemonising_job(backend) -> None:
    code = (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "        os._exit(0)\n"
        "print(len([d for d in os.listdir('/proc') if d.isdigit()]))\n"
    )
    r = run(backend, code)
    assert r.status == "ok", r
    assert int(r.stdout) >= 5  # supervisor + main + 3 daemons were alive during the job
    for cid, procs in backend.processes().items():  # the engine's view (docker top)
        assert len(procs) == 1, (cid, procs)
        assert procs[0][-1].endswith("/opt/rlvr/supervisor.py")
    # ... and the next job sees only the supervisor and itself.
    for _ in range(backend.pool_size):
        r = run(backend, "import os\nprint(sorted(int(d) for d in os.listdir('/proc')"
                         " if d.isdigit()))\n")
        assert r.status == "ok", r
        pids = eval(r.stdout)
        assert len(pids) == 2 and pids[0] == 1, pids


@docker_only
def test_scratch_is_emptied_between_jobs(backend) -> None:
    r = run(backend, "import os\nos.mkdir('d')\nopen('d/left', 'w').write('x')\n"
                     "os.chmod('d', 0)\nprint(sorted(os.listdir('.')))\n")
    assert r.status == "ok" and r.stdout == "['d', 'main.py']\n", r
    for _ in range(2 * backend.pool_size):
        r = run(backend, "import os\nprint(sorted(os.listdir('.')), os.getcwd())\n")
        assert r.stdout == "['main.py'] /scratch\n", r


@docker_only
def test_scratch_is_size_limited(backend) -> None:
    # 8 files of 10 MiB each = 80 MiB > the 64 MiB tmpfs: ENOSPC (28) before the end.
    code = (
        "n = 0\n"
        "try:\n"
        "    for i in range(8):\n"
        "        with open(f'f{i}', 'wb') as f:\n"
        "            f.write(b'x' * (10 << 20))\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print('error', e.errno)\n"
        "print(n)\n"
    )
    lim = Limits(wall_time_s=10.0, memory_bytes=256 << 20, max_file_bytes=16 << 20)
    r = run(backend, code, lim)
    assert r.status == "ok", r
    assert r.stdout.split("\n")[0] == "error 28", r.stdout
    assert int(r.stdout.split("\n")[1]) == backend.scratch_bytes // (10 << 20)


@docker_only
def test_process_and_memory_limits_change_per_job(backend) -> None:
    fork = (
        "import os, time\n"
        "ok = 0\n"
        "for i in range(20):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        continue\n"
        "    if pid == 0:\n"
        "        time.sleep(1)\n"
        "        os._exit(0)\n"
        "    ok += 1\n"
        "print(ok)\n"
    )
    # max_processes counts the main process: 3 -> exactly 2 children, 6 -> exactly 5.
    assert run(backend, fork, Limits(wall_time_s=5.0, max_processes=3)).stdout == "2\n"
    assert run(backend, fork, Limits(wall_time_s=5.0, max_processes=6)).stdout == "5\n"
    alloc = "b = bytearray(96 << 20)\nb[::4096] = b'x' * len(b[::4096])\nprint('held')\n"
    small = run(backend, alloc, Limits(wall_time_s=10.0, memory_bytes=64 << 20))
    assert small.status == "memory", small
    big = run(backend, alloc, Limits(wall_time_s=10.0, memory_bytes=256 << 20))
    assert big.status == "ok" and big.stdout == "held\n", big


@docker_only
def test_frozen_container_is_killed_from_outside_and_replaced(backend) -> None:
    old_ids = set(backend.container_ids)
    grace = backend.reply_grace_s
    backend.reply_grace_s = 1.0
    try:
        for cid in old_ids:  # freeze every container: no supervisor can answer
            backend.client.api.pause(cid)
        t0 = time.monotonic()
        r = run(backend, "print('never')", Limits(wall_time_s=1.0))
        assert r.status == "timeout" and "killed from outside" in r.message, r
        assert time.monotonic() - t0 < 15.0
    finally:
        backend.reply_grace_s = grace
        for cid in set(backend.container_ids) & old_ids:
            try:
                backend.client.api.unpause(cid)
            except Exception:  # noqa: BLE001 - killed and replaced already
                pass
    assert len(set(backend.container_ids) - old_ids) == 1  # one replaced
    for _ in range(2 * backend.pool_size):
        assert run(backend, "print(7)").stdout == "7\n"


@docker_only
def test_warm_job_cost(backend) -> None:
    run(backend, "print(0)")
    lat = []
    for _ in range(20):
        t0 = time.perf_counter()
        r = run(backend, "print(1)")
        lat.append(time.perf_counter() - t0)
        assert r.stdout == "1\n"
    p50 = statistics.median(lat)
    print(f"docker warm job p50 {p50 * 1000:.1f} ms (20 x print(1))")
    assert p50 < 1.0  # generous: the CPU is shared; the point is no container start per job


@docker_only
def test_close_removes_its_containers(backend) -> None:
    from sandbox.docker_backend import LABEL, DockerBackend

    other = DockerBackend(base_url=backend.base_url, pool_size=1, image=backend.image)
    try:
        (cid,) = other.container_ids
        assert other.run(Program("print(2)"), Limits()).stdout == "2\n"
        # A second backend on the same engine got a uid no other pool uses.
        uids = {int(c["Labels"][f"{LABEL}.uid"]) for c in
                backend.client.api.containers(filters={"label": f"{LABEL}.uid"})}
        assert len(uids) == backend.pool_size + 1
    finally:
        other.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not backend.client.api.containers(all=True, filters={"id": cid}):
            break
        time.sleep(0.1)
    assert not backend.client.api.containers(all=True, filters={"id": cid})


@docker_only
def test_containers_of_a_dead_process_are_removed(backend) -> None:
    # A process that dies without close(): its containers' stdin closes, each
    # supervisor exits and the engine auto-removes the container.
    code = (
        "import os, sys\n"
        "from sandbox.docker_backend import DockerBackend\n"
        f"b = DockerBackend(base_url={backend.base_url!r}, pool_size=1, image={backend.image!r})\n"
        "print(b.container_ids[0], flush=True)\n"
        "os._exit(0)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    assert len(cid) == 64
    deadline = time.monotonic() + 15
    while backend.client.api.containers(all=True, filters={"id": cid}):
        assert time.monotonic() < deadline, "container of a dead process still there"
        time.sleep(0.2)


@docker_only
def test_the_supervisor_cannot_be_attacked_from_the_job(backend) -> None:
    # Same uid as the supervisor (PID 1), yet: signals to init from inside its PID
    # namespace are dropped, /proc/1 is closed (non-dumpable), prlimit on it is denied
    # by our seccomp filter. kill(-1) kills the job itself, never the supervisor.
    ids = set(backend.container_ids)
    code = (
        "import os, resource, signal\n"
        "for s in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, signal.SIGINT):\n"
        "    os.kill(1, s)\n"
        "for p in ('/proc/1/environ', '/proc/1/mem', '/proc/1/fd/1'):\n"
        "    try:\n"
        "        open(p, 'rb')\n"
        "        print('OPENED', p)\n"
        "    except OSError as e:\n"
        "        print(e.errno)\n"
        "try:\n"
        "    resource.prlimit(1, resource.RLIMIT_CPU, (0, 0))\n"
        "    print('PRLIMIT')\n"
        "except OSError as e:\n"
        "    print(e.errno)\n"
        "print(os.getppid(), flush=True)\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    import time\n"
        "    time.sleep(30)\n"
        "    os._exit(0)\n"
        "os.kill(-1, signal.SIGKILL)  # every process we may signal but init and ourselves\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))\n"
    )
    for _ in range(backend.pool_size):
        r = run(backend, code)
        assert r.status == "ok" and r.exit_code == 0, r
        assert r.stdout.split() == ["13", "13", "13", "1", "1", "-9"], r
    assert set(backend.container_ids) == ids  # no supervisor died, none was replaced
    assert run(backend, "print('alive')").stdout == "alive\n"
