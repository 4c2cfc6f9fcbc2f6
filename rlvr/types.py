"""Plain data types shared across the trainer side (data, sampler, eval, trainer).

Shape-suffix convention used across `rlvr/`: `_P` problems, `_G` samples per
problem (the group), `_B` flattened batch (P*G), `_T` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass
class Problem:
    """One verifiable problem: a rendered prompt and what the verifier needs."""

    id: str
    prompt: str
    reference: Any
    verifier: str = "math"
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SampleParams:
    """Sampling settings shared by every sampler backend."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 128
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    # Generate to max_tokens even after EOS (benchmarks: equal work per sequence).
    ignore_eos: bool = False


@dataclass
class Completion:
    """One sampled completion with the ids and the sampler's own logprobs."""

    text: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    # Logprob of each sampled token under the sampling distribution (the policy at
    # sampling time, before temperature/top-p processing). None if not requested.
    logprobs: list[float] | None
    finish_reason: Literal["stop", "length"]


class Sampler(Protocol):
    """Samples completions; the vLLM and transformers backends implement this."""

    def generate(
        self, prompts_P: list[str], n: int, params: SampleParams
    ) -> list[list[Completion]]:
        """Return, for each prompt, a list of `n` completions."""
        ...

    def sync_weights(self, state_dict: dict[str, Any]) -> None:
        """Load new policy weights into the engine (after an optimizer step)."""
        ...
