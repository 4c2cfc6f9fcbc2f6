"""GRPO end to end on the shared engine and server: it learns, and it masks unscored items."""

from __future__ import annotations

import json
import math

from rlvr.config import load_config
from rlvr.data import arithmetic_demonstrations
from rlvr.model import load_policy, load_tokenizer, save_tokenizer
from rlvr.reward_client import SyncRewardClient
from rlvr.sft import sft
from rlvr.train import train


def test_grpo_learns_after_a_noisy_warm_start(tmp_path, tiny_model_dir, vllm_sampler, reward_server_url) -> None:
    # Warm start that forgets the carry most of the time (as in the demo, but shorter).
    model, tok = load_policy(tiny_model_dir), load_tokenizer(tiny_model_dir)
    sft(model, tok, arithmetic_demonstrations(2000, forget_carry_p=0.6), steps=400, batch_size=64, lr=3e-3, log_every=0)
    sft_dir = tmp_path / "sft"
    model.save_pretrained(sft_dir)
    save_tokenizer(tok, sft_dir)
    init = [p.detach().clone() for p in model.parameters()]
    cfg = load_config(None, [f"out_dir='{tmp_path / 'run'}'", f"model.path='{sft_dir}'", "steps=12",
                             "eval_every=0", "data.eval_size=100", "sampling.max_tokens=40",
                             "optim.lr=1e-4", "tensorboard=false"])
    with SyncRewardClient(reward_server_url) as client:
        out = train(cfg, client=client, sampler=vllm_sampler)
    before, after = out["evals"][0]["accuracy"], out["evals"][-1]["accuracy"]
    assert after >= before + 0.15, (before, after)
    assert any(not (a == b).all() for a, b in zip(init, out["policy"].parameters(), strict=True))
    lines = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl")]
    assert sum("reward" in x for x in lines) == 12
    assert (tmp_path / "run" / "final" / "config.json").exists()


def test_unscored_items_are_masked_and_counted(tmp_path, tiny_model_dir, vllm_sampler, reward_server_url) -> None:
    # Every problem names a verifier the server does not have: all rewards are null, so
    # nothing may enter the loss (a trainer treating null as 0 would still update).
    cfg = load_config(None, [f"out_dir='{tmp_path / 'run'}'", f"model.path='{tiny_model_dir}'", "steps=2",
                             "eval_every=0", "data.eval_size=8", "data.verifier='no-such-verifier'",
                             "sampling.prompts_per_step=4", "sampling.group_size=4", "sampling.max_tokens=8",
                             "tensorboard=false"])
    init = [p.detach().clone() for p in load_policy(tiny_model_dir).parameters()]
    with SyncRewardClient(reward_server_url) as client:
        out = train(cfg, client=client, sampler=vllm_sampler)
    h = out["history"]
    assert [x["unscored"] for x in h] == [16, 16] and [x["scored_in_loss"] for x in h] == [0, 0]
    assert math.isnan(h[0]["reward"]) and out["evals"][0]["unscored"] == 8
    assert all((a == b).all() for a, b in zip(init, out["policy"].parameters(), strict=True))
