"""`rlvr eval`: sample n completions per problem, score them, report pass@k / maj@k / avg@n.

    rlvr eval --model runs/demo/grpo/final --dataset arithmetic --n 16 --k 1,4,16 --out runs/eval

Samples that could not be scored (status != ok) are never counted as wrong: they are
dropped from that problem's n (c and n count scored samples only) and reported. A
problem left with fewer than k scored samples is left out of pass@k for that k, and
counted in `skipped@k`. The trainer's periodic evaluation can call `evaluate` too.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr.passk import bootstrap_ci, maj_at_k, pass_at_k
from rlvr.types import Problem, SampleParams

ScoreFn = Callable[[list[dict[str, Any]]], list[Any]]


@dataclass
class EvalReport:
    summary: dict[str, Any]
    problems: list[dict[str, Any]] = field(default_factory=list)


def _answer_key(info: dict[str, Any]) -> str | None:
    """Canonical answer for majority voting: math-verify's parsed form if present."""
    parsed = info.get("parsed_answer")
    if parsed:
        return str(parsed[0])
    a = info.get("answer")
    return None if a is None else str(a).strip()


def evaluate(
    sampler: Any,
    problems: Sequence[Problem],
    *,
    n: int,
    ks: Sequence[int],
    params: SampleParams,
    score_fn: ScoreFn,
    threshold: float = 1.0,
    seed: int = 0,
    resamples: int = 1000,
) -> EvalReport:
    bad = [k for k in ks if k > n or k < 1]
    if bad:
        raise ValueError(f"every k must be between 1 and n={n}; got {bad}")
    groups = sampler.generate([p.prompt for p in problems], n, params)
    items = [{"verifier": p.verifier, "prompt": p.prompt, "completion": c.text, "reference": p.reference}
             for p, g in zip(problems, groups, strict=True) for c in g]
    results = score_fn(items)
    rows: list[dict[str, Any]] = []
    for i, (p, g) in enumerate(zip(problems, groups, strict=True)):
        samples = []
        for j, c in enumerate(g):
            r = results[i * n + j]
            status = r.status if hasattr(r, "status") else r["status"]
            reward = r.reward if hasattr(r, "reward") else r["reward"]
            info = r.info if hasattr(r, "info") else r.get("info", {})
            samples.append({
                "completion": c.text, "answer": _answer_key(info), "reward": reward, "status": status,
                "correct": bool(status == "ok" and reward is not None and reward >= threshold),
            })
        scored = [s for s in samples if s["status"] == "ok"]
        rows.append({"id": p.id, "n": len(scored), "c": sum(s["correct"] for s in scored),
                     "unscored": len(samples) - len(scored), "verifier": p.verifier, "samples": samples})

    summary: dict[str, Any] = {"problems": len(rows), "n": n, "threshold": threshold,
                               "unscored_samples": sum(r["unscored"] for r in rows),
                               "temperature": params.temperature, "seed": seed}
    avg = [r["c"] / r["n"] for r in rows if r["n"] > 0]
    summary["avg@n"] = sum(avg) / len(avg) if avg else math.nan
    summary["avg@n_ci"] = list(bootstrap_ci(avg, resamples=resamples, seed=seed))
    for k in ks:
        vals = [pass_at_k(r["n"], r["c"], k) for r in rows if r["n"] >= k]
        summary[f"pass@{k}"] = sum(vals) / len(vals) if vals else math.nan
        summary[f"pass@{k}_ci"] = list(bootstrap_ci(vals, resamples=resamples, seed=seed))
        summary[f"skipped@{k}"] = len(rows) - len(vals)
        if all(r["verifier"] == "math" for r in rows):
            mv = []
            for r in rows:
                sc = [s for s in r["samples"] if s["status"] == "ok"]
                if len(sc) >= k:
                    mv.append(maj_at_k([s["answer"] for s in sc], [s["correct"] for s in sc], k))
            summary[f"maj@{k}"] = sum(mv) / len(mv) if mv else math.nan
            summary[f"maj@{k}_ci"] = list(bootstrap_ci(mv, resamples=resamples, seed=seed))
    return EvalReport(summary=summary, problems=rows)


def write_outputs(report: EvalReport, out_dir: str | Path, ks: Sequence[int]) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "problems.jsonl", "w") as f:
        for r in report.problems:
            f.write(json.dumps(r) + "\n")
    (out / "summary.json").write_text(json.dumps(report.summary, indent=2))
    s = report.summary
    lines = ["| metric | value | 95% CI |", "|---|---|---|", f"| avg@n (n={s['n']}) | {s['avg@n']:.4f} | "
             f"[{s['avg@n_ci'][0]:.3f}, {s['avg@n_ci'][1]:.3f}] |"]
    for k in ks:
        for m in ("pass", "maj"):
            key = f"{m}@{k}"
            if key in s:
                lo, hi = s[f"{key}_ci"]
                lines.append(f"| {key} | {s[key]:.4f} | [{lo:.3f}, {hi:.3f}] |")
    lines.append(f"\n{s['problems']} problems; {s['unscored_samples']} samples could not be scored "
                 "(excluded, not counted wrong).")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(list(ks), [s[f"pass@{k}"] for k in ks], "o-", label="pass@k")
    if all(f"maj@{k}" in s for k in ks):
        ax.plot(list(ks), [s[f"maj@{k}"] for k in ks], "s--", label="maj@k")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pass_at_k.png", dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rlvr eval", description="pass@k / maj@k / avg@n evaluation.")
    ap.add_argument("--model", required=True, help="HF model directory")
    ap.add_argument("--dataset", required=True, help="name (gsm8k, minerva_math, aime24, amc23, "
                    "humaneval, arithmetic) or a JSONL/Parquet/datasets path")
    ap.add_argument("--n", type=int, default=16, help="samples per problem")
    ap.add_argument("--k", default="1,4,16", help="comma-separated k values (each <= n)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--limit", type=int, default=None, help="first N problems only")
    ap.add_argument("--out", default="runs/eval")
    ap.add_argument("--threshold", type=float, default=1.0, help="reward >= this counts as correct")
    ap.add_argument("--reward-url", default=None, help="reward server; default starts one locally")
    ap.add_argument("--backend", choices=["vllm", "hf"], default="vllm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--template", default=None, help="'chat' or a format string with {prompt}")
    ap.add_argument("--field-map", default=None, help="e.g. prompt=question,reference=answer")
    args = ap.parse_args(argv)
    ks = sorted({int(x) for x in args.k.split(",") if x.strip()})
    if any(k > args.n or k < 1 for k in ks):
        ap.error(f"every k must be between 1 and --n {args.n}; got {ks}")

    from rlvr.data import load_problems
    from rlvr.model import load_tokenizer
    from rlvr.reward_client import LocalRewardServer, SyncRewardClient
    from rlvr.sampler import make_sampler

    fmap = dict(kv.split("=", 1) for kv in args.field_map.split(",")) if args.field_map else None
    tok = load_tokenizer(args.model) if args.template == "chat" else None
    problems = load_problems(args.dataset, limit=args.limit, field_map=fmap, template=args.template,
                             tokenizer=tok, seed=args.seed)
    sampler = make_sampler(args.backend, args.model, seed=args.seed, max_model_len=args.max_model_len)
    params = SampleParams(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens)
    server = None if args.reward_url else LocalRewardServer().start()
    try:
        with SyncRewardClient(args.reward_url or server.url) as client:  # type: ignore[union-attr]
            report = evaluate(sampler, problems, n=args.n, ks=ks, params=params, score_fn=client.score,
                              threshold=args.threshold, seed=args.seed)
    finally:
        if server is not None:
            server.stop()
    report.summary.update({"dataset": args.dataset, "model": args.model})
    write_outputs(report, args.out, ks)
    print((Path(args.out) / "summary.md").read_text())
    return 0
