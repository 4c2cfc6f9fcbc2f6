"""Symbolic math verifier (`"math"`): final answer of a completion vs a gold answer.

Built on math-verify and sympy, with three deliberate differences from calling
`math_verify.parse(completion)` on the raw text:

- We extract the *final* answer ourselves: the last `\\boxed{}` (or `\\fbox{}`), else
  the last `#### N`, else the last "answer is X" / "Answer: X". math-verify's own
  extraction takes whichever candidate parses first, so a completion that boxes
  several candidates could be judged by any of them; here hedging earns nothing.
- Gold is parsed as gold, after wrapping: a bare LaTeX gold such as `2\\sqrt{2}`
  parsed raw becomes `2` (math-verify reads the first number), so every gold
  string is put inside `\\boxed{}` first. A GSM8K solution ending in `#### N`
  counts as the gold `N`; numbers (int/float) are accepted as they are.
- No signal-based timeouts: math-verify's timeout uses `signal.alarm`, which does
  nothing useful off the main thread. The reward server runs this verifier in worker
  processes with a hard wall-clock kill, so here both timeouts are disabled and a
  pathological input is stopped from outside (status `timeout`).

A completion with no recognisable final answer is a genuine wrong answer (reward 0,
`info.source == "none"`); an exception inside parsing or comparison is status
`error` with reward None, never a silent 0.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from verifiers.base import ScoreItem, Verifier, VerifyResult

# math-verify warns once per process that its timeout is disabled; that is our design.
logging.getLogger("math_verify").setLevel(logging.ERROR)

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")
_HASH_RE = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS_RE = re.compile(
    r"(?:final answer is|answer is|answer\s*:)\s*(.+?)(?:\n|$)", re.IGNORECASE
)
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_NUMBER_RE = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def _balanced(text: str, start: int) -> tuple[str, int] | None:
    """Content of the brace group opening at text[start] == '{', and its end index."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`), else None."""
    found: str | None = None
    for m in _BOX_RE.finditer(text):
        j = m.end()
        if j < len(text) and text[j] == "{":
            got = _balanced(text, j)
            if got is not None:
                found = got[0]
        else:
            tok = re.match(r"[^\s$]+", text[j:])
            if tok and m.group(0).endswith(" "):
                found = tok.group(0)
    return found


def extract_answer(completion: str) -> tuple[str | None, str]:
    """Return (final answer string, source) with source in boxed/####/answer_is/none."""
    boxed = last_boxed(completion)
    if boxed is not None and boxed.strip():
        return boxed.strip(), "boxed"
    hashes = _HASH_RE.findall(completion)
    if hashes:
        return hashes[-1].strip(), "####"
    ans = _ANSWER_IS_RE.findall(completion)
    if ans:
        a = ans[-1].strip().rstrip(".").strip()
        a = a.strip("$").strip()
        if a:
            return a, "answer_is"
    return None, "none"


def _clean(ans: str) -> str:
    """Normalisations math-verify does not do: thousands separators, currency,
    trailing periods, `\\%` on a bare number kept for math-verify's own handling."""
    s = ans.strip().rstrip(".").strip()
    s = re.sub(r"^\\?\$\s*", "", s)  # leading $ / \$ (currency)
    s = s.replace("\\!", "").replace("{,}", ",")
    if _THOUSANDS_RE.match(s.replace(" ", "")):
        s = s.replace(",", "").replace(" ", "")
    return s


def gold_to_string(reference: Any) -> str:
    """Gold as an answer string: numbers as they are, `#### N` solutions as N, a
    solution with a `\\boxed{}` as its last box, anything else as given."""
    if isinstance(reference, bool):
        raise TypeError("reference must be a number or a string, not a bool")
    if isinstance(reference, int):
        return str(reference)
    if isinstance(reference, float):
        return str(int(reference)) if reference.is_integer() else repr(reference)
    if isinstance(reference, dict) and "answer" in reference:
        return gold_to_string(reference["answer"])
    if not isinstance(reference, str):
        raise TypeError(f"reference must be a number or a string, got {type(reference).__name__}")
    text = reference.strip()
    if not text:
        raise ValueError("empty reference")
    if "####" in text:
        return _HASH_RE.findall(text)[-1].strip()
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    return text.strip("$").strip()


class MathVerifier(Verifier):
    name = "math"
    description = (
        "Symbolic math: the completion's final answer (last \\boxed{}, else '#### N', else "
        "'answer is X') compared with the gold by math-verify + sympy."
    )
    reference_doc = (
        "The gold answer: a number, a LaTeX string (bare or in \\boxed{}), or a GSM8K-style "
        "solution ending in '#### N'. Options: float_rounding (int, 6), numeric_precision "
        "(int, 15), strict (bool, true)."
    )
    runs_in = "pool"
    default_timeout_s = 5.0

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Imported here so the registry import stays cheap.
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

        self._parse = parse
        self._verify = verify
        self._configs = [
            LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=True),
            ExprExtractionConfig(),
        ]

    def parse_answer(self, answer: str) -> list[Any]:
        """Parse one answer string (already extracted) with math-verify."""
        return self._parse(
            "\\boxed{" + _clean(answer) + "}",
            extraction_config=self._configs,
            parsing_timeout=None,  # type: ignore[arg-type]  # the pool enforces time
        )

    def verify(self, item: ScoreItem) -> VerifyResult:
        opts = {**self.options, **(item.options or {})}
        try:
            gold_str = gold_to_string(item.reference)
        except (TypeError, ValueError, IndexError) as e:
            return VerifyResult.fail("error", f"bad reference: {e}")
        answer, source = extract_answer(item.completion or "")
        if answer is None:
            return VerifyResult.ok(
                0.0, answer=None, source="none", gold=gold_str, message="no final answer found"
            )
        try:
            gold = self.parse_answer(gold_str)
            if not gold:
                return VerifyResult.fail("error", f"gold {gold_str!r} did not parse", gold=gold_str)
            pred = self.parse_answer(answer)
            ok = bool(pred) and self._verify(
                gold,
                pred,
                float_rounding=int(opts.get("float_rounding", 6)),
                numeric_precision=int(opts.get("numeric_precision", 15)),
                strict=bool(opts.get("strict", True)),
                timeout_seconds=None,
                raise_on_error=True,
            )
        except Exception as e:  # errors are data: report, never score 0
            return VerifyResult.fail(
                "error", f"{type(e).__name__}: {e}", answer=answer, source=source, gold=gold_str
            )
        return VerifyResult.ok(
            1.0 if ok else 0.0,
            answer=answer,
            source=source,
            gold=gold_str,
            parsed_answer=[str(p) for p in pred],
            parsed_gold=[str(g) for g in gold],
            method="math_verify",
        )
