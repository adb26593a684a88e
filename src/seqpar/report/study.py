"""The study report: the verdicts first, then every hypothesis as numbers, tables, figures.

Every number is recomputed from the runs' samples.jsonl (and embeddings cached per run in
embeddings.npz). This module turns runs into per-problem scores (`comparisons`) and renders
what `seqpar.analysis.hypotheses.evaluate` decides from them; it decides nothing itself.
Accuracy intervals are 95% percentile bootstraps over problems.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from seqpar import roles
from seqpar.aggregate import aggregator_named, budgets
from seqpar.analysis.diversity import (
    answer_entropy,
    distinct_answers,
    mean_pairwise_similarity,
    similarity_to_earlier,
)
from seqpar.analysis.hypotheses import (
    AnalysisPlan,
    Comparison,
    Findings,
    TestResult,
    default_hybrid_k,
    evaluate,
    fmt_mde,
    fmt_p,
    signed,
)
from seqpar.analysis.induction import copy_rate
from seqpar.analysis.stats import bootstrap_ci
from seqpar.errors import GRADE_TIMED_OUT
from seqpar.registry import AGGREGATORS
from seqpar.report.browse import browser_link
from seqpar.report.document import Block, Figure, Heading, Paragraph, Table, to_html, to_markdown
from seqpar.rundata import RunData, load_run
from seqpar.store import write_atomic
from seqpar.strategies.sequential import shown as shown_attempt
from seqpar.tasks.extract import split_reasoning
from seqpar.types import Sample

EMBEDDINGS = "embeddings.npz"


def run_embeddings(
    run: RunData, encode: Callable[[list[str]], np.ndarray]
) -> dict[tuple, np.ndarray]:
    """Embedding of every accepted sample's whole solution (`final_text`; samples without
    one have none), cached in the run directory under the embedder and EMBEDDING_RULE."""
    from seqpar.analysis.embeddings import EMBEDDING_RULE

    path = Path(run.path) / EMBEDDINGS
    tag = f"{EMBEDDING_RULE} {run.config.novelty.embedder}"
    cached = dict(np.load(path)) if path.is_file() else {}
    if str(cached.pop("__rule__", "")) != tag:
        cached = {}  # made under another text, pooling rule or embedder
    wanted = {
        "\t".join(map(str, s.draw)): s
        for s in run.samples
        if s.status == "ok" and final_text(s) is not None
    }
    missing = [k for k in wanted if k not in cached]
    if missing:
        texts = [final_text(wanted[k]) or "" for k in missing]
        cached.update(zip(missing, encode(texts), strict=True))
        with open(path, "wb") as handle:
            np.savez(handle, __rule__=np.array(tag), **cached)
    return {wanted[k].key: cached[k] for k in wanted}


def final_text(sample: Sample) -> str | None:
    """The solution embedded for diversity, one rule for every strategy: the text after the
    last </think> (whole text without a think block); None for an unclosed think block or
    a blank solution (the rule of `seqpar.analysis.embeddings.solution_text`)."""
    final = split_reasoning(sample.text)[1]
    return final if final is not None and final.strip() else None


def sample_accuracy(run: RunData) -> np.ndarray:
    """Per problem: the share of scored samples that are correct (no aggregation)."""
    return np.array([np.mean([s.correct for chain in p for s in chain]) for p in run.grid])


def filled_accuracy(run: RunData) -> np.ndarray:
    """Per problem: the share of correct samples among rounds ≥ 2 (padded-parallel: the
    samples that carry filler; round 1 is the parallel prompt itself)."""
    return np.array(
        [np.mean([s.correct for chain in p for s in chain[1:]] or [np.nan]) for p in run.grid]
    )


def accuracy_by_round(run: RunData) -> np.ndarray:
    """Per problem and round: the share of the round's samples that are correct."""
    return np.array(
        [[np.mean([chain[r].correct for chain in p]) for r in range(len(p[0]))] for p in run.grid]
    ).reshape(len(run.grid), -1)


def prompt_tokens_by_round(run: RunData) -> list[float]:
    """Mean prompt tokens of chain 0's samples at each round (skipped slots excluded)."""
    rows: dict[int, list[int]] = {}
    for sample in run.samples:
        if sample.chain == 0 and sample.status != "skipped":
            rows.setdefault(sample.round, []).append(sample.prompt_tokens)
    return [float(np.mean(rows[r])) if r in rows else np.nan for r in range(1, max(rows) + 1)]


def round_slopes(run: RunData, baseline: np.ndarray) -> np.ndarray:
    """Per problem: least-squares slope over rounds 2..N of (round accuracy − baseline),
    i.e. the change per additional round of context; NaN with fewer than two such rounds."""
    by_round = accuracy_by_round(run)[:, 1:]
    if by_round.shape[1] < 2:
        return np.full(len(by_round), np.nan)
    rounds = np.arange(2, by_round.shape[1] + 2, dtype=float)
    centred = rounds - rounds.mean()
    differences = by_round - baseline[:, None]
    return (differences * centred).sum(axis=1) / (centred**2).sum()


def diversity(run: RunData, vectors: dict[tuple, np.ndarray]) -> dict[str, np.ndarray]:
    """Per problem: mean pairwise similarity, distinct answers, answer entropy."""
    similarity, distinct, entropy = [], [], []
    for pid, chains in zip(run.problem_ids, run.grid, strict=True):
        keys = [
            (pid, c, r)
            for c in range(run.strategy.chains)
            for r in range(1, run.strategy.rounds + 1)
            if (pid, c, r) in vectors
        ]
        similarity.append(
            mean_pairwise_similarity(np.stack([vectors[k] for k in keys]))
            if len(keys) > 1
            else np.nan
        )
        classes = [s.answer_class for chain in chains for s in chain]
        distinct.append(distinct_answers(classes))
        entropy.append(answer_entropy(classes))
    return {
        "similarity": np.array(similarity),
        "distinct": np.array(distinct, dtype=float),
        "entropy": np.array(entropy),
    }


def similarity_by_round(
    run: RunData, vectors: dict[tuple, np.ndarray]
) -> list[tuple[float, float]]:
    """For rounds 2..N of sequential chains: mean over problems of (max, mean) similarity
    to the earlier rounds."""
    per_round: dict[int, list[tuple[float, float]]] = {}
    for pid in run.problem_ids:
        for chain in range(run.strategy.chains):
            rows = [vectors.get((pid, chain, r)) for r in range(1, run.strategy.rounds + 1)]
            if any(v is None for v in rows):
                continue
            for offset, pair in enumerate(similarity_to_earlier(np.stack(rows)), start=2):
                per_round.setdefault(offset, []).append(pair)
    return [tuple(np.mean(per_round[r], axis=0)) for r in sorted(per_round)]


def fmt(value: float) -> str:
    """A number with three decimals ("–" when missing)."""
    return "–" if np.isnan(value) else f"{value:.3f}"


def fmt_ci(values: np.ndarray) -> str:
    """Mean and 95% bootstrap interval of per-problem values (missing ones dropped)."""
    values = values[~np.isnan(values)]
    if not len(values):
        return "–"
    interval = bootstrap_ci(values)
    return f"{interval.mean:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def fmt_tokens(per_round: Sequence[float], round_: int) -> str:
    """Mean prompt tokens at a round, as a whole number ("–" when there are none)."""
    if round_ > len(per_round) or np.isnan(per_round[round_ - 1]):
        return "–"
    return f"{per_round[round_ - 1]:.0f}"


def fmt_effect_size(value: float) -> str:
    """Cohen's d_z; ±∞ when every problem differs by the same non-zero amount."""
    if np.isnan(value):
        return "–"
    if np.isinf(value):
        return "+∞" if value > 0 else "−∞"
    return f"{value:+.2f}"


def figure(name: str, caption: str, draw: Callable) -> Figure:
    """A PNG figure drawn by `draw(pyplot)`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Figure(name, buffer.getvalue(), caption)


def whole_numbers(axis, values: Sequence[int]) -> None:
    """Ticks of the x axis at whole numbers only (rounds, N): at each value when there are
    few, else at integers chosen by matplotlib."""
    from matplotlib.ticker import MaxNLocator

    ticks = sorted({int(v) for v in values})
    if len(ticks) <= 16:
        axis.set_xticks(ticks)
    else:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(ticks) == 1:
        axis.set_xlim(ticks[0] - 1, ticks[0] + 1)


def curves_figure(runs: dict[str, RunData], aggregators: Sequence[str], by_tokens: bool) -> Figure:
    """Accuracy of every run vs N (or vs generated tokens), one panel per aggregator."""

    def draw(plt):
        fig, axes = plt.subplots(
            1, len(aggregators), figsize=(4.2 * len(aggregators), 3.6), squeeze=False
        )
        for axis, aggregator in zip(axes[0], aggregators, strict=True):
            for name, run in runs.items():
                ks = budgets(run.config.n)
                scores = run.scores(aggregator, ks)
                bands = [bootstrap_ci(scores[:, i]) for i in range(len(ks))]
                xs = run.tokens(ks).mean(axis=0) if by_tokens else ks
                axis.plot(xs, [b.mean for b in bands], marker="o", label=name)
                axis.fill_between(xs, [b.low for b in bands], [b.high for b in bands], alpha=0.15)
            axis.set_title(aggregator)
            axis.set_xlabel(
                "generated tokens per problem" if by_tokens else "N (samples or rounds)"
            )
            if not by_tokens:
                whole_numbers(axis, [k for run in runs.values() for k in budgets(run.config.n)])
            axis.set_ylabel("accuracy")
            axis.set_ylim(-0.02, 1.02)
        axes[0][-1].legend(fontsize=7)
        return fig

    kind = "tokens" if by_tokens else "n"
    caption = (
        f"Accuracy vs {'generated tokens' if by_tokens else 'N'} per strategy and "
        "aggregator, with 95% bootstrap bands over problems."
    )
    return figure(f"accuracy_vs_{kind}.png", caption, draw)


def similarity_figure(sequential: list[tuple[float, float]], parallel: float) -> Figure:
    """Similarity of each sequential round to the earlier ones, against parallel samples."""

    def draw(plt):
        fig, axis = plt.subplots(figsize=(5, 3.6))
        rounds = list(range(2, len(sequential) + 2))
        axis.plot(
            rounds, [m for m, _ in sequential], marker="o", label="sequential: max to earlier"
        )
        axis.plot(
            rounds, [m for _, m in sequential], marker="s", label="sequential: mean to earlier"
        )
        if not np.isnan(parallel):
            axis.axhline(parallel, color="gray", linestyle="--", label="parallel: mean pairwise")
        axis.set_xlabel("round")
        whole_numbers(axis, rounds)
        axis.set_ylabel("cosine similarity")
        axis.legend(fontsize=7)
        return fig

    return figure(
        "similarity_vs_round.png",
        "Embedding similarity of each sequential round to the earlier rounds, against "
        "the mean pairwise similarity of parallel samples.",
        draw,
    )


def rounds_figure(arms: dict[str, RunData], parallel: float) -> Figure:
    """Accuracy per round of the padded arms and sequential, against parallel samples."""

    def draw(plt):
        fig, axis = plt.subplots(figsize=(5.5, 3.6))
        for name, run in arms.items():
            by_round = accuracy_by_round(run).mean(axis=0)
            axis.plot(range(1, len(by_round) + 1), by_round, marker="o", label=name)
        axis.axhline(parallel, color="gray", linestyle="--", label="parallel (all samples)")
        axis.set_xlabel("round (context grows with each round)")
        whole_numbers(axis, [r for run in arms.values() for r in range(1, run.strategy.rounds + 1)])
        axis.set_ylabel("sample accuracy")
        axis.set_ylim(-0.02, 1.02)
        axis.legend(fontsize=7)
        return fig

    return figure(
        "accuracy_vs_round.png",
        "Sample accuracy at each round: sequential, and padded parallel whose filler matches "
        "the sequential prompt length at that round (× scale); round 1 carries no filler.",
        draw,
    )


def copy_rates_of(run: RunData, tokenize: Callable[[str], list[int]], n: int) -> np.ndarray:
    """Per problem: mean n-gram copy rate of each solution from the ones before it — a
    sequential chain's rounds ≥ 2 from its earlier rounds (chain 0), or parallel sample
    c ≥ 1 from samples 0..c-1 of the same problem (the control: what independent samples
    share by chance)."""
    stored = {s.key: s for s in run.samples if s.status == "ok"}
    shown = functools.partial(shown_attempt, run.config.template)
    strategy = run.strategy
    rates = []
    for pid in run.problem_ids:
        if strategy.rounds == 1:
            order = [stored.get((pid, c, 1)) for c in range(strategy.chains)]
        else:
            order = [stored.get((pid, 0, r)) for r in range(1, strategy.rounds + 1)]
        values = []
        for index in range(1, len(order)):
            sample, earlier = order[index], order[:index]
            if sample is None or any(e is None for e in earlier):
                continue
            source = [t for e in earlier for t in tokenize(shown(e.text))]
            values.append(copy_rate(tokenize(shown(sample.text)), source, n))
        rates.append(np.nanmean(values) if values and not np.all(np.isnan(values)) else np.nan)
    return np.array(rates)


def long_name(analysis: AnalysisPlan) -> str:
    """The run name of the study's longer padded arm."""
    return roles.padded_long(analysis.long_pad_scale)


def comparisons(
    runs: dict[str, RunData],
    div: dict[str, dict[str, np.ndarray]],
    analysis: AnalysisPlan,
    aggregators: Sequence[str],
    copy: Callable[[RunData], np.ndarray] | None = None,
) -> list[Comparison]:
    """The study's tests as per-problem scores: the pre-declared primary test of each
    hypothesis, then secondary and supporting ones."""
    par, seq = runs.get(roles.PARALLEL), runs.get(roles.SEQUENTIAL)
    padded, hybrid = runs.get(roles.PADDED), runs.get(roles.hybrid(analysis.hybrid_k))
    if par is None:
        return []
    n = par.config.n
    k = budgets(n)

    def at_n(run: RunData, aggregator: str) -> np.ndarray:
        return run.scores(aggregator, k)[:, -1]

    found: list[Comparison] = []
    if seq:
        found.append(
            Comparison.of(
                "H1", "H1", "primary", "majority at k = N on both",
                (roles.PARALLEL, roles.SEQUENTIAL), at_n(par, "majority"), at_n(seq, "majority"),
            )
        )  # fmt: skip
    if padded and n >= 2:
        found.append(
            Comparison.of(
                "H2", "H2", "primary",
                "sample accuracy, padded rounds 2..N (other problems' solutions, scale 1)",
                (roles.PADDED, roles.PARALLEL), filled_accuracy(padded), sample_accuracy(par),
            )
        )  # fmt: skip
    if hybrid:
        found.append(
            Comparison.of(
                "H3", "H3", "primary",
                f"sample accuracy after {analysis.hybrid_k} sequential round(s)",
                (roles.hybrid(analysis.hybrid_k), roles.PARALLEL),
                sample_accuracy(hybrid), sample_accuracy(par),
            )
        )  # fmt: skip
    if seq:
        for aggregator in aggregators:
            if aggregator != "majority":
                found.append(
                    Comparison.of(
                        f"H1 · {aggregator}", "H1", "secondary", f"{aggregator} at k = N on both",
                        (roles.PARALLEL, roles.SEQUENTIAL),
                        at_n(par, aggregator),
                        at_n(seq, aggregator),
                    )
                )  # fmt: skip
        found.append(
            Comparison.of(
                "H1 · default use", "H1", "secondary",
                "parallel with majority vs sequential's last round (the default answer)",
                ("parallel majority", "sequential last"),
                at_n(par, "majority"), at_n(seq, "last"),
            )
        )  # fmt: skip
    if padded and n >= 2:
        found.append(
            Comparison.of(
                "H2 · majority", "H2", "secondary", "majority at k = N on both (aggregated)",
                (roles.PADDED, roles.PARALLEL), at_n(padded, "majority"), at_n(par, "majority"),
            )
        )  # fmt: skip
        longer, neutral = runs.get(long_name(analysis)), runs.get(roles.PADDED_NEUTRAL)
        if longer:
            found.append(
                Comparison.of(
                    f"H2 · scale {analysis.long_pad_scale:g}", "H2", "secondary",
                    f"sample accuracy, rounds 2..N, filler × {analysis.long_pad_scale:g}",
                    (long_name(analysis), roles.PARALLEL),
                    filled_accuracy(longer), sample_accuracy(par),
                )
            )  # fmt: skip
        if neutral:
            found.append(
                Comparison.of(
                    "H2 · neutral filler", "H2", "secondary",
                    "sample accuracy, rounds 2..N, neutral prose as filler (length alone)",
                    (roles.PADDED_NEUTRAL, roles.PARALLEL),
                    filled_accuracy(neutral), sample_accuracy(par),
                )
            )  # fmt: skip
            found.append(
                Comparison.of(
                    "H2 · content", "H2", "secondary",
                    "sample accuracy, rounds 2..N, same lengths: solutions vs neutral prose",
                    (roles.PADDED, roles.PADDED_NEUTRAL),
                    filled_accuracy(padded), filled_accuracy(neutral),
                )
            )  # fmt: skip
        if n >= 3:
            found.append(
                Comparison.of(
                    "H2 · per round", "H2", "secondary",
                    "change of (padded − parallel) sample accuracy per added round of filler "
                    "(least-squares slope over rounds 2..N)",
                    (roles.PADDED, roles.PARALLEL),
                    round_slopes(padded, sample_accuracy(par)), np.zeros(len(padded.grid)),
                    bounds=(-2.0, 2.0), equivalence=False,
                )
            )  # fmt: skip
    for name in sorted(runs, key=lambda name: (len(name), name)):
        if name.startswith(roles.HYBRID_PREFIX) and name != roles.hybrid(analysis.hybrid_k):
            found.append(
                Comparison.of(
                    f"H3 · {name}", "H3", "secondary",
                    f"sample accuracy after {name.removeprefix(roles.HYBRID_PREFIX)} "
                    "sequential round(s)",
                    (name, roles.PARALLEL), sample_accuracy(runs[name]), sample_accuracy(par),
                )
            )  # fmt: skip
    if seq:
        found.append(
            Comparison.of(
                "H3 · similarity", "H3", "supporting",
                "mean pairwise embedding similarity of a problem's solutions",
                (roles.SEQUENTIAL, roles.PARALLEL),
                div[roles.SEQUENTIAL]["similarity"], div[roles.PARALLEL]["similarity"],
                bounds=(-2.0, 2.0), equivalence=False,
            )
        )  # fmt: skip
        if copy is not None:
            found.append(
                Comparison.of(
                    "H3 · copy rate", "H3", "supporting",
                    "4-gram copy rate of each solution from the ones before it",
                    (roles.SEQUENTIAL, roles.PARALLEL), copy(seq), copy(par), equivalence=False,
                )
            )  # fmt: skip
    return found


RESULT_HEADER = [
    "test",
    "role",
    "compared",
    "estimate",
    "95% interval",
    "p",
    "equivalence p",
    "d_z",
    "MDE",
    "problems",
    "outcome",
]


def result_row(result: TestResult) -> list[str]:
    """A test as a table row (p-values adjusted for primary tests, else as they are)."""
    test, comparison = result.test, result.comparison
    a, b = comparison.arms
    return [
        comparison.key,
        comparison.role + (" (adjusted p)" if result.p_adjusted is not None else ""),
        f"{a} − {b}: {comparison.description}",
        signed(test.mean_difference),
        f"[{signed(test.interval.low)}, {signed(test.interval.high)}]",
        fmt_p(result.decisive_p),
        fmt_p(result.decisive_p_equivalence),
        fmt_effect_size(test.effect_size),
        fmt_mde(result.mde),
        str(test.problems),
        result.outcome,
    ]


def results_table(findings: Findings, hypothesis: str) -> Table:
    """Every test of one hypothesis: its primary test first."""
    rows = [result_row(r) for r in findings.results if r.comparison.hypothesis == hypothesis]
    return Table(RESULT_HEADER, rows)


def verdict_blocks(findings: Findings, runs: dict[str, RunData], problems: int) -> list[Block]:
    """The summary that opens the report: each verdict with its rule and numbers, the
    compute of the compared arms, and how the rules work."""
    plan = findings.plan
    blocks: list[Block] = [Heading("Verdicts")]
    if not findings.verdicts:
        return [*blocks, Paragraph("No hypothesis could be tested: the study lacks its runs.")]
    blocks += [Paragraph(v.statement) for v in findings.verdicts]
    rows = []
    for v in findings.verdicts:
        r = v.result
        rows.append(
            [
                f"{v.hypothesis} ({v.title})",
                v.conclusion,
                r.outcome,
                f"±{plan.margin:.2f}",
                signed(r.test.mean_difference),
                f"[{signed(r.test.interval.low)}, {signed(r.test.interval.high)}]",
                fmt_p(r.p_adjusted),
                fmt_p(r.p_equivalence_adjusted),
                fmt_effect_size(r.test.effect_size),
                fmt_mde(r.mde),
                str(r.test.problems),
            ]
        )
    blocks.append(
        Table(
            [
                "hypothesis",
                "verdict",
                "outcome",
                "margin",
                "estimate",
                "95% interval",
                "adjusted p (difference)",
                "adjusted p (equivalence)",
                "d_z",
                "MDE (80% power)",
                "problems",
            ],
            rows,
        )
    )
    blocks.append(
        Paragraph(
            "Decision rules, fixed in study.json before any sample was drawn. "
            + " ".join(f"{v.hypothesis}: {v.rule}" for v in findings.verdicts)
        )
    )
    blocks.append(
        Paragraph(
            f"The {findings.family} primary tests are one family: p-values adjusted by "
            f"Holm's step-down with Shaffer's restriction (α = {plan.alpha:g}), so the chance "
            "of any false 'effect' or false 'no effect' among these verdicts is at most "
            f"{plan.alpha:g}. Difference: two-sided sign-flip permutation test over problems "
            "(exact up to 16 non-zero differences). Equivalence: two one-sided tests (TOST) "
            f"against the margin ±{plan.margin:.2f}. Interval: 95%, skew-corrected studentized "
            "with one pseudo-observation at each bound (never a point). MDE: the smallest "
            f"difference found with 80% power at α / {findings.family}. With these rules an "
            f"effect needs at least {findings.minimum_effect} problems and 'no effect' at "
            f"least {findings.minimum_no_effect}; this study has {problems}. "
            "Secondary and supporting tests below are not adjusted and decide nothing."
        )
    )
    cost_rows = []
    for name in dict.fromkeys(a for v in findings.verdicts for a in v.result.comparison.arms):
        run = runs.get(name)
        if run is None:
            continue
        ks = budgets(run.config.n)
        cost_rows.append(
            [
                name,
                fmt(float(np.nanmean(sample_accuracy(run)))),
                fmt(float(run.scores("majority", ks)[:, -1].mean())),
                f"{run.tokens(ks).mean(axis=0)[-1]:.0f}",
                f"{run.tokens(ks, 'prompt_tokens').mean(axis=0)[-1]:.0f}",
            ]
        )
    blocks.append(
        Table(
            [
                "compared run",
                "sample accuracy",
                "majority at k = N",
                "generated tokens / problem",
                "prompt tokens / problem",
            ],
            cost_rows,
        )
    )
    return blocks


def study_analysis(out: Path, n: int) -> AnalysisPlan:
    """The analysis plan recorded in the study's study.json (defaults for older studies)."""
    path = out / roles.PLAN_FILE
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if "analysis" in record:
        return AnalysisPlan.from_json(record["analysis"])
    return AnalysisPlan(hybrid_k=default_hybrid_k(n))


def write_study_report(
    out: Path,
    names: Sequence[str],
    tokenize: Callable[[str], list[int]] | None = None,
    analysis: AnalysisPlan | None = None,
) -> Path:
    """Write report.md, report.html and figures/ for the study in `out`; the analysis plan
    defaults to the one recorded in its study.json."""
    from seqpar.analysis.embeddings import Embedder

    runs = {name: load_run(str(out / name)) for name in names}
    first = next(iter(runs.values()))
    n = first.config.n
    analysis = analysis or study_analysis(out, n)
    verified = any(s.score is not None for r in runs.values() for s in r.samples)
    aggregators = [a for a in AGGREGATORS.names if verified or not aggregator_named(a).needs_scores]
    embedder = Embedder(first.config.novelty.embedder)
    vectors = {
        name: run_embeddings(run, lambda t: embedder.encode(t)) for name, run in runs.items()
    }
    div = {name: diversity(run, vectors[name]) for name, run in runs.items()}
    copy = (lambda run: copy_rates_of(run, tokenize, 4)) if tokenize else None
    findings = evaluate(comparisons(runs, div, analysis, aggregators, copy), analysis)

    blocks: list[Block] = [
        Heading(f"seqpar study: {first.config.model} on {first.config.task.name}", 1),
        Paragraph(
            f"{len(first.problem_ids)} problems, N = {n}, max {first.config.sampling.max_tokens} "
            f"tokens, temperature {first.config.sampling.temperature}, "
            f"seed {first.config.sampling.seed}. "
            "Accuracy intervals: 95% bootstrap over problems; tests are paired over the same "
            "problems (see Verdicts). Grading timeouts (counted incorrect): "
            + ", ".join(
                f"{name} {sum(s.grade_reason == GRADE_TIMED_OUT for s in run.draws)}"
                for name, run in runs.items()
            )
            + "."
        ),
        *verdict_blocks(findings, runs, len(first.problem_ids)),
    ]
    rows = []
    for name, run in runs.items():
        ks = budgets(run.config.n)
        rows.append(
            [
                name,
                *[fmt_ci(run.scores(a, ks)[:, -1]) for a in aggregators],
                f"{run.tokens(ks).mean(axis=0)[-1]:.0f}",
                f"{run.tokens(ks, 'prompt_tokens').mean(axis=0)[-1]:.0f}",
                fmt(float(np.nanmean(div[name]["similarity"])) if len(run.grid) else np.nan),
                fmt(float(div[name]["distinct"].mean())),
            ]
        )
    blocks += [
        Heading("Accuracy at full budget"),
        Table(
            [
                "run",
                *aggregators,
                "generated tokens / problem",
                "prompt tokens / problem",
                "mean pairwise similarity",
                "distinct answers",
            ],
            rows,
        ),
        curves_figure(runs, aggregators, by_tokens=False),
        curves_figure(runs, ["majority", "pass@k"], by_tokens=True),
    ]

    par, seq = runs.get(roles.PARALLEL), runs.get(roles.SEQUENTIAL)
    if par and seq:
        blocks += [
            Heading("H1 · Aggregation: parallel − sequential with the same aggregator"),
            results_table(findings, "H1"),
        ]
    padded = runs.get(roles.PADDED)
    if par and padded:
        arms = {
            name: runs[name]
            for name in (
                roles.SEQUENTIAL,
                roles.PADDED,
                long_name(analysis),
                roles.PADDED_NEUTRAL,
            )
            if name in runs
        }
        lengths = [
            (s.prompt_tokens, s.target_prompt_tokens)
            for name in arms
            if name != roles.SEQUENTIAL
            for s in arms[name].samples
            if s.target_prompt_tokens
        ]
        within = np.mean([abs(a - t) <= 0.05 * t for a, t in lengths]) if lengths else np.nan
        by_round = {name: accuracy_by_round(run).mean(axis=0) for name, run in arms.items()}
        tokens = {name: prompt_tokens_by_round(run) for name, run in arms.items()}
        round_rows = [
            [
                str(r),
                *[fmt_tokens(tokens[name], r) for name in arms],
                *[fmt(by_round[name][r - 1]) if r <= len(by_round[name]) else "–" for name in arms],
            ]
            for r in range(1, n + 1)
        ]
        blocks += [
            Heading("H2 · Context length: padded parallel − parallel"),
            results_table(findings, "H2"),
            Paragraph(
                "Per round: mean prompt tokens and sample accuracy of each arm (parallel, "
                f"all samples: {fmt(float(np.nanmean(sample_accuracy(par))))}). Padded "
                f"prompts within 5% of their target length: {fmt(float(within))} of "
                f"{len(lengths)}."
            ),
            Table(
                [
                    "round",
                    *[f"prompt tokens: {name}" for name in arms],
                    *[f"accuracy: {name}" for name in arms],
                ],
                round_rows,
            ),
            rounds_figure(arms, float(np.nanmean(sample_accuracy(par)))),
        ]
    if par and seq:
        by_round_similarity = similarity_by_round(seq, vectors[roles.SEQUENTIAL])
        hybrids = sorted(
            (r for r in runs if r.startswith(roles.HYBRID_PREFIX)), key=lambda r: (len(r), r)
        )
        blocks += [
            Heading("H3 · Exploration"),
            results_table(findings, "H3"),
            Paragraph(
                "Sample accuracy: "
                + ", ".join(
                    f"{name} {fmt_ci(sample_accuracy(runs[name]))}"
                    for name in [roles.PARALLEL, *hybrids]
                )
                + "."
            ),
            Table(
                ["run", "distinct answers", "answer entropy (bits)"],
                [[name, fmt_ci(d["distinct"]), fmt_ci(d["entropy"])] for name, d in div.items()],
            ),
        ]
        if by_round_similarity:
            blocks.append(
                similarity_figure(
                    by_round_similarity, float(np.nanmean(div[roles.PARALLEL]["similarity"]))
                )
            )
    ablated = [name for name in (roles.ABLATE_TOP, roles.ABLATE_RANDOM) if name in runs]
    if seq and ablated and tokenize:
        k = budgets(n)
        ablation_rows = []
        for name in (roles.SEQUENTIAL, *ablated):
            run = runs[name]
            heads = run.config.ablation.text() or "none"
            ablation_rows.append(
                [
                    name,
                    heads,
                    fmt_ci(run.scores("last", k)[:, -1]),
                    fmt_ci(run.scores("majority", k)[:, -1]),
                    fmt_ci(div[name]["similarity"]),
                    fmt_ci(copy_rates_of(run, tokenize, 4)),
                    fmt_ci(copy_rates_of(run, tokenize, 8)),
                ]
            )
        blocks += [
            Heading("Induction-head ablation in sequential sampling"),
            Paragraph(
                "Top-k induction heads switched off, against k random heads "
                "(control). Copy rate: share of a round's token n-grams found in "
                "the chain's earlier rounds."
            ),
            Table(
                [
                    "run",
                    "ablated heads",
                    "last",
                    "majority",
                    "mean pairwise similarity",
                    "copy rate n=4",
                    "copy rate n=8",
                ],
                ablation_rows,
            ),
        ]

    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    for block in blocks:
        if isinstance(block, Figure):
            (figures / block.name).write_bytes(block.png)
    blocks.insert(2, browser_link(out, runs))  # writes browse.html (`seqpar browse`)
    write_atomic(out / "report.md", to_markdown(blocks))
    write_atomic(out / "report.html", to_html("seqpar study", blocks))
    return out / "report.html"


def comparison_figure(paths: Sequence[str]) -> Figure:
    """Accuracy vs N (majority) of runs of any models and tasks, in one figure."""
    runs = {path: load_run(path) for path in paths}

    def draw(plt):
        fig, axis = plt.subplots(figsize=(6, 4))
        for path, run in runs.items():
            ks = budgets(run.config.n)
            label = (
                f"{run.config.model} · {run.config.task.name} · {run.config.strategy.name} ({path})"
            )
            axis.plot(ks, run.scores("majority", ks).mean(axis=0), marker="o", label=label)
        axis.set_xlabel("N (samples or rounds)")
        whole_numbers(axis, [k for run in runs.values() for k in budgets(run.config.n)])
        axis.set_ylabel("accuracy (majority)")
        axis.legend(fontsize=6)
        return fig

    return figure("comparison.png", "Accuracy vs N, majority vote, per run.", draw)
