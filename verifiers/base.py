"""The verifier contract: one item in, one result out, errors as data.

A verifier turns (completion, reference) into a `VerifyResult` whose `status` says
whether a reward could be computed at all. Unlike the common `try: ... except:
reward = 0.0` pattern, a verifier that cannot decide returns `status != "ok"` and
`reward=None`; the trainer masks such items instead of teaching the policy that the
answer was wrong.

Two kinds of verifier exist, declared by `runs_in`:

- `"pool"`: CPU-bound, synchronous `verify()`; the reward server runs it in worker
  processes with a hard wall-clock limit (a hung worker is killed and replaced).
  Math and code are pool verifiers.
- `"loop"`: I/O-bound or batched, `async averify_batch()`; runs in the server's
  event loop (LLM judge, remote HTTP verifiers, the learned reward model which
  batches on its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Status = Literal["ok", "timeout", "error", "rejected"]
STATUSES: tuple[str, ...] = ("ok", "timeout", "error", "rejected")


@dataclass
class ScoreItem:
    """One thing to score. Mirrors the wire item of `POST /v1/score`."""

    verifier: str
    completion: str
    reference: Any = None
    prompt: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass
class VerifyResult:
    """Outcome of one verification. `reward is None` exactly when `status != "ok"`."""

    reward: float | None
    status: Status = "ok"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if (self.reward is None) != (self.status != "ok"):
            raise ValueError(
                f"reward must be None exactly when status != 'ok' "
                f"(got reward={self.reward!r}, status={self.status!r})"
            )

    @classmethod
    def ok(cls, reward: float, **info: Any) -> VerifyResult:
        return cls(reward=float(reward), status="ok", info=info)

    @classmethod
    def fail(cls, status: Status, message: str, **info: Any) -> VerifyResult:
        return cls(reward=None, status=status, info={"message": message, **info})


class Verifier:
    """Base class for verifiers. Subclasses set the class attributes and override
    `verify` (pool verifiers) or `averify_batch` (loop verifiers).

    Instances are built from keyword options taken from the server config, so a
    verifier must be constructible in a fresh worker process from those options.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Human-readable description of the `reference` each item must carry; served by
    # `GET /v1/verifiers`.
    reference_doc: ClassVar[str] = ""
    runs_in: ClassVar[Literal["pool", "loop"]] = "pool"
    # Default hard wall-clock limit per item, seconds (config may override).
    default_timeout_s: ClassVar[float] = 5.0

    def __init__(self, **options: Any) -> None:
        self.options = options

    def verify(self, item: ScoreItem) -> VerifyResult:  # pragma: no cover - interface
        raise NotImplementedError

    async def averify_batch(self, items: list[ScoreItem]) -> list[VerifyResult]:  # pragma: no cover
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release resources held by a loop verifier (HTTP clients, models)."""
