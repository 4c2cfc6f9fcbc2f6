"""Rollout throughput of the trainer's sampler vs raw `vllm.LLM.generate`, and weight-sync time.

    .venv/bin/python -m bench.bench_rollout [--sizes 0.3M,2.4M,25M]

For each model size (the embedded tiny Qwen2 at 0.3M, 2.4M, 25M parameters, random
weights): one in-process engine; 8 prompts x G=8 completions of up to 128 tokens
(EOS ignored so every sequence runs to full length and both paths do the same work);
`VLLMSampler.generate` (which also builds Completion objects with token ids and
logprobs) against `llm.generate` with the same SamplingParams on the same engine, in
alternation, median of 5. Then the time of `sync_weights(state_dict)`, median of 5.
Writes `.bench/rollout.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from rlvr.model import SIZES, build_tiny_model, load_policy
from rlvr.sampler import VLLMSampler
from rlvr.types import SampleParams


def bench_size(size: str, reps: int) -> dict:
    from vllm import SamplingParams

    h, layers, heads, inter = SIZES[size]
    with tempfile.TemporaryDirectory() as d:
        path = build_tiny_model(Path(d) / "m", hidden=h, layers=layers, heads=heads, intermediate=inter, max_position=256)
        s = VLLMSampler(path, max_model_len=256)
        prompts = [f"Q: {10 + i}+{20 + 3 * i}\nA: " for i in range(8)]
        raw_sp = SamplingParams(n=8, temperature=1.0, max_tokens=128, ignore_eos=True, logprobs=0, seed=1)
        ours, raw = [], []
        for _ in range(2):  # warm up both paths at full length
            s.llm.generate(prompts, raw_sp, use_tqdm=False)
            s.generate(prompts, 8, SampleParams(max_tokens=128, seed=1, ignore_eos=True))
        for _ in range(reps):
            t = time.perf_counter()
            s.llm.generate(prompts, raw_sp, use_tqdm=False)
            raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            out = s.generate(prompts, 8, SampleParams(max_tokens=128, seed=1, ignore_eos=True))
            ours.append(time.perf_counter() - t)
        toks = sum(len(c.token_ids) for g in out for c in g)
        model = load_policy(path)
        params = sum(p.numel() for p in model.parameters())
        sd = model.state_dict()
        sync = []
        for _ in range(reps):
            t = time.perf_counter()
            s.sync_weights(sd)
            sync.append(time.perf_counter() - t)
        del s
    return {
        "size": size, "params": params, "tokens_per_call": toks,
        "raw_vllm_tok_per_s": round(toks / statistics.median(raw)),
        "sampler_tok_per_s": round(toks / statistics.median(ours)),
        "ratio": round(statistics.median(raw) / statistics.median(ours), 3),
        "weight_sync_ms": round(1000 * statistics.median(sync), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="0.3M,2.4M,25M")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    rows = [bench_size(s, args.reps) for s in args.sizes.split(",")]
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": rows}
    Path(".bench").mkdir(exist_ok=True)
    Path(".bench/rollout.json").write_text(json.dumps(res, indent=2))
    print("| model | params | raw vLLM tok/s | sampler tok/s | ratio | weight sync ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['params']:,} | {r['raw_vllm_tok_per_s']:,} | {r['sampler_tok_per_s']:,} | "
              f"{r['ratio']} | {r['weight_sync_ms']} |")


if __name__ == "__main__":
    main()
