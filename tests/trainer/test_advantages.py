"""Group-relative advantages against numbers worked out by hand, and against peers'
formulas (TRL's GRPO group/batch scaling, TRL's RLOO baseline)."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.advantages import ADVANTAGE_FNS, EPS, as_rewards, equal_group_mask

NAN = math.nan


def test_group_std_by_hand() -> None:
    # group [1, 0, 1, 0]: mean 0.5; unbiased std = sqrt(4 * 0.25 / 3) = 0.57735
    # advantages (+-0.5) / 0.57735 = +-0.86603
    adv = ADVANTAGE_FNS["group_std"](torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    assert torch.allclose(adv, torch.tensor([[0.86603, -0.86603, 0.86603, -0.86603]]), atol=1e-4)


def test_group_std_two_groups_by_hand() -> None:
    # group A [2, 4, 6]: mean 4, std sqrt((4+0+4)/2) = 2 -> [-1, 0, 1]
    # group B [1, 1, 4]: mean 2, std sqrt((1+1+4)/2) = sqrt(3) = 1.73205 -> [-0.57735, -0.57735, 1.15470]
    adv = ADVANTAGE_FNS["group_std"](torch.tensor([[2.0, 4.0, 6.0], [1.0, 1.0, 4.0]]))
    assert torch.allclose(adv, torch.tensor([[-1.0, 0.0, 1.0], [-0.57735, -0.57735, 1.15470]]), atol=1e-4)


def test_none_rewards_are_masked_and_group_normalised_over_scored_members() -> None:
    # [1, None, 0]: scored {1, 0}: mean 0.5, std sqrt(0.5) = 0.70711 -> [+0.70711, 0, -0.70711]
    r = as_rewards([[1.0, None, 0.0]])
    assert math.isnan(r[0, 1])
    adv = ADVANTAGE_FNS["group_std"](r)
    assert torch.allclose(adv, torch.tensor([[0.70711, 0.0, -0.70711]]), atol=1e-4)
    # Had None been read as 0: mean 1/3, std sqrt((4/9+1/9+1/9)/2) = 0.57735,
    # first advantage (2/3)/0.57735 = 1.1547: a different number, so the test can tell.
    assert abs(adv[0, 0] - 1.1547) > 0.1


@pytest.mark.parametrize("name", ["group_std", "batch_std", "none", "rloo"])
def test_none_rewards_never_produce_nan_or_signal(name: str) -> None:
    # all None, one scored member, and a mixed group: no NaN anywhere; the first two
    # groups have nothing to compare against, so advantage 0.
    r = as_rewards([[None, None, None], [None, 1.0, None], [1.0, 0.0, None]])
    adv = ADVANTAGE_FNS[name](r)
    assert not torch.isnan(adv).any()
    assert adv[:2].abs().max() == 0 and adv[2, 2] == 0 and adv[2, 0] > 0 > adv[2, 1]


def test_dr_grpo_batch_std_and_rloo_by_hand() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    # Dr. GRPO: r - group mean; means 0.25 and 0.75
    assert torch.allclose(ADVANTAGE_FNS["none"](r),
                          torch.tensor([[0.75, -0.25, -0.25, -0.25], [0.25, 0.25, 0.25, -0.75]]))
    # batch std over all 8 rewards (four 1s, four 0s, mean 0.5): sqrt(8 * 0.25 / 7) = 0.53452
    assert ADVANTAGE_FNS["batch_std"](r)[0, 0].item() == pytest.approx(0.75 / 0.53452, abs=1e-4)
    # RLOO: r_i - mean of the other three. Group 1: 1 - 0 = 1; 0 - 1/3 = -1/3.
    # Group 2: 1 - 2/3 = 1/3; 0 - 1 = -1.
    assert torch.allclose(ADVANTAGE_FNS["rloo"](r),
                          torch.tensor([[1.0, -1 / 3, -1 / 3, -1 / 3], [1 / 3, 1 / 3, 1 / 3, -1.0]]), atol=1e-6)


def test_against_trl_formulas() -> None:
    """Peer formulas, written the way TRL writes them (grouped view, torch.std)."""
    torch.manual_seed(0)
    P, G = 5, 6
    r = torch.rand(P, G).round()  # 0/1 rewards, some groups equal
    r[0] = torch.tensor([0.2, 0.9, 0.4, 0.4, 0.0, 1.0])
    flat = r.view(-1)
    mean = flat.view(-1, G).mean(1).repeat_interleave(G)
    std_g = flat.view(-1, G).std(1).repeat_interleave(G)
    # TRL GRPOTrainer scale_rewards="group": (r - mean) / (std + eps)
    assert torch.allclose(ADVANTAGE_FNS["group_std"](r).view(-1), (flat - mean) / (std_g + EPS), atol=1e-5)
    # scale_rewards="batch": (r - mean) / (std over the batch + eps)
    assert torch.allclose(ADVANTAGE_FNS["batch_std"](r).view(-1), (flat - mean) / (flat.std() + EPS), atol=1e-5)
    # TRL RLOOTrainer: baseline = (sum - r) / (k - 1); advantage = r - baseline,
    # which is also G / (G - 1) * (r - mean)
    baseline = (r.sum(1, keepdim=True) - r) / (G - 1)
    assert torch.allclose(ADVANTAGE_FNS["rloo"](r), r - baseline, atol=1e-6)
    assert torch.allclose(ADVANTAGE_FNS["rloo"](r), G / (G - 1) * ADVANTAGE_FNS["none"](r), atol=1e-6)


def test_equal_groups_are_flagged() -> None:
    # [1,1] equal; [0,1] has signal; [0,None] has one scored member (equal); [1,1] equal
    r = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, NAN], [1.0, 1.0]])
    assert equal_group_mask(r).tolist() == [False, True, False, False]
