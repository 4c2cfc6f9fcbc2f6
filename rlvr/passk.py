"""pass@k, maj@k and bootstrap intervals as pure functions (no sampler, no server).

- pass@k is the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k),
  in its numerically stable product form 1 - prod_{i=n-c+1}^{n} (1 - k/i): no huge
  binomials, exact 0 when c = 0 and exact 1 when n - c < k.
- maj@k is the *expected* majority-vote accuracy over all C(n, k) subsets of size k of
  the n samples, i.e. the unbiased estimate of "draw k fresh samples, vote, check the
  winner" (the same idea as pass@k), not the vote over the first k samples. It is
  computed exactly, in integers, by counting subsets with multivariate-hypergeometric
  generating functions: no enumeration of subsets and no Monte Carlo.
- Voting rules, all deterministic: samples with no extracted answer (None) abstain;
  the answer with most votes in the subset wins; a tie goes to the answer that appears
  first among all n samples (a fixed order, so the count stays exact); a subset in
  which everyone abstains is wrong; a winning answer is correct when its first
  occurrence among the n samples was judged correct.
- Bootstrap intervals are percentile intervals of the mean over problems (resampling
  problems, not samples), seeded.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n
    samples (c of them correct) is correct."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def _classes(
    answers: Sequence[Hashable | None], correct: Sequence[bool]
) -> tuple[list[int | None], list[int], list[bool], int]:
    """Answer classes in order of first appearance.

    Returns (class id of each sample or None, class sizes, class correct flags,
    number of abstainers)."""
    if len(answers) != len(correct):
        raise ValueError(f"{len(answers)} answers but {len(correct)} correctness flags")
    index: dict[Hashable, int] = {}
    ids: list[int | None] = []
    sizes: list[int] = []
    ok: list[bool] = []
    for a, c in zip(answers, correct, strict=True):
        if a is None:
            ids.append(None)
            continue
        if a not in index:
            index[a] = len(sizes)
            sizes.append(0)
            ok.append(bool(c))
        sizes[index[a]] += 1
        ids.append(index[a])
    return ids, sizes, ok, ids.count(None)


def _vote(ids: Sequence[int | None], ok: Sequence[bool]) -> bool:
    """Vote among class ids; a tie goes to the smallest id (first seen overall)."""
    votes = Counter(i for i in ids if i is not None)
    if not votes:
        return False
    top = max(votes.values())
    return ok[min(i for i, v in votes.items() if v == top)]


def majority_vote(answers: Sequence[Hashable | None], correct: Sequence[bool]) -> bool:
    """Whether the vote over all these samples picks a correct answer (rules above)."""
    ids, _, ok, _ = _classes(answers, correct)
    return _vote(ids, ok)


def _binom_poly(m: int, upto: int, deg: int) -> np.ndarray:
    """Coefficients of sum_{x=0}^{min(upto, m)} C(m, x) z^x, truncated at z^deg."""
    top = min(upto, m, deg)
    return np.array([math.comb(m, x) for x in range(top + 1)], dtype=object)


def _mul(p: np.ndarray, q: np.ndarray, deg: int) -> np.ndarray:
    return np.convolve(p, q)[: deg + 1]


def _pow(p: np.ndarray, e: int, deg: int) -> np.ndarray:
    out = np.array([1], dtype=object)
    while e:
        if e & 1:
            out = _mul(out, p, deg)
        e >>= 1
        if e:
            p = _mul(p, p, deg)
    return out


def maj_at_k(
    answers: Sequence[Hashable | None],
    correct: Sequence[bool],
    k: int,
) -> float:
    """Expected majority-vote correctness over all size-k subsets of the n samples.

    Exact: the correct class a wins with t votes when every class before it (first
    appearance) gets at most t-1 votes and every class after it at most t. The number
    of such subsets is C(n_a, t) times the z^(k-t) coefficient of the product of the
    other classes' truncated binomial polynomials (abstainers unconstrained); classes
    of equal size on the same side share one polynomial, raised to a power.
    """
    n = len(answers)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and n={n}")
    _, sizes, ok, abstain = _classes(answers, correct)
    if not any(ok):
        return 0.0
    total = 0
    for a, (na, is_ok) in enumerate(zip(sizes, ok, strict=True)):
        if not is_ok:
            continue
        for t in range(1, min(na, k) + 1):
            deg = k - t
            # sizes that the cap cannot bind are free; group the rest by (cap, size)
            free = abstain
            capped: Counter[tuple[int, int]] = Counter()
            for b, nb in enumerate(sizes):
                if b == a:
                    continue
                cap = t - 1 if b < a else t
                if nb <= cap:
                    free += nb
                else:
                    capped[(cap, nb)] += 1
            poly = _binom_poly(free, deg, deg)
            for (cap, nb), mult in capped.items():
                poly = _mul(poly, _pow(_binom_poly(nb, cap, deg), mult, deg), deg)
            if len(poly) > deg:
                total += math.comb(na, t) * int(poly[deg])
    return total / math.comb(n, k)  # exact integers until this one division


def bootstrap_ci(
    values: Sequence[float], *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (one value per problem)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    alpha = 1.0 - level
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))
