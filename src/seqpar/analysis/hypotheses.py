"""The study's verdicts: one pre-declared primary test per hypothesis, decided by rules
whose error rates are known.

Pure: per-problem scores in (`Comparison`), a frozen `Findings` out; no engine, no files.
`seqpar.report.study` builds the comparisons from run directories and renders the result.

The rules (docs/concepts.md, "Verdicts: how a study decides"):

- each hypothesis has one primary comparison of two arms on the same problems; the
  per-problem differences a − b are tested twice: "difference" by a two-sided sign-flip
  permutation test, "no difference" (equivalence within ±margin, the margin declared in
  the `AnalysisPlan` before any sample is drawn) by two one-sided tests;
- the primary tests form the family; their p-values are adjusted by Holm's step-down
  with Shaffer's restriction (`seqpar.analysis.stats.holm_shaffer`), so the chance of any
  false "effect" or false "no effect" among the verdicts is at most α;
- "effect" where the adjusted difference p ≤ α, "no effect" where the adjusted
  equivalence p ≤ α (a difference too small to matter, even if detectable), otherwise
  "inconclusive" with the smallest effect the study could have detected;
- secondary and supporting comparisons are reported with unadjusted p-values and decide
  nothing.

`simulate` runs the same rules on synthetic studies with known differences; the tests and
the documented error rates and power come from it (`python -m seqpar.analysis.hypotheses`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from seqpar.analysis.stats import (
    BOUNDS,
    PairedTest,
    equivalence_p,
    equivalence_problems,
    holm_shaffer,
    minimal_detectable_effect,
    paired_test,
    sign_flip_p,
    smallest_p,
)
from seqpar.errors import SeqparError

ALPHA = 0.05
DEFAULT_MARGIN = 0.10
LONG_PAD_SCALE = 2.0
PLANNING_SPREADS = (0.2, 0.4, 0.6)

Outcome = Literal["effect", "no effect", "inconclusive"]
Role = Literal["primary", "secondary", "supporting"]


@dataclass(frozen=True)
class AnalysisPlan:
    """How a study decides, declared before any sample is drawn (stored in study.json)."""

    margin: float = DEFAULT_MARGIN  # differences within ±margin (accuracy) do not matter
    alpha: float = ALPHA  # chance of any false claim among the verdicts
    hybrid_k: int = 1  # H3: samples after this many sequential rounds
    long_pad_scale: float = LONG_PAD_SCALE  # H2: the longer padded arm

    def __post_init__(self) -> None:
        if not 0 < self.margin < 1:
            raise SeqparError(f"--margin must be between 0 and 1, got {self.margin}")
        if not 0 < self.alpha < 0.5:
            raise SeqparError(f"alpha must be between 0 and 0.5, got {self.alpha}")
        if self.hybrid_k < 1:
            raise SeqparError(f"--h3-k must be >= 1, got {self.hybrid_k}")
        if self.long_pad_scale < 2:
            raise SeqparError(f"--long-pad-scale must be >= 2, got {self.long_pad_scale}")

    def to_json(self) -> dict[str, Any]:
        """The plan as study.json records it."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnalysisPlan:
        """The plan recorded in a study.json."""
        return cls(**data)


def default_hybrid_k(n: int) -> int:
    """The pre-declared k of H3's primary test: half the budget (at least 1)."""
    return max(1, n // 2)


@dataclass(frozen=True)
class Hypothesis:
    key: str
    title: str
    predicts: Literal["no effect", "lower"]  # what the hypothesis expects of a − b
    rule: str  # the primary comparison, in words ({k}, {scale} filled in)


HYPOTHESES = (
    Hypothesis(
        "H1",
        "aggregation",
        "no effect",
        "parallel − sequential, majority vote over all N samples or rounds (k = N) on both, "
        "per problem. Supported if the two are equivalent within ±{margin}; not supported "
        "if they differ",
    ),
    Hypothesis(
        "H2",
        "context length",
        "lower",
        "padded-parallel − parallel, per-sample accuracy; padded samples of rounds 2..N only "
        "(round 1 has no filler), filler = other problems' solutions matched to the "
        "sequential run's prompt lengths (scale 1). Supported if padded is less accurate; "
        "not supported if within ±{margin} or more accurate",
    ),
    Hypothesis(
        "H3",
        "exploration",
        "lower",
        "hybrid-k{k} − parallel, per-sample accuracy: N samples drawn after {k} sequential "
        "round(s) in their context vs N fresh samples. Supported if the hybrid samples are "
        "less accurate; not supported if within ±{margin} or more accurate",
    ),
)


@dataclass(frozen=True)
class Comparison:
    """Per-problem scores of arm a and arm b on the same problems (NaN: missing)."""

    key: str  # unique name, e.g. "H2 · scale 2"
    hypothesis: str  # "H1", "H2" or "H3"
    role: Role
    description: str
    arms: tuple[str, str]
    a: tuple[float, ...]
    b: tuple[float, ...]
    bounds: tuple[float, float] = BOUNDS  # range of one problem's difference
    equivalence: bool = True  # whether the margin applies (accuracies: yes)

    @classmethod
    def of(
        cls,
        key: str,
        hypothesis: str,
        role: Role,
        description: str,
        arms: tuple[str, str],
        a: Sequence[float] | np.ndarray,
        b: Sequence[float] | np.ndarray,
        **options: Any,
    ) -> Comparison:
        """A comparison from two arrays of per-problem scores."""
        return cls(
            key,
            hypothesis,
            role,
            description,
            arms,
            tuple(float(x) for x in a),
            tuple(float(x) for x in b),
            **options,
        )

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """a and b on the problems where both are present."""
        a, b = np.array(self.a, dtype=float), np.array(self.b, dtype=float)
        keep = ~(np.isnan(a) | np.isnan(b))
        return a[keep], b[keep]


@dataclass(frozen=True)
class TestResult:
    """One comparison tested: estimate, interval, p-values, sensitivity and outcome."""

    __test__ = False  # not a pytest test class

    comparison: Comparison
    test: PairedTest  # estimate, 95% interval, sign-flip p, d_z, problems
    p_equivalence: float | None  # TOST against ±margin, unadjusted
    p_adjusted: float | None  # primary tests: Holm-Shaffer adjusted difference p
    p_equivalence_adjusted: float | None
    level: float  # α for the minimal detectable effect (α / family for primary tests)
    mde: float  # smallest |difference| detected with 80% power at `level` (inf: none)
    outcome: Outcome

    @property
    def decisive_p(self) -> float:
        """The difference p-value the outcome rests on (adjusted for primary tests)."""
        return self.test.p_value if self.p_adjusted is None else self.p_adjusted

    @property
    def decisive_p_equivalence(self) -> float | None:
        """The equivalence p-value the outcome rests on (adjusted for primary tests)."""
        if self.p_equivalence_adjusted is not None:
            return self.p_equivalence_adjusted
        return self.p_equivalence


@dataclass(frozen=True)
class Verdict:
    """A hypothesis decided by its primary test."""

    hypothesis: str
    title: str
    rule: str
    result: TestResult
    conclusion: Literal["supported", "not supported", "inconclusive"]
    statement: str


@dataclass(frozen=True)
class Findings:
    """Every test of a study and the verdicts of its hypotheses."""

    plan: AnalysisPlan
    family: int  # number of primary tests (the Holm family)
    minimum_effect: int  # problems an "effect" needs at the family's first step
    minimum_no_effect: int  # problems a "no effect" needs at the family's first step
    verdicts: tuple[Verdict, ...]
    results: tuple[TestResult, ...]

    def result(self, key: str) -> TestResult | None:
        """The tested comparison named `key`, if the study had it."""
        return next((r for r in self.results if r.comparison.key == key), None)


def minimum_problems(plan: AnalysisPlan, family: int) -> tuple[int, int]:
    """Problems needed before an "effect" (an exact sign-flip p can reach α/family) and a
    "no effect" (the equivalence floor (1 − margin)^n can reach α/family) are possible."""
    level = plan.alpha / max(family, 1)
    effect = next(n for n in range(1, 64) if smallest_p(n) <= level)
    no_effect = math.ceil(math.log(level) / math.log(1 - plan.margin / BOUNDS[1]))
    return effect, no_effect


def outcome_of(p_difference: float, p_equivalence: float | None, alpha: float) -> Outcome:
    """The decision rule: equivalence first (a difference too small to matter), then a
    difference, otherwise inconclusive."""
    if p_equivalence is not None and p_equivalence <= alpha:
        return "no effect"
    if p_difference <= alpha:
        return "effect"
    return "inconclusive"


def evaluate(comparisons: Sequence[Comparison], plan: AnalysisPlan) -> Findings:
    """Test every comparison; adjust the primary ones as a family; decide each hypothesis."""
    keys = [c.key for c in comparisons]
    if len(set(keys)) != len(keys):
        raise ValueError(f"comparison keys must be unique: {keys}")
    primary = [c for c in comparisons if c.role == "primary"]
    if len({c.hypothesis for c in primary}) != len(primary):
        raise ValueError("one primary comparison per hypothesis")
    family = len(primary)
    tests = {c.key: paired_test(*c.pairs(), bounds=c.bounds) for c in comparisons}
    p_equivalence = {
        c.key: (
            float(equivalence_p(np.subtract(*c.pairs()), plan.margin, bounds=c.bounds)[0])
            if c.equivalence and tests[c.key].problems
            else None
        )
        for c in comparisons
    }
    adjusted, adjusted_equivalence = holm_shaffer(
        [tests[c.key].p_value for c in primary], [p_equivalence[c.key] for c in primary]
    )
    results = []
    for comparison in comparisons:
        test = tests[comparison.key]
        is_primary = comparison.role == "primary"
        index = primary.index(comparison) if is_primary else -1
        p_adj = adjusted[index] if is_primary else None
        q_adj = adjusted_equivalence[index] if is_primary else None
        level = plan.alpha / family if is_primary else plan.alpha
        results.append(
            TestResult(
                comparison=comparison,
                test=test,
                p_equivalence=p_equivalence[comparison.key],
                p_adjusted=p_adj,
                p_equivalence_adjusted=q_adj,
                level=level,
                mde=minimal_detectable_effect(
                    test.spread, test.problems, alpha=level, bound=comparison.bounds[1]
                ),
                outcome=outcome_of(
                    test.p_value if p_adj is None else p_adj,
                    p_equivalence[comparison.key] if q_adj is None else q_adj,
                    plan.alpha,
                ),
            )
        )
    effect, no_effect = minimum_problems(plan, family)
    by_key = {r.comparison.key: r for r in results}
    verdicts = tuple(
        verdict(h, by_key[c.key], plan, effect, no_effect)
        for h in HYPOTHESES
        for c in primary
        if c.hypothesis == h.key
    )
    return Findings(plan, family, effect, no_effect, verdicts, tuple(results))


def rule_text(hypothesis: Hypothesis, plan: AnalysisPlan) -> str:
    """The decision rule of a hypothesis's primary test, in words."""
    return (
        hypothesis.rule.format(margin=f"{plan.margin:.2f}", k=plan.hybrid_k)
        + f" (each at Holm-adjusted p ≤ {plan.alpha:g}); otherwise inconclusive."
    )


def signed(value: float) -> str:
    """A difference with its sign, three decimals ("–" when missing)."""
    return "–" if math.isnan(value) else f"{value:+.3f}"


def fmt_p(value: float | None) -> str:
    """A p-value in three significant digits ("–" when there is none)."""
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.3g}" if value >= 1e-3 else f"{value:.1e}"


def fmt_mde(value: float) -> str:
    """A minimal detectable effect; "none" when no outcome could reach the level."""
    return "none" if math.isinf(value) else f"{value:.3f}"


def numbers(result: TestResult) -> str:
    """Estimate, interval, adjusted p-values and problem count of a test, in one phrase."""
    test, (a, b) = result.test, result.comparison.arms
    interval = test.interval
    equivalence = result.decisive_p_equivalence
    adjusted = "adjusted " if result.p_adjusted is not None else ""
    return (
        f"{a} − {b} = {signed(test.mean_difference)} "
        f"[{signed(interval.low)}, {signed(interval.high)}], {adjusted}p = "
        f"{fmt_p(result.decisive_p)} (difference)"
        + (f" and {fmt_p(equivalence)} (equivalence)" if equivalence is not None else "")
        + f", {test.problems} problems"
    )


def verdict(
    hypothesis: Hypothesis, result: TestResult, plan: AnalysisPlan, effect: int, no_effect: int
) -> Verdict:
    """The verdict of one hypothesis from its primary test's outcome."""
    estimate = result.test.mean_difference
    a, b = result.comparison.arms
    margin = f"±{plan.margin:.2f}"
    if result.outcome == "inconclusive":
        conclusion = "inconclusive"
        problems = result.test.problems
        if problems < effect:
            reason = (
                f"{problems} problems are fewer than the {effect} an effect needs and the "
                f"{no_effect} 'no effect' needs (margin {margin}); no verdict is possible"
            )
        else:
            reason = (
                f"neither a difference nor equivalence within {margin} is shown; the "
                f"smallest difference this study could detect (80% power) is "
                f"{fmt_mde(result.mde)}"
            )
            if problems < no_effect:
                reason += f", and 'no effect' needs at least {no_effect} problems"
    elif result.outcome == "no effect":
        detectable = result.decisive_p <= plan.alpha
        reason = f"{a} and {b} are equivalent within {margin}" + (
            " (a smaller difference is detectable)" if detectable else ""
        )
        conclusion = "supported" if hypothesis.predicts == "no effect" else "not supported"
    else:
        leader, trailer = (a, b) if estimate > 0 else (b, a)
        reason = f"{leader} is more accurate than {trailer}"
        if hypothesis.predicts == "no effect":
            conclusion = "not supported"
            reason += " with the same aggregator"
        else:
            conclusion = "supported" if estimate < 0 else "not supported"
    statement = f"{hypothesis.key} ({hypothesis.title}) {conclusion}: {reason} ({numbers(result)})."
    return Verdict(
        hypothesis.key, hypothesis.title, rule_text(hypothesis, plan), result, conclusion, statement
    )


@dataclass(frozen=True)
class Sensitivity:
    """What a study of a given size can decide, before any sample is drawn."""

    problems: int
    family: int
    plan: AnalysisPlan
    minimum_effect: int
    minimum_no_effect: int
    rows: tuple[tuple[float, float, int], ...]  # (sd of differences, MDE, problems for "no effect")


def sensitivity(
    problems: int,
    plan: AnalysisPlan,
    *,
    family: int = 3,
    spreads: Sequence[float] = PLANNING_SPREADS,
) -> Sensitivity:
    """Minimal detectable effects of a planned study for assumed spreads of the per-problem
    differences, and the problems "no effect" would need at 80% power."""
    level = plan.alpha / family
    effect, no_effect = minimum_problems(plan, family)
    rows = tuple(
        (
            spread,
            minimal_detectable_effect(spread, problems, alpha=level),
            equivalence_problems(spread, plan.margin, alpha=level),
        )
        for spread in spreads
    )
    return Sensitivity(problems, family, plan, effect, no_effect, rows)


def describe_sensitivity(report: Sensitivity) -> str:
    """`seqpar study --dry-run`'s account of what the planned size can decide."""
    plan = report.plan
    lines = [
        f"Verdicts: {report.family} primary tests (H1, H2, H3), Holm-adjusted at α = "
        f"{plan.alpha:g}, equivalence margin ±{plan.margin:.2f}.",
        f"An effect needs at least {report.minimum_effect} problems and 'no effect' at "
        f"least {report.minimum_no_effect}; this plan has {report.problems}.",
        "",
        "| sd of per-problem differences | minimal detectable effect (80% power) | "
        "problems for 'no effect' (80% power, true difference 0) |",
        "|---:|---:|---:|",
    ]
    for spread, mde, needed in report.rows:
        lines.append(f"| {spread:.1f} | {fmt_mde(mde)} | {needed} |")
    lines.append(
        "\nH2 and H3 compare per-sample accuracy averaged over N samples (sd often 0.1–0.3); "
        "H1 compares one majority vote per problem (sd often 0.3–0.6)."
    )
    return "\n".join(lines)


# Calibration by simulation ---------------------------------------------------------------

KINDS = ("samples", "votes", "shared")


def synthetic_differences(
    effect: float, problems: int, studies: int, kind: str, rng: np.random.Generator
) -> np.ndarray:
    """Per-problem differences a − b of `studies` synthetic paired studies whose true mean
    difference is exactly `effect`. Problem difficulty p ~ |effect| + (1 − |effect|) ·
    Beta(0.5, 0.5) (many problems almost always or never solved), the other arm p − |effect|.
    kind "samples": each arm's share correct of 8 samples (per-sample accuracy, H2/H3);
    "votes": one correct-or-not outcome per arm (a majority vote, H1); "shared": one outcome
    per arm from one shared draw, so the arms differ only where the better one alone is
    right (the most lopsided, hardest case for equivalence)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    size = abs(effect)
    p = size + (1 - size) * rng.beta(0.5, 0.5, (studies, problems))
    q = p - size
    if kind == "samples":
        a, b = rng.binomial(8, p) / 8, rng.binomial(8, q) / 8
    elif kind == "votes":
        a = (rng.random(p.shape) < p).astype(float)
        b = (rng.random(p.shape) < q).astype(float)
    else:
        draw = rng.random(p.shape)
        a, b = (draw < p).astype(float), (draw < q).astype(float)
    return a - b if effect >= 0 else b - a


@dataclass(frozen=True)
class Calibration:
    """Shares of each outcome over simulated studies, per primary test."""

    problems: int
    effects: tuple[float, ...]
    kind: str
    studies: int
    effect: tuple[float, ...]  # share of "effect" per test
    no_effect: tuple[float, ...]  # share of "no effect" per test
    wrong: float  # share of studies with any wrong verdict
    monte_carlo_error: float  # standard error of a share of 0.05


def simulate(
    problems: int,
    effects: Sequence[float],
    *,
    kind: str = "samples",
    studies: int = 1000,
    plan: AnalysisPlan | None = None,
    seed: int = 0,
) -> Calibration:
    """Run the verdict rules on synthetic studies with one primary test per true difference
    in `effects`. A verdict is wrong when it says "effect" where the true difference is 0,
    or "no effect" where it is at least the margin."""
    plan = plan or AnalysisPlan()
    rng = np.random.default_rng(seed)
    data = [synthetic_differences(e, problems, studies, kind, rng) for e in effects]
    p_difference = np.stack([sign_flip_p(d, seed=seed + i) for i, d in enumerate(data)], axis=1)
    p_equivalence = np.stack([equivalence_p(d, plan.margin) for d in data], axis=1)
    outcomes = np.empty((studies, len(effects)), dtype=object)
    for study in range(studies):
        adjusted, adjusted_equivalence = holm_shaffer(
            list(p_difference[study]), list(p_equivalence[study])
        )
        for test, (p, q) in enumerate(zip(adjusted, adjusted_equivalence, strict=True)):
            outcomes[study, test] = outcome_of(p, q, plan.alpha)
    truth = np.array(effects, dtype=float)
    wrong = ((outcomes == "effect") & (truth == 0)) | (
        (outcomes == "no effect") & (np.abs(truth) >= plan.margin - 1e-12)
    )
    return Calibration(
        problems=problems,
        effects=tuple(float(e) for e in effects),
        kind=kind,
        studies=studies,
        effect=tuple(float(x) for x in (outcomes == "effect").mean(axis=0)),
        no_effect=tuple(float(x) for x in (outcomes == "no effect").mean(axis=0)),
        wrong=float(wrong.any(axis=1).mean()),
        monte_carlo_error=math.sqrt(plan.alpha * (1 - plan.alpha) / studies),
    )


@dataclass(frozen=True)
class CalibrationRow:
    """Error rates and power of the verdict rules for one kind of data and study size."""

    kind: str
    problems: int
    wrong_effect: float  # share of studies with a wrong "effect" (every true difference 0)
    wrong_no_effect: float  # share with a wrong "no effect" (every true difference ±margin)
    power_effect: float  # share of "effect" verdicts when the true difference is ±margin
    power_no_effect: float  # share of "no effect" verdicts when the true difference is 0


def calibration_table(
    problem_counts: Sequence[int] = (30, 50, 100, 200),
    kinds: Sequence[str] = KINDS,
    *,
    studies: int = 2000,
    plan: AnalysisPlan | None = None,
) -> list[CalibrationRow]:
    """Per kind of data and problem count, with three primary tests as in a study: wrong
    verdicts where every true difference is 0 and where every one is at the margin (the
    worst case for "no effect"), and the power to reach the right verdict in both."""
    plan = plan or AnalysisPlan()
    m = plan.margin
    rows = []
    for kind in kinds:
        for n in problem_counts:
            null = simulate(n, (0.0, 0.0, 0.0), kind=kind, studies=studies, plan=plan, seed=n)
            edge = simulate(n, (m, -m, m), kind=kind, studies=studies, plan=plan, seed=n + 1)
            rows.append(
                CalibrationRow(
                    kind, n, null.wrong, edge.wrong, float(np.mean(edge.effect)),
                    float(np.mean(null.no_effect)),
                )
            )  # fmt: skip
    return rows


if __name__ == "__main__":
    print(
        "| data | problems | wrong 'effect' (true 0) | wrong 'no effect' (true ±margin) | "
        "P('effect' ∣ true ±margin) | P('no effect' ∣ true 0) |\n|---|---:|---:|---:|---:|---:|"
    )
    for row in calibration_table():
        print(
            f"| {row.kind} | {row.problems} | {row.wrong_effect:.3f} | "
            f"{row.wrong_no_effect:.3f} | {row.power_effect:.3f} | {row.power_no_effect:.3f} |"
        )
