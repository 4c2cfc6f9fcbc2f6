"""Verifiers that misbehave on purpose, for the dispatch tests (importable by workers)."""

from __future__ import annotations

import asyncio
import os
import time

from verifiers.base import ScoreItem, Verifier, VerifyResult


def _explode() -> None:
    raise RuntimeError("cannot be rebuilt here")


class _LoadsBadly:
    """Pickles fine; unpickling it raises (like a class the parent cannot import)."""

    def __reduce__(self) -> tuple:
        return (_explode, ())


class EchoVerifier(Verifier):
    """Reward = float(completion); 'sleep:S' sleeps S seconds; 'crash' kills the worker;
    'unpicklable' / 'unloadable' return info the worker cannot send / the parent cannot
    read."""

    name = "echo"
    description = "test verifier"
    reference_doc = "ignored"
    default_timeout_s = 1.0

    def verify(self, item: ScoreItem) -> VerifyResult:
        c = item.completion
        if c == "crash":
            os._exit(3)
        if c.startswith("sleep:"):
            time.sleep(float(c.split(":", 1)[1]))
            return VerifyResult.ok(1.0)
        if c == "raise":
            raise RuntimeError("verifier bug")
        if c == "nan":
            return VerifyResult.ok(float("nan"))
        if c == "unpicklable":
            return VerifyResult.ok(1.0, fn=lambda: None)
        if c == "unloadable":
            return VerifyResult.ok(1.0, obj=_LoadsBadly())
        return VerifyResult.ok(float(c), pid=os.getpid())


class SlowLoopVerifier(Verifier):
    """A loop verifier: 'sleep:S' awaits S seconds; otherwise reward = len(completion)."""

    name = "loopy"
    description = "test loop verifier"
    reference_doc = "ignored"
    runs_in = "loop"
    default_timeout_s = 0.5

    async def averify_batch(self, items: list[ScoreItem]) -> list[VerifyResult]:
        for it in items:
            if it.completion.startswith("sleep:"):
                await asyncio.sleep(float(it.completion.split(":", 1)[1]))
        return [VerifyResult.ok(float(len(it.completion))) for it in items]


class BrokenVerifier(Verifier):
    """A verifier whose constructor fails (bad config, missing dependency)."""

    name = "broken"
    description = "test verifier that cannot be built"
    reference_doc = "ignored"

    def __init__(self, **options: object) -> None:
        raise ValueError("missing option 'model_path'")
