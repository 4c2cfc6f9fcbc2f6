"""Estimators against brute force and hand-computed values."""

from __future__ import annotations

import itertools
import math

import pytest

from rlvr.passk import bootstrap_ci, maj_at_k, pass_at_k
from rlvr.passk import majority_vote as majority


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_pass_at_k_equals_subset_enumeration(n: int) -> None:
    for c in range(n + 1):
        correct = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            brute = sum(any(correct[i] for i in s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12), (n, c, k)


def test_pass_at_k_edges() -> None:
    assert pass_at_k(10, 0, 5) == 0.0  # all wrong
    assert pass_at_k(10, 10, 1) == 1.0  # all right
    assert pass_at_k(10, 1, 10) == 1.0  # k == n: any correct sample is drawn
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)  # stable for large n
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_majority_and_maj_at_k_by_hand() -> None:
    # answers a a b, correct answer a: any 2-subset: {a,a} -> a; {a,b} tie -> first seen
    ans, ok = ["a", "a", "b"], [True, True, False]
    assert majority(ans, ok) is True
    # subsets (0,1): a wins; (0,2): tie a/b, a first -> right; (1,2): a first -> right: 3/3
    assert maj_at_k(ans, ok, 2) == 1.0
    # answers b a a, correct a: (0,1) b first wins -> wrong; (0,2) wrong; (1,2) right -> 1/3
    assert maj_at_k(["b", "a", "a"], [False, True, True], 2) == pytest.approx(1 / 3)
    # k=3: a has 2 votes -> right
    assert maj_at_k(["b", "a", "a"], [False, True, True], 3) == 1.0
    # None answers do not vote; no votes at all -> wrong
    assert majority([None, None], [False, False]) is False
    assert maj_at_k([None, "x", "y"], [False, False, True], 1) == pytest.approx(1 / 3)


def test_bootstrap_ci_is_seeded_and_contains_the_mean() -> None:
    vals = [0, 1, 1, 0, 1, 1, 1, 0, 1, 1]
    lo, hi = bootstrap_ci(vals, seed=3)
    assert (lo, hi) == bootstrap_ci(vals, seed=3)
    assert lo <= 0.7 <= hi and 0.3 < lo < 0.7 < hi <= 1.0
    assert all(math.isnan(x) for x in bootstrap_ci([]))
