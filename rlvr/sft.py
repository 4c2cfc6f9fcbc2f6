"""Supervised warm start (stage 1 of the RLHF pipeline): cross-entropy on demonstrations.

Only completion tokens (and the closing EOS) are trained; prompt tokens are context.

    rlvr sft configs/sft_demo.toml [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from pydantic import Field

from rlvr.config import _Strict, load_config, save_config


class SFTConfig(_Strict):
    model: str = Field(..., description="HF model directory to start from.")
    out_dir: str = Field("runs/sft", description="Where the fine-tuned model is saved.")
    data: str = Field("arithmetic", description="'arithmetic' (generated demonstrations) or a "
                      "JSONL file with prompt/completion fields.")
    num_examples: int = Field(4000, ge=1, description="Demonstrations (generated tasks).")
    forget_carry_p: float = Field(0.0, ge=0, le=1, description="Arithmetic: share of noisy demos.")
    steps: int = Field(300, ge=1, description="Optimizer steps.")
    batch_size: int = Field(64, ge=1, description="Sequences per step.")
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate (cosine decay to 10%).")
    seed: int = Field(0, description="Seed.")


def load_demonstrations(cfg: SFTConfig) -> list[tuple[str, str]]:
    if cfg.data.startswith("arithmetic"):
        from rlvr.data import arithmetic_demonstrations

        digits = int(cfg.data[len("arithmetic"):] or 2)
        return arithmetic_demonstrations(cfg.num_examples, digits=digits,
                                         forget_carry_p=cfg.forget_carry_p, seed=cfg.seed)
    rows = [json.loads(line) for line in open(cfg.data)]
    return [(r["prompt"], r["completion"]) for r in rows]


def sft(model: torch.nn.Module, tokenizer, demos: list[tuple[str, str]], *, steps: int,
        batch_size: int, lr: float, seed: int = 0, log_every: int = 50) -> list[float]:
    """Train `model` in place on (prompt, completion) pairs; returns the loss curve."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    encoded = []
    for p, c in demos:
        pi = tokenizer(p, add_special_tokens=False)["input_ids"]
        ci = tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        encoded.append((pi, ci))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(s / steps * torch.pi)).item()))
    model.train()
    losses = []
    for step in range(steps):
        batch = [encoded[rng.randrange(len(encoded))] for _ in range(batch_size)]
        L = max(len(p) + len(c) for p, c in batch)
        ids = torch.full((batch_size, L), tokenizer.pad_token_id)
        labels = torch.full((batch_size, L), -100)
        attn = torch.zeros((batch_size, L), dtype=torch.long)
        for i, (p, c) in enumerate(batch):
            seq = p + c
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, len(p) : len(seq)] = torch.tensor(c)
            attn[i, : len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"sft step {step + 1}/{steps} loss {sum(losses[-log_every:]) / log_every:.4f}", flush=True)
    model.eval()
    return losses


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rlvr sft", description="Supervised warm start.")
    ap.add_argument("config", nargs="?", help="TOML file")
    ap.add_argument("overrides", nargs="*", help="key=value")
    args = ap.parse_args(argv)
    if args.config and "=" in args.config:  # no file, only overrides
        args.overrides.insert(0, args.config)
        args.config = None
    cfg: SFTConfig = load_config(args.config, args.overrides, cls=SFTConfig)
    from rlvr.model import load_policy, load_tokenizer, save_tokenizer

    model, tok = load_policy(cfg.model), load_tokenizer(cfg.model)
    t0 = time.time()
    losses = sft(model, tok, load_demonstrations(cfg), steps=cfg.steps, batch_size=cfg.batch_size,
                 lr=cfg.lr, seed=cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_tokenizer(tok, out)
    save_config(cfg, out / "sft_config.json")
    print(f"saved {out} (final loss {losses[-1]:.4f}, {time.time() - t0:.0f} s)")
    return 0
