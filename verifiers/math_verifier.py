"""Symbolic math verifier (`"math"`): final answer of a completion vs a gold answer.

Built on math-verify and sympy, with deliberate differences from calling
`math_verify.parse(completion)` on the raw text:

- We extract the *final* answer ourselves: the last `\\boxed{}` (or `\\fbox{}`, or
  `\\boxed 5` without braces), else the last `#### N`, else the last "answer is X" /
  "Answer: X". math-verify's own extraction takes whichever candidate parses first,
  so a completion that boxes several candidates could be judged by any of them;
  here only the last one counts and hedging earns nothing.
- Gold is parsed as gold, after wrapping: a bare LaTeX gold such as `2\\sqrt{2}`
  parsed raw becomes `2` (math-verify reads the first number), so every answer
  string, gold and prediction alike, is put inside `\\boxed{}` before parsing. A
  GSM8K solution ending in `#### N` counts as the gold `N`, a solution with boxes as
  its last box; numbers (int/float) are accepted as they are (AMC's `5.0` is `5`).
- A little normalisation math-verify does not do: thousands separators (`1,234`),
  a leading currency sign, trailing unit words (`5 dollars`), `\\textbf{(073)}`.
- No signal-based timeouts by default. math-verify's timeout uses `signal.alarm`,
  which (a) raises off the main thread, (b) silently cancels any alarm the caller
  had set (pytest-timeout's, for one) and (c) on expiry makes math-verify return
  False, a silent 0. The reward server runs this verifier in worker processes with a
  hard wall-clock kill, which also stops work a signal cannot interrupt, so by
  default both timeouts are off and a pathological input (`2003^{2002^{2001}}`)
  is stopped from outside (status `timeout`). Callers that verify in-process on the
  main thread (scripts, notebooks) may opt in to a soft inner limit with
  `soft_timeout_s=N` (whole seconds); on expiry the result is status `timeout`.

A completion with no recognisable final answer is a genuine wrong answer (reward 0,
`info.source == "none"`); an exception anywhere in extraction, parsing or comparison
is status `error` with reward None, never a silent 0. An answer math-verify cannot
parse at all is also a wrong answer (reward 0, `info.parsed_answer == []`).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from verifiers.base import ScoreItem, Verifier, VerifyResult

# math-verify warns once per process that its timeout is disabled; that is our design.
logging.getLogger("math_verify").setLevel(logging.ERROR)

# `\boxed{`, `\boxed 5`, `\boxed5`; not `\boxedfoo` (another macro).
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
_HASH_RE = re.compile(r"####\s*([^\n]+)")
_HEADING_RE = re.compile(r"\s*[A-Za-z]{2,}")
# "answer is X", "final answer is: X", "Answer: X", "**Answer:** X", "**Final Answer**: X"
# (a lookahead, so that "answer is 3, then the answer is 4" yields both, overlapping)
_ANSWER_IS_RE = re.compile(
    r"(?=answer\s*(?:is\b\s*:?|\**\s*:)\s*\**\s*([^\n]*))", re.IGNORECASE
)
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
# A number followed only by plain words: `5 dollars`, `10 km/h`, `3 apples.`
_NUM_WORDS_RE = re.compile(
    r"^(?P<num>[-+]?\d[\d,]*(?:\.\d+)?(?:\s*\\?%)?)\s*(?P<words>[A-Za-z]{2,}(?:[\s/.\-]+[A-Za-z]+)*)$"
)
# Words that are maths, not units: `3 pi` must stay 3*pi.
_MATH_WORDS = {"pi", "sqrt", "log", "ln", "sin", "cos", "tan", "exp", "frac", "times", "cdot"}
# `\text{5 dollars}`, `\textbf{(073)}`: a whole answer wrapped in a text macro.
_TEXT_WRAP_RE = re.compile(r"^\\(?:text|textbf|mathbf|mathrm|mbox)\s*\{\s*([-+$(]*\d[^{}]*)\}$")

OPTION_DEFAULTS: dict[str, Any] = {
    "float_rounding": 6,  # decimals floats are rounded to before comparing
    "numeric_precision": 15,  # significant digits for numeric evaluation
    "strict": True,  # variables matter; sets are not tuples
    "soft_timeout_s": None,  # opt-in math-verify alarm, main thread only (see docstring)
}


def _balanced(text: str, start: int) -> str | None:
    """Content of the brace group opening at text[start] == '{', None if unclosed."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` / `\\boxed 5`, else None.

    Only the last one counts: if it is unclosed (a truncated completion) the result
    is None, not an earlier box."""
    matches = list(_BOX_RE.finditer(text))
    if not matches:
        return None
    j = matches[-1].end()
    if j < len(text) and text[j] == "{":
        return _balanced(text, j)
    tok = re.match(r"[^\s$]+", text[j:])
    return tok.group(0) if tok else None


def extract_answer(completion: str) -> tuple[str | None, str]:
    """Return (final answer string, source) with source in boxed/####/answer_is/none."""
    boxed = last_boxed(completion)
    if boxed is not None and boxed.strip():
        return boxed.strip(), "boxed"
    # `#### N`, but not a markdown heading such as `#### Step 2: ...`
    hashes = [h.strip() for h in _HASH_RE.findall(completion) if not _HEADING_RE.match(h)]
    if hashes and hashes[-1]:
        return hashes[-1], "####"
    for m in reversed(list(_ANSWER_IS_RE.finditer(completion))):
        a = _SENTENCE_END_RE.split(m.group(1), maxsplit=1)[0]
        a = a.strip().strip("*").strip()
        for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if a.startswith(left) and a.endswith(right) and len(a) > len(left) + len(right):
                a = a[len(left) : -len(right)].strip()
        if a:
            return a, "answer_is"
    return None, "none"


def normalize_answer(ans: str) -> str:
    """Normalisations math-verify does not do, on an extracted answer string:
    trailing period, leading currency, text-macro wrapper, unit words, thousands."""
    s = ans.strip().rstrip(".").strip()
    m = _TEXT_WRAP_RE.match(s)
    if m:
        s = m.group(1).strip()
    s = re.sub(r"^\\?\$\s*", "", s)  # leading $ / \$ (currency)
    s = s.replace("\\!", "").replace("{,}", ",")
    m = _NUM_WORDS_RE.match(s)
    if m and not (set(re.findall(r"[A-Za-z]+", m.group("words").lower())) & _MATH_WORDS):
        s = m.group("num").strip()
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
        if reference != reference or reference in (float("inf"), float("-inf")):
            raise ValueError(f"reference is not a finite number: {reference!r}")
        return str(int(reference)) if reference.is_integer() else repr(reference)
    if isinstance(reference, dict) and "answer" in reference:
        return gold_to_string(reference["answer"])
    if not isinstance(reference, str):
        raise TypeError(f"reference must be a number or a string, got {type(reference).__name__}")
    text = reference.strip()
    if not text:
        raise ValueError("empty reference")
    if "####" in text:
        hashes = _HASH_RE.findall(text)
        if not hashes or not hashes[-1].strip():
            raise ValueError("reference has '####' but no answer after it")
        return hashes[-1].strip()
    if _BOX_RE.search(text):
        boxed = last_boxed(text)
        if boxed is None or not boxed.strip():
            raise ValueError("reference's last \\boxed{} is unclosed or empty")
        return boxed.strip()
    if len(text) > 1 and text[0] == "$" and text[-1] == "$":
        text = text.strip("$").strip()
    return text


def _options(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Known options with their types checked; unknown per-item keys are ignored
    (a composite verifier hands every part the same item options)."""
    out = dict(OPTION_DEFAULTS)
    for src in (base, override):
        for k in OPTION_DEFAULTS.keys() & src.keys():
            out[k] = src[k]
    for k in ("float_rounding", "numeric_precision"):
        if isinstance(out[k], bool) or not isinstance(out[k], int) or out[k] < 0:
            raise ValueError(f"option {k} must be a non-negative int, got {out[k]!r}")
    if not isinstance(out["strict"], bool):
        raise ValueError(f"option strict must be a bool, got {out['strict']!r}")
    t = out["soft_timeout_s"]
    if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
        raise ValueError(f"option soft_timeout_s must be None or an int >= 1, got {t!r}")
    return out


class MathVerifier(Verifier):
    name = "math"
    description = (
        "Symbolic math: the completion's final answer (last \\boxed{}, else '#### N', else "
        "'answer is X') compared with the gold by math-verify + sympy."
    )
    reference_doc = (
        "The gold answer: a number, a LaTeX string (bare or in \\boxed{}), or a GSM8K-style "
        "solution ending in '#### N'. Options: float_rounding (int, 6), numeric_precision "
        "(int, 15), strict (bool, true), soft_timeout_s (int or null, null)."
    )
    runs_in = "pool"
    default_timeout_s = 5.0

    def __init__(self, **options: Any) -> None:
        unknown = options.keys() - OPTION_DEFAULTS.keys()
        if unknown:
            raise TypeError(f"unknown math verifier options {sorted(unknown)}; "
                            f"known: {sorted(OPTION_DEFAULTS)}")
        _options(options, {})  # fail at construction on a bad config
        super().__init__(**options)
        # Imported here so the registry import stays cheap.
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
        from math_verify.errors import TimeoutException

        self._parse = parse
        self._verify = verify
        self._timeout_exc = TimeoutException
        self._configs = [
            LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=True),
            ExprExtractionConfig(),
        ]

    def parse_answer(self, answer: str, soft_timeout_s: int | None = None) -> list[Any]:
        """Parse one extracted answer string with math-verify, wrapped in `\\boxed{}`.

        Returns sympy objects followed by the string fallback; [] if nothing parsed."""
        return self._parse(
            "\\boxed{" + normalize_answer(answer) + "}",
            extraction_config=self._configs,
            parsing_timeout=soft_timeout_s,  # type: ignore[arg-type]  # None: the pool enforces time
            raise_on_error=soft_timeout_s is not None,  # only to see a timeout; see below
        )

    def verify(self, item: ScoreItem) -> VerifyResult:
        try:
            return self._verify_item(item)
        except self._timeout_exc:
            return VerifyResult.fail("timeout", "soft_timeout_s expired inside math-verify")
        except Exception as e:  # errors are data: report, never score 0
            return VerifyResult.fail("error", f"{type(e).__name__}: {e}")

    def _verify_item(self, item: ScoreItem) -> VerifyResult:
        opts = _options(self.options, item.options or {})
        soft = opts["soft_timeout_s"]
        if soft is not None and threading.current_thread() is not threading.main_thread():
            soft = None  # signal.alarm raises off the main thread; the caller must limit time
        try:
            gold_str = gold_to_string(item.reference)
        except (TypeError, ValueError) as e:
            return VerifyResult.fail("error", f"bad reference: {e}")
        completion = item.completion or ""
        if not isinstance(completion, str):
            return VerifyResult.fail("error", f"completion must be a string, got "
                                              f"{type(completion).__name__}")
        answer, source = extract_answer(completion)
        if answer is None:
            return VerifyResult.ok(
                0.0, answer=None, source="none", gold=gold_str,
                message="no answer found" if completion.strip() else "no answer: empty completion",
            )
        info: dict[str, Any] = {"answer": answer, "source": source, "gold": gold_str}
        try:
            gold = self._parse_or_timeout(gold_str, soft)
            if not gold:
                return VerifyResult.fail("error", f"gold {gold_str!r} did not parse", **info)
            pred = self._parse_or_timeout(answer, soft)
            info["parsed_gold"] = [str(g) for g in gold]
            info["parsed_answer"] = [str(p) for p in pred]
            ok = bool(pred) and self._verify(
                gold,
                pred,
                float_rounding=opts["float_rounding"],
                numeric_precision=opts["numeric_precision"],
                strict=opts["strict"],
                timeout_seconds=soft,
                raise_on_error=True,
            )
        except self._timeout_exc:
            return VerifyResult.fail("timeout", "soft_timeout_s expired inside math-verify", **info)
        except Exception as e:  # errors are data: report, never score 0
            return VerifyResult.fail("error", f"{type(e).__name__}: {e}", **info)
        return VerifyResult.ok(1.0 if ok else 0.0, **info, method="math_verify")

    def _parse_or_timeout(self, answer: str, soft: int | None) -> list[Any]:
        """parse_answer; with a soft limit math-verify must raise so that a timeout is
        visible, and then any other parse failure means 'did not parse' ([])."""
        if soft is None:
            return self.parse_answer(answer)
        try:
            return self.parse_answer(answer, soft)
        except Exception:  # TimeoutException is a BaseException and passes through
            return []
