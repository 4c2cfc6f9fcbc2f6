"""Run every benchmark in turn (`make bench`)."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ["bench.bench_reward_server"]

if __name__ == "__main__":
    for mod in BENCHMARKS:
        print(f"## {mod}", flush=True)
        subprocess.run([sys.executable, "-m", mod], check=True)
