"""Turn a run directory into numbers (accuracy per aggregator × k, compute) and tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from seqpar.aggregate import AGGREGATORS, Solution, answer_classes, budgets, score_matrix
from seqpar.errors import HARNESS_ERROR
from seqpar.run import RunConfig
from seqpar.store import RunStore
from seqpar.strategies import Strategy
from seqpar.tasks import Task
from seqpar.tasks.math import GRADE_TIMED_OUT
from seqpar.types import Sample


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
    reject: str = "none"  # --reject mode; with one, accuracy is over first-k accepted draws

    @property
    def complete(self) -> bool:
        return self.samples >= self.expected_samples

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "complete": self.complete}


def solutions_by_problem(
    samples: Sequence[Sample],
    problem_ids: Sequence[str],
    strategy: Strategy,
    equivalent: Callable[[str, str], bool],
    *,
    ordered: bool = False,
) -> list[list[list[Solution]]]:
    """problem → chain → round grid of the scored slots; missing or skipped ones have no
    answer. A strategy with a scored round contributes that round only, as parallel samples;
    with `ordered` (a run with rejection sampling) such parallel slots become one chain of
    the accepted draws in the order they were accepted (see `scored_slots`)."""
    order = scored_slots(samples, problem_ids, strategy, ordered=ordered)
    by_key = {s.key: s for s in samples}
    grid = []
    for chains in order:
        flat = [by_key.get(key) for chain in chains for key in chain]
        classes = answer_classes([s.answer if s else None for s in flat], equivalent)
        solutions = iter(
            Solution(cls, bool(s and s.correct), s.score if s else None)
            for s, cls in zip(flat, classes, strict=True)
        )
        grid.append([[next(solutions) for _ in chain] for chain in chains])
    return grid


def scored_slots(
    samples: Sequence[Sample],
    problem_ids: Sequence[str],
    strategy: Strategy,
    *,
    ordered: bool = False,
) -> list[list[list[tuple[str, int, int]]]]:
    """problem → chain → round grid of the slot keys that are scored. With `ordered` and
    parallel scored slots, one chain per problem: the slots in the order their accepted
    draws were stored (the order rejection sampling accepted them), then unfilled slots."""
    rounds = [strategy.scored_round] if strategy.scored_round else range(1, strategy.rounds + 1)
    grid = []
    for problem_id in problem_ids:
        chains = [[(problem_id, c, r) for r in rounds] for c in range(strategy.chains)]
        grid.append(chains)
    if not (ordered and len(rounds) == 1):
        return grid
    position = {key: index for index, key in enumerate(s.key for s in samples)}
    return [
        [sorted((c[0] for c in chains), key=lambda k: position.get(k, len(position)))]
        for chains in grid
    ]


def rejection_ordered(config: RunConfig) -> bool:
    """Whether a run's scored draws are ordered by acceptance (it used `--reject`)."""
    return config.reject != "none"


def expected_slots(strategy: Strategy) -> int:
    """Slots one problem gets (hybrid shares its sequential prefix among chains)."""
    return sum(
        strategy.history(c, r) is not None
        for c in range(strategy.chains)
        for r in range(1, strategy.rounds + 1)
    )


@dataclass(frozen=True)
class RunData:
    """A run directory loaded for analysis: its configuration, draws and scored grid."""

    path: str
    config: RunConfig
    strategy: Strategy
    task: Task
    manifest: dict
    draws: list[Sample]  # every stored line, rejected draws included
    samples: list[Sample]  # accepted and skipped slots
    problem_ids: list[str]
    grid: list[list[list[Solution]]]
    ordered: bool = False  # rejection sampling: parallel slots scored in acceptance order
    slots: list[list[list[tuple[str, int, int]]]] = field(default_factory=list)  # grid's keys

    def scores(self, aggregator: str, ks: Sequence[int]) -> np.ndarray:
        """Per-problem scores at each budget: (problems, len(ks))."""
        return score_matrix(self.grid, aggregator, ks, seed=self.config.seed)

    def tokens(self, ks: Sequence[int], field: str = "completion_tokens") -> np.ndarray:
        """Mean tokens per problem spent to reach each budget k (rejected draws included):
        k samples for parallel (with rejection: the slots of the first k accepted draws), the
        first k rounds for sequential, the shared prefix plus k samples for hybrid."""
        spent: dict[tuple[str, int, int], int] = {}
        for draw in self.draws:
            if draw.status != "skipped":
                spent[draw.key] = spent.get(draw.key, 0) + getattr(draw, field)
        strategy, rows = self.strategy, []
        for index, pid in enumerate(self.problem_ids):
            chains = [
                [spent.get((pid, c, r), 0) for r in range(1, strategy.rounds + 1)]
                for c in range(strategy.chains)
            ]
            if strategy.scored_round or strategy.rounds == 1:
                last = strategy.rounds - 1
                prefix = sum(chains[0][:last])
                if self.ordered and self.slots:
                    costs = [spent.get(key, 0) for key in self.slots[index][0]]
                    rows.append([prefix + sum(costs[:k]) for k in ks])
                    continue
                mean = sum(chain[last] for chain in chains) / len(chains)
                rows.append([prefix + k * mean for k in ks])
            else:
                rows.append([sum(sum(chain[:k]) for chain in chains) / len(chains) for k in ks])
        return np.array(rows, dtype=float).reshape(len(self.problem_ids), len(ks))


def load_run(path: str) -> RunData:
    store = RunStore(path)
    manifest = store.manifest()
    config = RunConfig.from_json(manifest["identity"]["config"])
    strategy = config.build_strategy()
    task = config.build_task(manifest.get("data_dir"))
    draws = store.samples()
    samples = [s for s in draws if s.status != "rejected"]
    problem_ids = manifest["problem_ids"]
    ordered = rejection_ordered(config)
    grid = solutions_by_problem(samples, problem_ids, strategy, task.equivalent, ordered=ordered)
    slots = scored_slots(samples, problem_ids, strategy, ordered=ordered)
    return RunData(
        path, config, strategy, task, manifest, draws, samples, problem_ids, grid, ordered, slots
    )


def summarize(path: str) -> RunSummary:
    """Recompute every number of the report from the run's stored samples."""
    run = load_run(path)
    samples, draws, config = run.samples, run.draws, run.config
    ks = budgets(config.n)
    verified = any(s.score is not None for s in samples)
    aggregators = [a for a in AGGREGATORS if verified or a != "best-of-n"]
    return RunSummary(
        run=path,
        model=config.model,
        task=config.task,
        strategy=config.strategy,
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
        grading_timeouts=sum(s.grade_reason == GRADE_TIMED_OUT for s in draws),
        harness_errors=sum(s.grade_reason.startswith(HARNESS_ERROR) for s in draws),
        reject=config.reject,
    )


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
            + f" · wall time {s.wall_time_s:.1f} s · skipped {s.skipped}"
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
        shown = [a for a in AGGREGATORS if all(a in s.accuracy for s in summaries)]
        lines = [
            "## Comparison at full budget (k = n)\n",
            "| run | model | task | strategy | n | " + " | ".join(shown) + " | generated tokens | "
            "prompt tokens | wall time (s) |",
            "|---|---|---|---|---:|" + "---:|" * (len(shown) + 3),
        ]
        for s in summaries:
            values = " | ".join(f"{s.accuracy[a][-1]:.3f}" for a in shown)
            lines.append(
                f"| {s.run} | {s.model} | {s.task} | {s.strategy} | {s.n} | {values} | "
                f"{s.generated_tokens:,} | "
                f"{s.prompt_tokens:,} | {s.wall_time_s:.1f} |"
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
