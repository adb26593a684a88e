"""The verdict rules (seqpar.analysis.hypotheses) on hand-built cases and, by simulation, on
synthetic studies with known differences. No model."""

import math
from pathlib import Path

import numpy as np
import pytest

from seqpar.analysis.hypotheses import (
    AnalysisPlan,
    Comparison,
    describe_sensitivity,
    evaluate,
    minimum_problems,
    sensitivity,
    simulate,
)
from seqpar.analysis.stats import (
    equivalence_p,
    holm_shaffer,
    minimal_detectable_effect,
    paired_test,
    sign_flip_p,
    skew_corrected_interval,
)
from seqpar.errors import SeqparError
from seqpar.report.document import to_markdown
from seqpar.report.study import fmt_effect_size, results_table, verdict_blocks

PLAN = AnalysisPlan(hybrid_k=1)
ARMS = {"H1": ("parallel", "sequential"), "H2": ("padded-parallel", "parallel")}
ARMS["H3"] = ("hybrid-k1", "parallel")


def primary(hypothesis, a, b):
    return Comparison.of(hypothesis, hypothesis, "primary", "test", ARMS[hypothesis], a, b)


def study(h1, h2, h3):
    """Findings of a study whose three primary tests have these (a, b) score arrays."""
    return evaluate([primary("H1", *h1), primary("H2", *h2), primary("H3", *h3)], PLAN)


def verdict(findings, hypothesis):
    return next(v for v in findings.verdicts if v.hypothesis == hypothesis)


def test_three_problems_all_plus_one_are_inconclusive_not_a_verdict():
    # The old rule: a percentile bootstrap of [1, 1, 1] is the point [1, 1], so "H1 not
    # supported", though the paired test gives p = 0.25.
    same = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    findings = study(([1, 1, 1], [0, 0, 0]), same, same)
    h1 = verdict(findings, "H1")
    assert h1.conclusion == "inconclusive" and h1.result.outcome == "inconclusive"
    assert h1.result.test.p_value == pytest.approx(0.25)
    interval = h1.result.test.interval
    assert interval.low < 0 < interval.high == 1.0  # not a point, and it covers 0
    assert "3 problems are fewer than the 7 an effect needs" in h1.statement
    assert math.isinf(h1.result.mde)


def test_two_problems_are_inconclusive():
    # The old rule said "H2 supported" here, with p = 0.5.
    same = ([1, 0], [1, 0])
    findings = study(same, ([0, 0], [1, 1]), same)
    h2 = verdict(findings, "H2")
    assert h2.conclusion == "inconclusive"
    assert h2.result.test.p_value == pytest.approx(0.5)
    assert {v.conclusion for v in findings.verdicts} == {"inconclusive"}


def test_effect_size_without_spread_is_infinite_not_zero():
    maximal = paired_test(np.ones(10), np.zeros(10))
    assert maximal.effect_size == math.inf and fmt_effect_size(maximal.effect_size) == "+∞"
    assert fmt_effect_size(paired_test(np.zeros(5), np.ones(5)).effect_size) == "−∞"
    assert paired_test(np.ones(4), np.ones(4)).effect_size == 0.0  # no difference at all
    # Ten problems that all differ by +1: significant, and the interval is not a point.
    assert maximal.p_value == pytest.approx(2 / 2**10)
    assert 0.3 < maximal.interval.low < maximal.interval.high == 1.0


def test_interval_never_collapses_and_stays_within_the_bounds():
    for differences in (np.zeros(30), np.full(12, 0.5), np.array([1.0]), np.ones(40)):
        low, high = skew_corrected_interval(differences)
        assert -1 <= low[0] < high[0] <= 1
    low, high = skew_corrected_interval(np.zeros(30))  # 30 ties: ±0.09, not [0, 0]
    assert high[0] == pytest.approx(-low[0]) and 0.05 < high[0] < 0.12


def test_vectorised_sign_flip_matches_one_row_at_a_time():
    rng = np.random.default_rng(3)
    rows = np.round(rng.normal(0.1, 0.5, (5, 12)), 1)
    rows[0] = 0.0
    together = sign_flip_p(rows)
    assert together[0] == 1.0
    assert np.allclose(together, [sign_flip_p(row)[0] for row in rows])
    large = rng.normal(0, 1, (3, 40))  # Monte Carlo: never below 1 / (resamples + 1)
    assert np.all(sign_flip_p(large, resamples=999) >= 1 / 1000)


def test_equivalence_needs_enough_problems_inside_the_margin():
    assert equivalence_p(np.zeros(20), 0.1)[0] > 0.05  # 20 ties cannot rule out ±0.1
    assert equivalence_p(np.zeros(60), 0.1)[0] < 0.01
    assert equivalence_p(np.full(60, 0.15), 0.1)[0] > 0.5  # outside the margin
    assert minimum_problems(PLAN, 3) == (7, 39)
    assert minimum_problems(PLAN, 1) == (6, 29)


def test_holm_shaffer_counts_tests_not_p_values():
    adjusted, equivalence = holm_shaffer([0.01, 0.5, 0.02], [0.9, 0.01, None])
    assert adjusted == pytest.approx([0.03, 1.0, 0.06])
    assert equivalence == pytest.approx([1.0, 0.03, None])
    plain, _ = holm_shaffer([0.04, 0.01, 0.03], [None, None, None])
    assert plain == pytest.approx([0.06, 0.03, 0.06])  # Holm: 3 × 0.01, 2 × 0.03, max(…)


def test_clear_outcomes_on_enough_problems():
    rng = np.random.default_rng(0)
    accuracy = rng.uniform(0.2, 0.8, 80)
    noise = rng.normal(0, 0.05, 80)
    findings = study(
        (accuracy, accuracy + noise),  # the same: equivalent within ±0.1
        (accuracy - 0.3, accuracy),  # padded clearly worse
        (np.clip(accuracy + 0.3 + noise, 0, 1), accuracy),  # hybrid clearly better
    )
    h1, h2, h3 = (verdict(findings, h) for h in ("H1", "H2", "H3"))
    assert (h1.result.outcome, h1.conclusion) == ("no effect", "supported")
    assert (h2.result.outcome, h2.conclusion) == ("effect", "supported")
    assert (h3.result.outcome, h3.conclusion) == ("effect", "not supported")
    assert "parallel is more accurate than padded-parallel" in h2.statement
    assert h1.result.p_equivalence_adjusted <= 0.05 and h2.result.p_adjusted <= 0.05
    assert all(v.result.mde < 0.1 for v in findings.verdicts)


def test_secondary_tests_are_not_adjusted_and_decide_nothing():
    same = (np.full(50, 0.5), np.full(50, 0.5))
    extra = Comparison.of("H2 · scale 2", "H2", "secondary", "x", ARMS["H2"], *same)
    findings = evaluate([primary("H1", *same), extra], PLAN)
    assert findings.family == 1 and [v.hypothesis for v in findings.verdicts] == ["H1"]
    secondary = findings.result("H2 · scale 2")
    assert secondary.p_adjusted is None and secondary.level == PLAN.alpha


def test_the_report_summary_shows_rule_margin_estimate_interval_p_and_mde():
    same = ([0.5] * 8, [0.5] * 8)
    findings = study(([1.0] * 8, [0.0] * 8), same, same)
    markdown = to_markdown([*verdict_blocks(findings, {}, 8), results_table(findings, "H1")])
    for field in (
        "Decision rules",
        "margin",
        "±0.10",
        "estimate",
        "95% interval",
        "adjusted p (difference)",
        "adjusted p (equivalence)",
        "MDE (80% power)",
        "+∞",
    ):
        assert field in markdown, field
    assert "H1 (aggregation) not supported: parallel is more accurate than sequential" in markdown


def test_plan_is_validated():
    with pytest.raises(SeqparError, match="--margin"):
        AnalysisPlan(margin=0)
    with pytest.raises(SeqparError, match="--long-pad-scale"):
        AnalysisPlan(long_pad_scale=1.5)
    assert AnalysisPlan.from_json(PLAN.to_json()) == PLAN


def test_dry_run_sensitivity_of_a_planned_size():
    assert all(math.isinf(mde) for _, mde, _ in sensitivity(3, PLAN).rows)
    text = describe_sensitivity(sensitivity(100, PLAN))
    assert "An effect needs at least 7 problems and 'no effect' at least 39" in text
    assert "| 0.4 | 0.131 | 187 |" in text
    assert minimal_detectable_effect(0.4, 100, alpha=0.05 / 3) == pytest.approx(0.131, abs=5e-4)


def test_study_plan_has_the_longer_and_the_neutral_padded_arms():
    from seqpar.config import RunConfig
    from seqpar.specs import ParallelSpec
    from seqpar.study import plan

    base = RunConfig(strategy=ParallelSpec(4))
    runs = {r.name: r for r in plan(base, Path("/tmp/s"), False, PLAN)}
    assert list(runs)[:5] == [
        "parallel",
        "sequential",
        "padded-parallel",
        "padded-parallel-x2",
        "padded-parallel-neutral",
    ]
    padded = runs["padded-parallel"].config.strategy
    assert (padded.name, padded.pad_scale, padded.filler) == ("padded-parallel", 1.0, "other")
    assert runs["padded-parallel-x2"].config.strategy.pad_scale == 2.0
    assert runs["padded-parallel-neutral"].config.strategy.filler == "neutral"
    assert {"hybrid-k1", "hybrid-k2"} <= set(runs)
    with_k3 = plan(base, Path("/tmp/s"), False, AnalysisPlan(hybrid_k=3))
    assert "hybrid-k3" in {r.name for r in with_k3}


def test_study_steps_generate_independent_runs_together_and_matched_ones_after():
    from dataclasses import replace

    from seqpar.config import RunConfig
    from seqpar.specs import AblationSpec, ParallelSpec
    from seqpar.study import PlannedRun, plan, stages

    base = RunConfig(strategy=ParallelSpec(4))
    runs = plan(base, Path("/tmp/s"), True, PLAN)
    heads = AblationSpec(((0, 1),))
    runs += [PlannedRun(f"ablate{i}", replace(base, ablation=heads), 4) for i in (1, 2)]
    names = [[r.name for r in step] for step in stages(runs)]
    padded = ["padded-parallel", "padded-parallel-x2", "padded-parallel-neutral"]
    assert names[1] == padded  # they match the sequential run's prompt lengths: after it
    assert names[2:] == [["ablate1"], ["ablate2"]]  # each changes the model: alone
    assert names[0][:2] == ["parallel", "sequential"]
    assert "sequential-feedback-hidden" in names[0] and not set(padded) & set(names[0])
    assert sorted(n for step in names for n in step) == sorted(r.name for r in runs)


# Calibration by simulation: the documented error rates (docs/concepts.md) -------------------

STUDIES = 1500
LIMIT = PLAN.alpha + 3 * math.sqrt(PLAN.alpha * (1 - PLAN.alpha) / STUDIES)


@pytest.mark.parametrize("kind", ["samples", "votes", "shared"])
@pytest.mark.parametrize("problems", [40, 120])
def test_wrong_verdicts_stay_below_alpha(kind, problems):
    null = simulate(problems, (0.0, 0.0, 0.0), kind=kind, studies=STUDIES, seed=problems)
    assert null.wrong <= LIMIT  # any wrong "effect" when nothing differs
    m = PLAN.margin
    edge = simulate(problems, (m, -m, m), kind=kind, studies=STUDIES, seed=problems + 1)
    assert edge.wrong <= LIMIT  # any wrong "no effect" when all differ by the margin


def test_power_for_an_effect_of_the_margin():
    m = PLAN.margin
    result = simulate(100, (m, -m, m), kind="samples", studies=400, seed=7)
    assert min(result.effect) >= 0.9  # docs: 0.99 with 100 problems
    null = simulate(100, (0.0, 0.0, 0.0), kind="samples", studies=400, seed=8)
    assert min(null.no_effect) >= 0.9


def test_no_verdict_with_fewer_problems_than_the_rules_allow():
    for problems in (2, 4, 6):
        extreme = simulate(problems, (0.9, -0.9, 0.9), kind="votes", studies=200, seed=problems)
        assert max(extreme.effect) == 0 and max(extreme.no_effect) == 0
    ties = simulate(30, (0.0, 0.0, 0.0), kind="shared", studies=200, seed=1)
    assert max(ties.no_effect) == 0  # 'no effect' needs 39 problems at margin 0.1
