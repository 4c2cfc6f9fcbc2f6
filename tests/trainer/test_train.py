"""The GRPO loop end to end on the session's one vLLM engine and reward server: it
learns, it masks unscored items, micro-batches add up to one big batch, and a run
stopped and resumed ends with the same weights as one that was not."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rlvr.config import load_config
from rlvr.data import arithmetic_demonstrations
from rlvr.logging_utils import read_metrics
from rlvr.model import load_policy, load_tokenizer
from rlvr.reward_client import SyncRewardClient
from rlvr.sft import sft
from rlvr.train import batch_logprobs, collate, grpo_update, train
from rlvr.types import Completion


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: str) -> str:
    """The tiny model after a short noisy warm start (forgets the carry 60% of the time):
    right on some problems, wrong on others, so GRPO groups carry signal."""
    from rlvr.checkpoint import save_model

    model, tok = load_policy(tiny_model_dir), load_tokenizer(tiny_model_dir)
    sft(model, tok, arithmetic_demonstrations(2000, forget_carry_p=0.6), steps=400, batch_size=64,
        lr=3e-3, log_every=0)
    return str(save_model(model, tok, tmp_path_factory.mktemp("sft") / "model"))


def _cfg(out: Path, model: str, *extra: str):
    return load_config(None, [f"out_dir='{out}'", f"model.path='{model}'", "eval_every=0",
                              "tensorboard=false", *extra])


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.vllm
def test_grpo_learns_after_a_noisy_warm_start(tmp_path, sft_dir, vllm_sampler, reward_server_url) -> None:
    init = _params(load_policy(sft_dir))
    cfg = _cfg(tmp_path / "run", sft_dir, "steps=12", "data.eval_size=100", "sampling.max_tokens=40",
               "optim.lr=1e-4", "optim.micro_batch=128")
    with SyncRewardClient(reward_server_url) as client:
        out = train(cfg, client=client, sampler=vllm_sampler)
    # Parameters changed; train reward and held-out greedy accuracy rose.
    assert any(not torch.equal(a, b) for a, b in zip(init, out["policy"].parameters(), strict=True))
    rewards = [h["reward"] for h in out["history"]]
    assert len(rewards) == 12 and sum(rewards[-4:]) / 4 > sum(rewards[:4]) / 4 + 0.05, rewards
    before, after = out["evals"][0]["accuracy"], out["evals"][-1]["accuracy"]
    assert after >= before + 0.15, (before, after)
    # Outputs: metrics, resolved config (reads back equal), final model in HF format.
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert sum("reward" in r for r in rows) == 12 and sum("eval/accuracy" in r for r in rows) == 2
    assert load_config(tmp_path / "run" / "config.toml") == cfg
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
    assert load_tokenizer(tmp_path / "run" / "final")("7+8")["input_ids"]


@pytest.mark.vllm
def test_unscored_items_are_masked_and_counted(tmp_path, tiny_model_dir, vllm_sampler,
                                               reward_server_url) -> None:
    # Every problem names a verifier the server does not have: every reward is null, so
    # nothing may enter the loss. A trainer reading null as 0 would still update: with
    # all-equal rewards the advantage is 0, but the AdamW step count and the logged
    # numbers would say otherwise; here the weights must be bit-identical.
    cfg = _cfg(tmp_path / "run", tiny_model_dir, "steps=2", "data.eval_size=8",
               "data.verifier='no-such-verifier'", "sampling.prompts_per_step=4",
               "sampling.group_size=4", "sampling.max_tokens=8")
    init = _params(load_policy(tiny_model_dir))
    with SyncRewardClient(reward_server_url) as client:
        out = train(cfg, client=client, sampler=vllm_sampler)
    h = out["history"]
    assert [x["unscored"] for x in h] == [16, 16] and [x["scored_in_loss"] for x in h] == [0, 0]
    assert math.isnan(h[0]["reward"]) and out["evals"][0]["unscored"] == 8
    assert all(torch.equal(a, b) for a, b in zip(init, out["policy"].parameters(), strict=True))
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[1]["reward"] is None  # null, not 0


def test_grad_accumulation_equals_one_big_batch(tiny_model_dir) -> None:
    # 12 sequences of different prompt and completion lengths, some fully masked. The
    # gradient accumulated over micro-batches of 5 (each cut to its own length) must
    # equal the one-batch gradient, for every loss aggregation.
    tok = load_tokenizer(tiny_model_dir)
    g = torch.Generator().manual_seed(0)
    samples = []
    for i in range(12):
        prompt = tok(f"Q: {i * 7}+{i}\nA: ")["input_ids"]
        comp = torch.randint(3, 90, (int(torch.randint(1, 20, (1,), generator=g)),), generator=g).tolist()
        samples.append(Completion("", prompt, comp, [-2.0] * len(comp), "stop"))
    adv_B = torch.randn(12, generator=g)
    adv_B[3] = 0.0
    batch = collate(samples, tok.pad_token_id)
    batch["mask"][[3, 7]] = 0.0
    # old logprobs = the model's own (ratio 1, nothing clipped), perturbed so that some
    # ratios fall outside the clip range
    batch["old_logp"] = batch_logprobs(load_policy(tiny_model_dir), batch, 12, 1.0)
    batch["old_logp"] += 0.3 * torch.randn(batch["old_logp"].shape, generator=g)
    for agg in ("token_mean", "sequence_mean", "constant"):
        grads = []
        for mb in (12, 5):
            cfg = load_config(None, [f"optim.micro_batch={mb}", f"algo.loss_agg='{agg}'",
                                     "optim.grad_clip=1e9", "sampling.max_tokens=20"])
            policy = load_policy(tiny_model_dir)
            opt = torch.optim.SGD(policy.parameters(), lr=0.0)
            grpo_update(policy, opt, batch, adv_B, cfg)
            grads.append(torch.cat([p.grad.flatten() for p in policy.parameters()]))
        assert grads[0].abs().max() > 1e-3  # a real gradient
        assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7), (agg, (grads[0] - grads[1]).abs().max())


@pytest.mark.vllm
def test_stopped_and_resumed_run_ends_with_the_same_weights(tmp_path, sft_dir, vllm_sampler,
                                                            reward_server_url) -> None:
    # Cosine schedule with warmup, two epochs per batch (ratio against old logprobs),
    # accumulation over micro-batches: every piece of state a resume must restore.
    extra = ("steps=4", "data.eval_size=8", "sampling.prompts_per_step=4", "sampling.group_size=4",
             "sampling.max_tokens=40", "optim.lr=1e-3", "optim.schedule='cosine'",
             "optim.warmup_steps=1", "optim.micro_batch=6", "algo.epochs_per_batch=2")
    with SyncRewardClient(reward_server_url) as client:
        full = train(_cfg(tmp_path / "a", sft_dir, *extra), client=client, sampler=vllm_sampler)
        cfg_b = _cfg(tmp_path / "b", sft_dir, *extra)
        half = train(cfg_b, client=client, sampler=vllm_sampler, stop_after=2)
        w_half = _params(half["policy"])
        resumed = train(cfg_b, client=client, sampler=vllm_sampler, resume=True)
    assert [h["step"] for h in resumed["history"]] == [1, 2, 3, 4]
    assert [h["reward"] for h in resumed["history"]] == [h["reward"] for h in full["history"]]
    a, b = _params(full["policy"]), _params(resumed["policy"])
    assert any(not torch.equal(x, y) for x, y in zip(w_half, b, strict=True))  # steps 3-4 did something
    diff = max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))
    print(f"resumed vs uninterrupted: max abs weight difference {diff:.3g}")
    assert diff <= 1e-6, diff


def test_hf_backend_runs_the_same_loop(tmp_path, tiny_model_dir, reward_server_url) -> None:
    # The transformers fallback (no vLLM): the sampler shares the policy object.
    cfg = _cfg(tmp_path / "run", tiny_model_dir, "steps=2", "data.eval_size=4", "sampling.backend='hf'",
               "sampling.prompts_per_step=2", "sampling.group_size=2", "sampling.max_tokens=6")
    with SyncRewardClient(reward_server_url) as client:
        out = train(cfg, client=client)
    assert [h["step"] for h in out["history"]] == [1, 2] and out["history"][0]["unscored"] == 0
