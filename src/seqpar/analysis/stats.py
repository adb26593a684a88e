"""Uncertainty for per-problem scores: bootstrap intervals, a paired test, effect sizes.

Inputs are arrays of per-problem scores (one value per problem, e.g. accuracy at budget
k). Problems are the unit of resampling: they are what varies between benchmarks.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean with its percentile bootstrap confidence interval."""

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


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of two strategies on the same problems."""

    mean_difference: float  # a - b
    interval: Interval  # bootstrap interval of the mean difference
    p_value: float  # two-sided, exact sign-flip permutation test (Monte Carlo when large)
    effect_size: float  # Cohen's d_z: mean difference / sd of differences (0 if sd is 0)
    problems: int


def paired_test(
    a: np.ndarray, b: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0
) -> PairedTest:
    """Is strategy a better than b on the same problems? Sign-flip permutation test on the
    per-problem differences, bootstrap interval of the mean difference, and d_z."""
    differences = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(differences)
    observed = abs(differences.mean())
    rng = np.random.default_rng(seed)
    nonzero = differences[differences != 0]
    if len(nonzero) == 0:
        p_value = 1.0
    elif len(nonzero) <= 16:  # enumerate every sign assignment
        signs = np.array(list(itertools.product([-1.0, 1.0], repeat=len(nonzero))))
        null = np.abs((signs * nonzero).sum(axis=1) / n)
        p_value = float((null >= observed - 1e-12).mean())
    else:
        signs = rng.choice([-1.0, 1.0], size=(resamples, len(nonzero)))
        null = np.abs((signs * nonzero).sum(axis=1) / n)
        p_value = float((1 + (null >= observed - 1e-12).sum()) / (resamples + 1))
    sd = differences.std(ddof=1) if n > 1 else 0.0
    return PairedTest(
        mean_difference=float(differences.mean()),
        interval=bootstrap_ci(differences, resamples=resamples, seed=seed),
        p_value=p_value,
        effect_size=float(differences.mean() / sd) if sd > 0 else 0.0,
        problems=n,
    )
