"""The math verifier called directly (the server tests go through HTTP).

Expected rewards are worked out by hand from the answer's value, not read off the
verifier: e.g. 0.333 differs from 1/3 in the 4th decimal, so at the default
float_rounding=6 it is wrong and at float_rounding=3 it is right.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from verifiers.base import ScoreItem, VerifyResult
from verifiers.math_verifier import MathVerifier, extract_answer, gold_to_string, last_boxed

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"

# An answer whose comparison never finishes in sympy (2003^(2002^2001) has ~10^6600
# digits). Called directly without a limit, `verify` hangs on it; the reward server's
# hard per-item kill must turn it into status "timeout" (tested there over HTTP).
PATHOLOGICAL_COMPLETION = "So the answer is \\boxed{2003^{2002^{2001}}}"


@pytest.fixture(scope="module")
def v() -> MathVerifier:
    return MathVerifier()


def score(v: MathVerifier, completion: str, reference: object, **options: object) -> VerifyResult:
    return v.verify(ScoreItem(verifier="math", completion=completion, reference=reference,
                              options=options))


def _bump_final_number(solution: str) -> str:
    """GSM8K solution with the number after '####' increased by one."""
    head, tail = solution.rsplit("####", 1)
    n = int(tail.strip().replace(",", ""))
    return f"{head}#### {n + 1}"


def test_every_gsm8k_solution_scores_one_and_a_changed_answer_zero(v: MathVerifier) -> None:
    rows = [json.loads(line) for line in open(DATA / "gsm8k_test.jsonl")]
    assert len(rows) == 1319
    t0 = time.process_time()  # CPU time: the machine is shared, wall time is not ours
    right = [score(v, r["answer"], r["answer"]) for r in rows]
    changed = [score(v, _bump_final_number(r["answer"]), r["answer"]) for r in rows]
    elapsed = time.process_time() - t0
    assert [r["idx"] for r, s in zip(rows, right, strict=True) if s.reward != 1.0] == []
    assert [r["idx"] for r, s in zip(rows, changed, strict=True) if s.reward != 0.0] == []
    assert all(s.info["source"] == "####" for s in right)
    assert elapsed < 30, f"{2 * len(rows)} items took {elapsed:.1f} s of CPU"


def test_gsm8k_thousands_separators_in_the_gold(v: MathVerifier) -> None:
    rows = [json.loads(line) for line in open(DATA / "gsm8k_test.jsonl")]
    with_commas = [r for r in rows if re.search(r"####\s*\d{1,3}(,\d{3})+\s*$", r["answer"])]
    assert len(with_commas) == 14  # e.g. "#### 1,600"
    for r in with_commas:
        n = int(r["answer"].rsplit("####", 1)[1].replace(",", ""))
        assert score(v, f"\\boxed{{{n}}}", r["answer"]).reward == 1.0
        assert score(v, f"\\boxed{{{n:,}}}", r["answer"]).reward == 1.0
        assert score(v, f"\\boxed{{{n + 1:,}}}", r["answer"]).reward == 0.0


@pytest.mark.parametrize(
    "completion, gold, expected",
    [
        # fractions and decimals: 1/2 == 0.5
        ("so \\boxed{\\frac{1}{2}}", "0.5", 1.0),
        ("\\boxed{0.5}", "\\frac12", 1.0),
        ("\\boxed{0.333}", "\\frac{1}{3}", 0.0),  # 0.333 != 1/3 at 6 decimals
        ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", 1.0),
        ("\\boxed{\\dfrac{3}{4}}", "0.75", 1.0),
        ("\\boxed{\\tfrac{6}{8}}", "\\frac{3}{4}", 1.0),  # 6/8 reduces to 3/4
        ("\\boxed{\\frac{2}{3}}", "\\frac{3}{4}", 0.0),
        ("\\boxed{2.50}", "2.5", 1.0),
        ("\\boxed{2.51}", "2.5", 0.0),
        ("\\boxed{-5}", "-5", 1.0),
        ("\\boxed{5}", "-5", 0.0),
        # thousands separators
        ("\\boxed{1,234}", "1234", 1.0),
        ("\\boxed{1,234,567}", "1234567", 1.0),
        ("\\boxed{1{,}234}", "1234", 1.0),
        ("#### 1,234", "1234", 1.0),
        ("\\boxed{1,235}", "1234", 0.0),
        # radicals; a bare LaTeX gold must not collapse to its first number
        ("\\boxed{2\\sqrt{2}}", "2\\sqrt{2}", 1.0),
        ("\\boxed{2}", "2\\sqrt{2}", 0.0),
        ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", 1.0),  # sqrt(8) = 2 sqrt(2)
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", 1.0),
        ("\\boxed{\\sqrt{3}}", "\\frac{\\sqrt3}{2}", 0.0),
        # intervals: open/closed ends matter
        ("\\boxed{(1, 3]}", "(1,3]", 1.0),
        ("\\boxed{[1, 3]}", "(1,3]", 0.0),
        ("\\boxed{(-\\infty,2)\\cup(3,\\infty)}", "(-\\infty, 2) \\cup (3, \\infty)", 1.0),
        ("\\boxed{(-\\infty,2]\\cup(3,\\infty)}", "(-\\infty, 2) \\cup (3, \\infty)", 0.0),
        # sets are unordered
        ("\\boxed{\\{1,2,3\\}}", "\\{3,2,1\\}", 1.0),
        ("\\boxed{\\{1,2\\}}", "\\{3,2,1\\}", 0.0),
        # matrices
        ("\\boxed{\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 1.0),
        ("\\boxed{\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 0.0),
        ("\\boxed{5}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", 0.0),
        # units and currency
        ("\\boxed{5 \\text{ cm}}", "5", 1.0),
        ("\\boxed{6 \\text{ cm}}", "5", 0.0),
        ("\\boxed{5\\text{ cm}^2}", "5", 1.0),
        ("\\boxed{\\$5}", "5", 1.0),
        ("The answer is $5.", "5", 1.0),
        ("The answer is 5 dollars.", "5", 1.0),
        ("The answer is 6 dollars.", "5", 0.0),
        ("\\boxed{10 km/h}", "10", 1.0),
        ("\\boxed{\\text{5 dollars}}", 5, 1.0),
        # percentages: math-verify reads 50\% as 50/100 and also accepts the bare 50
        ("\\boxed{50\\%}", "50", 1.0),
        ("\\boxed{50\\%}", "0.5", 1.0),
        ("\\boxed{50}", "50\\%", 1.0),
        ("\\boxed{40\\%}", "50", 0.0),
        # hedging: only the last box counts
        ("\\boxed{3} or maybe \\boxed{4}", "4", 1.0),
        ("\\boxed{3} or maybe \\boxed{4}", "3", 0.0),
        ("\\fbox{3} no wait \\fbox{7}", "7", 1.0),
        # a truncated last box is no answer, not a fallback to the earlier box
        ("\\boxed{3} then \\boxed{4", "3", 0.0),
        # \boxed without braces
        ("so \\boxed 5", "5", 1.0),
        ("so \\boxed5.", "5", 1.0),
        # other answer forms
        ("The answer is 42.", "42", 1.0),
        ("The answer is 42. Let me double-check: 6*7=42.", "42", 1.0),
        ("the answer is: 12", 12, 1.0),
        ("**Answer:** 12", 12, 1.0),
        ("**Final Answer**: $\\frac{3}{4}$", "0.75", 1.0),
        ("so the final answer is \\(\\sqrt{2}\\).", "\\sqrt2", 1.0),
        ("Answer: 7", 7, 1.0),
        ("Answer: 1/2", 0.5, 1.0),
        ("\\boxed{5}", 5.0, 1.0),  # AMC golds are floats
        ("\\boxed{2.5}", 2.5, 1.0),
        ("\\boxed{\\textbf{(073)}}", 73, 1.0),  # AIME style
        ("\\boxed{x+1}", "1+x", 1.0),
        ("\\boxed{x+2}", "1+x", 0.0),
        ("\\boxed{\\pi}", "3.14159265", 1.0),
        ("\\boxed{3.14}", "\\pi", 0.0),
        # golds in several wrappings
        ("\\boxed{7}", "$7$", 1.0),
        ("\\boxed{7}", "so $x=\\boxed{7}$", 1.0),
        ("\\boxed{\\frac{1}{2}}", "#### 0.5", 1.0),
        # an answer math-verify cannot read as maths is a wrong answer, not an error
        ("\\boxed{hello}", "3", 0.0),
    ],
)
def test_answer_forms(v: MathVerifier, completion: str, gold: object, expected: float) -> None:
    r = score(v, completion, gold)
    assert r.status == "ok", r.info
    assert r.reward == expected, r.info


@pytest.mark.parametrize("completion", ["", "   \n", "I think it is hard.", "\\boxed{}"])
def test_no_answer_is_a_wrong_answer_not_an_error(v: MathVerifier, completion: str) -> None:
    r = score(v, completion, "3")
    assert (r.reward, r.status) == (0.0, "ok")
    assert r.info["source"] == "none" and r.info["answer"] is None
    assert "no answer" in r.info["message"]


def test_info_names_the_answer_and_where_it_came_from(v: MathVerifier) -> None:
    r = score(v, "First \\boxed{1}, finally \\boxed{\\frac{6}{4}}", "1.5")
    assert r.reward == 1.0
    assert r.info["answer"] == "\\frac{6}{4}" and r.info["source"] == "boxed"
    assert r.info["parsed_answer"][0] == "3/2" and float(r.info["parsed_gold"][0]) == 1.5
    assert r.info["gold"] == "1.5" and r.info["method"] == "math_verify"
    json.dumps(r.info)  # the server sends it as JSON
    r = score(v, "2 + 3 = 5\n#### 5", "#### 5")
    assert (r.info["answer"], r.info["source"], r.info["parsed_gold"][0]) == ("5", "####", "5")
    r = score(v, "So the answer is 4 apples.", 4)
    assert (r.reward, r.info["answer"], r.info["source"]) == (1.0, "4 apples", "answer_is")


def test_extraction_helpers() -> None:
    assert extract_answer("blah #### 12\n") == ("12", "####")
    assert extract_answer("so the answer is $7$.") == ("7", "answer_is")
    assert extract_answer("answer is 3, then the answer is 4.") == ("4", "answer_is")
    # a markdown heading is not a GSM8K-style `#### N`
    assert extract_answer("#### Step 1\n2+2=4\n#### Step 2\nThe answer is 4.") == ("4", "answer_is")
    assert extract_answer("#### Step 1\n2+2=4\n#### 4") == ("4", "####")
    # \boxed wins over #### and "answer is", wherever they are
    assert extract_answer("\\boxed{1}\nThe answer is 2\n#### 3") == ("1", "boxed")
    assert last_boxed("\\boxed{\\frac{1}{\\sqrt{2}}} x") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed("\\boxedfoo{3}") is None  # another macro
    assert gold_to_string(5.0) == "5" and gold_to_string(2.5) == "2.5"
    assert gold_to_string("Natalia sold 48/2 = 24 clips.\n#### 72") == "72"
    assert gold_to_string("$2\\sqrt{2}$") == "2\\sqrt{2}"


def test_bare_latex_gold_is_wrapped_before_parsing(v: MathVerifier) -> None:
    """math-verify parsing the bare string `2\\sqrt{2}` reads only the leading 2; the
    verifier wraps gold in \\boxed{} so the whole expression is the gold."""
    from math_verify import parse

    assert [str(x) for x in parse("2\\sqrt{2}", parsing_timeout=None)][0] == "2"  # the trap
    r = score(v, "\\boxed{2\\sqrt{2}}", "2\\sqrt{2}")
    assert r.reward == 1.0 and r.info["parsed_gold"][0] == "2*sqrt(2)"
    assert score(v, "\\boxed{2}", "2\\sqrt{2}").reward == 0.0


def test_minerva_golds(v: MathVerifier) -> None:
    rows = [json.loads(line) for line in open(DATA / "minerva_math_test.jsonl")]
    assert len(rows) == 272
    # Every Minerva solution, scored against itself (gold = its last \boxed{}), is 1.0.
    bad = [r["idx"] for r in rows if score(v, r["solution"], r["solution"]).reward != 1.0]
    assert bad == []
    # Against the next numeric gold with a different value it is 0 (symbolic golds are
    # left out here: comparing unrelated ODE solutions costs seconds each).
    numeric = [r for r in rows if re.fullmatch(r"-?\d+(\.\d+)?", gold_to_string(r["solution"]))]
    assert len(numeric) > 20
    for a, b in zip(numeric, numeric[1:] + numeric[:1], strict=True):
        if float(gold_to_string(a["solution"])) != float(gold_to_string(b["solution"])):
            assert score(v, a["solution"], b["solution"]).reward == 0.0, (a["idx"], b["idx"])


def test_amc_and_aime_golds(v: MathVerifier) -> None:
    amc = [json.loads(line) for line in open(DATA / "amc23_test.jsonl")]
    assert all(isinstance(r["answer"], float) for r in amc)
    for r in amc:
        g = r["answer"]
        as_text = str(int(g)) if g.is_integer() else str(g)
        assert score(v, f"\\boxed{{{as_text}}}", g).reward == 1.0, r["id"]
        assert score(v, f"\\boxed{{{as_text}.0}}", g).reward == 1.0, r["id"]
        assert score(v, f"\\boxed{{{g + 1}}}", g).reward == 0.0, r["id"]
    for r in map(json.loads, open(DATA / "aime24_test.jsonl")):
        assert score(v, f"The answer is \\boxed{{{r['answer']}}}.", r["answer"]).reward == 1.0


def test_options_are_passed_through(v: MathVerifier) -> None:
    # |0.333 - 1/3| = 3.3e-4: equal when rounded to 3 decimals, not to 6.
    assert score(v, "\\boxed{0.333}", "\\frac13").reward == 0.0
    assert score(v, "\\boxed{0.333}", "\\frac13", float_rounding=3).reward == 1.0
    assert MathVerifier(float_rounding=3).verify(
        ScoreItem("math", "\\boxed{0.333}", "\\frac13")).reward == 1.0
    # strict: variable names matter; non-strict matches them by position
    assert score(v, "\\boxed{x+y}", "a+b").reward == 0.0
    assert score(v, "\\boxed{x+y}", "a+b", strict=False).reward == 1.0
    # options meant for another part of a composite verifier are ignored
    assert score(v, "\\boxed{1}", "1", pattern="x").reward == 1.0
    r = score(v, "\\boxed{1}", "1", float_rounding="six")
    assert (r.status, r.reward) == ("error", None) and "float_rounding" in r.info["message"]
    with pytest.raises(TypeError, match="unknown"):
        MathVerifier(float_roundin=3)
    with pytest.raises(ValueError, match="soft_timeout_s"):
        MathVerifier(soft_timeout_s=0.5)


def test_bad_reference_and_internal_errors_are_errors_not_zero(v: MathVerifier, monkeypatch) -> None:
    for ref in (None, "", "#### ", True, float("nan"), ["1"], "\\boxed{3"):
        r = score(v, "\\boxed{1}", ref)
        assert r.status == "error" and r.reward is None, ref
        assert "reference" in r.info["message"], ref

    def boom(*a: object, **k: object) -> bool:
        raise RuntimeError("sympy exploded")

    monkeypatch.setattr(v, "_verify", boom)
    r = score(v, "\\boxed{1}", "1")
    assert r.status == "error" and r.reward is None and "sympy exploded" in r.info["message"]
    assert r.info["answer"] == "1"  # what was being compared is still reported
    monkeypatch.undo()
    monkeypatch.setattr(v, "_parse", boom)
    r = score(v, "\\boxed{1}", "1")
    assert r.status == "error" and r.reward is None and "sympy exploded" in r.info["message"]


def test_works_off_the_main_thread() -> None:
    """No signal.alarm inside: trainers that call verifiers from threads got all-zero
    rewards with math-verify's default timeouts. A soft limit is ignored off the main
    thread instead of raising."""
    v = MathVerifier(soft_timeout_s=2)
    items = [(f"\\boxed{{{n}}}", n) for n in range(40)] + [(f"\\boxed{{{n + 1}}}", n) for n in range(40)]
    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(lambda cg: v.verify(ScoreItem("math", *cg)), items))
    assert [r.status for r in out] == ["ok"] * 80
    assert [r.reward for r in out] == [1.0] * 40 + [0.0] * 40


_CHILD = textwrap.dedent(
    """
    import json, sys
    from verifiers.base import ScoreItem
    from verifiers.math_verifier import MathVerifier
    v = MathVerifier(**json.loads(sys.argv[1]))
    v.verify(ScoreItem("math", "\\\\boxed{1}", "1"))  # warm up imports and caches
    print("ready", flush=True)
    r = v.verify(ScoreItem("math", sys.argv[2], "5"))
    print(json.dumps([r.status, r.reward]), flush=True)
    """
)


def _start_child(options: dict) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(options), PATHOLOGICAL_COMPLETION],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def test_pathological_input_hangs_without_a_limit_and_times_out_with_a_soft_one() -> None:
    """Run in subprocesses: an in-process hang could not be stopped, and the soft
    limit's signal.alarm would cancel pytest-timeout's own alarm."""
    hung = _start_child({})
    soft = _start_child({"soft_timeout_s": 1})
    try:
        t0 = time.perf_counter()
        out, _ = soft.communicate(timeout=20)
        assert json.loads(out) == ["timeout", None]
        time.sleep(max(0.0, 3.0 - (time.perf_counter() - t0)))
        assert hung.poll() is None, "expected the unlimited verify to still be running after 3 s"
    finally:
        for p in (hung, soft):
            p.kill()
            p.wait()
