"""A run directory loaded for analysis: configuration, strategy, task, draws, scored grid.

Reports, analyses, the interpretability tools and the Python API all read runs through
`load_run`, so every number is computed from the same grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from seqpar.aggregate import Solution, answer_classes, score_matrix
from seqpar.config import RunConfig
from seqpar.engines import Engine
from seqpar.store import RunStore
from seqpar.strategies import Strategy
from seqpar.tasks import Task
from seqpar.types import Sample


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
    return config.novelty.mode != "none"


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
    sessions: list[dict] = field(default_factory=list)  # times of each generation session

    def scores(self, aggregator: str, ks: Sequence[int]) -> np.ndarray:
        """Per-problem scores at each budget: (problems, len(ks))."""
        return score_matrix(self.grid, aggregator, ks, seed=self.config.sampling.seed)

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


def load_run(path: str, engine: Engine | None = None) -> RunData:
    """The run directory `path`, loaded for analysis (any manifest format). Its strategy
    rebuilds prompts only with the engine (padded-parallel measures them in its tokens)."""
    store = RunStore(path)
    manifest = store.manifest()
    config = RunConfig.from_json(manifest["identity"]["config"])
    strategy = config.build_strategy(engine)
    task = config.build_task(manifest.get("data_dir"))
    draws = store.samples()
    samples = [s for s in draws if s.status != "rejected"]
    problem_ids = manifest["problem_ids"]
    ordered = rejection_ordered(config)
    grid = solutions_by_problem(samples, problem_ids, strategy, task.equivalent, ordered=ordered)
    slots = scored_slots(samples, problem_ids, strategy, ordered=ordered)
    return RunData(
        path,
        config,
        strategy,
        task,
        manifest,
        draws,
        samples,
        problem_ids,
        grid,
        ordered,
        slots,
        store.sessions(),
    )
