"""Bradley-Terry reward model: loss against hand-computed numbers, learning on the
tiny model, save/load round trip, and the "rm" loop verifier."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
import torch

from rlvr.reward_model import (
    RMConfig,
    RMDataConfig,
    arithmetic_preference_pairs,
    bt_loss,
    load_reward_model,
    main,
    pairwise_accuracy,
    rm_text,
    score_texts,
)
from verifiers.base import ScoreItem
from verifiers.rm_verifier import RewardModelVerifier


def test_bt_loss_matches_hand_computed_values() -> None:
    # -log sigmoid(d) = log(1 + e^-d)
    # d = 2 - 0 = 2:  log(1 + e^-2)   = 0.126928
    # d = 0 - 1 = -1: log(1 + e^1)    = 1.313262
    # d = 0:          log 2           = 0.693147
    rc = torch.tensor([2.0, 0.0, 0.5])
    rr = torch.tensor([0.0, 1.0, 0.5])
    assert float(bt_loss(rc, rr)) == pytest.approx((0.126928 + 1.313262 + 0.693147) / 3, abs=1e-5)
    # margin 1: d = 2 - 0 - 1 = 1 -> log(1 + e^-1) = 0.313262
    assert float(bt_loss(rc[:1], rr[:1], 1.0)) == pytest.approx(0.313262, abs=1e-6)
    # per-pair margins [1, 0, 0.5]: d = [1, -1, -0.5] -> [0.313262, 1.313262, 0.974077]
    m = torch.tensor([1.0, 0.0, 0.5])
    assert float(bt_loss(rc, rr, m)) == pytest.approx((0.313262 + 1.313262 + 0.974077) / 3, abs=1e-5)
    # stable far in the tail: d = -100 -> loss 100 (log(sigmoid) would give inf)
    assert float(bt_loss(torch.tensor([0.0]), torch.tensor([100.0]))) == pytest.approx(100.0)
    # gradient w.r.t. r_chosen of one pair is -(1 - sigmoid(d)) = -sigmoid(-d); d = 2 -> -0.119203
    rc1 = torch.tensor([2.0], requires_grad=True)
    bt_loss(rc1, torch.tensor([0.0])).backward()
    assert float(rc1.grad[0]) == pytest.approx(-0.119203, abs=1e-6)


def test_pairwise_accuracy_counts_ties_as_half() -> None:
    rc = torch.tensor([1.0, 0.0, 2.0, 3.0])
    rr = torch.tensor([0.0, 1.0, 2.0, 1.0])
    assert pairwise_accuracy(rc, rr) == pytest.approx((1 + 0 + 0.5 + 1) / 4)


def test_generated_pairs_are_verified_and_disjoint() -> None:
    train = arithmetic_preference_pairs(50, split="train", kinds=("no_answer", "wrong_box", "forget_carry"))
    test = arithmetic_preference_pairs(50, split="test", kinds=("no_answer", "wrong_box", "forget_carry"))
    assert {p["kind"] for p in train} == {"no_answer", "wrong_box", "forget_carry"}
    assert not {p["prompt"] for p in train} & {p["prompt"] for p in test}
    p = next(p for p in train if p["kind"] == "wrong_box")
    # same work, different boxed number
    assert p["chosen"].split("\\boxed")[0] == p["rejected"].split("\\boxed")[0]
    assert p["chosen"] != p["rejected"]


def _train(tmp: Path, name: str, train: str, eval_: str, steps: int) -> tuple[Path, list[dict]]:
    toml = tmp / f"{name}.toml"
    toml.write_text(
        f'name = "{name}"\nout_dir = "{tmp / name}"\nsteps = {steps}\nbatch_size = 16\n'
        f'lr = 3e-3\nmax_length = 64\neval_every = 0\nnum_threads = 1\n'
        f'[data]\ntrain = "{train}"\neval = "{eval_}"\ntrain_size = 200\neval_size = 100\n'
    )
    assert main([str(toml)]) == 0  # the `rlvr train-rm CONFIG` entry point
    rows = [json.loads(x) for x in (tmp / name / "metrics.jsonl").read_text().splitlines()]
    return tmp / name / "model", rows


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], list[dict]]:
    """Two short trainings on the tiny model: the verified preference (correct work with
    a boxed answer over the same work cut before the answer), and the same pairs
    flipped, read from JSONL files. A random initial model has some fixed bias between
    the two kinds of text, so its accuracy on one direction is exactly 1 minus its
    accuracy on the other; reaching >= 0.95 on BOTH shows learning, not a bias."""
    tmp = tmp_path_factory.mktemp("rm")
    pairs = {s: arithmetic_preference_pairs(200 if s == "train" else 100, split=s,
                                            kinds=("no_answer",)) for s in ("train", "test")}
    for s, ps in pairs.items():
        with open(tmp / f"flip_{s}.jsonl", "w") as f:
            for p in ps:
                f.write(json.dumps({"prompt": p["prompt"], "chosen": p["rejected"],
                                    "rejected": p["chosen"]}) + "\n")
        with open(tmp / f"pairs_{s}.jsonl", "w") as f:
            for p in ps:
                f.write(json.dumps(p) + "\n")
    model_dir, rows = _train(tmp, "rm", str(tmp / "pairs_train.jsonl"),
                             str(tmp / "pairs_test.jsonl"), steps=15)
    _, flip_rows = _train(tmp, "flip", str(tmp / "flip_train.jsonl"),
                          str(tmp / "flip_test.jsonl"), steps=15)
    return model_dir, rows, flip_rows


def test_training_learns_the_preference_in_both_directions(trained_rm) -> None:
    _, rows, flip_rows = trained_rm
    acc0, flip0 = rows[0]["eval/accuracy"], flip_rows[0]["eval/accuracy"]
    # same initial model (seed 0), pairs swapped: accuracies are complementary
    assert acc0 + flip0 == pytest.approx(1.0, abs=1e-6)
    assert rows[-1]["eval/accuracy"] >= 0.95
    assert flip_rows[-1]["eval/accuracy"] >= 0.95
    assert rows[-1]["eval/loss"] < 0.3 < math.log(2)  # chance level is log 2 = 0.693


def test_save_load_round_trip_gives_identical_scores(trained_rm) -> None:
    model_dir, rows, _ = trained_rm
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForSequenceClassification"] and len(cfg["id2label"]) == 1
    stats = json.loads((model_dir / "rm_stats.json").read_text())
    assert stats["eval_accuracy"] == rows[-1]["eval/accuracy"] and stats["std"] > 0
    m1, tok1 = load_reward_model(model_dir)
    m2, tok2 = load_reward_model(model_dir)
    texts = [rm_text("Q: 12+34\nA: ", "2+4=6 1+3=4 \\boxed{46}", tok1.eos_token),
             rm_text("Q: 12+34\nA: ", "2+4=6 1+3=4", tok1.eos_token),
             rm_text(None, "x", tok1.eos_token)]
    a = score_texts(m1, tok1, texts)
    b = score_texts(m2, tok2, texts)
    assert torch.equal(a, b)
    # right padding + causal attention: a text's score does not depend on its batch
    singles = torch.cat([score_texts(m1, tok1, [t]) for t in texts])
    assert torch.allclose(a, singles, atol=1e-5)
    assert float(a[0]) > float(a[1])  # the trained preference survives the round trip


async def test_rm_verifier_batches_normalises_and_fails_as_data(trained_rm, tmp_path: Path) -> None:
    model_dir, _, _ = trained_rm
    stats = json.loads((model_dir / "rm_stats.json").read_text())
    m, tok = load_reward_model(model_dir)
    prompt = "Q: 23+45\nA: "
    comps = ["3+5=8 2+4=6 \\boxed{68}", "3+5=8 2+4=6", "3+5=8 2+4=6 \\boxed{69}"]
    raw = score_texts(m, tok, [rm_text(prompt, c, tok.eos_token) for c in comps]).tolist()

    v = RewardModelVerifier(str(model_dir), batch_size=4)
    items = [ScoreItem("rm", c, None, prompt) for c in comps]
    # two concurrent requests (3 + 3 items) coalesce: 6 items at batch_size 4 -> 2 passes
    out1, out2 = await asyncio.gather(v.averify_batch(items), v.averify_batch(items))
    assert v.forward_passes == 2
    for out in (out1, out2):
        assert [r.status for r in out] == ["ok"] * 3
        assert [r.reward for r in out] == pytest.approx(raw, abs=1e-5)
    assert out1[0].reward > out1[1].reward

    sig = RewardModelVerifier(str(model_dir), normalize="sigmoid")
    z = RewardModelVerifier(str(model_dir), normalize="zscore")
    z_cfg = RewardModelVerifier(str(model_dir), normalize="zscore", mean=1.0, std=2.0)
    r_sig, r_z, r_zc = [await x.averify_batch(items[:1]) for x in (sig, z, z_cfg)]
    assert r_sig[0].reward == pytest.approx(1 / (1 + math.exp(-raw[0])), abs=1e-6)
    assert r_z[0].reward == pytest.approx((raw[0] - stats["mean"]) / stats["std"], abs=1e-5)
    assert r_zc[0].reward == pytest.approx((raw[0] - 1.0) / 2.0, abs=1e-5)
    assert r_zc[0].info["raw"] == pytest.approx(raw[0], abs=1e-5)

    missing = RewardModelVerifier(str(tmp_path / "no_model_here"))
    bad = await missing.averify_batch(items[:2])
    assert [r.status for r in bad] == ["error", "error"]
    assert [r.reward for r in bad] == [None, None]
    assert "reward model failed" in bad[0].info["message"]
    with pytest.raises(ValueError):
        RewardModelVerifier(str(model_dir), normalize="tanh")


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError):
        RMConfig.model_validate({"stpes": 3})
    assert RMDataConfig().arithmetic_kinds == ["no_answer", "wrong_box"]
