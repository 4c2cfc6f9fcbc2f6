"""Name -> verifier class. A plain dict you can grep; add a line to add a verifier.

Verifier modules keep heavy imports (torch, httpx, docker) inside methods so that
importing this registry stays cheap in every worker process.
"""

from __future__ import annotations

from verifiers.base import Verifier
from verifiers.code_verifier import CodeVerifier
from verifiers.format_verifier import FormatVerifier
from verifiers.judge import JudgeVerifier
from verifiers.math_verifier import MathVerifier
from verifiers.reasoning_gym_verifier import ReasoningGymVerifier
from verifiers.rm_verifier import RewardModelVerifier

VERIFIERS: dict[str, type[Verifier]] = {
    "math": MathVerifier,
    "code": CodeVerifier,
    "format": FormatVerifier,
    "judge": JudgeVerifier,
    "rm": RewardModelVerifier,
    "reasoning_gym": ReasoningGymVerifier,
}


def get_verifier_class(name: str) -> type[Verifier]:
    """Return the class registered under `name`; KeyError with the known names."""
    try:
        return VERIFIERS[name]
    except KeyError:
        raise KeyError(f"unknown verifier {name!r}; known: {sorted(VERIFIERS)}") from None
