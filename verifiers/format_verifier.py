"""Format reward (`"format"`): 1.0 if the completion has the required shape, else 0.0.

Meant as a small extra term in a composite reward (correctness + 0.2 * format). It
checks shape only, never content: the default pattern asks for exactly one final
`\\boxed{...}` with nothing but whitespace after it. Unlike format rewards that
grant partial credit per matched tag, this one is all-or-nothing, so it cannot be
farmed by emitting tags alone. The pattern comes from the server config only; an
item cannot send its own (a regular expression is code).
"""

from __future__ import annotations

import re
from typing import Any

from verifiers.base import ScoreItem, Verifier, VerifyResult

DEFAULT_PATTERN = r"\A(?:(?!\\boxed\{).)*\\boxed\{[^{}\n]*\}\s*\Z"


class FormatVerifier(Verifier):
    name = "format"
    description = "1.0 if the completion matches the configured pattern (default: one final \\boxed{})"
    reference_doc = "ignored"
    runs_in = "pool"
    default_timeout_s = 2.0

    def __init__(self, pattern: str = DEFAULT_PATTERN, max_chars: int = 100_000, **options: Any) -> None:
        super().__init__(pattern=pattern, max_chars=max_chars, **options)
        self.pattern = re.compile(pattern, re.DOTALL)
        self.max_chars = max_chars

    def verify(self, item: ScoreItem) -> VerifyResult:
        if len(item.completion) > self.max_chars:
            return VerifyResult.ok(0.0, matched=False, reason="too long")
        matched = self.pattern.search(item.completion) is not None
        return VerifyResult.ok(1.0 if matched else 0.0, matched=matched)
