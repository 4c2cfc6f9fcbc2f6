"""GRPO loss pieces against numbers worked out by hand, and the KL estimators against
the exact KL of torch.distributions (a peer implementation)."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.losses import KL_ESTIMATORS, LOSS_AGG, batch_normaliser, clipped_surrogate, policy_loss


def test_clipped_surrogate_by_hand() -> None:
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1
    # A = +1, clip range [0.8, 1.28]: min(r, clip(r)) = 1.28, 0.5, 1.1; loss = minus that
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([1.0]), 0.2, 0.28)
    assert torch.allclose(loss, torch.tensor([[-1.28, -0.5, -1.1]]), atol=1e-5)
    assert clipped.tolist() == [[1.0, 0.0, 0.0]]
    # A = -1: min(-r, -clip(r)) = -1.5, -0.8, -1.1 -> loss 1.5, 0.8, 1.1 (only 0.5 clipped)
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([-1.0]), 0.2, 0.28)
    assert torch.allclose(loss, torch.tensor([[1.5, 0.8, 1.1]]), atol=1e-5)
    assert clipped.tolist() == [[0.0, 1.0, 0.0]]


def test_clip_higher_is_asymmetric_by_hand() -> None:
    # ratio 1.25 with A = +1: inside [0.8, 1.28] (DAPO) -> loss -1.25; with symmetric
    # eps 0.2 it is clipped to 1.2 -> loss -1.2.
    logp, old = torch.tensor([[math.log(1.25)]]), torch.zeros(1, 1)
    assert clipped_surrogate(logp, old, torch.ones(1), 0.2, 0.28)[0].item() == pytest.approx(-1.25)
    assert clipped_surrogate(logp, old, torch.ones(1), 0.2, 0.2)[0].item() == pytest.approx(-1.2)


def test_clipped_tokens_get_no_gradient_by_hand() -> None:
    # d loss / d logp = -A * ratio where unclipped, 0 where clipped.
    # ratios 1.5 (clipped for A=+2), 1.1 (not): grads 0 and -2 * 1.1 = -2.2
    logp = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_()
    loss, _ = clipped_surrogate(logp, torch.zeros(1, 2), torch.tensor([2.0]), 0.2, 0.28)
    loss.sum().backward()
    assert torch.allclose(logp.grad, torch.tensor([[0.0, -2.2]]), atol=1e-5)


def test_kl_estimators_by_hand() -> None:
    # pi = 0.5, ref = 0.25 on the sampled token: log(ref/pi) = log 0.5 = -0.69315
    lp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert KL_ESTIMATORS["k1"](lp, ref).item() == pytest.approx(0.69315, abs=1e-4)  # -log(ref/pi)
    assert KL_ESTIMATORS["k2"](lp, ref).item() == pytest.approx(0.5 * 0.69315**2, abs=1e-4)  # 0.24023
    # k3 = ref/pi - log(ref/pi) - 1 = 0.5 + 0.69315 - 1 = 0.19315
    assert KL_ESTIMATORS["k3"](lp, ref).item() == pytest.approx(0.19315, abs=1e-4)


def test_kl_estimators_against_exact_kl() -> None:
    """E_{x~pi}[k1] = E_{x~pi}[k3] = KL(pi || ref) exactly; k2 agrees to second order for
    nearby distributions. The expectation is taken exactly, summing over the vocabulary."""
    torch.manual_seed(0)
    logits_pi, logits_ref = torch.randn(4, 16), torch.randn(4, 16)
    for scale, k2_tol in ((1.0, None), (0.05, 0.05)):
        lp = torch.log_softmax(logits_pi * scale, -1)
        lr = torch.log_softmax(logits_ref * scale, -1)
        exact = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=lp),
                                                  torch.distributions.Categorical(logits=lr))
        for name in ("k1", "k3"):
            expect = (lp.exp() * KL_ESTIMATORS[name](lp, lr)).sum(-1)
            assert torch.allclose(expect, exact, atol=1e-5), name
        if k2_tol:
            expect = (lp.exp() * KL_ESTIMATORS["k2"](lp, lr)).sum(-1)
            assert torch.allclose(expect, exact, rtol=k2_tol)
    # k3 is never negative, k1 can be
    assert (KL_ESTIMATORS["k3"](lp, lr) >= 0).all() and (KL_ESTIMATORS["k1"](lp, lr) < 0).any()


def test_loss_aggregations_by_hand() -> None:
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    # token mean: (1+2+3+4) / 4 tokens = 2.5
    assert LOSS_AGG["token_mean"](loss, mask, 3).item() == pytest.approx(2.5)
    # sequence mean: mean(6/3, 4/1) = (2 + 4) / 2 = 3
    assert LOSS_AGG["sequence_mean"](loss, mask, 3).item() == pytest.approx(3.0)
    # constant (Dr. GRPO): 10 / (B=2 * max_tokens=3) = 1.66667
    assert LOSS_AGG["constant"](loss, mask, 3).item() == pytest.approx(10 / 6)
    # a fully masked sequence counts for nothing in sequence_mean: mean(6/3) = 2
    assert LOSS_AGG["sequence_mean"](loss, torch.tensor([[1.0, 1, 1], [0, 0, 0]]), 3).item() == pytest.approx(2.0)


@pytest.mark.parametrize("agg", ["token_mean", "sequence_mean", "constant"])
def test_micro_batches_add_up_to_the_big_batch(agg: str) -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 5, requires_grad=True)  # stands in for the policy's logprobs
    old, adv = torch.randn(6, 5), torch.randn(6)
    mask = (torch.rand(6, 5) > 0.3).float()
    mask[2] = 0
    full, _ = policy_loss(w, old, adv, mask, agg=agg, max_tokens=5)
    (g_full,) = torch.autograd.grad(full, w)
    norm = batch_normaliser(agg, mask, 5)
    parts = [policy_loss(w[s:s + 2], old[s:s + 2], adv[s:s + 2], mask[s:s + 2], agg=agg, max_tokens=5,
                         norm=norm)[0] for s in range(0, 6, 2)]
    (g_acc,) = torch.autograd.grad(sum(parts), w)
    assert torch.allclose(full, sum(parts), atol=1e-6) and torch.allclose(g_full, g_acc, atol=1e-6)
    if agg == "token_mean":
        # The naive way (each micro-batch its own mean, then averaged) is a different
        # update when micro-batches hold different numbers of tokens.
        naive = sum(policy_loss(w[s:s + 2], old[s:s + 2], adv[s:s + 2], mask[s:s + 2], agg=agg)[0]
                    for s in range(0, 6, 2)) / 3
        assert not torch.allclose(full, naive, atol=1e-3)


def test_kl_term_by_hand_and_needs_reference() -> None:
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="reference"):
        policy_loss(x, x, torch.ones(1), torch.ones(1, 2), beta=0.1)
    # ratio 1, A = 0: the surrogate is 0. ref = pi - 1 in log space: k3 = e^-1 - (-1) - 1
    # = 0.36788 per token; token mean 0.36788; loss = beta * 0.36788 = 0.036788
    loss, stats = policy_loss(x, x, torch.zeros(1), torch.ones(1, 2), beta=0.1, ref_logp_B_T=x - 1.0)
    assert loss.item() == pytest.approx(0.1 * math.exp(-1), abs=1e-6)
    assert stats["kl"] == pytest.approx(math.exp(-1), abs=1e-6)
    # k1 instead: pi - ref = 1 per token -> 0.1
    loss, _ = policy_loss(x, x, torch.zeros(1), torch.ones(1, 2), beta=0.1, ref_logp_B_T=x - 1.0,
                          kl_estimator="k1")
    assert loss.item() == pytest.approx(0.1, abs=1e-6)


def test_policy_loss_on_policy_is_minus_mean_advantage() -> None:
    # ratio 1 everywhere: token-mean loss = -(sum_b A_b * n_b) / sum n_b
    # A = [1, -0.5], tokens [2, 1] -> -(2 - 0.5) / 3 = -0.5
    lp = torch.zeros(2, 2)
    loss, st = policy_loss(lp, lp, torch.tensor([1.0, -0.5]), torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    assert loss.item() == pytest.approx(-0.5) and st["clip_frac"] == 0.0
