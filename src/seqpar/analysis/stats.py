"""Uncertainty for per-problem scores: intervals, paired tests, equivalence, multiplicity.

Inputs are arrays of per-problem scores (one value per problem, e.g. accuracy at budget
k). Problems are the unit of resampling: they are what varies between benchmarks.

- `bootstrap_ci`: percentile bootstrap of a mean (descriptive bands of accuracies).
- `sign_flip_p`: two-sided paired test of "no difference" (exact when at most 16
  differences are non-zero, else Monte Carlo).
- `skew_corrected_interval`: an interval for the mean difference that never collapses to a
  point: a studentized (t) interval with Hall's (1992) skewness correction, computed on
  the differences plus two pseudo-observations at the bounds of a difference (like
  Agresti-Caffo's added counts for proportions), so its spread is never zero; the skewness
  is that of the differences alone.
- `equivalence_p`: two one-sided tests (TOST) that the mean difference lies within
  ±margin, by the same corrected statistic, never below (1 - margin/bound)^n (the chance
  that no problem at all shows a positive difference when the true one is the margin).
- `holm_shaffer`: step-down adjustment of paired "difference" and "equivalence" p-values.
- `minimal_detectable_effect`: the smallest difference a test finds with given power.

Every function is pure; the vectorised ones take one row per independent data set.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import stats as distributions

RESAMPLES = 2000
EXACT_LIMIT = 16  # sign-flip: enumerate every assignment up to this many non-zero differences
BOUNDS = (-1.0, 1.0)  # range of a difference of two accuracies
POWER = 0.8


@dataclass(frozen=True)
class Interval:
    """A mean with a confidence interval."""

    mean: float
    low: float
    high: float


def bootstrap_ci(
    scores: np.ndarray, *, confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of the mean over problems. With a 2-D array
    (problems × seeds) problems and seeds are resampled independently."""
    values = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    if values.ndim == 1:
        values = values[:, None]
    problems, seeds = values.shape
    rows = rng.integers(0, problems, size=(resamples, problems))
    cols = rng.integers(0, seeds, size=(resamples, seeds))
    means = np.array([values[np.ix_(r, c)].mean() for r, c in zip(rows, cols, strict=True)])
    alpha = (1 - confidence) / 2
    return Interval(
        float(values.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
    )


@cache
def all_signs(count: int) -> np.ndarray:
    """Every assignment of ±1 to `count` differences, one per row."""
    return np.array(list(itertools.product([-1.0, 1.0], repeat=count)))


def sign_flip_p(
    differences: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0
) -> np.ndarray:
    """Two-sided sign-flip permutation p-value of "the mean difference is zero", per row of
    `differences` (problems along the last axis): exact with at most EXACT_LIMIT non-zero
    differences, else Monte Carlo with `resamples` flips (p never below 1/(resamples+1))."""
    d = np.atleast_2d(np.asarray(differences, dtype=float))
    n = d.shape[1]
    observed = np.abs(d.mean(axis=1)) - 1e-12
    p = np.ones(len(d))
    nonzero = (d != 0).sum(axis=1)
    exact = nonzero <= EXACT_LIMIT
    for count in np.unique(nonzero[exact]):
        if count == 0:
            continue
        rows = np.flatnonzero(exact & (nonzero == count))
        signs = all_signs(int(count))
        for chunk in np.array_split(rows, -(-len(rows) * len(signs) // 2**22)):
            values = np.stack([d[r][d[r] != 0] for r in chunk])
            null = np.abs(signs @ values.T) / n
            p[chunk] = (null >= observed[chunk]).mean(axis=0)
    rows = np.flatnonzero(~exact)
    if len(rows):
        signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(resamples, n))
        for chunk in np.array_split(rows, -(-len(rows) // 512)):
            null = np.abs(signs @ d[chunk].T) / n
            p[chunk] = (1 + (null >= observed[chunk]).sum(axis=0)) / (resamples + 1)
    return p


def augmented(differences: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """The differences with one pseudo-observation at each bound appended (per row)."""
    d = np.atleast_2d(np.asarray(differences, dtype=float))
    pseudo = np.broadcast_to(np.array(bounds, dtype=float), (len(d), 2))
    return np.concatenate([d, pseudo], axis=1)


def corrected_moments(
    differences: np.ndarray, bounds: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Per row: mean and standard error of the augmented data, Hall's coefficients a, b
    from the skewness of the differences themselves (0 where they have no spread), and the
    augmented size."""
    d = np.atleast_2d(np.asarray(differences, dtype=float))
    x = augmented(d, bounds)
    k = x.shape[1]
    mean = x.mean(axis=1)
    se = x.std(axis=1, ddof=1) / math.sqrt(k)
    centred = d - d.mean(axis=1, keepdims=True)
    population_sd = np.sqrt((centred**2).mean(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(population_sd > 1e-12, (centred**3).mean(axis=1) / population_sd**3, 0.0)
    a = skew / (3 * math.sqrt(k))
    b = skew / (6 * math.sqrt(k))
    return mean, se, a, b, k


def hall(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hall's monotone skewness correction of a studentized mean, g(t) = t + a t² + a² t³/3 + b."""
    return t + a * t**2 + a**2 * t**3 / 3 + b


def hall_inverse(g: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The t with hall(t, a, b) = g."""
    with np.errstate(divide="ignore", invalid="ignore"):
        root = (np.cbrt(1 + 3 * a * (g - b)) - 1) / a
    return np.where(np.abs(a) > 1e-12, root, g - b)


def skew_corrected_interval(
    differences: np.ndarray,
    *,
    confidence: float = 0.95,
    bounds: tuple[float, float] = BOUNDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided interval (low, high) per row for the mean difference: the values not
    rejected by the skew-corrected studentized test; within `bounds`, never a point."""
    mean, se, a, b, k = corrected_moments(differences, bounds)
    critical = distributions.t.ppf((1 + confidence) / 2, k - 1)
    low = mean - hall_inverse(np.full_like(mean, critical), a, b) * se
    high = mean - hall_inverse(np.full_like(mean, -critical), a, b) * se
    return np.clip(low, *bounds), np.clip(high, *bounds)


def one_sided_p(
    differences: np.ndarray, null: float, *, above: bool, bounds: tuple[float, float] = BOUNDS
) -> np.ndarray:
    """Skew-corrected studentized p-value, per row, of "mean ≥ null" (above=True: small when
    the mean is clearly below `null`) or of "mean ≤ null" (above=False)."""
    mean, se, a, b, k = corrected_moments(differences, bounds)
    g = hall((mean - null) / se, a, b)
    cdf = distributions.t.cdf(g, k - 1)
    return cdf if above else 1 - cdf


def equivalence_p(
    differences: np.ndarray, margin: float, *, bounds: tuple[float, float] = BOUNDS
) -> np.ndarray:
    """TOST p-value per row of "the mean difference lies within ±margin": the larger of the
    two one-sided p-values, never below (1 - margin/bound)^n."""
    d = np.atleast_2d(np.asarray(differences, dtype=float))
    upper = one_sided_p(d, margin, above=True, bounds=bounds)
    lower = one_sided_p(d, -margin, above=False, bounds=bounds)
    floor = (1 - margin / min(abs(bounds[0]), abs(bounds[1]))) ** d.shape[1]
    return np.maximum(np.maximum(upper, lower), floor)


def holm_shaffer(
    p_difference: Sequence[float], p_equivalence: Sequence[float | None]
) -> tuple[list[float], list[float | None]]:
    """Step-down (Holm) adjustment of one study's family of tests, each with a "difference"
    and an optional "equivalence" p-value. The two null hypotheses of a test cannot both be
    true (a difference cannot be zero and at least the margin), so each step divides by the
    number of tests with a hypothesis not yet rejected (Shaffer 1986), not by the number of
    p-values. Rejecting where the adjusted p ≤ α keeps the chance of any false claim ≤ α."""
    entries = [(p, i, "d") for i, p in enumerate(p_difference)]
    entries += [(p, i, "e") for i, p in enumerate(p_equivalence) if p is not None]
    entries.sort(key=lambda e: e[0])
    adjusted: dict[tuple[int, str], float] = {}
    running = 0.0
    for step, (p, test, kind) in enumerate(entries):
        remaining = len({t for _, t, _ in entries[step:]})
        running = max(running, min(1.0, remaining * p))
        adjusted[test, kind] = running
    return (
        [adjusted[i, "d"] for i in range(len(p_difference))],
        [adjusted.get((i, "e")) for i in range(len(p_equivalence))],
    )


def smallest_p(problems: int) -> float:
    """The smallest two-sided p-value an exact sign-flip test can give on this many problems."""
    return 2.0 ** (1 - problems) if problems > 0 else 1.0


def minimal_detectable_effect(
    spread: float,
    problems: int,
    *,
    alpha: float,
    power: float = POWER,
    bound: float = BOUNDS[1],
) -> float:
    """Smallest mean difference a two-sided paired test at level `alpha` detects with
    `power`, for per-problem differences with standard deviation `spread` (normal
    approximation with t quantiles); inf when no outcome on this many problems could
    reach `alpha`, or when it exceeds `bound`."""
    if problems < 2 or smallest_p(problems) > alpha:
        return math.inf
    df = problems - 1
    value = (
        (distributions.t.ppf(1 - alpha / 2, df) + distributions.t.ppf(power, df))
        * spread
        / math.sqrt(problems)
    )
    return float(value) if value <= bound else math.inf


def equivalence_problems(
    spread: float, margin: float, *, alpha: float, power: float = POWER, bound: float = 1.0
) -> int:
    """Problems needed to show equivalence within ±margin with `power` when the true
    difference is 0 (normal approximation), and at least the floor of `equivalence_p`."""
    z = distributions.norm.ppf(1 - alpha) + distributions.norm.ppf(1 - (1 - power) / 2)
    by_spread = math.ceil((z * spread / margin) ** 2)
    by_floor = math.ceil(math.log(alpha) / math.log(1 - margin / bound))
    return max(by_spread, by_floor, 2)


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of two strategies on the same problems."""

    mean_difference: float  # a - b
    interval: Interval  # skew-corrected studentized interval (never a point)
    p_value: float  # two-sided sign-flip permutation test (exact when small)
    effect_size: float  # Cohen's d_z: mean / sd of differences (±inf with no spread, 0 if 0/0)
    problems: int
    spread: float  # sd of the differences with a pseudo-observation at each bound (> 0)


def paired_test(
    a: np.ndarray,
    b: np.ndarray,
    *,
    confidence: float = 0.95,
    bounds: tuple[float, float] = BOUNDS,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> PairedTest:
    """Is strategy a better than b on the same problems? Sign-flip permutation test on the
    per-problem differences, a non-collapsing interval of the mean difference, and d_z."""
    differences = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(differences)
    mean = float(differences.mean()) if n else math.nan
    if n == 0:
        return PairedTest(math.nan, Interval(math.nan, *bounds), 1.0, math.nan, 0, math.nan)
    low, high = skew_corrected_interval(differences, confidence=confidence, bounds=bounds)
    sd = float(differences.std(ddof=1)) if n > 1 else 0.0
    no_spread = math.copysign(math.inf, mean) if mean != 0 else 0.0
    effect = mean / sd if sd > 0 else no_spread
    return PairedTest(
        mean_difference=mean,
        interval=Interval(mean, float(low[0]), float(high[0])),
        p_value=float(sign_flip_p(differences, resamples=resamples, seed=seed)[0]),
        effect_size=effect,
        problems=n,
        spread=float(augmented(differences, bounds).std(ddof=1)),
    )
