"""Bradley-Terry reward model: a causal-LM backbone with a scalar head, trained on
preference pairs (prompt, chosen, rejected). `rlvr train-rm CONFIG [key=value ...]`.

    loss = -log sigmoid(r(prompt, chosen) - r(prompt, rejected) - margin)

What this does differently from the textbook, on purpose:

- The model is transformers' own `AutoModelForSequenceClassification` with
  `num_labels=1` (for Qwen2: `Qwen2ForSequenceClassification`, a bias-free linear
  head on the hidden state of the last non-pad token). So the saved directory is a
  standard HF reward model that transformers, TRL and vLLM's pooling runner load
  as they are; there is no custom head file. The head has no bias on purpose: the
  BT likelihood only sees differences of rewards, so a bias is unidentifiable.
- Every scored text is `prompt + completion + eos` (`rm_text`), in training and in
  the `"rm"` verifier alike, so the head always reads the state of one fixed token
  that has seen the whole completion. Padding is on the right: with causal
  attention a sequence's score then does not depend on what it is batched with.
- Pairwise accuracy counts ties as half (a constant model scores 0.5, not 0).
- The mean and standard deviation of the trained model's rewards on the training
  completions are saved with it (`rm_stats.json`), so the verifier can z-score
  rewards without a second pass over data.
- The demo preference set (`arithmetic_preference_pairs`) is generated and checked
  against its own verifier: every chosen completion scores 1.0 with `"math"`, every
  rejected one 0.0.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

STATS_FILE = "rm_stats.json"


# ----------------------------------------------------------------------------- pure math


def bt_loss(
    r_chosen_B: torch.Tensor, r_rejected_B: torch.Tensor, margin_B: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Mean Bradley-Terry loss -log sigmoid(r_c - r_r - m). `logsigmoid` is stable for
    large negative differences, where log(sigmoid(x)) would underflow to -inf."""
    return -F.logsigmoid(r_chosen_B - r_rejected_B - margin_B).mean()


def pairwise_accuracy(r_chosen_B: torch.Tensor, r_rejected_B: torch.Tensor) -> float:
    """Fraction of pairs ranked correctly; a tie counts as half."""
    wins = (r_chosen_B > r_rejected_B).float() + 0.5 * (r_chosen_B == r_rejected_B).float()
    return float(wins.mean()) if wins.numel() else float("nan")


# ----------------------------------------------------------------------------- model


def rm_text(prompt: str | None, completion: str, eos: str | None) -> str:
    """The one string a reward model scores (training and serving use this)."""
    return (prompt or "") + completion + (eos or "")


def load_reward_model(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(model, tokenizer) from a saved reward model, or from a causal-LM checkpoint
    (the head is then freshly initialised). Model in eval mode, right padding."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:  # many causal LMs ship without one
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    tok.truncation_side = "left"  # keep the end of the completion, where the head reads
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=dtype)
    model.config.pad_token_id = tok.pad_token_id
    model.eval()
    return model, tok


def score_texts(
    model: Any, tok: Any, texts: Sequence[str], *, batch_size: int = 32, max_length: int = 512,
    grad: bool = False,
) -> torch.Tensor:
    """Scalar reward per text, shape (B,). Batches of `batch_size`, right-padded."""
    out: list[torch.Tensor] = []
    ctx = torch.enable_grad() if grad else torch.inference_mode()
    with ctx:
        for i in range(0, len(texts), batch_size):
            enc = tok(list(texts[i : i + batch_size]), return_tensors="pt", padding=True,
                      truncation=True, max_length=max_length, add_special_tokens=False)
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            out.append(logits[:, 0].float())
    return torch.cat(out) if out else torch.zeros(0)


def save_reward_model(model: Any, tok: Any, out_dir: str | Path, stats: dict[str, float]) -> str:
    """HF format: config + safetensors (backbone and head) + tokenizer + rm_stats.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    src_cls = getattr(tok, "_rlvr_tokenizer_class", None)
    if src_cls:  # keep the class the source directory named (see rlvr.model.save_tokenizer)
        cfg_path = out / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["tokenizer_class"] = src_cls
        cfg_path.write_text(json.dumps(cfg, indent=2))
    (out / STATS_FILE).write_text(json.dumps(stats, indent=2))
    return str(out)


# ----------------------------------------------------------------------------- data


def arithmetic_preference_pairs(
    n: int, *, digits: int = 2, split: str = "train", seed: int = 0,
    kinds: Sequence[str] = ("no_answer", "wrong_box"),
) -> list[dict[str, str]]:
    """Preference pairs on the demo addition task: chosen = the correct column-by-column
    solution, rejected = a verified-wrong one. Kinds of wrong answer:

    - "no_answer": the steps without a final `\\boxed{}` (a truncated completion);
    - "wrong_box": correct steps but a boxed number that is not the sum (the model
      must compare the answer with the work, an easy-to-learn check);
    - "forget_carry": the carry dropped, consistently (needs real arithmetic; only for
      problems that have a carry).

    Every chosen completion is checked to score 1.0 with the `"math"` verifier and
    every rejected one 0.0; a pair that fails the check raises.
    """
    from rlvr.data import arithmetic_problems, arithmetic_solution
    from verifiers.base import ScoreItem
    from verifiers.math_verifier import MathVerifier

    math_v = MathVerifier()
    rng = random.Random(seed + 7)
    pairs: list[dict[str, str]] = []
    for p in arithmetic_problems(n, digits=digits, split=split, seed=seed):
        a, b = p.meta["a"], p.meta["b"]
        good = arithmetic_solution(a, b)
        usable = [k for k in kinds if k != "forget_carry"
                  or arithmetic_solution(a, b, forget_carry=True) != good]
        kind = rng.choice(usable)
        if kind == "no_answer":
            bad = good[: good.index(" \\boxed{")]
        elif kind == "wrong_box":
            delta = rng.choice([-10, -2, -1, 1, 2, 10])
            bad = good[: good.index("\\boxed{")] + "\\boxed{" + str(a + b + delta) + "}"
        elif kind == "forget_carry":
            bad = arithmetic_solution(a, b, forget_carry=True)
        else:
            raise ValueError(f"unknown kind of wrong answer {kind!r}")
        for text, want in ((good, 1.0), (bad, 0.0)):
            r = math_v.verify(ScoreItem("math", text, p.reference, p.prompt))
            if r.reward != want:
                raise AssertionError(f"pair self-check failed: {text!r} scored {r} (want {want})")
        pairs.append({"prompt": p.prompt, "chosen": good, "rejected": bad, "kind": kind})
    return pairs


def load_pairs(
    source: str, *, split: str = "train", limit: int | None = None, seed: int = 0,
    field_map: dict[str, str] | None = None, kinds: Sequence[str] = ("no_answer", "wrong_box"),
) -> list[dict[str, Any]]:
    """Preference pairs from `arithmetic` (generated), a JSONL file, a `datasets`
    directory (`save_to_disk`), or a hub dataset name (`datasets.load_dataset`).
    `field_map` maps prompt/chosen/rejected/margin to the source's column names."""
    if source.startswith("arithmetic"):
        digits = int(source[len("arithmetic"):] or 2)
        return arithmetic_preference_pairs(limit or 1000, digits=digits, split=split, seed=seed,
                                           kinds=kinds)
    path = Path(source)
    rows: list[dict[str, Any]]
    if path.is_file():
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    else:
        import datasets

        ds = datasets.load_from_disk(str(path)) if path.is_dir() else datasets.load_dataset(source)
        if hasattr(ds, "keys"):  # DatasetDict
            ds = ds[split] if split in ds else ds[next(iter(ds.keys()))]
        rows = [dict(r) for r in ds]
    fmap = {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected", "margin": "margin",
            **(field_map or {})}
    out = []
    for i, r in enumerate(rows[: limit or None]):
        try:
            pair = {"prompt": r.get(fmap["prompt"]) or "", "chosen": r[fmap["chosen"]],
                    "rejected": r[fmap["rejected"]]}
        except KeyError as e:
            raise KeyError(f"{source}: row {i} has no column {e}; columns: {sorted(r)}") from None
        if fmap["margin"] in r:
            pair["margin"] = float(r[fmap["margin"]])
        out.append(pair)
    return out


# ----------------------------------------------------------------------------- config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RMDataConfig(_Strict):
    train: str = Field("arithmetic", description="'arithmetic' (generated pairs), a JSONL file, "
                       "a datasets directory, or a hub dataset name.")
    eval: str | None = Field(None, description="Held-out pairs; None: the held-out split of "
                             "'arithmetic', or `eval_fraction` of the training pairs.")
    train_size: int = Field(2000, ge=1, description="Pairs to use for training (at most).")
    eval_size: int = Field(200, ge=1, description="Held-out pairs evaluated (at most).")
    eval_fraction: float = Field(0.1, gt=0, lt=1, description="Split off when `eval` is None "
                                 "and the source is a file.")
    field_map: dict[str, str] = Field(default_factory=dict, description="Our names "
                                      "(prompt, chosen, rejected, margin) -> column names.")
    arithmetic_kinds: list[Literal["no_answer", "wrong_box", "forget_carry"]] = Field(
        default_factory=lambda: ["no_answer", "wrong_box"], min_length=1,
        description="Kinds of verified-wrong completion in the generated 'arithmetic' pairs.")


class RMConfig(_Strict):
    name: str = Field("rm", description="Run name; output goes to runs/NAME unless out_dir.")
    out_dir: str | None = Field(None, description="Where the trained model is saved.")
    base_model: str = Field("tiny", description="Backbone: an HF causal-LM directory or hub id, "
                            "or 'tiny' for the embedded tiny Qwen2 (`tiny_size`).")
    tiny_size: Literal["0.3M", "2.4M", "25M"] = Field("0.3M", description="Embedded model size.")
    seed: int = Field(0, description="Seed for init and data order.")
    steps: int = Field(300, ge=0, description="Optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Pairs per step.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate (constant).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Max global gradient norm.")
    margin: float = Field(0.0, description="Margin m in -log sigmoid(r_c - r_r - m); a pair's "
                          "own 'margin' column, when present, takes precedence.")
    max_length: int = Field(256, ge=8, description="Longest scored text, tokens (cut on the left).")
    eval_every: int = Field(100, ge=0, description="Held-out evaluation every N steps (0: end only).")
    time_budget_s: float | None = Field(None, gt=0, description="Stop early after this long.")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's "
                                    "default); 1 is fastest on a crowded machine.")
    data: RMDataConfig = Field(default_factory=RMDataConfig)


# ----------------------------------------------------------------------------- training


def _build_backbone(cfg: RMConfig, out: Path) -> str:
    if cfg.base_model != "tiny":
        return cfg.base_model
    from rlvr.model import SIZES, build_tiny_model

    hidden, layers, heads, inter = SIZES[cfg.tiny_size]
    return build_tiny_model(out / "backbone", hidden=hidden, layers=layers, heads=heads,
                            intermediate=inter, max_position=max(cfg.max_length, 256),
                            seed=cfg.seed)


def _source_tokenizer_class(path: str) -> str | None:
    p = Path(path) / "tokenizer_config.json"
    if p.is_file():
        return json.loads(p.read_text()).get("tokenizer_class")
    return None


def evaluate_pairs(model: Any, tok: Any, pairs: Sequence[dict[str, Any]], *,
                   margin: float = 0.0, batch_size: int = 64, max_length: int = 256) -> dict[str, float]:
    """Held-out pairwise accuracy and BT loss."""
    eos = tok.eos_token
    rc = score_texts(model, tok, [rm_text(p["prompt"], p["chosen"], eos) for p in pairs],
                     batch_size=batch_size, max_length=max_length)
    rr = score_texts(model, tok, [rm_text(p["prompt"], p["rejected"], eos) for p in pairs],
                     batch_size=batch_size, max_length=max_length)
    m = torch.tensor([p.get("margin", margin) for p in pairs])
    out = {"accuracy": pairwise_accuracy(rc, rr), "loss": float(bt_loss(rc, rr, m)),
           "reward_gap": float((rc - rr).mean())}
    for kind in sorted({p["kind"] for p in pairs if "kind" in p}):
        idx = torch.tensor([i for i, p in enumerate(pairs) if p.get("kind") == kind])
        out[f"accuracy_{kind}"] = pairwise_accuracy(rc[idx], rr[idx])
    return out


def train_reward_model(cfg: RMConfig, log: Any = print) -> dict[str, Any]:
    """Train, evaluate, save. Returns {"out_dir", "eval": {...}, "steps", "seconds"}."""
    torch.manual_seed(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out_dir or f"runs/{cfg.name}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "rm_config.json").write_text(json.dumps(cfg.model_dump(), indent=2))

    d = cfg.data
    kw: dict[str, Any] = {"seed": cfg.seed, "field_map": d.field_map, "kinds": d.arithmetic_kinds}
    train = load_pairs(d.train, split="train", limit=d.train_size, **kw)
    if d.eval is not None:
        held = load_pairs(d.eval, split="test", limit=d.eval_size, **kw)
    elif d.train.startswith("arithmetic"):  # generated splits are disjoint by construction
        held = load_pairs(d.train, split="test", limit=d.eval_size, **kw)
    else:
        rng = random.Random(cfg.seed)
        rng.shuffle(train)
        k = max(1, int(len(train) * d.eval_fraction))
        held, train = train[:k][: d.eval_size], train[k:]
    if not train or not held:
        raise ValueError(f"need training and held-out pairs (got {len(train)} / {len(held)})")

    backbone = _build_backbone(cfg, out)
    model, tok = load_reward_model(backbone)
    tok._rlvr_tokenizer_class = _source_tokenizer_class(backbone)
    eos = tok.eos_token
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    metrics_f = open(out / "metrics.jsonl", "w")

    def record(row: dict[str, Any]) -> None:
        metrics_f.write(json.dumps(row) + "\n")
        metrics_f.flush()
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

    ev = evaluate_pairs(model, tok, held, margin=cfg.margin, max_length=cfg.max_length)
    record({"step": 0, **{f"eval/{k}": v for k, v in ev.items()}})
    rng = random.Random(cfg.seed)
    order: list[int] = []
    t0 = time.perf_counter()
    step = 0
    for step in range(1, cfg.steps + 1):
        if len(order) < cfg.batch_size:
            perm = list(range(len(train)))
            rng.shuffle(perm)
            order += perm
        batch = [train[i] for i in order[: cfg.batch_size]]
        del order[: cfg.batch_size]
        model.train()
        texts = [rm_text(p["prompt"], p["chosen"], eos) for p in batch]
        texts += [rm_text(p["prompt"], p["rejected"], eos) for p in batch]
        # chosen and rejected in one forward: (2B,) -> two (B,) halves
        r_2B = score_texts(model, tok, texts, batch_size=len(texts), max_length=cfg.max_length,
                           grad=True)
        rc_B, rr_B = r_2B[: len(batch)], r_2B[len(batch):]
        m_B = torch.tensor([p.get("margin", cfg.margin) for p in batch])
        loss = bt_loss(rc_B, rr_B, m_B)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        opt.step()
        model.eval()
        row: dict[str, Any] = {"step": step, "loss": float(loss.detach()),
                               "accuracy": pairwise_accuracy(rc_B.detach(), rr_B.detach()),
                               "grad_norm": gnorm}
        over = cfg.time_budget_s is not None and time.perf_counter() - t0 > cfg.time_budget_s
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps or over:
            ev = evaluate_pairs(model, tok, held, margin=cfg.margin, max_length=cfg.max_length)
            row.update({f"eval/{k}": v for k, v in ev.items()})
            record(row)
        elif step % 10 == 0:
            record(row)
        if over:
            break
    seconds = time.perf_counter() - t0

    # reward statistics over the training completions (both sides), for z-scoring
    sample = train[: min(len(train), 512)]
    r_all = score_texts(model, tok, [rm_text(p["prompt"], p[k], eos) for p in sample
                                     for k in ("chosen", "rejected")], max_length=cfg.max_length)
    stats = {"mean": float(r_all.mean()), "std": float(r_all.std()) if len(r_all) > 1 else 1.0,
             "eval_accuracy": ev["accuracy"], "eval_loss": ev["loss"], "steps": step}
    if not math.isfinite(stats["std"]) or stats["std"] <= 0:
        stats["std"] = 1.0
    save_reward_model(model, tok, out / "model", stats)
    metrics_f.close()
    log(f"saved reward model to {out / 'model'} (held-out accuracy {ev['accuracy']:.3f}, "
        f"{step} steps in {seconds:.1f} s)")
    return {"out_dir": str(out / "model"), "eval": ev, "steps": step, "seconds": seconds,
            "stats": stats}


def main(argv: list[str]) -> int:
    from rlvr.config import load_config

    p = argparse.ArgumentParser(prog="rlvr train-rm", description="Train a Bradley-Terry reward "
                                "model on preference pairs (prompt, chosen, rejected).")
    p.add_argument("config", nargs="?", default=None, help="TOML config (see configs/rm_demo.toml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=100 data.train=x.jsonl")
    args = p.parse_args(argv)
    overrides = list(args.overrides)
    if args.config is not None and "=" in args.config and not Path(args.config).is_file():
        overrides.insert(0, args.config)  # `rlvr train-rm steps=10`: no config file
        args.config = None
    cfg = load_config(args.config, overrides, cls=RMConfig)
    train_reward_model(cfg)
    return 0
