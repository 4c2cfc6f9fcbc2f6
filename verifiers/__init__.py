"""Verifiers: functions from (completion, reference) to a reward with a status.

Note: PrimeIntellect's PyPI package is also called `verifiers`; the two cannot be
installed in one environment.
"""

from verifiers.base import ScoreItem, Verifier, VerifyResult

__all__ = ["ScoreItem", "Verifier", "VerifyResult"]
