"""Supervised warm start (stage 1 of the RLHF pipeline): cross-entropy on demonstrations.

    rlvr sft configs/sft_arithmetic.toml [key=value ...]

Differences from a generic SFT script: only completion tokens (and the closing EOS)
are trained, prompt tokens are context; the loss is the mean over completion tokens
of the batch (transformers' `labels=-100` convention). Batches are drawn with
replacement from a seeded stream, the lr decays by cosine to `min_lr_ratio`, and the
same typed-config style as `rlvr train` is used (TOML + dotted overrides, resolved
config saved beside the model).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from rlvr.config import StrictModel, load_config, save_config, split_config_arg


class SFTConfig(StrictModel):
    model: str = Field("tiny", description="HF model directory to start from, or 'tiny' to build "
                       "the embedded tiny Qwen2 (size `tiny_size`) into OUT_DIR/init.")
    tiny_size: str = Field("0.3M", description="Embedded model size when model = 'tiny'.")
    max_model_len: int = Field(128, ge=16, description="Tiny model: max positions.")
    out_dir: str = Field("runs/sft", description="Where the fine-tuned model (HF format) is saved.")
    data: str = Field("arithmetic", description="'arithmetic' (generated demonstrations) or a "
                      "JSONL file with `prompt` and `completion` fields.")
    digits: int = Field(2, ge=1, le=6, description="Arithmetic: digits per operand.")
    num_examples: int = Field(4000, ge=1, description="Demonstrations to generate (arithmetic).")
    forget_carry_p: float = Field(0.0, ge=0, le=1, description="Arithmetic: share of demonstrations "
                                  "that forget the carry (a careless annotator).")
    steps: int = Field(300, ge=1, description="Optimizer steps.")
    batch_size: int = Field(64, ge=1, description="Sequences per step.")
    lr: float = Field(3e-3, gt=0, description="Peak AdamW learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine decay floor, share of lr.")
    grad_clip: float = Field(1.0, gt=0, description="Max global gradient norm.")
    seed: int = Field(0, description="Seed (model init, data, batches).")


def load_demonstrations(cfg: SFTConfig) -> list[tuple[str, str]]:
    """(prompt, completion) pairs from the generated task or a JSONL file."""
    if cfg.data == "arithmetic":
        from rlvr.data import arithmetic_demonstrations

        return arithmetic_demonstrations(cfg.num_examples, digits=cfg.digits,
                                         forget_carry_p=cfg.forget_carry_p, seed=cfg.seed)
    with open(cfg.data) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(r["prompt"], r["completion"]) for r in rows]


def sft(model: torch.nn.Module, tokenizer: Any, demos: list[tuple[str, str]], *, steps: int,
        batch_size: int, lr: float, seed: int = 0, min_lr_ratio: float = 0.1, grad_clip: float = 1.0,
        log_every: int = 50) -> list[float]:
    """Train `model` in place on (prompt, completion) pairs; returns the loss per step."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    eos = tokenizer.eos_token_id
    encoded = [(tokenizer(p, add_special_tokens=False)["input_ids"],
                tokenizer(c, add_special_tokens=False)["input_ids"] + [eos]) for p, c in demos]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    losses: list[float] = []
    for step in range(steps):
        batch = [encoded[rng.randrange(len(encoded))] for _ in range(batch_size)]
        L = max(len(p) + len(c) for p, c in batch)
        ids_B_L = torch.full((batch_size, L), tokenizer.pad_token_id)
        labels_B_L = torch.full((batch_size, L), -100)  # -100: not trained (prompt, padding)
        attn_B_L = torch.zeros((batch_size, L), dtype=torch.long)
        for i, (p, c) in enumerate(batch):
            ids_B_L[i, : len(p) + len(c)] = torch.tensor(p + c)
            labels_B_L[i, len(p) : len(p) + len(c)] = torch.tensor(c)
            attn_B_L[i, : len(p) + len(c)] = 1
        loss = model(input_ids=ids_B_L, attention_mask=attn_B_L, labels=labels_B_L).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"sft step {step + 1}/{steps} loss {sum(losses[-log_every:]) / log_every:.4f}",
                  flush=True)
    model.eval()
    return losses


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rlvr sft", description="Supervised warm start.")
    ap.add_argument("config", nargs="?", help="TOML file (see configs/)")
    ap.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. steps=100")
    args = ap.parse_args(argv)
    cfg: SFTConfig = load_config(*split_config_arg(args.config, args.overrides), cls=SFTConfig)
    from rlvr.checkpoint import save_model
    from rlvr.logging_utils import MetricsLogger
    from rlvr.model import SIZES, build_tiny_model, load_policy, load_tokenizer

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "sft_config.toml")
    path = cfg.model
    if path == "tiny":
        h, layers, heads, inter = SIZES[cfg.tiny_size]
        path = build_tiny_model(out / "init", hidden=h, layers=layers, heads=heads,
                                intermediate=inter, max_position=cfg.max_model_len, seed=cfg.seed)
    model, tok = load_policy(path), load_tokenizer(path)
    t0 = time.time()
    losses = sft(model, tok, load_demonstrations(cfg), steps=cfg.steps, batch_size=cfg.batch_size,
                 lr=cfg.lr, seed=cfg.seed, min_lr_ratio=cfg.min_lr_ratio, grad_clip=cfg.grad_clip)
    logger = MetricsLogger(out, tensorboard=False)
    for i, loss in enumerate(losses):
        logger.log(i + 1, {"sft/loss": loss})
    logger.close()
    save_model(model, tok, out)
    print(f"saved {out} (final loss {losses[-1]:.4f}, {time.time() - t0:.0f} s)")
    return 0
