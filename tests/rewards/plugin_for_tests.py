"""Classes for the plug-in tests, importable by dotted path (and by server workers)."""

from __future__ import annotations

from verifiers.base import ScoreItem, Verifier, VerifyResult


class LengthVerifier(Verifier):
    """Pool plug-in: reward = min(1, len(completion) / target)."""

    name = "length"
    description = "length / target, capped at 1"
    reference_doc = "ignored"

    def __init__(self, target: int = 10) -> None:
        super().__init__(target=target)
        self.target = target

    def verify(self, item: ScoreItem) -> VerifyResult:
        return VerifyResult.ok(min(1.0, len(item.completion) / self.target))


class NotAVerifier:
    def verify(self, item: ScoreItem) -> VerifyResult:  # pragma: no cover - never called
        return VerifyResult.ok(1.0)


class LoopWithoutAverify(Verifier):
    runs_in = "loop"
