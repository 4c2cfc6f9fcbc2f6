"""Policy-gradient loss pieces as pure functions on token tensors (`_B_T`).

The clipped surrogate is PPO's with DAPO's "clip-higher": separate `eps_low` and
`eps_high`, so unlikely tokens can grow more than likely ones can shrink. The KL
penalty to the reference is an estimator choice (`KL_ESTIMATORS`, Schulman's k1, k2,
k3) added per token. How per-token losses become one number is a choice too
(`LOSS_AGG`): token-mean over the batch (DAPO), sequence-mean (original GRPO, which
weighs short answers more per token), or a constant normaliser (Dr. GRPO: sum over
tokens / (B * max_tokens), with no length bias).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def kl_k1(logp_B_T: Tensor, ref_logp_B_T: Tensor) -> Tensor:
    """k1 = log pi - log ref (unbiased, can be negative)."""
    return logp_B_T - ref_logp_B_T


def kl_k2(logp_B_T: Tensor, ref_logp_B_T: Tensor) -> Tensor:
    """k2 = (log pi - log ref)^2 / 2."""
    return 0.5 * (logp_B_T - ref_logp_B_T) ** 2


def kl_k3(logp_B_T: Tensor, ref_logp_B_T: Tensor) -> Tensor:
    """k3 = ref/pi - log(ref/pi) - 1 (unbiased and >= 0; GRPO's choice)."""
    d = ref_logp_B_T - logp_B_T
    return torch.exp(d) - d - 1


KL_ESTIMATORS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def clipped_surrogate(
    logp_B_T: Tensor, old_logp_B_T: Tensor, adv_B: Tensor, eps_low: float, eps_high: float
) -> tuple[Tensor, Tensor]:
    """Per-token PPO loss -min(ratio*A, clip(ratio, 1-eps_low, 1+eps_high)*A) and a
    per-token flag of whether clipping was active."""
    ratio_B_T = torch.exp(logp_B_T - old_logp_B_T)
    a_B_T = adv_B[:, None]
    unclipped = ratio_B_T * a_B_T
    clipped = torch.clamp(ratio_B_T, 1 - eps_low, 1 + eps_high) * a_B_T
    loss_B_T = -torch.minimum(unclipped, clipped)
    return loss_B_T, (clipped < unclipped).float()


# Each aggregator takes an optional `norm`: the denominator of the *whole* batch. A
# micro-batch normalised by it contributes exactly its share, so gradient
# accumulation over micro-batches equals one big batch (see `batch_normaliser`).


def agg_token_mean(loss_B_T: Tensor, mask_B_T: Tensor, max_tokens: int, norm: float | None = None) -> Tensor:
    return (loss_B_T * mask_B_T).sum() / (norm or mask_B_T.sum().clamp(min=1))


def agg_sequence_mean(loss_B_T: Tensor, mask_B_T: Tensor, max_tokens: int, norm: float | None = None) -> Tensor:
    per_seq_B = (loss_B_T * mask_B_T).sum(-1) / mask_B_T.sum(-1).clamp(min=1)
    return per_seq_B.sum() / (norm or (mask_B_T.sum(-1) > 0).sum().clamp(min=1))


def agg_constant(loss_B_T: Tensor, mask_B_T: Tensor, max_tokens: int, norm: float | None = None) -> Tensor:
    return (loss_B_T * mask_B_T).sum() / (norm or loss_B_T.shape[0] * max_tokens)


# The whole-batch denominators, one per aggregation.
NORMALISERS: dict[str, Callable[[Tensor, int], float]] = {
    "token_mean": lambda mask_B_T, max_tokens: float(mask_B_T.sum().clamp(min=1)),
    "sequence_mean": lambda mask_B_T, max_tokens: float((mask_B_T.sum(-1) > 0).sum().clamp(min=1)),
    "constant": lambda mask_B_T, max_tokens: float(mask_B_T.shape[0] * max_tokens),
}


def batch_normaliser(agg: str, mask_B_T: Tensor, max_tokens: int) -> float:
    """The denominator `LOSS_AGG[agg]` would use on the whole batch `mask_B_T`."""
    return NORMALISERS[agg](mask_B_T, max_tokens)


LOSS_AGG: dict[str, Callable[..., Tensor]] = {
    "token_mean": agg_token_mean,
    "sequence_mean": agg_sequence_mean,
    "constant": agg_constant,
}


def policy_loss(
    logp_B_T: Tensor,
    old_logp_B_T: Tensor,
    adv_B: Tensor,
    mask_B_T: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    ref_logp_B_T: Tensor | None = None,
    beta: float = 0.0,
    kl_estimator: str = "k3",
    agg: str = "token_mean",
    max_tokens: int = 1,
    norm: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The GRPO objective for one micro-batch; returns (loss, stats)."""
    pg_B_T, clipped_B_T = clipped_surrogate(logp_B_T, old_logp_B_T, adv_B, eps_low, eps_high)
    loss_B_T = pg_B_T
    stats: dict[str, float] = {}
    if beta > 0:
        if ref_logp_B_T is None:
            raise ValueError("beta > 0 needs reference logprobs")
        kl_B_T = KL_ESTIMATORS[kl_estimator](logp_B_T, ref_logp_B_T)
        loss_B_T = loss_B_T + beta * kl_B_T
        stats["kl"] = float(agg_token_mean(kl_B_T.detach(), mask_B_T, max_tokens))
    loss = LOSS_AGG[agg](loss_B_T, mask_B_T, max_tokens, norm)
    stats["clip_frac"] = float(agg_token_mean(clipped_B_T, mask_B_T, max_tokens))
    return loss, stats
