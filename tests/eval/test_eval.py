"""`evaluate` and `rlvr eval`: bookkeeping by hand, then end to end on the session's one
vLLM engine and the real reward server, then the CLI (transformers backend, its own
loopback server).

The end-to-end tests need completions whose correctness is known in advance, which a
randomly initialised model cannot give. `_chain_model` therefore sets the tiny demo
model's weights by hand so that it is an exact Markov chain over characters: whatever
the prompt (ending in a character outside the chain), it writes `\\boxed{` then `4` or
`7` with probability 1/2 each, then `}` and EOS. It is the same architecture run by the
same engine; only the weights are chosen. Each problem's c can then be counted from
the raw completions independently of the verifier and of `rlvr.eval`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from rlvr.eval import (
    EvalReport,
    ProblemResult,
    SampleResult,
    canonical_answer,
    evaluate,
    main,
    summarize,
    write_outputs,
)
from rlvr.passk import pass_at_k
from rlvr.reward_client import SyncRewardClient
from rlvr.types import Completion, Problem, SampleParams

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# ----------------------------------------------------------------------------- pure parts


def _s(status: str = "ok", correct: bool | None = None, vote: str | None = None) -> SampleResult:
    reward = None if status != "ok" else float(bool(correct))
    return SampleResult("", status, reward, correct if status == "ok" else None, vote, vote)


def _hand_built() -> list[ProblemResult]:
    return [
        # n=3 scored, c=2, one timeout
        ProblemResult("p1", "math", "4", [_s(correct=True, vote="4"), _s(correct=False, vote="5"),
                                          _s("timeout"), _s(correct=True, vote="4")], votes=True),
        # nothing scored
        ProblemResult("p2", "math", "4", [_s("error")] * 4, votes=False),
        # n=4, c=0
        ProblemResult("p3", "math", "4", [_s(correct=False, vote=v) for v in "5656"], votes=True),
        # n=2, c=1, two rejected
        ProblemResult("p4", "math", "4", [_s(correct=True, vote="4"), _s(correct=False, vote="5"),
                                          _s("rejected"), _s("rejected")], votes=True),
    ]


def test_summary_leaves_unscored_samples_out_and_counts_them() -> None:
    s = summarize(_hand_built(), [1, 2, 3], resamples=200)
    # avg@n over the 3 problems with scored samples: (2/3 + 0 + 1/2) / 3 = 7/18
    assert s["avg@n"] == pytest.approx(7 / 18) and s["pass@1"] == pytest.approx(7 / 18)
    # counting unscored as wrong would give (2/4 + 0 + 0 + 1/4) / 4 = 3/16: not what we do
    assert s["avg@n"] != pytest.approx(3 / 16)
    # pass@2: p1 n-c=1 < 2 -> 1; p3 -> 0; p4 n-c=1 < 2 -> 1  => 2/3
    assert s["pass@2"] == pytest.approx(2 / 3)
    # pass@3: p4 has only 2 scored samples and is left out: (1 + 0) / 2
    assert s["pass@3"] == pytest.approx(1 / 2) and s["coverage"]["pass@3"] == 2
    assert s["coverage"]["pass@1"] == 3
    assert s["unscored_samples"] == 7
    assert s["unscored_by_status"] == {"error": 4, "rejected": 2, "timeout": 1}
    assert s["problems_without_scored_samples"] == 1 and s["problems_scored"] == 3
    assert (s["samples"], s["samples_scored"], s["samples_correct"]) == (16, 9, 3)
    # maj@1 equals pass@1; maj@3 over p1 (4,5,4 -> "4" right) and p3 (all wrong) = 1/2
    assert s["maj@1"] == pytest.approx(7 / 18) and s["maj@3"] == pytest.approx(1 / 2)
    # maj@2: p1 pairs (4,5) tie -> "4" seen first, right; (4,4) right; (5,4) -> "4": 1;
    # p3 0; p4 (4,5) tie -> "4": 1  => 2/3
    assert s["maj@2"] == pytest.approx(2 / 3)
    for name in ("avg@n", "pass@1", "pass@2", "pass@3", "maj@2"):
        lo, hi = s[f"{name}_ci"]
        assert lo - 1e-12 <= s[name] <= hi + 1e-12  # to the last float bit


def test_canonical_answer_lets_equal_answers_vote_together() -> None:
    assert canonical_answer({"answer": "0.5", "parsed_answer": ["1/2", "\\frac{1}{2}"]}) == "1/2"
    assert canonical_answer({"answer": "\\frac{1}{2}"}) == "1/2"
    assert canonical_answer({"answer": "\\dfrac{-3}{6}"}) == "-1/2"
    assert canonical_answer({"answer": "0.50"}) == "1/2"
    assert canonical_answer({"answer": "2.0"}) == canonical_answer({"answer": "2"}) == "2"
    assert canonical_answer({"answer": "1,000"}) == "1000"
    assert canonical_answer({"answer": "$4$."}) == "4"
    assert canonical_answer({"answer": " x + 1 "}) == "x+1"
    assert canonical_answer({"answer": "\\left(1, 2\\right)"}) == "(1,2)"
    assert canonical_answer({"answer": None, "source": "none"}) is None
    assert canonical_answer({}) is None


class _ScriptedSampler:
    """Returns fixed completions: the engine cannot be told what to write, and this test
    is about the bookkeeping of real verdicts from the real server."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.calls: list[tuple[int, SampleParams]] = []

    def generate(self, prompts_P: list[str], n: int, params: SampleParams) -> list[list[Completion]]:
        self.calls.append((n, params))
        return [[Completion(t, [1], [2], None, "stop") for t in self.texts[:n]] for _ in prompts_P]

    def sync_weights(self, state_dict: Any) -> None:
        pass


def test_hand_built_completions_scored_by_the_real_server(reward_server_url: str) -> None:
    texts = ["\\boxed{2}", "\\boxed{3}", "\\boxed{2.0}", "I don't know", "\\boxed{3}", "\\boxed{3}"]
    sampler = _ScriptedSampler(texts)
    problems = [Problem("two", "1+1?", "2"), Problem("gone", "1+1?", "2", verifier="no-such-verifier")]
    with SyncRewardClient(reward_server_url) as client:
        rep = evaluate(sampler, problems, n=6, ks=[6, 1, 2], params=SampleParams(),
                       score_fn=client.score, seed=7, resamples=100)
    assert sampler.calls == [(6, SampleParams(seed=7))]  # one call, the seed filled in
    two, gone = rep.problems
    assert [x.correct for x in two.samples] == [True, False, True, False, False, False]
    assert [x.vote for x in two.samples] == ["2", "3", "2", None, "3", "3"]
    assert two.samples[3].status == "ok" and two.samples[3].reward == 0.0  # no answer: wrong
    assert (two.n, two.c, gone.n, gone.unscored) == (6, 2, 0, 6)
    assert all(x.status == "rejected" and x.correct is None and x.message for x in gone.samples)
    s = rep.summary
    assert rep.ks == [1, 2, 6] and s["pass@1"] == pytest.approx(2 / 6)
    assert s["pass@2"] == pytest.approx(1 - 6 / 15)  # 1 - C(4,2)/C(6,2)
    # maj@2 over the 15 pairs ("2" at 0,2; "3" at 1,4,5; no answer at 3): "2" wins with
    # {0,2}, {0,3}, {2,3} and the six 2-vs-3 ties (tie -> "2", seen first) = 9/15
    assert s["maj@2"] == pytest.approx(9 / 15)
    assert s["maj@6"] == 0.0  # "3" has 3 votes, "2" has 2
    assert s["unscored_samples"] == 6 and s["unscored_by_status"] == {"rejected": 6}
    assert s["coverage"]["pass@1"] == 1


def test_k_above_n_is_an_error_before_sampling() -> None:
    sampler = _ScriptedSampler(["x"])
    with pytest.raises(ValueError, match=r"n=4; got k=\[8\]"):
        evaluate(sampler, [Problem("a", "p", "1")], n=4, ks=[1, 8], params=SampleParams(),
                 score_fn=lambda items: [])
    assert sampler.calls == []


# ----------------------------------------------------------------------------- the model


def _chain_model(model: Any, tok: Any, branch: str = "47") -> Any:
    """Set a tiny Qwen2 (hidden == vocab == 128, tied embeddings) to a character Markov
    chain: one-hot embeddings; attention and layer 2 write nothing (zero o_proj and
    down_proj); layer 1's MLP maps one-hot(current) to the direction of the allowed
    next tokens; the final norm scales logits to ~45 (one next token) or ~32 each (two)."""
    V, H = model.config.vocab_size, model.config.hidden_size
    assert V == H and model.config.tie_word_embeddings

    def ids(s: str) -> list[int]:
        return [tok(c, add_special_tokens=False)["input_ids"][0] for c in s]

    chain, close = ids("\\boxed{"), ids("}")[0]
    nxt = torch.zeros(V, V)  # row: current token -> direction of the next
    nxt[:, chain[0]] = 1.0  # anything else starts the chain
    for cur, to in [*zip(chain, chain[1:], strict=False), (close, tok.eos_token_id)]:
        nxt[cur] = 0.0
        nxt[cur, to] = 1.0
    nxt[chain[-1]] = 0.0
    for d in ids(branch):
        nxt[chain[-1], d] = 1.0
        nxt[d] = 0.0
        nxt[d, close] = 1.0
    gate = 20.0  # silu(20) = 20 to 1e-8: the MLP is linear here
    act = gate * torch.sigmoid(torch.tensor(gate))
    eye = torch.eye(V)
    with torch.no_grad():
        m = model.model
        m.embed_tokens.weight.copy_(eye)
        m.norm.weight.fill_(4.0)
        for i, layer in enumerate(m.layers):
            layer.self_attn.o_proj.weight.zero_()
            layer.post_attention_layernorm.weight.fill_(1.0)
            mlp = layer.mlp
            for w in (mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight):
                w.zero_()
            if i == 0:  # normalised input is sqrt(H) * one-hot
                mlp.gate_proj.weight[:V] = eye * gate / math.sqrt(H)
                mlp.up_proj.weight[:V] = eye / math.sqrt(H)
                mlp.down_proj.weight[:, :V] = (nxt - eye).T / act
    return model


def _write_problems(path: Path) -> None:
    """Custom field names, loaded through `load_problems` with a field map."""
    rows = [
        {"uid": "four", "q": "Q: 2+2\nA: ", "gold": "4"},
        {"uid": "seven", "q": "Q: 3+4\nA: ", "gold": "7"},
        {"uid": "nine", "q": "Q: 4+5\nA: ", "gold": "9"},  # never written: c = 0
        {"uid": "frac", "q": "Q: 8/2\nA: ", "gold": "\\frac{8}{2}"},  # = 4
        {"uid": "lost", "q": "Q: 1+3\nA: ", "gold": "4", "checker": "no-such-verifier"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _check_outputs(out: Path, rep_rows: list[dict], summary: dict, ks: list[int]) -> None:
    """Files, and the summary recomputed from problems.jsonl alone."""
    assert (out / "passk.png").read_bytes()[:8] == PNG_MAGIC
    md = (out / "summary.md").read_text()
    assert all(f"| pass@{k} |" in md for k in ks) and "| avg@n |" in md
    scored = [r for r in rep_rows if r["n"] > 0]
    for r in rep_rows:
        assert 0 <= r["c"] <= r["n"] <= len(r["samples"])
        assert r["c"] == sum(x["correct"] is True for x in r["samples"])
        assert r["n"] + r["unscored"] == len(r["samples"])
        assert set(r["samples"][0]) >= {"completion", "answer", "reward", "status", "correct"}
    for k in ks:
        vals = [pass_at_k(r["n"], r["c"], k) for r in scored if r["n"] >= k]
        assert summary[f"pass@{k}"] == pytest.approx(sum(vals) / len(vals))
        lo, hi = summary[f"pass@{k}_ci"]
        assert lo - 1e-12 <= summary[f"pass@{k}"] <= hi + 1e-12
    assert [summary[f"pass@{k}"] for k in ks] == sorted(summary[f"pass@{k}"] for k in ks)
    assert summary["avg@n"] == pytest.approx(sum(r["c"] / r["n"] for r in scored) / len(scored))
    assert summary["maj@1"] == pytest.approx(summary["pass@1"])
    assert summary["samples_correct"] == sum(r["c"] for r in rep_rows)
    assert summary["unscored_samples"] == sum(r["unscored"] for r in rep_rows)


def _expected_c(texts: list[str], gold: str) -> int:
    return sum(t == "\\boxed{" + gold + "}" for t in texts)


def _expected_maj(texts: list[str], gold: str) -> float:
    """The full vote of 4s and 7s; a tie goes to the one written first."""
    n4, n7 = texts.count("\\boxed{4}"), texts.count("\\boxed{7}")
    winner = "4" if n4 > n7 or (n4 == n7 and texts[0] == "\\boxed{4}") else "7"
    return float(winner == gold)


def test_end_to_end_on_the_shared_engine(tmp_path: Path, tiny_model_dir: str, vllm_sampler: Any,
                                         reward_server_url: str) -> None:
    from rlvr.data import load_problems
    from rlvr.model import load_policy, load_tokenizer

    policy, tok = load_policy(tiny_model_dir), load_tokenizer(tiny_model_dir)
    vllm_sampler.sync_weights(_chain_model(policy, tok).state_dict())
    try:
        _write_problems(tmp_path / "probs.jsonl")
        problems = load_problems(str(tmp_path / "probs.jsonl"),
                                 field_map={"prompt": "q", "reference": "gold", "id": "uid",
                                            "verifier": "checker"})
        n, ks = 8, [1, 2, 4, 8]
        params = SampleParams(temperature=1.0, max_tokens=16)
        with SyncRewardClient(reward_server_url) as client:
            rep = evaluate(vllm_sampler, problems, n=n, ks=ks, params=params,
                           score_fn=client.score, seed=3, resamples=300)
            again = evaluate(vllm_sampler, problems, n=n, ks=ks, params=params,
                             score_fn=client.score, seed=3, resamples=300)
            other = evaluate(vllm_sampler, problems, n=n, ks=ks, params=params,
                             score_fn=client.score, seed=4, resamples=300)
    finally:  # leave the shared engine as the fixture made it
        vllm_sampler.sync_weights(load_policy(tiny_model_dir).state_dict())

    texts = {p.id: [x.completion for x in p.samples] for p in rep.problems}
    assert all(t in ("\\boxed{4}", "\\boxed{7}") for ts in texts.values() for t in ts)
    assert 0 < sum(t == "\\boxed{4}" for ts in texts.values() for t in ts) < 5 * n  # both occur
    # same seed, same samples and numbers; another seed, other samples
    assert texts == {p.id: [x.completion for x in p.samples] for p in again.problems}
    timing = ("sampling_s", "scoring_s")
    assert {k: v for k, v in again.summary.items() if k not in timing} == \
        {k: v for k, v in rep.summary.items() if k not in timing}
    assert texts != {p.id: [x.completion for x in p.samples] for p in other.problems}

    by_id = {p.id: p for p in rep.problems}
    assert list(by_id) == ["four", "seven", "nine", "frac", "lost"]
    for pid, gold in [("four", "4"), ("seven", "7"), ("frac", "4")]:
        assert (by_id[pid].n, by_id[pid].c) == (n, _expected_c(texts[pid], gold))
        assert by_id[pid].maj_at(n) == _expected_maj(texts[pid], gold)
    assert (by_id["nine"].n, by_id["nine"].c) == (n, 0)
    assert (by_id["lost"].n, by_id["lost"].unscored) == (0, n)
    assert {x.answer for x in by_id["four"].samples} <= {"4", "7"}

    s = rep.summary
    assert s["unscored_samples"] == n and s["unscored_by_status"] == {"rejected": n}
    assert s["problems_without_scored_samples"] == 1 and s["coverage"]["pass@8"] == 4
    expected_avg = sum(_expected_c(texts[i], g) for i, g in
                       [("four", "4"), ("seven", "7"), ("frac", "4")]) / (4 * n)
    assert s["avg@n"] == pytest.approx(expected_avg)
    assert s["maj@8"] == pytest.approx(sum(_expected_maj(texts[i], g) for i, g in
                                           [("four", "4"), ("seven", "7"), ("frac", "4")]) / 4)

    rep.summary.update(dataset="probs.jsonl", model="chain")
    write_outputs(rep, tmp_path / "out")
    rows = [json.loads(line) for line in (tmp_path / "out" / "problems.jsonl").read_text().splitlines()]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["id"] for r in rows] == list(by_id)
    assert {"dataset", "model", "n", "temperature", "seed", "pass@4_ci", "maj@4"} <= set(summary)
    _check_outputs(tmp_path / "out", rows, summary, ks)


# ----------------------------------------------------------------------------- CLI


def test_cli_end_to_end_with_the_transformers_backend(tmp_path: Path, tiny_model_dir: str) -> None:
    """`rlvr eval` as a user runs it; no --reward-url, so it starts its own server."""
    from rlvr.model import load_policy, load_tokenizer, save_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    model_dir = tmp_path / "chain"
    _chain_model(load_policy(tiny_model_dir), tok).save_pretrained(model_dir)
    save_tokenizer(tok, model_dir)
    _write_problems(tmp_path / "probs.jsonl")
    out = tmp_path / "out"
    rc = main(["--model", str(model_dir), "--dataset", str(tmp_path / "probs.jsonl"),
               "--field-map", "prompt=q,reference=gold,id=uid,verifier=checker",
               "--backend", "hf", "--n", "4", "--k", "4,1,2", "--temperature", "1.0",
               "--max-tokens", "16", "--limit", "4", "--seed", "5", "--bootstrap", "200",
               "--reward-workers", "1", "--out", str(out)])
    assert rc == 0
    rows = [json.loads(line) for line in (out / "problems.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert [r["id"] for r in rows] == ["four", "seven", "nine", "frac"]  # --limit 4
    for r, gold in zip(rows, ["4", "7", "9", "4"], strict=True):
        assert r["c"] == _expected_c([x["completion"] for x in r["samples"]], gold)
    assert (summary["n"], summary["ks"], summary["seed"], summary["temperature"]) == (4, [1, 2, 4], 5, 1.0)
    assert summary["model"] == str(model_dir) and summary["dataset"].endswith("probs.jsonl")
    assert summary["unscored_samples"] == 0
    _check_outputs(out, rows, summary, [1, 2, 4])


def test_cli_k_above_n_fails_before_loading_anything(tmp_path: Path, capsys: Any) -> None:
    from rlvr.cli import main as rlvr_main

    out = tmp_path / "out"
    argv = ["--model", str(tmp_path / "no-model"), "--dataset", str(tmp_path / "no.jsonl"),
            "--n", "4", "--k", "1,8", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "k=[8]" in err and "n=4" in err and "no-model" not in err and "no.jsonl" not in err
    assert rlvr_main(["eval", *argv]) == 2  # the same through the `rlvr` entry point
    assert not out.exists()


def test_report_indexing_and_empty_input() -> None:
    rep = EvalReport([], {"pass@1": 0.5}, [1])
    assert rep["pass@1"] == 0.5
    with pytest.raises(ValueError, match="no problems"):
        evaluate(_ScriptedSampler(["x"]), [], n=1, ks=[1], params=SampleParams(),
                 score_fn=lambda items: [])
