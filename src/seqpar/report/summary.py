"""Turn a run directory into numbers (accuracy per aggregator × k, compute) and tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from seqpar.aggregate import aggregator_named, budgets
from seqpar.errors import GRADE_TIMED_OUT, HARNESS_ERROR
from seqpar.registry import AGGREGATORS
from seqpar.rundata import expected_slots, load_run


@dataclass(frozen=True)
class RunSummary:
    """What `seqpar report` shows for one run."""

    run: str
    model: str
    task: str
    strategy: str
    n: int
    chains: int
    problems: int
    samples: int
    expected_samples: int
    skipped: int
    rejected: int
    ks: list[int]
    accuracy: dict[str, list[float]]
    generated_tokens: int
    prompt_tokens: int
    cached_prompt_tokens: int
    wall_time_s: float
    grading_timeouts: int
    harness_errors: int = 0  # samples the judge could not grade (stored incorrect, with why)
    # first request to last completion, summed over sessions; None: the run predates it
    elapsed_s: float | None = None
    engine_busy_s: float | None = None  # time with some request in flight, summed likewise
    sessions: int = 0
    shared: bool = False  # some session generated it together with other runs
    reject: str = "none"  # --reject mode; with one, accuracy is over first-k accepted draws

    @property
    def complete(self) -> bool:
        return self.samples >= self.expected_samples

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "complete": self.complete}


def summarize(path: str) -> RunSummary:
    """Recompute every number of the report from the run's stored samples."""
    run = load_run(path)
    samples, draws, config = run.samples, run.draws, run.config
    ks = budgets(config.n)
    verified = any(s.score is not None for s in samples)
    aggregators = [a for a in AGGREGATORS.names if verified or not aggregator_named(a).needs_scores]
    return RunSummary(
        run=path,
        model=config.model,
        task=config.task.name,
        strategy=config.strategy.name,
        n=config.n,
        chains=run.strategy.chains,
        problems=len(run.problem_ids),
        samples=len(samples),
        expected_samples=len(run.problem_ids) * expected_slots(run.strategy),
        skipped=sum(s.status == "skipped" for s in samples),
        rejected=len(draws) - len(samples),
        ks=ks,
        accuracy={a: run.scores(a, ks).mean(axis=0).tolist() for a in aggregators},
        generated_tokens=sum(s.completion_tokens for s in draws),
        prompt_tokens=sum(s.prompt_tokens for s in draws if s.status != "skipped"),
        cached_prompt_tokens=sum(s.cached_prompt_tokens for s in draws),
        wall_time_s=sum(s.wall_time for s in draws),
        elapsed_s=sum(t["elapsed_s"] for t in run.sessions) if run.sessions else None,
        engine_busy_s=sum(t["engine_busy_s"] for t in run.sessions) if run.sessions else None,
        sessions=len(run.sessions),
        shared=any(t.get("shared_with_runs") for t in run.sessions),
        grading_timeouts=sum(s.grade_reason == GRADE_TIMED_OUT for s in draws),
        harness_errors=sum(s.grade_reason.startswith(HARNESS_ERROR) for s in draws),
        reject=config.novelty.mode,
    )


def time_spent(s: RunSummary) -> str:
    """Elapsed and engine-busy time, or why a run has neither."""
    if s.elapsed_s is None or s.engine_busy_s is None:
        return (
            "elapsed not recorded (no session record: an older seqpar, or killed outright; "
            "per-sample times sum to "
            f"{s.wall_time_s:.1f} s)"
        )
    sessions = f" over {s.sessions} sessions" if s.sessions > 1 else ""
    shared = (
        " (generated together with other runs: those times include their rows; compare tokens)"
        if s.shared
        else ""
    )
    return f"elapsed {s.elapsed_s:.1f} s, engine busy {s.engine_busy_s:.1f} s{sessions}{shared}"


def markdown(summaries: Sequence[RunSummary]) -> str:
    """A table per run, then (for several runs) one comparison at each run's full budget."""
    parts = []
    for s in summaries:
        header = "| aggregator | " + " | ".join(f"k={k}" for k in s.ks) + " |"
        rule = "|---|" + "---:|" * len(s.ks)
        rows = [
            f"| {a} | " + " | ".join(f"{v:.3f}" for v in s.accuracy[a]) + " |" for a in s.accuracy
        ]
        status = (
            "" if s.complete else f" · **incomplete: {s.samples}/{s.expected_samples} samples**"
        )
        parts.append(
            f"## {s.run}\n\n{s.strategy}, n={s.n}"
            + (f", chains={s.chains}" if s.strategy == "sequential" and s.chains > 1 else "")
            + f" · {s.model} · {s.task}, {s.problems} problems"
            + (
                f" · rejection sampling (--reject {s.reject}): scored by the first k accepted "
                "draws in the order they were accepted, not as exchangeable samples"
                if s.reject != "none"
                else ""
            )
            + "\n\n"
            + "\n".join([header, rule, *rows])
            + f"\n\ngenerated tokens {s.generated_tokens:,} · prompt tokens {s.prompt_tokens:,}"
            + (
                f" ({s.cached_prompt_tokens:,} from a prefix cache)"
                if s.cached_prompt_tokens
                else ""
            )
            + f" · {time_spent(s)} · skipped {s.skipped}"
            f" · grading timeouts {s.grading_timeouts} (counted incorrect)"
            + (
                f" · harness errors {s.harness_errors} (counted incorrect)"
                if s.harness_errors
                else ""
            )
            + (f" · rejected duplicates {s.rejected} (their tokens included)" if s.rejected else "")
            + f"{status}\n"
        )
    if len(summaries) > 1:
        shown = [a for a in AGGREGATORS.names if all(a in s.accuracy for s in summaries)]
        lines = [
            "## Comparison at full budget (k = n)\n",
            "| run | model | task | strategy | n | " + " | ".join(shown) + " | generated tokens | "
            "prompt tokens | elapsed (s) |",
            "|---|---|---|---|---:|" + "---:|" * (len(shown) + 3),
        ]
        for s in summaries:
            values = " | ".join(f"{s.accuracy[a][-1]:.3f}" for a in shown)
            lines.append(
                f"| {s.run} | {s.model} | {s.task} | {s.strategy} | {s.n} | {values} | "
                f"{s.generated_tokens:,} | "
                f"{s.prompt_tokens:,} | "
                + (f"{s.elapsed_s:.1f} |" if s.elapsed_s is not None else "– |")
            )
        parts.append("\n".join(lines) + "\n")
    parts.append(
        "pass@k: unbiased estimator for parallel runs; any@k over a chain's first k rounds for "
        "sequential runs and over the first k accepted draws for runs with rejection sampling "
        "(each draw was accepted only if it differed from the earlier ones, so they are not "
        "exchangeable). majority (code: by behaviour on the public test inputs, or on the "
        "hidden tests' inputs where a problem has no public tests; expected outputs unused) "
        "scores the winning class's share of correct members; best-of-n (code: most public "
        "tests passed); ties scored as the expected accuracy of a random pick.\n"
    )
    return "\n".join(parts)
