"""End-to-end evaluation on the shared engine and the real reward server."""

from __future__ import annotations

import json

import pytest

from rlvr.eval import evaluate, main, write_outputs
from rlvr.model import load_policy
from rlvr.passk import pass_at_k
from rlvr.reward_client import SyncRewardClient
from rlvr.types import Problem, SampleParams


def test_end_to_end_on_the_tiny_model(tmp_path, tiny_model_dir, vllm_sampler, reward_server_url) -> None:
    vllm_sampler.sync_weights(load_policy(tiny_model_dir).state_dict())
    from rlvr.data import load_problems

    problems = load_problems("arithmetic", limit=4)
    # one problem whose verifier does not exist: its samples are unscored, not wrong
    problems.append(Problem("bad", problems[0].prompt, "1", verifier="no-such-verifier"))
    with SyncRewardClient(reward_server_url) as client:
        rep = evaluate(vllm_sampler, problems, n=4, ks=[1, 2, 4], params=SampleParams(max_tokens=16),
                       score_fn=client.score)
    write_outputs(rep, tmp_path, [1, 2, 4])
    rows = [json.loads(x) for x in open(tmp_path / "problems.jsonl")]
    assert len(rows) == 5 and all(len(r["samples"]) == 4 and 0 <= r["c"] <= r["n"] for r in rows)
    assert rows[-1]["n"] == 0 and rows[-1]["unscored"] == 4
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["unscored_samples"] == 4 and s["skipped@1"] == 1
    assert s["pass@1"] <= s["pass@2"] <= s["pass@4"]
    scored = [r for r in rows if r["n"] > 0]
    assert s["pass@4"] == pytest.approx(sum(pass_at_k(r["n"], r["c"], 4) for r in scored) / 4)
    assert s["avg@n"] == pytest.approx(sum(r["c"] / r["n"] for r in scored) / 4)
    assert "maj@4" not in s  # mixed verifiers: no majority vote
    assert (tmp_path / "pass_at_k.png").stat().st_size > 0 and "pass@4" in (tmp_path / "summary.md").read_text()


class _FakeSampler:
    """Stands in for the engine in a pure-function test of the bookkeeping."""

    def generate(self, prompts, n, params):
        from rlvr.types import Completion

        texts = ["\\boxed{2}", "\\boxed{2}", "\\boxed{3}", "\\boxed{2.0}"]
        return [[Completion(t, [], [], None, "stop") for t in texts[:n]] for _ in prompts]


def test_maj_and_pass_on_hand_built_answers(reward_server_url) -> None:
    probs = [Problem("p", "x", "2")]
    with SyncRewardClient(reward_server_url) as client:
        rep = evaluate(_FakeSampler(), probs, n=4, ks=[1, 2, 4], params=SampleParams(), score_fn=client.score)
    s = rep.summary
    # 3 of 4 correct (2, 2, 2.0 against gold 2)
    assert rep.problems[0]["c"] == 3 and s["pass@1"] == pytest.approx(0.75)
    assert s["pass@2"] == pytest.approx(1.0) and s["maj@4"] == 1.0
    # maj@2 over the 6 pairs: only {3, x} pairs where 3 is first seen lose: (2,3) index pairs
    # (0,2): 2 first -> right; (1,2): right; (2,3): 3 first -> wrong => 5/6
    assert s["maj@2"] == pytest.approx(5 / 6)


def test_cli_rejects_k_above_n(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--model", "x", "--dataset", "gsm8k", "--n", "4", "--k", "1,8"])
    assert "between 1 and --n 4" in capsys.readouterr().err
