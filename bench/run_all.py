"""Run every benchmark in turn (`make bench`); each writes `.bench/*.json` and prints
the markdown that goes into docs/benchmarks.md."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS: list[list[str]] = [
    ["bench.bench_reward_server"],
    ["bench.bench_sandbox", "--backend", "all"],
    ["bench.bench_rollout"],
    ["bench.bench_weight_sync"],
    ["bench.bench_grpo_step"],
]

if __name__ == "__main__":
    for mod, *args in BENCHMARKS:
        print(f"## {mod} {' '.join(args)}".rstrip(), flush=True)
        subprocess.run([sys.executable, "-m", mod, *args], check=True)
