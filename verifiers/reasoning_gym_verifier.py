"""reasoning-gym verifier (`"reasoning_gym"`): a task's own scorer, behind the server.

reasoning-gym generates verifiable problems offline (`rlvr.data` loads them as
`rg:TASK`); many of its answers are not numbers (words, lists, grids, moves), so the
math verifier cannot score them. This verifier calls the task's own
`score_answer(answer, entry)` with the generated entry carried in the reference:

    reference = {"task": "letter_counting", "entry": {"question": ..., "answer": ..., "metadata": {...}}}

What differs from reasoning-gym's own examples, on purpose:
- The answer is the completion's last `<answer>...</answer>`, else its last
  `\\boxed{...}` (the math verifier's `last_boxed`: an unclosed last box is no
  answer, never an earlier box); with neither, the reward is 0.0 with `info["extracted"] = None`
  (a missing answer is wrong, not unscorable). Only the last candidate counts.
- A scorer that raises, or returns something that is not a finite number, is status
  `error` with reward null (never a 0), and an unknown task is `error` naming it.
- Partial credit is whatever the task's scorer returns (some give fractions).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

from verifiers.base import ScoreItem, Verifier, VerifyResult
from verifiers.math_verifier import last_boxed

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract(completion: str) -> tuple[str | None, str | None]:
    """(answer, where it came from): last <answer> tag, else last \\boxed{}."""
    tags = _ANSWER_TAG.findall(completion)
    if tags:
        return tags[-1].strip(), "answer_tag"
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed.strip(), "boxed"
    return None, None


@lru_cache(maxsize=64)
def _scorer(task: str) -> Any:
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(task)


class ReasoningGymVerifier(Verifier):
    name = "reasoning_gym"
    description = "a reasoning-gym task's own score_answer on the last <answer> tag or \\boxed{}"
    reference_doc = '{"task": "<reasoning-gym dataset name>", "entry": {"question", "answer", "metadata"}}'
    runs_in = "pool"
    default_timeout_s = 5.0

    def verify(self, item: ScoreItem) -> VerifyResult:
        ref = item.reference
        if not (isinstance(ref, dict) and isinstance(ref.get("task"), str)
                and isinstance(ref.get("entry"), dict) and "answer" in ref["entry"]):
            return VerifyResult.fail(
                "error", "reference must be {'task': str, 'entry': {'answer': ..., ...}}")
        answer, source = extract(item.completion)
        if answer is None:
            return VerifyResult.ok(0.0, extracted=None, reason="no <answer> tag or \\boxed{}")
        try:
            score_fn = _scorer(ref["task"])
        except (ValueError, KeyError) as e:
            return VerifyResult.fail("error", f"unknown reasoning-gym task {ref['task']!r}: {e}")
        try:
            reward = score_fn(answer, ref["entry"])
        except Exception as e:  # noqa: BLE001 - a task scorer's failure is data
            return VerifyResult.fail("error", f"{ref['task']} scorer raised {type(e).__name__}: {e}",
                                     extracted=answer, source=source)
        if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
            return VerifyResult.fail("error", f"{ref['task']} scorer returned {reward!r}",
                                     extracted=answer, source=source)
        return VerifyResult.ok(float(reward), extracted=answer, source=source)
