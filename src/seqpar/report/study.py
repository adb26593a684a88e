"""The study report: every hypothesis as numbers with intervals, figures, and verdicts.

Every number is recomputed from the runs' samples.jsonl (and embeddings cached per run in
embeddings.npz). Intervals are 95% percentile bootstraps over problems; comparisons are
paired over the same problems (sign-flip permutation test, Cohen's d_z).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from seqpar.aggregate import AGGREGATORS, budgets
from seqpar.analysis.diversity import (
    answer_entropy,
    distinct_answers,
    mean_pairwise_similarity,
    similarity_to_earlier,
)
from seqpar.analysis.induction import copy_rate
from seqpar.analysis.stats import PairedTest, bootstrap_ci, paired_test
from seqpar.report.document import Block, Figure, Heading, Paragraph, Table, to_html, to_markdown
from seqpar.report.summary import RunData, load_run
from seqpar.store import write_atomic
from seqpar.tasks.extract import split_reasoning
from seqpar.tasks.math import GRADE_TIMED_OUT
from seqpar.types import Sample

EMBEDDINGS = "embeddings.npz"


def run_embeddings(
    run: RunData, encode: Callable[[list[str]], np.ndarray]
) -> dict[tuple, np.ndarray]:
    """Embedding of every accepted sample's final text, cached in the run directory."""
    path = Path(run.path) / EMBEDDINGS
    cached = dict(np.load(path)) if path.is_file() else {}
    wanted = {"\t".join(map(str, s.draw)): s for s in run.samples if s.status == "ok"}
    missing = [k for k in wanted if k not in cached]
    if missing:
        texts = [final_text(wanted[k]) for k in missing]
        cached.update(zip(missing, encode(texts), strict=True))
        with open(path, "wb") as handle:
            np.savez(handle, **cached)
    return {wanted[k].key: cached[k] for k in wanted}


def final_text(sample: Sample) -> str:
    final = split_reasoning(sample.text)[1]
    return final if final is not None else sample.text


def sample_accuracy(run: RunData) -> np.ndarray:
    """Per problem: the share of scored samples that are correct (no aggregation)."""
    return np.array([np.mean([s.correct for chain in p for s in chain]) for p in run.grid])


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
    return "–" if np.isnan(value) else f"{value:.3f}"


def fmt_ci(values: np.ndarray) -> str:
    values = values[~np.isnan(values)]
    if not len(values):
        return "–"
    interval = bootstrap_ci(values)
    return f"{interval.mean:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def fmt_test(test: PairedTest) -> str:
    i = test.interval
    return (
        f"{test.mean_difference:+.3f} [{i.low:+.3f}, {i.high:+.3f}], p = {test.p_value:.3g}, "
        f"d_z = {test.effect_size:.2f}, {test.problems} problems"
    )


def paired(a: np.ndarray, b: np.ndarray) -> PairedTest:
    keep = ~(np.isnan(a) | np.isnan(b))
    return paired_test(a[keep], b[keep])


def figure(name: str, caption: str, draw: Callable) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Figure(name, buffer.getvalue(), caption)


def curves_figure(runs: dict[str, RunData], aggregators: Sequence[str], by_tokens: bool) -> Figure:
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
        axis.set_ylabel("cosine similarity")
        axis.legend(fontsize=7)
        return fig

    return figure(
        "similarity_vs_round.png",
        "Embedding similarity of each sequential round to the earlier rounds, against "
        "the mean pairwise similarity of parallel samples.",
        draw,
    )


def verdicts(tests: dict[str, PairedTest | None]) -> list[str]:
    """Plain-language verdicts computed from the paired tests (95% intervals)."""
    lines = []
    same, default = tests.get("H1 same"), tests.get("H1 default")
    if same is not None:
        if same.interval.low > 0:
            lines.append(
                "H1 (aggregation) not supported: with majority voting on both, parallel "
                f"still leads sequential ({fmt_test(same)})."
            )
        elif default is not None and default.interval.low > 0:
            lines.append(
                "H1 (aggregation) supported: parallel with majority leads sequential's "
                "last answer, but with majority on both the gap is within its interval "
                f"({fmt_test(same)})."
            )
        else:
            lines.append(f"H1 (aggregation) inconclusive: no significant gap ({fmt_test(same)}).")
    padded = tests.get("H2")
    if padded is not None:
        if padded.interval.high < 0:
            lines.append(
                "H2 (context length) supported: padded parallel is less accurate than "
                f"parallel ({fmt_test(padded)})."
            )
        else:
            lines.append(
                "H2 (context length) not supported: padded parallel within CI of "
                f"parallel or better ({fmt_test(padded)})."
            )
    similar, hybrid = tests.get("H3 similarity"), tests.get("H3 hybrid")
    evidence = []
    if similar is not None and similar.interval.low > 0:
        evidence.append("sequential solutions are more similar to each other than parallel ones")
    if hybrid is not None and hybrid.interval.high < 0:
        evidence.append("samples drawn after k sequential rounds are less accurate than fresh ones")
    if evidence:
        lines.append("H3 (exploration) supported: " + "; ".join(evidence) + ".")
    elif similar is not None or hybrid is not None:
        lines.append(
            "H3 (exploration) not shown at this sample size: neither the similarity "
            "nor the hybrid difference is significant."
        )
    return lines


def copy_rates_of(run: RunData, tokenize: Callable[[str], list[int]], n: int) -> np.ndarray:
    """Per problem: mean n-gram copy rate of rounds ≥ 2 from the chain's earlier rounds."""
    stored = {s.key: s for s in run.samples if s.status == "ok"}
    shown = run.config.template.shown
    rates = []
    for pid in run.problem_ids:
        values = []
        for r in range(2, run.strategy.rounds + 1):
            sample = stored.get((pid, 0, r))
            earlier = [stored.get((pid, 0, q)) for q in range(1, r)]
            if sample is None or any(e is None for e in earlier):
                continue
            source = [t for e in earlier for t in tokenize(shown(e.text))]
            values.append(copy_rate(tokenize(shown(sample.text)), source, n))
        rates.append(np.nanmean(values) if values and not np.all(np.isnan(values)) else np.nan)
    return np.array(rates)


def write_study_report(
    out: Path, names: Sequence[str], tokenize: Callable[[str], list[int]] | None = None
) -> Path:
    """Write report.md, report.html and figures/ for the study in `out`."""
    from seqpar.analysis.embeddings import Embedder

    runs = {name: load_run(str(out / name)) for name in names}
    first = next(iter(runs.values()))
    n = first.config.n
    verified = any(s.score is not None for r in runs.values() for s in r.samples)
    aggregators = [a for a in AGGREGATORS if verified or a != "best-of-n"]
    embedder = Embedder(first.config.embedder)
    vectors = {
        name: run_embeddings(run, lambda t: embedder.encode(t)) for name, run in runs.items()
    }
    div = {name: diversity(run, vectors[name]) for name, run in runs.items()}

    blocks: list[Block] = [
        Heading(f"seqpar study: {first.config.model} on {first.config.task}", 1),
        Paragraph(
            f"{len(first.problem_ids)} problems, N = {n}, max {first.config.max_tokens} "
            f"tokens, temperature {first.config.temperature}, seed {first.config.seed}. "
            "Intervals: 95% bootstrap over problems. Paired tests: sign-flip permutation "
            "over the same problems, effect size d_z. Grading timeouts (counted incorrect): "
            + ", ".join(
                f"{name} {sum(s.grade_reason == GRADE_TIMED_OUT for s in run.draws)}"
                for name, run in runs.items()
            )
            + "."
        ),
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

    par, seq = runs.get("parallel"), runs.get("sequential")
    tests: dict[str, PairedTest | None] = {}
    if par and seq:
        k = budgets(n)
        gap_rows = []
        for aggregator in aggregators:
            test = paired(par.scores(aggregator, k)[:, -1], seq.scores(aggregator, k)[:, -1])
            gap_rows.append([aggregator, fmt_test(test)])
        tests["H1 same"] = paired(
            par.scores("majority", k)[:, -1], seq.scores("majority", k)[:, -1]
        )
        tests["H1 default"] = paired(par.scores("majority", k)[:, -1], seq.scores("last", k)[:, -1])
        blocks += [
            Heading("H1 · Aggregation: parallel − sequential with the same aggregator"),
            Table(["aggregator", "difference at k = N (paired)"], gap_rows),
            Paragraph(
                "Default usage, parallel majority − sequential last: "
                + fmt_test(tests["H1 default"])
            ),
        ]
    padded = runs.get("padded-parallel")
    if par and padded:
        tests["H2"] = paired(sample_accuracy(padded), sample_accuracy(par))
        lengths = [
            (s.prompt_tokens, s.target_prompt_tokens)
            for s in padded.samples
            if s.target_prompt_tokens
        ]
        within = np.mean([abs(a - t) <= 0.05 * t for a, t in lengths]) if lengths else np.nan
        blocks += [
            Heading("H2 · Context length: padded parallel − parallel (sample accuracy)"),
            Paragraph(
                f"{fmt_test(tests['H2'])}. Padded prompts within 5% of their target "
                f"length: {fmt(float(within))} of {len(lengths)}."
            ),
        ]
    if par and seq:
        tests["H3 similarity"] = paired(
            div["sequential"]["similarity"], div["parallel"]["similarity"]
        )
        by_round = similarity_by_round(seq, vectors["sequential"])
        blocks += [
            Heading("H3 · Exploration"),
            Paragraph(
                "Mean pairwise similarity, sequential − parallel: "
                + fmt_test(tests["H3 similarity"])
            ),
            Table(
                ["run", "distinct answers", "answer entropy (bits)"],
                [[name, fmt_ci(d["distinct"]), fmt_ci(d["entropy"])] for name, d in div.items()],
            ),
        ]
        if by_round:
            blocks.append(
                similarity_figure(by_round, float(np.nanmean(div["parallel"]["similarity"])))
            )
        hybrids = sorted(name for name in runs if name.startswith("hybrid"))
        hybrid_rows = []
        for name in hybrids:
            test = paired(sample_accuracy(runs[name]), sample_accuracy(par))
            hybrid_rows.append([name, fmt_ci(sample_accuracy(runs[name])), fmt_test(test)])
            tests["H3 hybrid"] = (
                test
                if "H3 hybrid" not in tests
                or test.mean_difference < tests["H3 hybrid"].mean_difference
                else tests["H3 hybrid"]
            )
        if hybrid_rows:
            blocks += [
                Paragraph(
                    f"Samples after k sequential rounds vs fresh parallel samples "
                    f"(sample accuracy; parallel: {fmt_ci(sample_accuracy(par))})."
                ),
                Table(["run", "sample accuracy", "− parallel (paired)"], hybrid_rows),
            ]
    ablated = [
        name for name in ("sequential-ablate-top", "sequential-ablate-random") if name in runs
    ]
    if seq and ablated and tokenize:
        k = budgets(n)
        ablation_rows = []
        for name in ("sequential", *ablated):
            run = runs[name]
            heads = run.config.ablate_heads or "none"
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
    blocks += [Heading("Verdicts"), *[Paragraph(line) for line in verdicts(tests)]]

    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    for block in blocks:
        if isinstance(block, Figure):
            (figures / block.name).write_bytes(block.png)
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
            label = f"{run.config.model} · {run.config.task} · {run.config.strategy} ({path})"
            axis.plot(ks, run.scores("majority", ks).mean(axis=0), marker="o", label=label)
        axis.set_xlabel("N (samples or rounds)")
        axis.set_ylabel("accuracy (majority)")
        axis.legend(fontsize=6)
        return fig

    return figure("comparison.png", "Accuracy vs N, majority vote, per run.", draw)
