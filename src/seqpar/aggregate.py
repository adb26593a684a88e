"""Aggregators and estimators: pure functions from graded solutions to a score.

Every strategy is scored by the same functions. A problem's solutions are a list of chains,
each a list of rounds; a parallel run has N chains of one round, a sequential run one (or
more) chains of N rounds. At budget k:

- parallel (exchangeable samples): `pass@k` is the unbiased estimator, `last` is the mean
  single-sample accuracy, `majority` and `best-of-n` are averaged over size-k subsets;
- sequential (ordered rounds): each aggregator sees a chain's first k rounds (`pass@k` is
  then any@k), averaged over chains.

Majority voting groups answers into equivalence classes (for code: identical behaviour on
test inputs whose expected outputs are not used); a missing answer (None) never votes. The
winning class scores the share of its members that are correct — the expected accuracy of
submitting a random member (members of a behaviour class can differ on hidden tests).
Best-of-n picks the solution with the highest verifier score (for code: the share of public
tests passed); solutions without a score rank below every scored one. Ties follow an
explicit rule: "expected" (default) scores the mean over the tied choices — the expected
accuracy of a uniformly random tie-break —, "first"/"last" take the tied choice that
appears first/last (for majority: by its earliest/latest member).

A run with rejection sampling is not exchangeable (a draw was accepted only if it differed
from those accepted before it): its draws form one ordered chain in acceptance order, so
every aggregator sees the first k accepted draws (see `report.summary`).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from seqpar.registry import AGGREGATORS

Ties = Literal["expected", "first", "last"]
MAX_SUBSETS = 200


@dataclass(frozen=True)
class Solution:
    """What an aggregator sees of one solution: its answer class and whether it is correct."""

    answer_class: Hashable | None
    correct: bool
    score: float | None = None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c,k)/C(n,k)."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"need 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_score(solutions: Sequence[Solution], *, ties: Ties = "expected") -> float:
    """Score of the majority vote: the winning class's share of correct members (0.0 when
    no solution has an answer)."""
    counts: dict[Hashable, int] = {}
    right: dict[Hashable, int] = {}
    first: dict[Hashable, int] = {}
    last: dict[Hashable, int] = {}
    for index, solution in enumerate(solutions):
        key = solution.answer_class
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        right[key] = right.get(key, 0) + solution.correct
        first.setdefault(key, index)
        last[key] = index
    if not counts:
        return 0.0
    top = max(counts.values())
    tied = [key for key, count in counts.items() if count == top]
    tied.sort(key=(last if ties == "last" else first).__getitem__)
    return pick_value([right[key] / counts[key] for key in tied], ties)


def pick_value(values: Sequence[float], ties: Ties) -> float:
    """Score of choosing among tied choices (in order) with these scores, under `ties`."""
    if ties == "expected":
        return sum(values) / len(values)
    if ties == "first":
        return float(values[0])
    if ties == "last":
        return float(values[-1])
    raise ValueError(f"unknown ties rule {ties!r}; known: expected, first, last")


def pick_score(tied: Sequence[Solution], ties: Ties) -> float:
    """Score of choosing among `tied` solutions (in order) under the ties rule."""
    return pick_value([float(s.correct) for s in tied], ties)


def best_of_n_score(solutions: Sequence[Solution], *, ties: Ties = "expected") -> float:
    """Score of picking the solution with the highest verifier score."""
    if not solutions:
        return 0.0
    rank = [float("-inf") if s.score is None else s.score for s in solutions]
    top = max(rank)
    return pick_score([s for s, r in zip(solutions, rank, strict=True) if r == top], ties)


@dataclass(frozen=True)
class Aggregator:
    """How solutions become one verdict: on k of n exchangeable samples (`parallel`, expected
    over subsets) and on the first k rounds of a chain (`chain`)."""

    name: str
    parallel: Callable[[Sequence[Solution], int, Ties, random.Random], float]
    chain: Callable[[Sequence[Solution], Ties], float]
    needs_scores: bool = False  # meaningful only where solutions carry verifier scores


def over_subsets(
    score: Callable[..., float],
) -> Callable[[Sequence[Solution], int, Ties, random.Random], float]:
    """A subset aggregator's expected score over (up to MAX_SUBSETS) k-subsets of n samples."""

    def expected(solutions: Sequence[Solution], k: int, ties: Ties, rng: random.Random) -> float:
        picks = subsets(len(solutions), k, rng)
        return sum(score([solutions[i] for i in pick], ties=ties) for pick in picks) / len(picks)

    return expected


def correct_share(solutions: Sequence[Solution], k: int, ties: Ties, rng: random.Random) -> float:
    return sum(s.correct for s in solutions) / len(solutions)


def unbiased_pass_at_k(
    solutions: Sequence[Solution], k: int, ties: Ties, rng: random.Random
) -> float:
    return pass_at_k(len(solutions), sum(s.correct for s in solutions), k)


LAST = Aggregator("last", correct_share, lambda prefix, ties: float(prefix[-1].correct))
MAJORITY = Aggregator(
    "majority", over_subsets(majority_score), lambda p, t: majority_score(p, ties=t)
)
BEST_OF_N = Aggregator(
    "best-of-n", over_subsets(best_of_n_score), lambda p, t: best_of_n_score(p, ties=t), True
)
PASS_AT_K = Aggregator(
    "pass@k", unbiased_pass_at_k, lambda prefix, ties: float(any(s.correct for s in prefix))
)


def aggregator_named(name: str) -> Aggregator:
    """The registered aggregator `name` (an unknown name is an error listing the known)."""
    aggregator: Aggregator = AGGREGATORS[name].load()
    return aggregator


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
    return aggregator_named(aggregator).parallel(solutions, k, ties, rng or random.Random(0))


def chain_score(
    rounds: Sequence[Solution], k: int, aggregator: str, *, ties: Ties = "expected"
) -> float:
    """Score of `aggregator` on the first k rounds of a sequential chain."""
    return aggregator_named(aggregator).chain(rounds[:k], ties)


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


def score_matrix(
    problems: Sequence[Sequence[Sequence[Solution]]],
    aggregator: str,
    ks: Sequence[int],
    *,
    ties: Ties = "expected",
    seed: int = 0,
) -> np.ndarray:
    """Per-problem scores at each budget: an array of shape (problems, len(ks))."""
    rng = random.Random(seed)
    return np.array(
        [
            [problem_score(chains, k, aggregator, ties=ties, rng=rng) for k in ks]
            for chains in problems
        ]
    ).reshape(len(problems), len(ks))


def accuracy_curve(
    problems: Sequence[Sequence[Sequence[Solution]]],
    aggregator: str,
    ks: Sequence[int],
    *,
    ties: Ties = "expected",
    seed: int = 0,
) -> list[float]:
    """Mean accuracy over problems at each budget k."""
    return score_matrix(problems, aggregator, ks, ties=ties, seed=seed).mean(axis=0).tolist()
