"""Group-relative advantages as pure functions on `rewards_P_G` (P problems x G samples).

Differences from the textbook GRPO formula `(r - mean(group)) / std(group)`:

- Unscored samples (reward None on the wire, NaN here: the verifier timed out or
  failed) are masked: they get advantage 0 and are left out of their group's mean
  and std, instead of being counted as wrong. A group is normalised over its scored
  members only; a group with fewer than two scored members has advantage 0 (no
  baseline to compare against).
- The scale is a choice (`ADVANTAGE_FNS`): group std (GRPO), batch std, none
  (Dr. GRPO, which argues the std division biases toward easy/hard groups), or the
  leave-one-out baseline of RLOO.
- `filter_equal_groups` implements DAPO's dynamic sampling: a group whose scored
  rewards are all equal carries no signal and can be dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

EPS = 1e-6


def as_rewards(rewards: Sequence[Sequence[float | None]]) -> Tensor:
    """Nested lists with None for "not scored" -> float tensor with NaN there.

    NaN is how the rest of this module spells None: every function below leaves NaN
    members out of their group's statistics and gives them advantage 0."""
    return torch.tensor([[math.nan if r is None else float(r) for r in g] for g in rewards],
                        dtype=torch.float32)


def _masked_mean(x_P_G: Tensor, m_P_G: Tensor) -> Tensor:
    n_P = m_P_G.sum(-1).clamp(min=1)
    return (x_P_G * m_P_G).sum(-1) / n_P  # (P,)


def _masked_std(x_P_G: Tensor, m_P_G: Tensor, mean_P: Tensor) -> Tensor:
    """Unbiased (n-1) std over the scored members of each group, as torch.std."""
    n_P = m_P_G.sum(-1)
    var_P = (((x_P_G - mean_P[:, None]) ** 2) * m_P_G).sum(-1) / (n_P - 1).clamp(min=1)
    return var_P.sqrt()


def _centred(rewards_P_G: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    m_P_G = (~torch.isnan(rewards_P_G)).float()
    r_P_G = torch.nan_to_num(rewards_P_G, nan=0.0)
    mean_P = _masked_mean(r_P_G, m_P_G)
    return r_P_G, m_P_G, mean_P


def grpo_group_std(rewards_P_G: Tensor) -> Tensor:
    """(r - mean_g) / (std_g + eps), over scored members; unscored -> 0."""
    r, m, mean_P = _centred(rewards_P_G)
    std_P = _masked_std(r, m, mean_P)
    return (r - mean_P[:, None]) / (std_P[:, None] + EPS) * m


def grpo_batch_std(rewards_P_G: Tensor) -> Tensor:
    """(r - mean_g) / (std over every scored sample of the batch + eps)."""
    r, m, mean_P = _centred(rewards_P_G)
    adv = (r - mean_P[:, None]) * m
    flat = r[m.bool()]
    std = flat.std() if flat.numel() > 1 else torch.tensor(0.0)
    return adv / (std + EPS)


def dr_grpo(rewards_P_G: Tensor) -> Tensor:
    """Dr. GRPO: r - mean_g, no std scaling."""
    r, m, mean_P = _centred(rewards_P_G)
    return (r - mean_P[:, None]) * m


def rloo(rewards_P_G: Tensor) -> Tensor:
    """RLOO: r_i - mean of the *other* scored members of its group."""
    r, m, _ = _centred(rewards_P_G)
    n_P = m.sum(-1, keepdim=True)
    others_mean = ((r * m).sum(-1, keepdim=True) - r) / (n_P - 1).clamp(min=1)
    return torch.where(n_P > 1, r - others_mean, torch.zeros_like(r)) * m


ADVANTAGE_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    "group_std": grpo_group_std,
    "batch_std": grpo_batch_std,
    "none": dr_grpo,
    "rloo": rloo,
}


def equal_group_mask(rewards_P_G: Tensor) -> Tensor:
    """(P,) bool: True where a group's scored rewards are not all equal (keep it)."""
    r, m, mean_P = _centred(rewards_P_G)
    dev = ((r - mean_P[:, None]).abs() * m).amax(-1)
    return dev > EPS
