"""Adapters that let other trainers use the rlvr reward server.

- `make_trl_reward_func`: a TRL `GRPOTrainer(reward_funcs=...)` callable. TRL calls
  it as `f(prompts=..., completions=..., completion_ids=..., **dataset_columns,
  trainer_state=..., log_extra=..., log_metric=...)`; completions are strings, or for
  conversational data lists of `{"role", "content"}` messages. TRL accepts `None`
  for an item a function cannot score and (since 1.x) masks a row no function
  scored out of the group baseline - exactly what an unscored item is here, so it
  is returned as None, never 0.
- `compute_score` / `compute_score_batch`: verl's custom reward function
  signatures (`custom_reward_function.path/name`, extra keyword arguments from
  `custom_reward_function.reward_kwargs`; the batch form for verl's
  `reward_manager=batch`). verl needs a number and has no way to mask one item, so
  by default an unscored item raises `UnscoredError`; `on_unscored="zero"` opts into
  0.0 with `scored=0.0` in the returned dict, which verl logs.

Both reach the server through `SyncRewardClient` (one per URL and key, reused); the
URL comes from the argument or the environment variable RLVR_REWARD_URL, the API
key from the argument or RLVR_API_KEY.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

from rlvr.reward_client import SyncRewardClient

_clients: dict[tuple[str, str | None], SyncRewardClient] = {}


def _client(url: str | None, api_key: str | None) -> SyncRewardClient:
    server = url or os.environ.get("RLVR_REWARD_URL")
    if not server:
        raise ValueError("no reward server URL: pass url= or set RLVR_REWARD_URL")
    key = (server, api_key or os.environ.get("RLVR_API_KEY"))
    if key not in _clients:
        _clients[key] = SyncRewardClient(key[0], api_key=key[1])
    return _clients[key]


def _text(x: Any) -> str:
    """A plain string from TRL's prompt/completion forms: a string, a message dict, a
    list of messages, or message content given as a list of typed parts."""
    if isinstance(x, str):
        return x
    if isinstance(x, dict):
        if "content" in x:
            return _text(x["content"])
        return str(x.get("text") or "") if x.get("type", "text") == "text" else ""
    if isinstance(x, list):
        return "\n".join(t for t in (_text(m) for m in x) if t)
    return "" if x is None else str(x)


def make_trl_reward_func(
    url: str | None = None,
    verifier: str = "math",
    reference_key: str = "answer",
    api_key: str | None = None,
) -> Callable[..., list[float | None]]:
    """Return a TRL reward function scoring completions through the server at `url`
    (default: env RLVR_REWARD_URL) against the dataset column `reference_key`.
    It logs `rlvr/<verifier>_unscored` (fraction of items not scored) through TRL's
    `log_metric` when TRL passes it."""

    def rlvr_reward(
        prompts: list[Any], completions: list[Any], **kwargs: Any
    ) -> list[float | None]:
        refs = kwargs.get(reference_key)
        if refs is None:
            raise KeyError(f"dataset column {reference_key!r} not passed to the reward function")
        items = [
            {"verifier": verifier, "prompt": _text(p), "completion": _text(c), "reference": r}
            for p, c, r in zip(prompts, completions, refs, strict=True)
        ]
        rewards = [r.reward for r in _client(url, api_key).score(items)]
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and rewards:
            log_metric(f"rlvr/{verifier}_unscored", sum(r is None for r in rewards) / len(rewards))
        return rewards

    rlvr_reward.__name__ = f"rlvr_{verifier}"
    return rlvr_reward


class UnscoredError(RuntimeError):
    """verl needs a number; an unscored item is raised, not zeroed (unless asked)."""


OnUnscored = Literal["raise", "zero"]


def _verl_result(res: Any, data_source: str, on_unscored: OnUnscored) -> dict[str, Any]:
    # Every returned dict has the same numeric keys: verl stacks them per key.
    if res.status == "ok" and res.reward is not None:
        return {"score": float(res.reward), "scored": 1.0}
    if on_unscored == "zero":
        return {"score": 0.0, "scored": 0.0}
    raise UnscoredError(
        f"{data_source}: item not scored ({res.status}): {res.info.get('message')}"
    )


def _verl_item(solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None,
               verifier: str | None) -> dict[str, Any]:
    name = (extra_info or {}).get("verifier") or verifier or "math"
    return {"verifier": name, "completion": solution_str, "reference": ground_truth}


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    *,
    url: str | None = None,
    verifier: str | None = None,
    api_key: str | None = None,
    on_unscored: OnUnscored = "raise",
    **_: Any,
) -> dict[str, Any]:
    """verl custom reward function: `{"score": float, "scored": 1.0 | 0.0}`.
    Verifier: `extra_info["verifier"]`, else `verifier`, else "math"."""
    item = _verl_item(solution_str, ground_truth, extra_info, verifier)
    (res,) = _client(url, api_key).score([item])
    return _verl_result(res, data_source, on_unscored)


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[dict[str, Any] | None] | None = None,
    *,
    url: str | None = None,
    verifier: str | None = None,
    api_key: str | None = None,
    on_unscored: OnUnscored = "raise",
    **_: Any,
) -> list[dict[str, Any]]:
    """verl's batch reward function form (`reward_manager=batch`): one HTTP round trip
    per batch instead of one per response."""
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    items = [
        _verl_item(s, g, e, verifier)
        for s, g, e in zip(solution_strs, ground_truths, infos, strict=True)
    ]
    results = _client(url, api_key).score(items)
    return [_verl_result(r, d, on_unscored) for r, d in zip(results, data_sources, strict=True)]
