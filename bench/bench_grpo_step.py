"""GRPO step time split by phase, against the machine's limit (and TRL when present).

    .venv/bin/python -m bench.bench_grpo_step [--sizes 0.3M,2.4M,25M] [--steps 5]

Per model size, in a fresh process: the embedded tiny Qwen2 (random weights), 8
arithmetic prompts x G=8, completions up to 128 tokens, the local reward server.
It runs `rlvr.train.train` for `steps` steps and reports the median of each phase
the loop logs (generate, score, logprobs, forward + backward, optimizer, sync) over the steps after the first (warm-up). Then, alone and in the same process,
the two things a step cannot avoid: raw `vllm.LLM.generate` on the same prompts and
sampling parameters, and one forward + backward pass over the batch that generate
produced. `limit_ratio` = step / (raw generate + forward/backward): the goal is <= 1.2.

TRL baseline: TRL 1.16 in its own venv, `.bench/trl-venv` (created on first use with
pinned versions and the local torch wheel; `--no-trl` skips it): the same model,
prompts, G and lengths run through TRL's GRPOTrainer (bench/trl_grpo_baseline.py) and
its median step time is reported beside ours. If the venv cannot be made, that column
says "not run". Writes `.bench/grpo_step.json` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_rollout import machine, run_children

REPO = Path(__file__).resolve().parents[1]
TRL_PY = REPO / ".bench" / "trl-venv" / "bin" / "python"
PHASES = ("generate", "score", "logprobs", "fwd_bwd", "optimizer", "sync", "step")
P, G, MAX_TOKENS = 8, 8, 128
# the trainer's default (sampling.enforce_eager = true); RLVR_BENCH_COMPILED=1 measures
# the compiled engine instead
EAGER = not os.environ.get("RLVR_BENCH_COMPILED")


def measure(size: str, steps: int) -> dict:
    from rlvr.config import load_config
    from rlvr.data import load_problems
    from rlvr.model import build_sized_model, load_policy, num_params
    from rlvr.reward_client import LocalRewardServer, SyncRewardClient
    from rlvr.sampler import VLLMSampler, _completion
    from rlvr.train import collate, token_logprobs, train
    from rlvr.types import SampleParams

    with tempfile.TemporaryDirectory() as d:
        path = build_sized_model(Path(d) / "m", size)
        sampler = VLLMSampler(path, max_model_len=256, seed=0, enforce_eager=EAGER)
        cfg = load_config(None, [
            f"out_dir='{Path(d) / 'run'}'", f"model.path='{path}'", f"steps={steps}", "eval_every=0",
            "data.eval_size=1", f"sampling.prompts_per_step={P}", f"sampling.group_size={G}",
            f"sampling.max_tokens={MAX_TOKENS}", "model.max_model_len=256", "optim.lr=1e-5",
            f"optim.micro_batch={P * G}", "tensorboard=false", "algo.beta=0.0",
        ])
        with LocalRewardServer() as srv, SyncRewardClient(srv.url) as client:
            out = train(cfg, client=client, sampler=sampler)
        hist = out["history"][1:]  # the first step warms caches up
        phases = {k: statistics.median(h[f"time/{k}"] for h in hist) for k in PHASES}

        # The floor, measured alone: raw vLLM generate, then one forward + backward.
        prompts = [p.prompt for p in load_problems("arithmetic", split="train", limit=P)]
        sp = sampler.sampling_params(G, SampleParams(temperature=1.0, max_tokens=MAX_TOKENS), seed=1)
        raw = []
        for _ in range(3):
            t = time.perf_counter()
            outs = sampler.llm.generate(prompts, sp, use_tqdm=False)
            raw.append(time.perf_counter() - t)
        batch = collate([_completion(o.prompt_token_ids, c) for o in outs for c in o.outputs],
                        sampler.tokenizer.pad_token_id)
        policy = load_policy(path)
        fb = []
        for _ in range(3):
            t = time.perf_counter()
            logp = token_logprobs(policy, batch["ids"], batch["attn"])
            (logp * batch["mask"]).sum().backward()
            fb.append(time.perf_counter() - t)
        floor = statistics.median(raw) + statistics.median(fb)
        gen_tokens = int(batch["mask"].sum())
        return {
            "size": size, "params": num_params(policy), "steps_timed": len(hist),
            "phases_s": {k: round(v, 4) for k, v in phases.items()},
            "raw_generate_s": round(statistics.median(raw), 4),
            "forward_backward_s": round(statistics.median(fb), 4),
            "limit_ratio": round(phases["step"] / floor, 3),
            "generated_tokens_per_step": gen_tokens,
            "trl_median_step_s": trl_step(path),
        }


TRL_PINS = ["trl==1.16.0", "transformers==5.24.0", "accelerate==1.15.0", "datasets==5.2.0"]


def ensure_trl_venv() -> bool:
    """Create `.bench/trl-venv` (torch from the local CPU wheel, then TRL) if missing."""
    if TRL_PY.exists():
        return True
    venv = TRL_PY.parent.parent
    print(f"creating {venv} (TRL is not a project dependency) ...", file=sys.stderr)
    pip = [str(venv / "bin" / "pip"), "install", "-q"]
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(pip + ["torch==2.13.0"], check=True)
        subprocess.run(pip + TRL_PINS, check=True)
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"could not create the TRL venv: {e}", file=sys.stderr)
        return False
    return True


def trl_step(model_path: str) -> float | None:
    """TRL GRPOTrainer's median step time on the same setup, or None without its venv."""
    if not TRL_PY.exists() or os.environ.get("RLVR_BENCH_NO_TRL"):
        return None
    from rlvr.data import load_problems
    from rlvr.reward_client import LocalRewardServer

    probs = load_problems("arithmetic", split="train", limit=P)
    with tempfile.TemporaryDirectory() as d, LocalRewardServer() as srv:
        f = Path(d) / "prompts.jsonl"
        f.write_text("".join(json.dumps({"prompt": p.prompt, "answer": p.reference}) + "\n"
                             for p in probs))
        proc = subprocess.run(
            [str(TRL_PY), str(REPO / "bench" / "trl_grpo_baseline.py"), "--model", model_path,
             "--prompts", str(f), "--reward-url", srv.url, "--group", str(G),
             "--max-tokens", str(MAX_TOKENS), "--out", str(Path(d) / "trl")],
            capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"TRL baseline failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    times = json.loads(proc.stdout.strip().splitlines()[-1])["step_times_s"][1:]
    return round(statistics.median(times), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="0.3M,2.4M,25M")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--no-trl", action="store_true", help="skip the TRL baseline")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps)))
        return
    where = machine()
    if args.no_trl:
        os.environ["RLVR_BENCH_NO_TRL"] = "1"  # read by the children
    else:
        ensure_trl_venv()
    rows = run_children("bench.bench_grpo_step", args.sizes.split(","), ["--steps", str(args.steps)])
    out = REPO / ".bench" / "grpo_step.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": where, "eager": EAGER, "P": P, "G": G, "max_tokens": MAX_TOKENS,
                               "rows": rows}, indent=2))
    mode = "eager (the trainer's default)" if EAGER else "compiled"
    print(f"GRPO step, {P} prompts x G={G}, up to {MAX_TOKENS} tokens, vLLM {mode}; {where}\n")
    print("| size | params | " + " | ".join(PHASES) + " | raw gen + fwd/bwd | ratio | TRL step |")
    print("|---" * (len(PHASES) + 5) + "|")
    for r in rows:
        ph = " | ".join(f"{r['phases_s'][k]:.3f}" for k in PHASES)
        trl = f"{r['trl_median_step_s']:.3f}" if r["trl_median_step_s"] else "not run"
        print(f"| {r['size']} | {r['params']:,} | {ph} | "
              f"{r['raw_generate_s'] + r['forward_backward_s']:.3f} | {r['limit_ratio']} | {trl} |")


if __name__ == "__main__":
    main()
