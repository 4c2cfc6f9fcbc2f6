"""Weight-sync time (trainer model -> in-process vLLM engine) against model size.

    .venv/bin/python -m bench.bench_weight_sync [--sizes 0.3M,2.4M,25M] [--reps 5]

Per size, in a fresh process: the embedded tiny Qwen2, one engine, the trainer's
transformers model. Times `VLLMSampler.sync_weights(policy.state_dict())` (vLLM's
`reload_weights` plus the prefix-cache reset), median of `reps` after one warm-up,
next to a floor: copying the same tensors into preallocated buffers with `copy_`
(what any in-place sync must at least do). After the last sync it checks the engine
decodes greedily what a forward pass of the perturbed policy decodes, so the timing
is of a sync that worked. Writes `.bench/weight_sync.json`, prints markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_rollout import machine, run_children


def measure(size: str, reps: int) -> dict:
    import torch

    from rlvr.model import build_sized_model, load_policy, num_params
    from rlvr.sampler import VLLMSampler
    from rlvr.types import SampleParams

    with tempfile.TemporaryDirectory() as d:
        path = build_sized_model(Path(d) / "m", size)
        policy = load_policy(path)
        s = VLLMSampler(path, max_model_len=256, seed=0)
        sd = policy.state_dict()
        mbytes = sum(t.numel() * t.element_size() for t in sd.values()) / 2**20
        bufs = {k: torch.empty_like(v) for k, v in sd.items()}
        sync, floor = [], []
        for i in range(reps + 1):
            with torch.no_grad():  # a "step": new weights every time
                for p in policy.parameters():
                    p.add_(torch.randn_like(p) * 1e-3)
            t = time.perf_counter()
            s.sync_weights(policy.state_dict())
            t1 = time.perf_counter()
            for k, v in policy.state_dict().items():
                bufs[k].copy_(v)
            t2 = time.perf_counter()
            if i:  # skip the warm-up
                sync.append(t1 - t)
                floor.append(t2 - t1)
        prompt = "Q: 12+34\nA: "
        got = s.generate([prompt], 1, SampleParams(temperature=0.0, max_tokens=16,
                                                   ignore_eos=True))[0][0].token_ids
        ids = s.tokenizer(prompt)["input_ids"]
        with torch.no_grad():
            for _ in range(16):
                ids.append(int(policy(torch.tensor([ids])).logits[0, -1].argmax()))
        assert got == ids[-16:], "engine does not decode what the synced policy decodes"
    return {
        "size": size, "params": num_params(policy), "state_dict_MiB": round(mbytes, 1),
        "sync_ms": round(1000 * statistics.median(sync), 1),
        "copy_floor_ms": round(1000 * statistics.median(floor), 2),
        "sync_ms_all": [round(1000 * x, 1) for x in sync],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="0.3M,2.4M,25M")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.reps)))
        return
    host = machine()
    rows = run_children("bench.bench_weight_sync", args.sizes.split(","), ["--reps", str(args.reps)])
    Path(".bench").mkdir(exist_ok=True)
    Path(".bench/weight_sync.json").write_text(json.dumps({"machine": host, "rows": rows}, indent=2))
    print(f"Weight sync into the in-process vLLM engine, median of {args.reps} ({host})\n")
    print("| model | params | state dict MiB | sync ms | copy_ floor ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['params']:,} | {r['state_dict_MiB']} | {r['sync_ms']} | "
              f"{r['copy_floor_ms']} |")


if __name__ == "__main__":
    main()
