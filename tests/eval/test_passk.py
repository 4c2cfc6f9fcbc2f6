"""The pure estimators against brute-force enumeration and values worked out by hand."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from rlvr.passk import bootstrap_ci, maj_at_k, majority_vote, pass_at_k

# ----------------------------------------------------------------------------- pass@k


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
def test_pass_at_k_equals_enumeration_of_all_subsets(n: int) -> None:
    for c in range(n + 1):
        correct = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            brute = Fraction(sum(any(correct[i] for i in s) for s in subsets), len(subsets))
            assert pass_at_k(n, c, k) == pytest.approx(float(brute), abs=1e-12), (n, c, k)


def test_pass_at_k_edges() -> None:
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 0, 10) == 0.0  # all wrong
    assert pass_at_k(10, 10, 1) == 1.0 and pass_at_k(10, 10, 10) == 1.0  # all right
    assert pass_at_k(10, 1, 10) == 1.0  # k == n: the one correct sample is always drawn
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 = c/n
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)  # 1 - C(2,2)/C(4,2) = 1 - 1/6
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)  # 1 - 199!/... = k/n for c = 1


def test_pass_at_k_is_stable_where_binomials_are_huge() -> None:
    # C(2000, 1000) ~ 1e600 overflows floats; the product form does not need it.
    n, c, k = 2000, 3, 1000
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize("n,c,k", [(4, 1, 5), (4, 1, 0), (4, 5, 1), (4, -1, 1)])
def test_pass_at_k_rejects_impossible_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


# ----------------------------------------------------------------------------- maj@k


def _brute_maj(answers: list, correct: list[bool], k: int) -> Fraction:
    """Vote in every size-k subset; a tie goes to the answer seen first among all n
    samples; the winner's correctness is that of its first sample."""
    first: dict = {}
    for i, a in enumerate(answers):
        if a is not None:
            first.setdefault(a, i)
    wins = total = 0
    for s in itertools.combinations(range(len(answers)), k):
        total += 1
        votes: dict = {}
        for i in s:
            if answers[i] is not None:
                votes[answers[i]] = votes.get(answers[i], 0) + 1
        if votes:
            top = max(votes.values())
            winner = min((a for a, v in votes.items() if v == top), key=first.__getitem__)
            wins += correct[first[winner]]
    return Fraction(wins, total)


@pytest.mark.parametrize("correct_set", [{"a"}, {"a", "b"}])
def test_maj_at_k_equals_enumeration_for_every_answer_list(correct_set: set[str]) -> None:
    """Every list over {None, a, b, c} up to n=5 (1,364 lists), every k."""
    checked = 0
    for n in range(1, 6):
        for answers in itertools.product([None, "a", "b", "c"], repeat=n):
            correct = [a in correct_set for a in answers]
            for k in range(1, n + 1):
                got = maj_at_k(list(answers), correct, k)
                assert got == pytest.approx(float(_brute_maj(list(answers), correct, k)), abs=1e-12)
                checked += 1
    assert checked == 4 * 1 + 16 * 2 + 64 * 3 + 256 * 4 + 1024 * 5


def test_maj_at_k_by_hand() -> None:
    # [a, b, a, c], a correct, k=2, the 6 pairs: (0,1) a/b tie -> a (seen first) right;
    # (0,2) a,a right; (0,3) a/c tie -> a right; (1,2) b/a tie -> a (index 0 < 1) right;
    # (1,3) b/c tie -> b wrong; (2,3) a/c tie -> a right.  5/6.
    assert maj_at_k(["a", "b", "a", "c"], [True, False, True, False], 2) == pytest.approx(5 / 6)
    # [b, a, a], a correct. k=1: 2/3. k=2: (0,1) b/a tie -> b wrong, (0,2) wrong,
    # (1,2) a,a right: 1/3. k=3: a has 2 votes to 1: right.
    ans, ok = ["b", "a", "a"], [False, True, True]
    assert maj_at_k(ans, ok, 1) == pytest.approx(2 / 3)
    assert maj_at_k(ans, ok, 2) == pytest.approx(1 / 3)
    assert maj_at_k(ans, ok, 3) == 1.0
    # None abstains: [None, x, y], y correct. k=1: only y right, 1/3. k=2: (0,1) x wins,
    # (0,2) y wins, (1,2) x/y tie -> x: 1/3. k=3: x/y tie -> x: 0.
    ans, ok = [None, "x", "y"], [False, False, True]
    assert maj_at_k(ans, ok, 1) == pytest.approx(1 / 3)
    assert maj_at_k(ans, ok, 2) == pytest.approx(1 / 3)
    assert maj_at_k(ans, ok, 3) == 0.0
    # everyone abstains: nobody wins, wrong (not an error)
    assert maj_at_k([None, None], [False, False], 2) == 0.0
    # 5 samples: 4 wrong answers all different, 1 right (the plurality is a 1-1 tie):
    # maj@5 -> tie among 5 answers, first seen is "w0": wrong; maj@1 = 1/5
    ans5 = ["w0", "w1", "r", "w2", "w3"]
    ok5 = [False, False, True, False, False]
    assert maj_at_k(ans5, ok5, 5) == 0.0 and maj_at_k(ans5, ok5, 1) == pytest.approx(0.2)


def test_maj_at_1_is_the_fraction_correct_and_maj_at_n_is_the_plain_vote() -> None:
    ans = ["3", "4", "4", None, "3", "4", "5", "3"]
    ok = [a == "4" for a in ans]
    assert maj_at_k(ans, ok, 1) == pytest.approx(3 / 8)
    # all 8: "3" and "4" both have 3 votes; "3" was seen first -> wrong
    assert majority_vote(ans, ok) is False and maj_at_k(ans, ok, 8) == 0.0
    ok3 = [a == "3" for a in ans]
    assert majority_vote(ans, ok3) is True and maj_at_k(ans, ok3, 8) == 1.0


def test_maj_at_k_is_exact_for_large_n() -> None:
    # 600 samples: 300 "right", 300 "wrong" seen first. maj@600 is the full vote: a
    # 300-300 tie -> "wrong". maj@599 drops exactly one sample: "right" wins iff the
    # dropped one was "wrong" (300 of 600 ways) -> exactly 1/2. Exact integers, no overflow.
    ans = ["wrong"] * 300 + ["right"] * 300
    ok = [a == "right" for a in ans]
    assert maj_at_k(ans, ok, 600) == 0.0
    assert maj_at_k(ans, ok, 599) == 0.5
    assert maj_at_k(ans, ok, 1) == 0.5


def test_maj_at_k_rejects_bad_k() -> None:
    with pytest.raises(ValueError):
        maj_at_k(["a", "b"], [True, False], 3)
    with pytest.raises(ValueError):
        maj_at_k(["a", "b"], [True], 1)


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_is_seeded_and_contains_the_mean() -> None:
    vals = [0, 1, 1, 0, 1, 1, 1, 0, 1, 1]  # mean 0.7
    lo, hi = bootstrap_ci(vals, seed=3)
    assert (lo, hi) == bootstrap_ci(vals, seed=3)  # same seed, same interval
    assert bootstrap_ci(vals, seed=4) != (lo, hi)  # the seed is really used
    assert 0.3 < lo < 0.7 < hi <= 1.0
    # narrower at a lower level, wider with less data
    lo50, hi50 = bootstrap_ci(vals, seed=3, level=0.5)
    assert lo <= lo50 < 0.7 < hi50 <= hi
    lo4, hi4 = bootstrap_ci(vals * 4, seed=3)
    assert hi4 - lo4 < hi - lo


def test_bootstrap_ci_by_hand() -> None:
    # Two problems scoring 0 and 1: a resample mean is 0 (p=1/4), 1/2 (1/2) or 1 (1/4),
    # so the 2.5% and 97.5% quantiles are 0 and 1.
    assert bootstrap_ci([0.0, 1.0], resamples=4000, seed=0) == (0.0, 1.0)
    assert bootstrap_ci([0.25] * 7, resamples=50) == (0.25, 0.25)  # no spread, no interval
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], level=1.5)
