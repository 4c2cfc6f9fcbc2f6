"""Wire schemas of the reward server, shared with `rlvr.reward_client`.

This module is the only thing the trainer side imports from `reward_server/`: the
trainer reaches the server over HTTP and shares nothing else.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["ok", "timeout", "error", "rejected"]


class ScoreRequestItem(BaseModel):
    """One item to score."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="Caller's id, echoed back in the result.")
    verifier: str = Field(..., description="Registered verifier name, e.g. 'math', 'code'.")
    prompt: str | None = Field(None, description="The prompt (some verifiers use it).")
    completion: str = Field(..., description="The model's completion to score.")
    reference: Any = Field(None, description="Ground truth; shape depends on the verifier.")
    options: dict[str, Any] | None = Field(None, description="Per-item verifier options.")


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ScoreRequestItem] = Field(..., description="Items, scored in order.")


class ScoreResult(BaseModel):
    id: str | None = None
    reward: float | None = Field(..., description="Null exactly when status != 'ok'.")
    status: Status
    info: dict[str, Any] = Field(default_factory=dict)


class ScoreResponse(BaseModel):
    results: list[ScoreResult]


class VerifierInfo(BaseModel):
    name: str
    description: str
    reference: str = Field(..., description="Shape of `reference` this verifier expects.")
    timeout_s: float


class VerifiersResponse(BaseModel):
    verifiers: list[VerifierInfo]


class OpenRLHFRequest(BaseModel):
    """OpenRLHF's remote reward protocol (`--remote_rm_url`)."""

    query: list[str] = Field(..., description="Prompt + response strings.")
    prompts: list[str | None] | None = Field(None, description="Prompts alone.")
    labels: list[Any] | None = Field(None, description="References, one per query.")


class OpenRLHFResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]
