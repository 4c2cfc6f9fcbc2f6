"""The "reasoning_gym" verifier: non-numeric reasoning-gym tasks scored by their own
scorer, directly and through the real reward server (session fixture)."""

from __future__ import annotations

import pytest

from rlvr.data import load_problems
from rlvr.reward_client import SyncRewardClient
from verifiers.base import ScoreItem
from verifiers.reasoning_gym_verifier import ReasoningGymVerifier, extract


def _spell_backward(n: int = 8):
    ps = load_problems("rg:spell_backward", split="test", limit=n, seed=3)
    assert all(p.verifier == "reasoning_gym" for p in ps)
    return ps


def test_extraction_takes_the_last_candidate() -> None:
    assert extract("<answer>a</answer> then <answer> b </answer>") == ("b", "answer_tag")
    assert extract(r"x \boxed{1} y \boxed{\frac{1}{2}}") == (r"\frac{1}{2}", "boxed")
    assert extract("<answer>tag</answer> \\boxed{box}") == ("tag", "answer_tag")
    assert extract("no answer here") == (None, None)


def test_right_wrong_partial_and_missing_answers() -> None:
    v = ReasoningGymVerifier()
    for p in _spell_backward():
        gold = p.reference["entry"]["answer"]
        right = v.verify(ScoreItem("reasoning_gym", f"so <answer>{gold}</answer>", p.reference))
        assert (right.status, right.reward, right.info["extracted"]) == ("ok", 1.0, gold)
        # spell_backward gives per-position credit: one wrong last letter of L -> (L-1)/L
        if len(gold) > 1:
            off = gold[:-1] + ("a" if gold[-1] != "a" else "b")
            r = v.verify(ScoreItem("reasoning_gym", rf"\boxed{{{off}}}", p.reference))
            assert r.reward == pytest.approx((len(gold) - 1) / len(gold))
        none = v.verify(ScoreItem("reasoning_gym", gold, p.reference))  # not tagged
        assert (none.status, none.reward, none.info["extracted"]) == ("ok", 0.0, None)


def test_bad_references_are_errors_not_zeros() -> None:
    v = ReasoningGymVerifier()
    bad = v.verify(ScoreItem("reasoning_gym", "<answer>x</answer>", "x"))
    assert (bad.status, bad.reward) == ("error", None)
    unknown = v.verify(ScoreItem("reasoning_gym", "<answer>x</answer>",
                                 {"task": "no_such_task", "entry": {"answer": "x"}}))
    assert (unknown.status, unknown.reward) == ("error", None)
    assert "no_such_task" in unknown.info["message"]


def test_through_the_reward_server(reward_server_url: str) -> None:
    ps = _spell_backward(4)
    items = [{"verifier": p.verifier, "completion": f"<answer>{p.reference['entry']['answer']}</answer>",
              "reference": p.reference} for p in ps]
    items.append({"verifier": "reasoning_gym", "completion": "<answer>x</answer>", "reference": 5})
    with SyncRewardClient(reward_server_url) as client:
        res = client.score(items)
    assert [r.reward for r in res[:4]] == [1.0] * 4
    assert (res[4].status, res[4].reward) == ("error", None)
