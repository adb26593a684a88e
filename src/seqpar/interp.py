"""`seqpar interp`: induction heads of a model, and copying in sequential runs.

`heads` ranks every (layer, head) by its prefix-matching score on repeated random tokens
and, with `--run`, by its induction score on the run's real sequential prompts; it writes
heads.csv, heads.json and a layer × head heatmap. `copy` measures, for a sequential run,
how much each round's solution attends to and copies from the previous ones, next to
controls (parallel samples given the same previous solutions; padded-parallel filler).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from seqpar.analysis.copying import (
    attention_shares,
    copy_rates,
    induction_on_previous,
    layout,
    rebuild,
)
from seqpar.analysis.induction import prefix_matching_scores
from seqpar.errors import SeqparError
from seqpar.rundata import RunData, load_run
from seqpar.store import write_atomic
from seqpar.types import Sample

NGRAMS = (4, 8)
MEASUREMENTS = "copy_samples.jsonl"  # one line per measured sample: the copy analysis resumes


def later_rounds(run: RunData, limit: int | None) -> list[Sample]:
    """Accepted samples of rounds ≥ 2 (chain 0), for at most `limit` problems."""
    keep = set(run.problem_ids[:limit] if limit else run.problem_ids)
    return [
        s
        for s in run.samples
        if s.status == "ok" and s.round >= 2 and s.chain == 0 and s.problem_id in keep
    ]


def heatmap(path: Path, scores: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(
        figsize=(max(4, scores.shape[1] * 0.45), max(3, scores.shape[0] * 0.22))
    )
    image = axis.imshow(scores, aspect="auto", cmap="viridis", vmin=0, vmax=max(1e-9, scores.max()))
    axis.set_xlabel("head")
    axis.set_ylabel("layer")
    axis.set_title(title, fontsize=9)
    fig.colorbar(image, ax=axis)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def find_heads(
    engine: Any,
    out: Path,
    *,
    run: str | None = None,
    lengths: Sequence[int] = (32, 64),
    seeds: int = 3,
    limit: int | None = 8,
) -> list[dict[str, Any]]:
    """Rank heads by prefix-matching score (and real-prompt score with `run`); write files."""
    model, tokenizer = engine.model, engine.tokenizer
    prefix = prefix_matching_scores(
        model, model.config.vocab_size, lengths=lengths, seeds=seeds, bos=tokenizer.bos_token_id
    )
    columns = {"prefix_matching": prefix}
    if run:
        data = load_run(run)  # a sequential run's prompts need no engine to rebuild
        if data.config.strategy.name != "sequential":
            raise SeqparError(
                f"--run {run} is a {data.config.strategy.name} run; give a sequential one"
            )
        problems = {p.id: p for p in data.task.load()}
        strategy = data.strategy
        samples = later_rounds(data, limit)
        if not samples:
            raise SeqparError(f"--run {run} has no round ≥ 2 samples to measure")
        scores = []
        for sample in tqdm(samples, desc="real prompts", unit="prompt"):
            messages, previous = rebuild(data, strategy, problems, sample)
            parts = layout(
                engine, data.task.prompt(problems[sample.problem_id]), messages, previous
            )
            scores.append(induction_on_previous(model, parts))
        columns["real_prompts"] = np.mean(scores, axis=0)
    out.mkdir(parents=True, exist_ok=True)
    layers, heads = prefix.shape
    rows = [
        {"layer": layer, "head": head, **{k: float(v[layer, head]) for k, v in columns.items()}}
        for layer in range(layers)
        for head in range(heads)
    ]
    rows.sort(key=lambda row: -row["prefix_matching"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    with (out / "heads.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["rank", "layer", "head", *columns])
        writer.writeheader()
        writer.writerows(rows)
    write_atomic(
        out / "heads.json",
        json.dumps({"model": engine.describe()["model"], "heads": rows}, indent=1) + "\n",
    )
    for name, scores in columns.items():
        heatmap(out / f"heads_{name}.png", scores, f"induction score ({name.replace('_', ' ')})")
    return rows


def top_heads(table: str | Path, k: int) -> tuple[tuple[int, int], ...]:
    """The k best heads of a heads.json by prefix-matching score."""
    path = Path(table)
    if not path.is_file():
        raise SeqparError(f"heads table {path} not found; make one with `seqpar interp heads`")
    rows = json.loads(path.read_text())["heads"]
    if not 0 < k <= len(rows):
        raise SeqparError(f"--ablate-top-k must be between 1 and {len(rows)}, got {k}")
    return tuple((row["layer"], row["head"]) for row in rows[:k])


def measure_copying(
    engine: Any,
    run: str,
    out: Path,
    *,
    control: str | None = None,
    padded: str | None = None,
    limit: int | None = 8,
) -> dict[str, Any]:
    """Attention shares and copy rates per round and per head for a sequential run, with
    parallel and padded-parallel controls; writes copy.json and plots."""
    data = load_run(run)  # a sequential run's prompts need no engine to rebuild
    if data.config.strategy.name != "sequential":
        raise SeqparError(
            f"{run} is a {data.config.strategy.name} run; `interp copy` needs a sequential one"
        )
    problems = {p.id: p for p in data.task.load()}
    strategy = data.strategy
    controls: dict[str, tuple[RunData, Any]] = {}
    if control:
        controls["parallel"] = (load_run(control), None)
    if padded:
        padded_run = load_run(padded, engine)
        controls["padded"] = (padded_run, padded_run.strategy)
    by_source: dict[str, dict[int, dict[str, list]]] = {}
    out.mkdir(parents=True, exist_ok=True)
    store = out / MEASUREMENTS
    done: set[tuple[str, str, int]] = set()

    def keep(row: dict[str, Any]) -> None:
        done.add((row["source"], row["problem_id"], row["round"]))
        slot = by_source.setdefault(row["source"], {}).setdefault(
            row["round"], {"previous": [], "problem": [], "copy": []}
        )
        slot["previous"].append(np.array(row["previous"]))
        slot["problem"].append(np.array(row["problem"]))
        slot["copy"].append({int(n): rate for n, rate in row["copy"].items()})

    if store.is_file():  # resume: what was measured before is kept, not redone
        for line in store.read_text().splitlines():
            keep(json.loads(line))

    def add(source: str, sample: Sample, messages: Any, previous: list[str], text: str) -> None:
        if (source, sample.problem_id, sample.round) in done:
            return
        statement = data.task.prompt(problems[sample.problem_id])
        measured = layout(engine, statement, messages, previous, text)
        shares_previous, shares_problem = attention_shares(engine.model, measured)
        row = {
            "source": source,
            "problem_id": sample.problem_id,
            "round": sample.round,
            "previous": shares_previous.tolist(),
            "problem": shares_problem.tolist(),
            "copy": copy_rates(measured, NGRAMS),
        }
        with store.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        keep(json.loads(json.dumps(row)))

    parallel: dict[tuple[str, int, int], Sample] = {}
    if "parallel" in controls:
        parallel = {s.key: s for s in controls["parallel"][0].samples if s.status == "ok"}
        chains = controls["parallel"][0].strategy.chains
    padded_samples: dict[tuple[str, int, int], Sample] = {}
    if "padded" in controls:
        padded_samples = {s.key: s for s in controls["padded"][0].samples if s.status == "ok"}
    for sample in tqdm(
        later_rounds(data, limit), desc="copy analysis", unit="sample", file=sys.stderr
    ):
        messages, previous = rebuild(data, strategy, problems, sample)
        add("sequential", sample, messages, previous, sample.text)
        other = (
            parallel.get((sample.problem_id, (sample.round - 1) % chains, 1)) if parallel else None
        )
        if other is not None:
            add("parallel (same context)", sample, messages, previous, other.text)
        match = padded_samples.get(sample.key)
        if match is not None:
            padded_run, padded_strategy = controls["padded"]
            pad_messages, fillers = rebuild(padded_run, padded_strategy, problems, match)
            add("padded-parallel (filler)", sample, pad_messages, fillers, match.text)
    summary = summarize_copying(by_source)
    write_atomic(out / "copy.json", json.dumps(summary, indent=1) + "\n")
    plot_copying(out, summary, by_source)
    return summary


def summarize_copying(by_source: dict[str, dict[int, dict[str, list]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for source, rounds in by_source.items():
        summary[source] = {
            str(round_): {
                "samples": len(slot["copy"]),
                **{
                    f"copy_rate_{n}": float(np.nanmean([c[n] for c in slot["copy"]]))
                    for n in NGRAMS
                },
                "attention_to_previous": float(np.mean(slot["previous"])),
                "attention_to_problem": float(np.mean(slot["problem"])),
            }
            for round_, slot in sorted(rounds.items())
        }
    return summary


def plot_copying(
    out: Path, summary: dict[str, Any], by_source: dict[str, dict[int, dict[str, list]]]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for source, rounds in summary.items():
        xs = [int(r) for r in rounds]
        axes[0].plot(xs, [rounds[r]["copy_rate_8"] for r in rounds], marker="o", label=source)
        axes[1].plot(
            xs, [rounds[r]["attention_to_previous"] for r in rounds], marker="o", label=source
        )
    axes[0].set_title("8-gram copy rate from previous solutions")
    axes[1].set_title("attention to previous solutions")
    for axis in axes:
        axis.set_xlabel("round")
    axes[1].legend(fontsize=7)
    fig.savefig(out / "copy_by_round.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    sequential = by_source.get("sequential")
    if sequential:
        per_head = np.mean(
            [np.mean(slot["previous"], axis=0) for slot in sequential.values()], axis=0
        )
        heatmap(
            out / "attention_to_previous_by_head.png",
            per_head,
            "attention from the new solution to previous solutions",
        )
