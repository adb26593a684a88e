"""Aggregators and estimators: pure functions from graded solutions to a score.

Every strategy is scored by the same functions. A problem's solutions are a list of chains,
each a list of rounds; a parallel run has N chains of one round, a sequential run one (or
more) chains of N rounds. At budget k:

- parallel (exchangeable samples): `pass@k` is the unbiased estimator, `last` is the mean
  single-sample accuracy, `majority` is averaged over size-k subsets of the N samples;
- sequential (ordered rounds): each aggregator sees a chain's first k rounds (`pass@k` is
  then any@k), averaged over chains.

Majority voting groups answers into equivalence classes; a missing answer (None) never
votes. Ties follow an explicit rule: "expected" (default) scores the fraction of the tied
classes that are correct — the expected accuracy of a uniformly random tie-break —,
"first"/"last" pick the tied class whose earliest/latest member comes first/last.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Ties = Literal["expected", "first", "last"]
AGGREGATORS = ("last", "majority", "pass@k")
MAX_SUBSETS = 200


@dataclass(frozen=True)
class Solution:
    """What an aggregator sees of one solution: its answer class and whether it is correct."""

    answer_class: Hashable | None
    correct: bool


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c,k)/C(n,k)."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"need 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_score(solutions: Sequence[Solution], *, ties: Ties = "expected") -> float:
    """Score of the majority vote over answer classes (1.0 correct, 0.0 wrong or no answer)."""
    counts: dict[Hashable, int] = {}
    first: dict[Hashable, int] = {}
    last: dict[Hashable, int] = {}
    correct: dict[Hashable, bool] = {}
    for index, solution in enumerate(solutions):
        key = solution.answer_class
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, index)
        last[key] = index
        correct[key] = correct.get(key, False) or solution.correct
    if not counts:
        return 0.0
    top = max(counts.values())
    tied = [key for key, count in counts.items() if count == top]
    if ties == "expected":
        return sum(correct[key] for key in tied) / len(tied)
    if ties == "first":
        return float(correct[min(tied, key=first.__getitem__)])
    if ties == "last":
        return float(correct[max(tied, key=last.__getitem__)])
    raise ValueError(f"unknown ties rule {ties!r}; known: expected, first, last")


def answer_classes(
    answers: Sequence[str | None], equivalent: Callable[[str, str], bool]
) -> list[int | None]:
    """Equivalence-class ids for answers (None stays None); each answer joins the first
    earlier class whose representative it is equivalent to."""
    representatives: list[str] = []
    classes: list[int | None] = []
    for answer in answers:
        if answer is None:
            classes.append(None)
            continue
        for index, representative in enumerate(representatives):
            if answer == representative or equivalent(representative, answer):
                classes.append(index)
                break
        else:
            representatives.append(answer)
            classes.append(len(representatives) - 1)
    return classes


def subsets(n: int, k: int, rng: random.Random, limit: int = MAX_SUBSETS) -> list[tuple[int, ...]]:
    """All size-k subsets of range(n) if there are at most `limit`, else `limit` random ones."""
    if math.comb(n, k) <= limit:
        return list(itertools.combinations(range(n), k))
    return [tuple(sorted(rng.sample(range(n), k))) for _ in range(limit)]


def parallel_score(
    solutions: Sequence[Solution],
    k: int,
    aggregator: str,
    *,
    ties: Ties = "expected",
    rng: random.Random | None = None,
) -> float:
    """Expected score of `aggregator` on k of the problem's exchangeable samples."""
    n = len(solutions)
    c = sum(s.correct for s in solutions)
    if aggregator == "pass@k":
        return pass_at_k(n, c, k)
    if aggregator == "last":
        return c / n
    if aggregator == "majority":
        picks = subsets(n, k, rng or random.Random(0))
        return sum(majority_score([solutions[i] for i in pick], ties=ties) for pick in picks) / len(
            picks
        )
    raise ValueError(f"unknown aggregator {aggregator!r}; known: {', '.join(AGGREGATORS)}")


def chain_score(
    rounds: Sequence[Solution], k: int, aggregator: str, *, ties: Ties = "expected"
) -> float:
    """Score of `aggregator` on the first k rounds of a sequential chain."""
    prefix = rounds[:k]
    if aggregator == "pass@k":
        return float(any(s.correct for s in prefix))
    if aggregator == "last":
        return float(prefix[-1].correct)
    if aggregator == "majority":
        return majority_score(prefix, ties=ties)
    raise ValueError(f"unknown aggregator {aggregator!r}; known: {', '.join(AGGREGATORS)}")


def problem_score(
    chains: Sequence[Sequence[Solution]],
    k: int,
    aggregator: str,
    *,
    ties: Ties = "expected",
    rng: random.Random | None = None,
) -> float:
    """Score of one problem at budget k: parallel if every chain has one round, else sequential."""
    if all(len(chain) == 1 for chain in chains):
        return parallel_score([c[0] for c in chains], k, aggregator, ties=ties, rng=rng)
    return sum(chain_score(chain, k, aggregator, ties=ties) for chain in chains) / len(chains)


def budgets(n: int) -> list[int]:
    """k = 1, 2, 4, … up to n, and n itself."""
    ks = [2**i for i in range(n.bit_length()) if 2**i <= n]
    return ks if ks[-1] == n else [*ks, n]


def accuracy_curve(
    problems: Sequence[Sequence[Sequence[Solution]]],
    aggregator: str,
    ks: Sequence[int],
    *,
    ties: Ties = "expected",
    seed: int = 0,
) -> list[float]:
    """Mean accuracy over problems at each budget k."""
    rng = random.Random(seed)
    return [
        sum(problem_score(chains, k, aggregator, ties=ties, rng=rng) for chains in problems)
        / len(problems)
        for k in ks
    ]
