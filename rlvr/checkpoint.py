"""Checkpoints for exact resume: policy (HF format), optimizer, scheduler, step, data
position and every RNG state, in one directory `RUN_DIR/checkpoint/`.

What differs from a plain `torch.save(model.state_dict())`:
- The policy is saved with `save_pretrained` (plus the tokenizer), so a checkpoint is
  also a model any HF/vLLM loader opens; the trainer state sits beside it in
  `trainer_state.pt`.
- Writes are atomic: everything goes to `checkpoint.tmp/` which then replaces
  `checkpoint/`, so a run killed mid-save still has its previous checkpoint.
- Exact resume does not rest on RNG state alone: the trainer derives each step's data
  slice and sampling seed from (seed, step), so the RNG states saved here only cover
  what the loop does not derive (torch's global generator, e.g. dropout).
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"


@dataclass
class TrainerState:
    """What, besides the weights, a resumed run needs."""

    step: int
    data_pos: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any] = field(default_factory=dict)
    init_model_path: str | None = None  # the reference model for the KL term
    extra: dict[str, Any] = field(default_factory=dict)


def rng_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": np.random.get_state()}


def set_rng_states(states: dict[str, Any]) -> None:
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "python" in states:
        random.setstate(states["python"])
    if "numpy" in states:
        np.random.set_state(states["numpy"])


def save_model(policy: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """HF-format model directory (weights, config, tokenizer)."""
    from rlvr.model import save_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out)
    if tokenizer is not None:
        save_tokenizer(tokenizer, out)
    return out


def save_checkpoint(ckpt_dir: str | Path, policy: Any, tokenizer: Any, state: TrainerState) -> Path:
    """Atomically write `ckpt_dir` (model + trainer_state.pt); returns the directory."""
    final = Path(ckpt_dir)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(policy, tokenizer, tmp)
    state.rng = rng_states()
    torch.save(state.__dict__, tmp / STATE_FILE)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def has_checkpoint(ckpt_dir: str | Path) -> bool:
    return (Path(ckpt_dir) / STATE_FILE).exists()


def load_trainer_state(ckpt_dir: str | Path) -> TrainerState:
    """The trainer state of a checkpoint (load the weights with `rlvr.model.load_policy`)."""
    raw = torch.load(Path(ckpt_dir) / STATE_FILE, weights_only=False)
    return TrainerState(**raw)
