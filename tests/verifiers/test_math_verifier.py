"""The math verifier called directly (the server tests go through HTTP)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from verifiers.base import ScoreItem
from verifiers.math_verifier import MathVerifier, extract_answer, gold_to_string

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def v() -> MathVerifier:
    return MathVerifier()


def score(v: MathVerifier, completion: str, reference: object, **options: object):
    return v.verify(ScoreItem(verifier="math", completion=completion, reference=reference, options=options))


def _bump_final_number(solution: str) -> str:
    """GSM8K solution with the number after '####' increased by one."""
    head, tail = solution.rsplit("####", 1)
    n = int(tail.strip().replace(",", ""))
    return f"{head}#### {n + 1}"


def test_every_gsm8k_solution_scores_one_and_a_changed_answer_zero(v: MathVerifier) -> None:
    rows = [json.loads(line) for line in open(DATA / "gsm8k_test.jsonl")]
    assert len(rows) == 1319
    wrong = [r["idx"] for r in rows if score(v, r["answer"], r["answer"]).reward != 1.0]
    assert wrong == []
    changed = [r["idx"] for r in rows if score(v, _bump_final_number(r["answer"]), r["answer"]).reward != 0.0]
    assert changed == []


@pytest.mark.parametrize(
    "completion, gold, expected",
    [
        # fractions and decimals: 1/2 == 0.5
        ("so \\boxed{\\frac{1}{2}}", "0.5", 1.0),
        ("\\boxed{0.5}", "\\frac12", 1.0),
        ("\\boxed{0.333}", "\\frac{1}{3}", 0.0),  # 0.333 != 1/3 at 6 decimals
        ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", 1.0),
        # thousands separators
        ("\\boxed{1,234}", "1234", 1.0),
        ("#### 1,234", "1234", 1.0),
        ("\\boxed{1,235}", "1234", 0.0),
        # radicals; a bare LaTeX gold must not collapse to its first number
        ("\\boxed{2\\sqrt{2}}", "2\\sqrt{2}", 1.0),
        ("\\boxed{2}", "2\\sqrt{2}", 0.0),
        ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", 1.0),  # sqrt(8) = 2 sqrt(2)
        # intervals: open/closed ends matter
        ("\\boxed{(1, 3]}", "(1,3]", 1.0),
        ("\\boxed{[1, 3]}", "(1,3]", 0.0),
        # sets are unordered
        ("\\boxed{\\{1,2,3\\}}", "\\{3,2,1\\}", 1.0),
        ("\\boxed{\\{1,2\\}}", "\\{3,2,1\\}", 0.0),
        # matrices
        ("\\boxed{\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 1.0),
        ("\\boxed{\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 0.0),
        # units and currency
        ("\\boxed{5 \\text{ cm}}", "5", 1.0),
        ("\\boxed{\\$5}", "5", 1.0),
        # percentages
        ("\\boxed{50\\%}", "50", 1.0),
        # hedging: only the last box counts
        ("\\boxed{3} or maybe \\boxed{4}", "4", 1.0),
        ("\\boxed{3} or maybe \\boxed{4}", "3", 0.0),
        # other answer forms
        ("The answer is 42.", "42", 1.0),
        ("Answer: 7", 7, 1.0),
        ("\\boxed{5}", 5.0, 1.0),  # AMC golds are floats
        ("\\boxed{x+1}", "1+x", 1.0),
        ("\\boxed{x+2}", "1+x", 0.0),
    ],
)
def test_answer_forms(v: MathVerifier, completion: str, gold: object, expected: float) -> None:
    r = score(v, completion, gold)
    assert r.status == "ok", r.info
    assert r.reward == expected, r.info


def test_empty_completion_is_a_wrong_answer_not_an_error(v: MathVerifier) -> None:
    r = score(v, "", "3")
    assert (r.reward, r.status) == (0.0, "ok")
    assert r.info["source"] == "none" and r.info["answer"] is None


def test_info_names_the_answer_and_where_it_came_from(v: MathVerifier) -> None:
    r = score(v, "First \\boxed{1}, finally \\boxed{\\frac{6}{4}}", "1.5")
    assert r.reward == 1.0
    assert r.info["answer"] == "\\frac{6}{4}" and r.info["source"] == "boxed"
    assert r.info["parsed_answer"][0] == "3/2"
    assert extract_answer("blah #### 12\n")[0:2] == ("12", "####")
    assert extract_answer("so the answer is $7$.") == ("7", "answer_is")


def test_minerva_and_amc_golds(v: MathVerifier) -> None:
    minerva = [json.loads(line) for line in open(DATA / "minerva_math_test.jsonl")]
    # Each Minerva solution, scored against itself, must come back 1.0 when its final
    # boxed answer is a plain number.
    numeric = [r for r in minerva if re.fullmatch(r"-?\d+(\.\d+)?", gold_to_string(r["solution"]))]
    assert len(numeric) > 20
    assert all(score(v, r["solution"], r["solution"]).reward == 1.0 for r in numeric[:40])
    amc = [json.loads(line) for line in open(DATA / "amc23_test.jsonl")]
    for r in amc[:10]:
        g = r["answer"]
        as_text = str(int(g)) if float(g).is_integer() else str(g)
        assert score(v, f"\\boxed{{{as_text}}}", g).reward == 1.0
        assert score(v, f"\\boxed{{{float(g) + 1}}}", g).reward == 0.0


def test_bad_reference_and_internal_errors_are_errors_not_zero(v: MathVerifier, monkeypatch) -> None:
    r = score(v, "\\boxed{1}", None)
    assert r.status == "error" and r.reward is None and "reference" in r.info["message"]

    def boom(*a, **k):
        raise RuntimeError("sympy exploded")

    monkeypatch.setattr(v, "_verify", boom)
    r = score(v, "\\boxed{1}", "1")
    assert r.status == "error" and r.reward is None and "sympy exploded" in r.info["message"]
