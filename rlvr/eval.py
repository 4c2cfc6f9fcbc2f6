"""Evaluation: sample n completions per problem, score them on the reward server, and
report pass@k, maj@k and avg@n with bootstrap intervals (`rlvr eval`).

`evaluate(...)` is the one code path: the CLI calls it, and so does the trainer's
periodic evaluation (with its own sampler and reward client). The estimators are the
pure functions of `rlvr.passk`. Choices that differ from the usual script:

- Unscored samples are not wrong. A sample whose status is not "ok" (verifier error,
  timeout, rejected) is left out of that problem's n, so the problem is judged on
  c / n over its *scored* samples; the counts are reported per status. A problem
  with no scored sample is left out of every mean and counted apart. pass@k and
  maj@k for a given k average over the problems with at least k scored samples;
  `coverage` in the summary says how many problems each number rests on.
- avg@n is the mean over problems of c / n (what DeepSeek-R1 calls pass@1). It is
  the same number as unbiased pass@1; both keys are written.
- maj@k is the expected vote over all size-k subsets (see `rlvr.passk`), not the vote
  of the first k samples. Votes use a canonical form of the verifier's extracted
  answer (`canonical_answer`) so "1/2", "0.5" and "\\frac{1}{2}" vote together. It
  is reported only for verifiers that return an extracted answer (math).
- Bootstrap intervals resample problems (percentile, seeded); the interval of every
  metric uses the same seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from rlvr.passk import bootstrap_ci, maj_at_k, pass_at_k
from rlvr.types import Completion, Problem, SampleParams, Sampler

ScoreFn = Callable[[list[dict[str, Any]]], Sequence[Any]]

# ----------------------------------------------------------------------------- answers

_FRAC_RE = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")
_THOUSANDS_RE = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")


def _number(s: str) -> Fraction | None:
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    m = _FRAC_RE.match(s)
    if m:
        if int(m.group(3)) == 0:
            return None
        v = Fraction(int(m.group(2)), int(m.group(3)))
        return -v if m.group(1) else v
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def canonical_answer(info: dict[str, Any]) -> str | None:
    """The vote key of a scored sample: the verifier's parsed answer (math-verify's
    sympy form) if any, else its extracted string; whitespace, `$`, `\\left`/`\\right`
    and a trailing period dropped; numbers as exact fractions ("0.50" -> "1/2")."""
    raw = info.get("answer")
    if raw is None:
        return None
    parsed = info.get("parsed_answer") or []
    s = str(parsed[0] if parsed else raw)
    s = re.sub(r"\s+", "", s).rstrip(".").strip("$").rstrip(".")
    for junk in ("\\left", "\\right", "\\!", "{,}"):
        s = s.replace(junk, "")
    if not s:
        return None
    num = _number(s)
    return str(num) if num is not None else s


def _field(result: Any, name: str, default: Any = None) -> Any:
    """Read a field of a ScoreResult (pydantic model or dict)."""
    if isinstance(result, dict):
        return result.get(name, default)
    return getattr(result, name, default)


# ----------------------------------------------------------------------------- results


@dataclass
class SampleResult:
    """One scored completion. `correct` is None when the sample was not scored."""

    completion: str
    status: str
    reward: float | None
    correct: bool | None
    answer: str | None = None  # the verifier's extracted final answer, if it gives one
    vote: str | None = None  # canonical form of `answer`, the maj@k vote key
    finish_reason: str = "stop"
    message: str | None = None  # the verifier's reason when status != "ok"


@dataclass
class ProblemResult:
    id: str
    verifier: str
    reference: Any
    samples: list[SampleResult]
    votes: bool = False  # whether the verifier returns answers to vote on

    @property
    def scored(self) -> list[SampleResult]:
        return [s for s in self.samples if s.status == "ok"]

    @property
    def n(self) -> int:
        """Number of scored samples (unscored ones are left out, not counted wrong)."""
        return len(self.scored)

    @property
    def c(self) -> int:
        return sum(bool(s.correct) for s in self.scored)

    @property
    def unscored(self) -> int:
        return len(self.samples) - self.n

    def pass_at(self, k: int) -> float | None:
        return pass_at_k(self.n, self.c, k) if self.n >= k else None

    def maj_at(self, k: int) -> float | None:
        if not self.votes or self.n < k:
            return None
        s = self.scored
        return maj_at_k([x.vote for x in s], [bool(x.correct) for x in s], k)

    def to_json(self, ks: Sequence[int]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "verifier": self.verifier, "n": self.n, "c": self.c,
                               "unscored": self.unscored, "reference": self.reference}
        out["pass@k"] = {str(k): v for k in ks if (v := self.pass_at(k)) is not None}
        if self.votes:
            out["maj@k"] = {str(k): v for k in ks if (v := self.maj_at(k)) is not None}
        out["samples"] = [dataclasses.asdict(s) for s in self.samples]
        return out


@dataclass
class EvalReport:
    """Per-problem results and the summary (keys "pass@4", "pass@4_ci", "avg@n", ...)."""

    problems: list[ProblemResult]
    summary: dict[str, Any]
    ks: list[int] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]


# ----------------------------------------------------------------------------- core


def check_ks(ks: Sequence[int], n: int) -> list[int]:
    """Sorted unique ks; ValueError unless 1 <= k <= n for all of them."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not ks:
        raise ValueError("need at least one k")
    bad = [k for k in ks if not 1 <= k <= n]
    if bad:
        raise ValueError(f"every k must satisfy 1 <= k <= n={n}; got k={bad} "
                         f"(sample at least n={max(ks)} completions per problem for pass@{max(ks)})")
    return sorted(set(ks))


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def summarize(
    problems: Sequence[ProblemResult],
    ks: Sequence[int],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics, their bootstrap intervals and the counts; a pure function of results."""
    scored = [p for p in problems if p.n > 0]
    per_metric: dict[str, list[float]] = {"avg@n": [p.c / p.n for p in scored]}
    for k in ks:
        per_metric[f"pass@{k}"] = [v for p in scored if (v := p.pass_at(k)) is not None]
    if any(p.votes for p in problems):
        for k in ks:
            per_metric[f"maj@{k}"] = [v for p in scored if (v := p.maj_at(k)) is not None]
    out: dict[str, Any] = {}
    for name, values in per_metric.items():
        out[name] = _mean(values)
        out[f"{name}_ci"] = list(bootstrap_ci(values, resamples=resamples, level=level, seed=seed))
    statuses = Counter(s.status for p in problems for s in p.samples if s.status != "ok")
    out.update({
        "coverage": {name: len(v) for name, v in per_metric.items()},
        "problems": len(problems),
        "problems_scored": len(scored),
        "problems_without_scored_samples": len(problems) - len(scored),
        "samples": sum(len(p.samples) for p in problems),
        "samples_scored": sum(p.n for p in problems),
        "samples_correct": sum(p.c for p in problems),
        "unscored_samples": sum(p.unscored for p in problems),
        "unscored_by_status": dict(sorted(statuses.items())),
        "samples_truncated": sum(s.finish_reason == "length" for p in problems for s in p.samples),
        "ci_level": level,
        "bootstrap_resamples": resamples,
    })
    return out


def evaluate(
    sampler: Sampler,
    problems: Sequence[Problem],
    *,
    n: int,
    ks: Sequence[int],
    params: SampleParams,
    score_fn: ScoreFn,
    threshold: float = 1.0,
    seed: int = 0,
    resamples: int = 1000,
    ci_level: float = 0.95,
) -> EvalReport:
    """Sample `n` completions per problem in one `generate` call, score them all in one
    `score_fn` call, and summarise. A sample is correct when scored with reward >=
    `threshold`. `params.seed` defaults to `seed`, so a run is reproducible."""
    ks = check_ks(ks, n)
    if not problems:
        raise ValueError("no problems to evaluate")
    if params.seed is None:
        params = dataclasses.replace(params, seed=seed)
    t0 = time.perf_counter()
    outs_P: list[list[Completion]] = sampler.generate([p.prompt for p in problems], n, params)
    t1 = time.perf_counter()
    if len(outs_P) != len(problems) or any(len(g) != n for g in outs_P):
        raise RuntimeError(f"sampler returned {[len(g) for g in outs_P]} completions, "
                           f"expected {n} for each of {len(problems)} problems")
    items_B = [
        {"id": f"{p.id}#{j}", "verifier": p.verifier, "prompt": p.prompt,
         "completion": c.text, "reference": p.reference}
        for p, group in zip(problems, outs_P, strict=True)
        for j, c in enumerate(group)
    ]
    results_B = list(score_fn(items_B))
    t2 = time.perf_counter()
    if len(results_B) != len(items_B):
        raise RuntimeError(f"score_fn returned {len(results_B)} results for {len(items_B)} items")
    report_P: list[ProblemResult] = []
    for i, (p, group) in enumerate(zip(problems, outs_P, strict=True)):
        samples = []
        votes = False
        for j, comp in enumerate(group):
            r = results_B[i * n + j]
            status = str(_field(r, "status"))
            reward = _field(r, "reward")
            info = _field(r, "info") or {}
            ok = status == "ok" and reward is not None
            if status == "ok" and reward is None:  # a broken server: say so, never 0
                status = "error"
                info = {**info, "message": "status ok without a reward"}
            votes = votes or (ok and "answer" in info)
            samples.append(SampleResult(
                completion=comp.text,
                status=status,
                reward=float(reward) if ok else None,
                correct=(float(reward) >= threshold) if ok else None,
                answer=info.get("answer"),
                vote=canonical_answer(info) if ok else None,
                finish_reason=comp.finish_reason,
                message=None if ok else info.get("message"),
            ))
        report_P.append(ProblemResult(p.id, p.verifier, p.reference, samples, votes))
    summary = summarize(report_P, ks, resamples=resamples, level=ci_level, seed=seed)
    summary.update({"n": n, "ks": ks, "threshold": threshold, "seed": seed,
                    "temperature": params.temperature, "top_p": params.top_p,
                    "max_tokens": params.max_tokens,
                    "sampling_s": round(t1 - t0, 3), "scoring_s": round(t2 - t1, 3)})
    return EvalReport(report_P, summary, ks)


# ----------------------------------------------------------------------------- outputs


def _jsonable(x: Any) -> Any:
    """NaN/inf -> None recursively (JSON has no NaN)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def metric_names(report: EvalReport) -> list[str]:
    names = ["avg@n"] + [f"pass@{k}" for k in report.ks]
    return names + [f"maj@{k}" for k in report.ks if f"maj@{k}" in report.summary]


def summary_markdown(report: EvalReport) -> str:
    s = report.summary
    pct = round(100 * s["ci_level"])
    title = f"{s.get('model', 'model')} on {s.get('dataset', 'problems')}"
    lines = [f"### {title}", "",
             f"n={s['n']} samples per problem, temperature {s['temperature']}, "
             f"top-p {s['top_p']}, seed {s['seed']}, threshold {s['threshold']}", "",
             f"| metric | value | {pct}% CI | problems |", "| --- | --- | --- | --- |"]
    for name in metric_names(report):
        v, (lo, hi) = s[name], s[f"{name}_ci"]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            lines.append(f"| {name} | - | - | 0 |")
            continue
        lines.append(f"| {name} | {v:.4f} | [{lo:.4f}, {hi:.4f}] | {s['coverage'][name]} |")
    by_status = ", ".join(f"{k} {v}" for k, v in s["unscored_by_status"].items())
    lines += ["", f"{s['problems']} problems ({s['problems_without_scored_samples']} without any "
              f"scored sample); {s['samples']} samples: {s['samples_scored']} scored, "
              f"{s['samples_correct']} correct, {s['unscored_samples']} unscored"
              + (f" ({by_status})" if by_status else "")
              + f"; {s['samples_truncated']} truncated at max_tokens. Unscored samples are left "
              "out of n, not counted wrong."]
    return "\n".join(lines) + "\n"


def plot_passk(report: EvalReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report.summary
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kind, style in (("pass", "o-"), ("maj", "s--")):
        ks = [k for k in report.ks if f"{kind}@{k}" in s and not math.isnan(s[f"{kind}@{k}"])]
        if not ks:
            continue
        ys = [s[f"{kind}@{k}"] for k in ks]
        err = [[y - s[f"{kind}@{k}_ci"][0] for k, y in zip(ks, ys, strict=True)],
               [s[f"{kind}@{k}_ci"][1] - y for k, y in zip(ks, ys, strict=True)]]
        ax.errorbar(ks, ys, yerr=err, fmt=style, capsize=3, label=f"{kind}@k")
    if len(report.ks) > 1 and report.ks[-1] / report.ks[0] >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(report.ks, [str(k) for k in report.ks])
    ax.set_xlabel("k")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{Path(str(s.get('dataset', ''))).name} (n={s['n']}, T={s['temperature']})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    """problems.jsonl, summary.json, summary.md and passk.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("problems.jsonl", "summary.json", "summary.md", "passk.png")}
    with open(paths["problems.jsonl"], "w") as f:
        for p in report.problems:
            f.write(json.dumps(_jsonable(p.to_json(report.ks)), default=str) + "\n")
    paths["summary.json"].write_text(json.dumps(_jsonable(report.summary), indent=2, default=str) + "\n")
    paths["summary.md"].write_text(summary_markdown(report))
    plot_passk(report, paths["passk.png"])
    return paths


# ----------------------------------------------------------------------------- CLI


def _ks(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k wants integers like 1,4,16, got {text!r}") from None


def _field_map(text: str) -> dict[str, str]:
    pairs = [x.split("=", 1) for x in text.split(",") if x.strip()]
    if any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"--field-map wants ours=theirs,..., got {text!r}")
    return {a.strip(): b.strip() for a, b in pairs}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rlvr eval", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", required=True, help="model directory (HF format)")
    ap.add_argument("--dataset", required=True,
                    help="a name from rlvr.data.DATASETS (gsm8k, minerva_math, aime24, amc23, "
                         "humaneval, arithmetic) or a JSONL/Parquet file")
    ap.add_argument("--n", type=int, default=16, help="completions sampled per problem")
    ap.add_argument("--k", type=_ks, default="1", help="comma-separated ks for pass@k/maj@k, each <= n")
    ap.add_argument("--temperature", type=float, default=0.6, help="sampling temperature")
    ap.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling")
    ap.add_argument("--max-tokens", type=int, default=256, help="max new tokens per completion")
    ap.add_argument("--limit", type=int, default=None, help="evaluate the first L problems only")
    ap.add_argument("--split", default=None, help="split (generated tasks)")
    ap.add_argument("--out", default=None, help="output directory; when omitted, runs/eval/DATASET")
    ap.add_argument("--threshold", type=float, default=1.0, help="reward at or above which a sample is correct")
    ap.add_argument("--reward-url", default=None,
                    help="reward server URL; without it a local server is started on loopback")
    ap.add_argument("--reward-workers", type=int, default=None, help="workers of the local server")
    ap.add_argument("--backend", choices=("vllm", "hf"), default="vllm", help="sampler backend")
    ap.add_argument("--max-model-len", type=int, default=None, help="vLLM context length")
    ap.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed")
    ap.add_argument("--field-map", type=_field_map, default=None,
                    help="for files: ours=theirs pairs, e.g. prompt=question,reference=answer,id=uid")
    ap.add_argument("--verifier", default=None, help="override the dataset's verifier")
    ap.add_argument("--template", default=None,
                    help="'chat' (the tokenizer's chat template) or a format string with {prompt}; "
                         "literal braces doubled, e.g. '{prompt} Put the answer in \\boxed{{}}.'")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    ap.add_argument("--ci", type=float, default=0.95, help="confidence level of the intervals")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:  # every check that needs no model happens before anything is loaded or sampled
        ks = check_ks(args.k, args.n)
    except ValueError as e:
        print(f"rlvr eval: error: {e}", file=sys.stderr)
        return 2
    from rlvr.data import load_problems

    tokenizer = None
    if args.template == "chat":
        from rlvr.model import load_tokenizer

        tokenizer = load_tokenizer(args.model)
    try:
        problems = load_problems(args.dataset, split=args.split, limit=args.limit,
                                 field_map=args.field_map, verifier=args.verifier,
                                 template=args.template, tokenizer=tokenizer, seed=args.seed)
    except (FileNotFoundError, KeyError) as e:
        print(f"rlvr eval: error: {e}", file=sys.stderr)
        return 2
    if not problems:
        print(f"rlvr eval: error: no problems in {args.dataset!r}", file=sys.stderr)
        return 2
    from contextlib import ExitStack

    from rlvr.reward_client import LocalRewardServer, SyncRewardClient
    from rlvr.sampler import make_sampler

    kw: dict[str, Any] = {"seed": args.seed}
    if args.backend == "vllm" and args.max_model_len:
        kw["max_model_len"] = args.max_model_len
    params = SampleParams(temperature=args.temperature, top_p=args.top_p,
                          max_tokens=args.max_tokens, seed=args.seed)
    with ExitStack() as stack:
        url = args.reward_url
        if url is None:
            url = stack.enter_context(LocalRewardServer(workers=args.reward_workers)).url
        client = SyncRewardClient(url)
        stack.callback(client.close)
        sampler = make_sampler(args.backend, args.model, **kw)
        report = evaluate(sampler, problems, n=args.n, ks=ks, params=params, score_fn=client.score,
                          threshold=args.threshold, seed=args.seed,
                          resamples=args.bootstrap, ci_level=args.ci)
    report.summary.update({"dataset": args.dataset, "model": args.model, "backend": args.backend,
                           "limit": args.limit})
    name = Path(args.dataset).stem if Path(args.dataset).suffix else args.dataset
    out = Path(args.out) if args.out else Path("runs") / "eval" / name
    write_outputs(report, out)
    print(summary_markdown(report))
    print(f"wrote {out}/problems.jsonl, summary.json, summary.md, passk.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
