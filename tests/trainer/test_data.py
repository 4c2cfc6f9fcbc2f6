"""Data loading: named datasets, files with field maps, generated tasks."""

from __future__ import annotations

import json

import pytest

from rlvr.data import arithmetic_demonstrations, arithmetic_solution, load_problems
from verifiers.base import ScoreItem
from verifiers.math_verifier import MathVerifier, gold_to_string


def test_named_datasets_load_with_the_right_fields() -> None:
    sizes = {"gsm8k": 1319, "minerva_math": 272, "aime24": 30, "amc23": 40, "humaneval": 164}
    for name, n in sizes.items():
        ps = load_problems(name)
        assert len(ps) == n and all(p.prompt and p.reference is not None for p in ps)
    assert load_problems("humaneval", limit=1)[0].verifier == "code"
    assert set(load_problems("humaneval", limit=1)[0].reference) == {"tests", "entry_point"}


def test_generated_golds_pass_their_own_verifier() -> None:
    v = MathVerifier()
    for p in load_problems("arithmetic", limit=50):
        sol = arithmetic_solution(p.meta["a"], p.meta["b"])
        assert v.verify(ScoreItem("math", sol, p.reference)).reward == 1.0
        wrong = arithmetic_solution(p.meta["a"], p.meta["b"], forget_carry=True)
        carry = (p.meta["a"] % 10 + p.meta["b"] % 10 >= 10) or p.meta["a"] + p.meta["b"] >= 100
        assert v.verify(ScoreItem("math", wrong, p.reference)).reward == (0.0 if carry else 1.0)
    for task in ("basic_arithmetic", "chain_sum"):
        for p in load_problems(f"rg:{task}", limit=20):
            assert v.verify(ScoreItem("math", f"\\boxed{{{p.reference}}}", p.reference)).reward == 1.0


def test_train_and_test_splits_are_disjoint() -> None:
    train = {p.prompt for p in load_problems("arithmetic", split="train", limit=2000)}
    test = {p.prompt for p in load_problems("arithmetic", split="test", limit=200)}
    assert not train & test
    rg_train = {p.prompt for p in load_problems("rg:chain_sum", split="train", limit=50)}
    assert not rg_train & {p.prompt for p in load_problems("rg:chain_sum", split="test", limit=50)}


def test_files_with_a_field_map(tmp_path) -> None:
    rows = [{"q": f"what is {i}+1?", "a": str(i + 1), "kind": "math", "uid": f"u{i}"} for i in range(5)]
    jl = tmp_path / "x.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows))
    fmap = {"prompt": "q", "reference": "a", "verifier": "kind", "id": "uid"}
    ps = load_problems(str(jl), field_map=fmap, template="Question: {prompt}\nAnswer:")
    assert [p.id for p in ps] == ["u0", "u1", "u2", "u3", "u4"] and ps[2].reference == "3"
    assert ps[0].prompt == "Question: what is 0+1?\nAnswer:"
    from datasets import Dataset

    ds = Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "x.parquet"))
    ds.save_to_disk(str(tmp_path / "disk"))
    for path in (tmp_path / "x.parquet", tmp_path / "disk"):
        got = load_problems(str(path), field_map=fmap, limit=3)
        assert [p.reference for p in got] == ["1", "2", "3"]
    with pytest.raises(KeyError, match="prompt"):
        load_problems(str(jl))
    with pytest.raises(FileNotFoundError, match="neither a dataset name"):
        load_problems("no/such/file.jsonl")


def test_worked_solutions_by_hand() -> None:
    assert arithmetic_solution(47, 38) == "7+8=15 4+3+1=8 \\boxed{85}"
    assert arithmetic_solution(47, 38, forget_carry=True) == "7+8=15 4+3=7 \\boxed{75}"
    assert arithmetic_solution(52, 17, op="-") == "12-7=5 4-1=3 \\boxed{35}"
    assert arithmetic_solution(52, 17, op="-", forget_carry=True) == "12-7=5 5-1=4 \\boxed{45}"
    assert arithmetic_solution(58, 76, 91) == "8+6+1=15 5+7+9+1=22 \\boxed{225}"
    assert arithmetic_solution(50, 50, op="-") == "0-0=0 5-5=0 \\boxed{0}"


@pytest.mark.parametrize("name", ["arithmetic3", "arithmetic:digits=2,operands=3",
                                  "arithmetic:digits=3,ops=+-"])
def test_arithmetic_variants_score_and_forgetting_the_carry_is_wrong_iff_one_happens(name) -> None:
    v = MathVerifier()
    ps = load_problems(name, split="train", limit=40, seed=3)
    digits = 3 if "3" in name.split(",")[0] else 2
    assert all(p.prompt.startswith("Q: ") and p.prompt.endswith("\nA: ") for p in ps)
    for p in ps:
        xs, op = p.meta["operands"], p.meta["op"]
        assert all(len(str(x)) == digits for x in xs)
        assert int(p.reference) == (xs[0] - xs[1] if op == "-" else sum(xs)) >= 0
        assert v.verify(ScoreItem("math", arithmetic_solution(*xs, op=op), p.reference)).reward == 1.0
        # Independently: is there any carry (borrow)? Column sums of the plain digits.
        cols = [[int(str(x)[::-1][i]) for x in xs] for i in range(digits)]
        if op == "-":
            happened = any(c[0] < c[1] for c in cols)  # a column whose top digit is smaller
        else:
            happened = any(sum(c) >= 10 for c in cols)
        wrong = arithmetic_solution(*xs, op=op, forget_carry=True)
        assert v.verify(ScoreItem("math", wrong, p.reference)).reward == (0.0 if happened else 1.0)
    assert "-" in {p.meta["op"] for p in ps} or "ops" not in name


def test_demonstrations_are_train_problems_with_a_share_of_noise() -> None:
    demos = arithmetic_demonstrations(400, forget_carry_p=0.5, seed=1)
    test_prompts = {p.prompt for p in load_problems("arithmetic", split="test", limit=200, seed=1)}
    assert len(demos) == 400 and not {p for p, _ in demos} & test_prompts
    v = MathVerifier()
    train = load_problems("arithmetic", split="train", limit=400, seed=1)
    assert [p.prompt for p in train] == [p for p, _ in demos]
    right = [v.verify(ScoreItem("math", c, p.reference)).reward for (_, c), p in zip(demos, train, strict=True)]
    # ~half of the ~half with a carry are wrong: between 15% and 35% wrong overall
    assert 0.15 < 1 - sum(right) / len(right) < 0.35
    assert arithmetic_demonstrations(400, forget_carry_p=0.5, seed=1) == demos  # deterministic


def test_shared_golds_score_one_and_test_only_files_refuse_a_train_split(tmp_path, monkeypatch) -> None:
    v = MathVerifier()
    for name in ("gsm8k", "minerva_math", "aime24", "amc23"):
        for p in load_problems(name, limit=10):
            done = f"The answer is \\boxed{{{gold_to_string(p.reference)}}}."
            assert v.verify(ScoreItem("math", done, p.reference)).reward == 1.0, (name, p.id)
    amc = load_problems("amc23", limit=40)
    assert all(isinstance(p.reference, str) and not p.reference.endswith(".0") for p in amc)
    ans = json.loads(_shared_file("amc23_test.jsonl").read_text().splitlines()[0])
    assert v.verify(ScoreItem("math", f"so \\boxed{{{int(ans['answer'])}}}", amc[0].reference)).reward == 1.0
    with pytest.raises(ValueError, match="splits"):
        load_problems("gsm8k", split="train")
    # RLVR_DATA_DIR moves the shared directory
    (tmp_path / "gsm8k_test.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n")
    monkeypatch.setenv("RLVR_DATA_DIR", str(tmp_path))
    [p] = load_problems("gsm8k")
    assert (p.prompt, p.reference, p.verifier, p.id) == ("1+1?", "#### 2", "math", "0")


def _shared_file(name: str):
    from rlvr.data import data_dir

    return data_dir() / name


def test_templates_plain_and_chat(tiny_model_dir) -> None:
    from rlvr.model import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    [p] = load_problems("arithmetic", limit=1, template="chat", tokenizer=tok)
    [q] = load_problems("arithmetic", limit=1)
    assert p.prompt == f"user: {q.prompt}\nassistant: "
    [r] = load_problems("arithmetic", limit=1, template=">> {prompt}")
    assert r.prompt == ">> " + q.prompt
    with pytest.raises(ValueError, match="tokenizer"):
        load_problems("arithmetic", limit=1, template="chat")


def test_reasoning_gym_answers_route_to_a_verifier() -> None:
    ps = load_problems("rg:leg_counting", split="test", limit=5, seed=2)
    assert all(p.verifier == "math" and p.reference.isdigit() for p in ps)
    assert ps[0].prompt == load_problems("rg:leg_counting", split="test", limit=1, seed=2)[0].prompt
