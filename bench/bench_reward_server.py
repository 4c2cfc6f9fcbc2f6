"""Reward server throughput and latency against math-verify in one process.

    .venv/bin/python -m bench.bench_reward_server [--workers 2] [--rounds 5]

Items: every GSM8K test solution scored against its own answer, plus each with its
final number changed (2,638 items). Baseline, same run: `MathVerifier().verify` on
the same items in one process (the work a trainer does when it calls math-verify
inline). Server: `rlvr serve` in a subprocess on 127.0.0.1, load from an asyncio
aiohttp client in this process (so the load generator shares the 2 cores):

- throughput: 8 concurrent clients posting batches of 64 items, in `rounds` passes
  each paired with a baseline pass just before it; the ratio is the median of the
  per-round ratios (the machine's speed drifts between minutes);
- latency: 64 concurrent clients posting single-item requests; p50/p99 per request.

Writes `.bench/reward_server.json` and prints a markdown table.

Wall-clock rates are only comparable on an otherwise idle machine, so the run also
records the load average and the CPU time per item of each part (from /proc: the
server's main process, its verification workers, this load generator, and the
baseline). `cpu_ratio_estimate` = 2 x baseline CPU per item / (all the server side's
CPU per item, load generator included) is what the throughput ratio would be on two
idle cores if the parts cost the same CPU there; use it to judge a run on a busy
machine, and the measured ratio on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from rlvr.reward_client import LocalRewardServer
from verifiers.base import ScoreItem
from verifiers.math_verifier import MathVerifier

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_items() -> list[dict]:
    items = []
    for line in open(DATA / "gsm8k_test.jsonl"):
        r = json.loads(line)
        head, tail = r["answer"].rsplit("####", 1)
        n = int(tail.strip().replace(",", ""))
        items.append({"verifier": "math", "completion": r["answer"], "reference": r["answer"]})
        items.append({"verifier": "math", "completion": f"{head}#### {n + 1}", "reference": r["answer"]})
    return items


def baseline(items: list[dict]) -> tuple[float, float]:
    """(items/s, CPU seconds per item) of math-verify in this process."""
    v = MathVerifier()
    t0, c0 = time.perf_counter(), time.process_time()
    for it in items:
        v.verify(ScoreItem(verifier="math", completion=it["completion"], reference=it["reference"]))
    return len(items) / (time.perf_counter() - t0), (time.process_time() - c0) / len(items)


def _baseline_rate(items: list[dict], q: Any) -> None:
    q.put(baseline(items)[0])


def machine_scaling(items: list[dict]) -> float:
    """Items/s of two concurrent baseline processes over one: the most any 2-process
    server could reach on this machine at this moment (1.0-2.0)."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    one = baseline(items)[0]
    procs = [ctx.Process(target=_baseline_rate, args=(items, q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return (q.get() + q.get()) / one


def cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (Linux /proc), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for t in tasks:
        try:
            kids = [int(x) for x in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
        except FileNotFoundError:
            continue
        for k in kids:
            out += [k, *descendants(k)]
    return out


class CpuMeter:
    """CPU seconds used by the server's main process, its descendants (workers,
    forkserver) and this process, between `start()` and `stop()`."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid

    def _read(self) -> tuple[float, float, float]:
        kids = descendants(self.pid)
        return cpu_s(self.pid), sum(cpu_s(k) for k in kids), time.process_time()

    def start(self) -> None:
        self.t0 = self._read()

    def stop(self) -> tuple[float, float, float]:
        t1 = self._read()
        return tuple(b - a for a, b in zip(self.t0, t1, strict=True))  # type: ignore[return-value]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def throughput(url: str, items: list[dict], rounds: int, clients: int, batch: int) -> tuple[float, list[float]]:
    batches = [items[i : i + batch] for i in range(0, len(items), batch)] * rounds
    queue: asyncio.Queue[list[dict]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    lat: list[float] = []

    async def worker(c: aiohttp.ClientSession) -> None:
        while not queue.empty():
            b = queue.get_nowait()
            t = time.perf_counter()
            async with c.post(url + "/v1/score", json={"items": b}) as r:
                r.raise_for_status()
                body = await r.json()
            assert all(x["status"] == "ok" for x in body["results"])
            lat.append(time.perf_counter() - t)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as c:
        async with c.post(url + "/v1/score", json={"items": items[:64]}) as r:  # warm up
            await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for _ in range(clients)))
        dt = time.perf_counter() - t0
    return len(batches) * batch / dt, lat


async def latency(url: str, items: list[dict], clients: int, per_client: int) -> tuple[float, list[float]]:
    lat: list[float] = []

    async def worker(c: aiohttp.ClientSession, k: int) -> None:
        for j in range(per_client):
            it = items[(k * per_client + j) % len(items)]
            t = time.perf_counter()
            async with c.post(url + "/v1/score", json={"items": [it]}) as r:
                r.raise_for_status()
                await r.read()
            lat.append(time.perf_counter() - t)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c, k) for k in range(clients)))
        dt = time.perf_counter() - t0
    return clients * per_client / dt, lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--rounds", type=int, default=5, help="paired baseline/server passes")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--per-client", type=int, default=40)
    ap.add_argument("--chunk-size", type=int, default=None, help="server chunk_size (default: its own)")
    args = ap.parse_args()
    items = load_items()
    load_before = os.getloadavg()[0]
    baseline(items)  # warm-up: imports, parser caches
    cfg = None
    if args.chunk_size:
        cfg = Path(tempfile.mkdtemp()) / "server.toml"
        cfg.write_text(f"chunk_size = {args.chunk_size}\n")
    with LocalRewardServer(workers=args.workers, config=str(cfg) if cfg else None) as srv:
        assert srv.proc is not None
        meter = CpuMeter(srv.proc.pid)
        asyncio.run(throughput(srv.url, items, 1, clients=8, batch=64))  # warm-up
        # Paired rounds: baseline pass, then server pass, `rounds` times. This VM's speed
        # drifts by 10-25% over minutes, so each ratio compares two passes taken
        # seconds apart, and the reported ratio is the median of the rounds.
        base_runs, tput_runs, tlat, ratios = [], [], [], []
        cpu = [0.0, 0.0, 0.0]
        for _ in range(args.rounds):
            base_runs.append(baseline(items))
            meter.start()
            t, lat = asyncio.run(throughput(srv.url, items, 1, clients=8, batch=64))
            cpu = [a + b for a, b in zip(cpu, meter.stop(), strict=True)]
            tput_runs.append(t)
            tlat += lat
            ratios.append(t / base_runs[-1][0])
        main_cpu, workers_cpu, gen_cpu = cpu
        lput, llat = asyncio.run(latency(srv.url, items, args.clients, args.per_client))
    scaling = machine_scaling(items)
    base = statistics.median(r[0] for r in base_runs)
    base_cpu = statistics.median(r[1] for r in base_runs)
    tput = statistics.median(tput_runs)
    n = len(items) * args.rounds
    per_item = [c / n for c in (main_cpu, workers_cpu, gen_cpu)]
    res = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "items": len(items),
        "baseline_items_per_s": round(base, 1),
        "server_workers": args.workers,
        "throughput_items_per_s": round(tput, 1),
        "throughput_ratio": round(statistics.median(ratios), 2),
        "throughput_ratio_per_round": [round(r, 2) for r in ratios],
        "throughput_batch_p50_ms": round(1000 * pct(tlat, 0.5), 1),
        "throughput_batch_p99_ms": round(1000 * pct(tlat, 0.99), 1),
        "latency_clients": args.clients,
        "latency_items_per_s": round(lput, 1),
        "latency_p50_ms": round(1000 * pct(llat, 0.5), 1),
        "latency_p99_ms": round(1000 * pct(llat, 0.99), 1),
        "cpu_us_per_item_baseline": round(1e6 * base_cpu, 1),
        "cpu_us_per_item_server_main": round(1e6 * per_item[0], 1),
        "cpu_us_per_item_workers": round(1e6 * per_item[1], 1),
        "cpu_us_per_item_load_generator": round(1e6 * per_item[2], 1),
        "cpu_ratio_estimate": round(2 * base_cpu / sum(per_item), 2),
        "machine_two_process_scaling": round(scaling, 2),
    }
    Path(".bench").mkdir(exist_ok=True)
    Path(".bench/reward_server.json").write_text(json.dumps(res, indent=2))
    print("| measure | value |\n|---|---|")
    for k, v in res.items():
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
