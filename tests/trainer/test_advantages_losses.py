"""GRPO math against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.advantages import ADVANTAGE_FNS, equal_group_mask
from rlvr.losses import KL_ESTIMATORS, LOSS_AGG, batch_normaliser, clipped_surrogate, policy_loss

NAN = math.nan


def test_group_std_by_hand() -> None:
    # group [1, 0, 1, 0]: mean 0.5, unbiased std sqrt(4*0.25/3) = 0.57735 -> +-0.86603
    adv = ADVANTAGE_FNS["group_std"](torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    assert torch.allclose(adv, torch.tensor([[0.86603, -0.86603, 0.86603, -0.86603]]), atol=1e-4)


def test_unscored_members_are_masked_not_zero() -> None:
    # [1, NaN, 0]: scored members {1, 0}: mean 0.5, std sqrt(0.5) = 0.70711 -> +-0.70711; NaN -> 0
    adv = ADVANTAGE_FNS["group_std"](torch.tensor([[1.0, NAN, 0.0]]))
    assert torch.allclose(adv, torch.tensor([[0.70711, 0.0, -0.70711]]), atol=1e-4)
    # Had NaN been treated as 0, the mean would be 1/3 and the first advantage differ.
    assert not torch.isnan(adv).any()


def test_dr_grpo_and_batch_std_and_rloo_by_hand() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    # Dr. GRPO: r - mean; means 0.25 and 0.75
    assert torch.allclose(ADVANTAGE_FNS["none"](r), torch.tensor([[0.75, -0.25, -0.25, -0.25], [0.25, 0.25, 0.25, -0.75]]))
    # batch std over all 8 rewards (four 1s, four 0s): sqrt(8*0.25/7) = 0.53452
    assert torch.allclose(ADVANTAGE_FNS["batch_std"](r)[0, 0], torch.tensor(0.75 / 0.53452), atol=1e-3)
    # RLOO: r_i - mean(others); group 1: 1 - 0 = 1, 0 - 1/3 = -1/3
    assert torch.allclose(ADVANTAGE_FNS["rloo"](r)[0], torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3]), atol=1e-6)
    assert torch.allclose(ADVANTAGE_FNS["rloo"](r)[1], torch.tensor([1 / 3, 1 / 3, 1 / 3, -1.0]), atol=1e-6)


def test_equal_groups_are_flagged() -> None:
    r = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, NAN], [1.0, 1.0]])
    assert equal_group_mask(r).tolist() == [False, True, False, False]


def test_clipped_surrogate_by_hand() -> None:
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1
    # A = +1: min(r, clip(r, 0.8, 1.28)) -> 1.28, 0.5, 1.1; loss = -that
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([1.0]), 0.2, 0.28)
    assert torch.allclose(loss, torch.tensor([[-1.28, -0.5, -1.1]]), atol=1e-5)
    assert clipped.tolist() == [[1.0, 0.0, 0.0]]
    # A = -1: min(-r, -clip(r)) -> -1.5, -0.8, -1.1; loss 1.5, 0.8, 1.1
    loss, _ = clipped_surrogate(logp, old, torch.tensor([-1.0]), 0.2, 0.28)
    assert torch.allclose(loss, torch.tensor([[1.5, 0.8, 1.1]]), atol=1e-5)


def test_kl_estimators_by_hand() -> None:
    lp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    # d = log(ref/pi) = log 0.5 = -0.69315
    assert KL_ESTIMATORS["k1"](lp, ref).item() == pytest.approx(0.69315, abs=1e-4)
    assert KL_ESTIMATORS["k2"](lp, ref).item() == pytest.approx(0.5 * 0.69315**2, abs=1e-4)
    assert KL_ESTIMATORS["k3"](lp, ref).item() == pytest.approx(0.5 + 0.69315 - 1, abs=1e-4)


def test_loss_aggregations_by_hand() -> None:
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert LOSS_AGG["token_mean"](loss, mask, 3).item() == pytest.approx(10 / 4)
    assert LOSS_AGG["sequence_mean"](loss, mask, 3).item() == pytest.approx((2 + 4) / 2)
    assert LOSS_AGG["constant"](loss, mask, 3).item() == pytest.approx(10 / (2 * 3))


@pytest.mark.parametrize("agg", ["token_mean", "sequence_mean", "constant"])
def test_micro_batches_add_up_to_the_big_batch(agg: str) -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 5, requires_grad=True)
    old = torch.randn(6, 5)
    adv = torch.randn(6)
    mask = (torch.rand(6, 5) > 0.3).float()
    mask[2] = 0
    full, _ = policy_loss(w, old, adv, mask, agg=agg, max_tokens=5)
    (g_full,) = torch.autograd.grad(full, w)
    norm = batch_normaliser(agg, mask, 5)
    total = sum(policy_loss(w[s:s + 2], old[s:s + 2], adv[s:s + 2], mask[s:s + 2], agg=agg, max_tokens=5, norm=norm)[0]
                for s in range(0, 6, 2))
    (g_acc,) = torch.autograd.grad(total, w)
    assert torch.allclose(full, total, atol=1e-6) and torch.allclose(g_full, g_acc, atol=1e-6)


def test_kl_term_needs_reference() -> None:
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="reference"):
        policy_loss(x, x, torch.ones(1), torch.ones(1, 2), beta=0.1)
    loss, stats = policy_loss(x, x, torch.zeros(1), torch.ones(1, 2), beta=0.1, ref_logp_B_T=x - 1.0)
    # k3 with d = -1... ref - pi = -1: e^-1 + 1 - 1 = 0.36788 per token, times beta
    assert loss.item() == pytest.approx(0.1 * math.exp(-1), abs=1e-5) and stats["kl"] == pytest.approx(math.exp(-1), abs=1e-5)
