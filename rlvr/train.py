"""GRPO training loop: sample, score, advantages, loss, step, sync, log. One file, top to bottom.

    rlvr train configs/demo.toml [key=value ...]

What it does differently from a textbook GRPO script:
- Rewards come from the reward server over HTTP; an item the server could not score
  (timeout, error) has reward NaN here, is masked out of its group's statistics and
  of the loss, and is counted in the logs; it is never treated as 0.
- Old logprobs are the sampler's own (vLLM returns them for free), so no extra
  forward pass is needed when `epochs_per_batch == 1`.
- Gradient accumulation normalises each micro-batch by the *whole* batch's
  denominator, so accumulating gives exactly the update of one big batch.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rlvr.advantages import ADVANTAGE_FNS, equal_group_mask
from rlvr.config import TrainConfig, load_config, save_config
from rlvr.losses import batch_normaliser, policy_loss
from rlvr.types import Completion, Problem, SampleParams

# ----------------------------------------------------------------------------- helpers


def token_logprobs(model: torch.nn.Module, ids_B_L: torch.Tensor, attn_B_L: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t = 1..L-1: shape (B, L-1)."""
    logits_B_L_V = model(input_ids=ids_B_L, attention_mask=attn_B_L).logits[:, :-1].float()
    if temperature != 1.0:
        logits_B_L_V = logits_B_L_V / temperature
    logp = torch.log_softmax(logits_B_L_V, dim=-1)
    return logp.gather(-1, ids_B_L[:, 1:, None]).squeeze(-1)


def collate(samples: list[Completion], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded prompt+completion ids; masks and old logprobs aligned to targets (L-1)."""
    L = max(len(s.prompt_token_ids) + len(s.token_ids) for s in samples)
    B = len(samples)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    mask = torch.zeros((B, L - 1))
    old = torch.zeros((B, L - 1))
    for i, s in enumerate(samples):
        p, c = len(s.prompt_token_ids), len(s.token_ids)
        ids[i, : p + c] = torch.tensor(s.prompt_token_ids + s.token_ids)
        attn[i, : p + c] = 1
        mask[i, p - 1 : p - 1 + c] = 1.0
        if s.logprobs is not None:
            old[i, p - 1 : p - 1 + c] = torch.tensor(s.logprobs)
    return {"ids": ids, "attn": attn, "mask": mask, "old_logp": old}


def score(client: Any, problems: list[Problem], texts: list[str]) -> torch.Tensor:
    """Rewards from the server; NaN where the item could not be scored."""
    items = [{"verifier": p.verifier, "completion": t, "reference": p.reference, "prompt": p.prompt}
             for p, t in zip(problems, texts, strict=True)]
    res = client.score(items)
    return torch.tensor([r.reward if r.status == "ok" else math.nan for r in res], dtype=torch.float32)


def evaluate_greedy(sampler: Any, client: Any, problems: list[Problem], max_tokens: int) -> dict[str, float]:
    """Greedy accuracy on held-out problems through `rlvr.eval.evaluate` (the code
    `rlvr eval` runs); unscored items are reported, not counted wrong."""
    from rlvr.eval import evaluate

    rep = evaluate(sampler, problems, n=1, ks=[1], params=SampleParams(temperature=0.0, max_tokens=max_tokens),
                   score_fn=client.score, resamples=1)
    return {"accuracy": rep.summary["avg@n"], "unscored": rep.summary["unscored_samples"]}


def lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if cfg.optim.warmup_steps and step < cfg.optim.warmup_steps:
            return (step + 1) / cfg.optim.warmup_steps
        if cfg.optim.schedule == "cosine":
            t = (step - cfg.optim.warmup_steps) / max(1, cfg.steps - cfg.optim.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        return 1.0
    return f


class Logger:
    """Metrics to JSONL, TensorBoard and (optionally) W&B."""

    def __init__(self, run_dir: Path, cfg: TrainConfig) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.tb = self.wandb = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / "tb"))
        if cfg.wandb:
            try:
                import wandb
                self.wandb = wandb.init(project="rlvr", name=cfg.name, config=cfg.model_dump())
            except ImportError:
                print("wandb not installed; logging to JSONL and TensorBoard only")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, int | float) and not math.isnan(v):
                    self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def save_checkpoint(run_dir: Path, step: int, policy: Any, tok: Any, opt: Any, sched: Any, sampler: Any) -> None:
    from rlvr.model import save_tokenizer

    ck = run_dir / "checkpoint"
    ck.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(ck)
    save_tokenizer(tok, ck)
    torch.save({
        "step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "sampler_calls": getattr(sampler, "_calls", 0),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
    }, ck / "trainer_state.pt")


def setup_model(cfg: TrainConfig) -> str:
    """The model directory to train: a given path, or the embedded tiny model built now."""
    if cfg.model.path != "tiny":
        return cfg.model.path
    from rlvr.model import SIZES, build_tiny_model

    h, layers, heads, inter = SIZES[cfg.model.tiny_size]
    return build_tiny_model(cfg.run_dir / "init", hidden=h, layers=layers, heads=heads,
                            intermediate=inter, max_position=cfg.model.max_model_len, seed=cfg.seed)


# ----------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, *, client: Any = None, sampler: Any = None, resume: bool = False) -> dict[str, Any]:
    from rlvr.data import load_problems
    from rlvr.model import load_policy, load_tokenizer, save_tokenizer
    from rlvr.reward_client import LocalRewardServer, SyncRewardClient
    from rlvr.sampler import make_sampler

    t_start = time.time()
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.json")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)

    # Model, reference, tokenizer, sampler.
    ckpt = run_dir / "checkpoint"
    model_path = str(ckpt) if resume and ckpt.exists() else setup_model(cfg)
    policy = load_policy(model_path)
    tok = load_tokenizer(model_path)
    ref = load_policy(model_path).eval() if cfg.algo.beta > 0 else None
    if sampler is None:
        sampler = make_sampler(cfg.sampling.backend, model_path, seed=cfg.seed,
                               max_model_len=cfg.model.max_model_len)
    else:
        sampler.sync_weights(policy.state_dict())
    if cfg.sampling.backend == "hf" and hasattr(sampler, "model"):
        sampler.model = policy

    # Data: a fixed shuffled order; position = step * P.
    train_set = load_problems(cfg.data.train, split="train", limit=cfg.data.train_size,
                              template=cfg.data.template, tokenizer=tok, verifier=cfg.data.verifier, seed=cfg.seed)
    eval_set = load_problems(cfg.data.eval, split="test", limit=cfg.data.eval_size,
                             template=cfg.data.template, tokenizer=tok, verifier=cfg.data.verifier, seed=cfg.seed)
    order = list(range(len(train_set)))
    random.Random(cfg.seed).shuffle(order)

    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    start_step = 0
    if resume and (ckpt / "trainer_state.pt").exists():
        st = torch.load(ckpt / "trainer_state.pt", weights_only=False)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        start_step = st["step"]
        sampler._calls = st["sampler_calls"]
        torch.set_rng_state(st["rng"]["torch"])
        random.setstate(st["rng"]["python"])
        np.random.set_state(st["rng"]["numpy"])

    server = None
    if client is None:
        if cfg.reward_url is None:
            server = LocalRewardServer().start()
        client = SyncRewardClient(cfg.reward_url or server.url)  # type: ignore[union-attr]

    logger = Logger(run_dir, cfg)
    params = SampleParams(temperature=cfg.sampling.temperature, top_p=cfg.sampling.top_p,
                          max_tokens=cfg.sampling.max_tokens, stop=cfg.sampling.stop)
    P, G = cfg.sampling.prompts_per_step, cfg.sampling.group_size
    history: list[dict[str, float]] = []
    evals: list[dict[str, float]] = []

    def run_eval(step: int) -> None:
        e = evaluate_greedy(sampler, client, eval_set, cfg.sampling.max_tokens)
        evals.append({"step": step, **e})
        logger.log(step, {"eval/accuracy": e["accuracy"], "eval/unscored": e["unscored"]})

    try:
        if start_step == 0:
            run_eval(0)
        bar = tqdm(range(start_step, cfg.steps), desc="grpo", dynamic_ncols=True)
        for step in bar:
            t0 = time.perf_counter()
            # 1. sample G completions for each of P prompts
            idx = [order[(step * P + i) % len(order)] for i in range(P)]
            problems_P = [train_set[i] for i in idx]
            groups_P = sampler.generate([p.prompt for p in problems_P], G, params)
            samples_B = [c for g in groups_P for c in g]
            t1 = time.perf_counter()

            # 2. score through the reward server (NaN = could not be scored)
            rewards_P_G = score(client, [p for p in problems_P for _ in range(G)],
                                [c.text for c in samples_B]).view(P, G)
            t2 = time.perf_counter()

            # 3. advantages; masks for unscored, equal-reward groups, truncation
            adv_P_G = ADVANTAGE_FNS[cfg.algo.advantage](rewards_P_G)
            keep_P_G = ~torch.isnan(rewards_P_G)
            if cfg.algo.filter_equal_groups:
                keep_P_G &= equal_group_mask(rewards_P_G)[:, None]
            if cfg.algo.mask_truncated:
                trunc = torch.tensor([c.finish_reason == "length" for c in samples_B]).view(P, G)
                keep_P_G &= ~trunc
            adv_B = (adv_P_G * keep_P_G).view(-1)
            batch = collate(samples_B, tok.pad_token_id)
            batch["mask"] *= keep_P_G.view(-1, 1).float()
            norm = batch_normaliser(cfg.algo.loss_agg, batch["mask"], cfg.sampling.max_tokens)

            # 4. loss and optimizer step(s), accumulated over micro-batches
            policy.train()
            mb = cfg.optim.micro_batch
            stats: dict[str, float] = {}
            for _epoch in range(cfg.algo.epochs_per_batch):
                opt.zero_grad(set_to_none=True)
                for s in range(0, len(samples_B), mb):
                    sl = slice(s, s + mb)
                    m_B_T = batch["mask"][sl]
                    if m_B_T.sum() == 0:
                        continue
                    logp = token_logprobs(policy, batch["ids"][sl], batch["attn"][sl], cfg.sampling.temperature)
                    ref_logp = None
                    if ref is not None:
                        with torch.no_grad():
                            ref_logp = token_logprobs(ref, batch["ids"][sl], batch["attn"][sl], cfg.sampling.temperature)
                    loss, st = policy_loss(
                        logp, batch["old_logp"][sl], adv_B[sl], m_B_T,
                        eps_low=cfg.algo.eps_low, eps_high=cfg.algo.eps_high, ref_logp_B_T=ref_logp,
                        beta=cfg.algo.beta, kl_estimator=cfg.algo.kl_estimator, agg=cfg.algo.loss_agg,
                        max_tokens=cfg.sampling.max_tokens, norm=norm,
                    )
                    loss.backward()
                    for k, v in st.items():
                        stats[k] = stats.get(k, 0.0) + v * float(m_B_T.sum()) / max(1.0, float(batch["mask"].sum()))
                grad_norm = float(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.optim.grad_clip))
                opt.step()
            sched.step()
            policy.eval()
            t3 = time.perf_counter()

            # 5. sync the new weights into the rollout engine
            sampler.sync_weights(policy.state_dict())
            t4 = time.perf_counter()

            # 6. log
            scored = keep_P_G.sum().item()
            r = rewards_P_G[~torch.isnan(rewards_P_G)]
            m = {
                "reward": float(r.mean()) if r.numel() else math.nan,
                "unscored": int(torch.isnan(rewards_P_G).sum()),
                "scored_in_loss": int(scored),
                "completion_len": float(np.mean([len(c.token_ids) for c in samples_B])),
                "truncated": float(np.mean([c.finish_reason == "length" for c in samples_B])),
                "grad_norm": grad_norm, "lr": sched.get_last_lr()[0],
                "time/generate": t1 - t0, "time/score": t2 - t1, "time/train": t3 - t2,
                "time/sync": t4 - t3, "time/step": t4 - t0, **stats,
            }
            history.append({"step": step + 1, **m})
            logger.log(step + 1, m)
            bar.set_postfix(reward=f"{m['reward']:.3f}", acc=f"{evals[-1]['accuracy']:.3f}" if evals else "-")
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
                run_eval(step + 1)
            if cfg.save_every and (step + 1) % cfg.save_every == 0:
                save_checkpoint(run_dir, step + 1, policy, tok, opt, sched, sampler)
            if cfg.time_budget_s and time.time() - t_start > cfg.time_budget_s:
                print(f"time budget of {cfg.time_budget_s:.0f} s reached at step {step + 1}")
                break
        final_step = history[-1]["step"] if history else start_step
        run_eval(int(final_step))
        save_checkpoint(run_dir, int(final_step), policy, tok, opt, sched, sampler)
        policy.save_pretrained(run_dir / "final")
        save_tokenizer(tok, run_dir / "final")
    finally:
        logger.close()
        if server is not None:
            client.close()
            server.stop()
    return {"history": history, "evals": evals, "policy": policy, "wall_time_s": time.time() - t_start}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rlvr train", description="GRPO training.")
    ap.add_argument("config", nargs="?", help="TOML file")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, e.g. algo.beta=0.04")
    ap.add_argument("--resume", action="store_true", help="continue from runs/NAME/checkpoint")
    args = ap.parse_args(argv)
    if args.config and "=" in args.config:  # no file, only overrides
        args.overrides.insert(0, args.config)
        args.config = None
    cfg = load_config(args.config, args.overrides)
    out = train(cfg, resume=args.resume)
    ev = out["evals"]
    print(f"done: {len(out['history'])} steps in {out['wall_time_s']:.0f} s; held-out accuracy "
          f"{ev[0]['accuracy']:.3f} -> {ev[-1]['accuracy']:.3f}; model in {cfg.run_dir / 'final'}")
    return 0
