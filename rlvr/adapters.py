"""Adapters that let other trainers use the rlvr reward server.

- `make_trl_reward_func`: a TRL `GRPOTrainer(reward_funcs=...)` callable. TRL calls
  it as `f(prompts=..., completions=..., completion_ids=..., **dataset_columns)` and
  accepts `None` for an item a function cannot score, which is exactly what an
  unscored item is here (TRL then ignores it for that function) - never 0.
- `compute_score`: verl's custom reward function signature
  (`custom_reward_function.path/name` in verl's config). verl needs a number, so an
  item that could not be scored raises instead of silently becoming 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from rlvr.reward_client import SyncRewardClient

_clients: dict[tuple[str, str | None], SyncRewardClient] = {}


def _client(url: str, api_key: str | None) -> SyncRewardClient:
    key = (url, api_key)
    if key not in _clients:
        _clients[key] = SyncRewardClient(url, api_key=api_key)
    return _clients[key]


def _text(completion: Any) -> str:
    """TRL passes plain strings, or for conversational data a list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return str(completion)


def make_trl_reward_func(
    url: str | None = None,
    verifier: str = "math",
    reference_key: str = "answer",
    api_key: str | None = None,
) -> Callable[..., list[float | None]]:
    """Return a TRL reward function scoring completions through the server at `url`
    (default: env RLVR_REWARD_URL) against the dataset column `reference_key`."""
    server = url or os.environ.get("RLVR_REWARD_URL")
    if not server:
        raise ValueError("no reward server URL: pass url= or set RLVR_REWARD_URL")

    def rlvr_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        refs = kwargs.get(reference_key)
        if refs is None:
            raise KeyError(f"dataset column {reference_key!r} not passed to the reward function")
        items = [
            {"verifier": verifier, "prompt": _text(p), "completion": _text(c), "reference": r}
            for p, c, r in zip(prompts, completions, refs, strict=True)
        ]
        return [r.reward for r in _client(server, api_key).score(items)]

    rlvr_reward.__name__ = f"rlvr_{verifier}"
    return rlvr_reward


class UnscoredError(RuntimeError):
    """verl's reward manager needs a number; an unscored item is raised, not zeroed."""


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    *,
    url: str | None = None,
    verifier: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """verl custom reward function. Returns {"score", "status", ...}; verl logs the
    extra keys. Verifier: `extra_info["verifier"]`, else `verifier`, else "math"."""
    server = url or os.environ.get("RLVR_REWARD_URL")
    if not server:
        raise ValueError("no reward server URL: pass url= or set RLVR_REWARD_URL")
    name = (extra_info or {}).get("verifier") or verifier or "math"
    item = {"verifier": name, "completion": solution_str, "reference": ground_truth}
    (res,) = _client(server, api_key or os.environ.get("RLVR_API_KEY")).score([item])
    if res.status != "ok" or res.reward is None:
        raise UnscoredError(f"{data_source}: item not scored ({res.status}): {res.info.get('message')}")
    return {"score": res.reward, "status": res.status, "answer": str(res.info.get("answer"))}
