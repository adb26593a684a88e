"""A run's configuration: what it generates (its identity in the run store), made of the
typed specs of `seqpar.specs`, with its JSON format and the builders of its components.

The manifest stores `RunConfig.to_json()` with a `format` number. Format 1 (seqpar before
the specs: one flat mapping of 26 settings) is read by `upgrade_format_1`, so runs and
studies made by earlier versions still resume, re-grade and report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqpar.errors import SeqparError
from seqpar.registry import ENGINES, STRATEGIES, TASKS, get_task
from seqpar.sampling import SamplingParams
from seqpar.specs import (
    DEFAULT_EMBEDDER,
    DEFAULT_MODEL,
    AblationSpec,
    NoveltySpec,
    ParallelSpec,
    SequentialTemplate,
    StrategySpec,
    TaskSpec,
    decode,
)

if TYPE_CHECKING:
    from seqpar.engines import Engine
    from seqpar.strategies import Strategy
    from seqpar.tasks import Task

CONFIG_FORMAT = 2
DEFAULT_SAMPLING = SamplingParams(temperature=0.7, max_tokens=512, seed=0)


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a run generates."""

    model: str = DEFAULT_MODEL
    engine: str = "hf"
    task: TaskSpec = field(default_factory=TaskSpec)
    strategy: StrategySpec = field(default_factory=ParallelSpec)
    sampling: SamplingParams = DEFAULT_SAMPLING
    template: SequentialTemplate = field(default_factory=SequentialTemplate)
    ablation: AblationSpec = field(default_factory=AblationSpec)
    novelty: NoveltySpec = field(default_factory=NoveltySpec)

    def __post_init__(self) -> None:
        ENGINES[self.engine]  # an unknown engine is an error naming the known ones
        TASKS[self.task.name]
        STRATEGIES[self.strategy.name]
        if self.sampling.seed is None:
            raise SeqparError(
                "RunConfig.sampling.seed must be set: every sample's seed derives from it, so "
                "a run reproduces and resumes"
            )
        if self.sampling.n != 1:
            raise SeqparError(
                "RunConfig.sampling.n must be 1: a run's samples are its strategy's n, each "
                "drawn with its own seed"
            )

    @property
    def n(self) -> int:
        """Samples (parallel) or rounds (sequential) per problem."""
        return self.strategy.n

    def with_strategy(self, strategy: StrategySpec) -> RunConfig:
        return dataclasses.replace(self, strategy=strategy)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CONFIG_FORMAT,
            "model": self.model,
            "engine": self.engine,
            "task": dataclasses.asdict(self.task),
            "strategy": {"name": self.strategy.name, **dataclasses.asdict(self.strategy)},
            "sampling": {**dataclasses.asdict(self.sampling), "stop": list(self.sampling.stop)},
            "template": dataclasses.asdict(self.template),
            "ablation": {
                "heads": [list(h) for h in self.ablation.heads],
                "mode": self.ablation.mode,
            },
            "novelty": dataclasses.asdict(self.novelty),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunConfig:
        """A configuration as `to_json` (or a manifest of format 1) wrote it."""
        if "format" not in data:
            data = upgrade_format_1(data)
        elif data["format"] != CONFIG_FORMAT:
            raise SeqparError(
                f"configuration format {data['format']} is newer than this seqpar reads "
                f"({CONFIG_FORMAT}); upgrade seqpar"
            )
        strategy = dict(data["strategy"])
        entry = STRATEGIES[strategy.pop("name")]
        sampling = {**data["sampling"], "stop": tuple(data["sampling"].get("stop", ()))}
        return cls(
            model=data["model"],
            engine=data["engine"],
            task=decode(TaskSpec, data["task"], "the task spec"),
            strategy=decode(entry.spec, strategy, f"strategy {entry.name!r}"),
            sampling=decode(SamplingParams, sampling, "sampling"),
            template=decode(SequentialTemplate, data["template"], "the template"),
            ablation=decode(AblationSpec, data["ablation"], "the ablation spec"),
            novelty=decode(NoveltySpec, data["novelty"], "the novelty spec"),
        )

    def build_task(self, data_dir: str | Path | None = None) -> Task:
        """The task, its options checked, supporting this run's feedback level."""
        task = get_task(self.task.name, data_dir=data_dir, **self.task.options)
        if self.task.feedback not in task.feedback_levels:
            raise SeqparError(
                f"task {self.task.name!r} does not support --feedback {self.task.feedback}; "
                f"it supports: {', '.join(task.feedback_levels)}"
            )
        return task

    def build_strategy(self, engine: Engine | None = None) -> Strategy:
        """The strategy; padded-parallel reads its reference run and needs the engine's
        tokenizer to size its filler (without an engine: its shape only, for reports)."""
        strategy: Strategy = STRATEGIES[self.strategy.name].load()(self, engine)
        return strategy


def current_format(data: Mapping[str, Any]) -> dict[str, Any]:
    """A stored configuration (any format) as this seqpar writes it, for comparisons."""
    return RunConfig.from_json(data).to_json()


def upgrade_format_1(flat: Mapping[str, Any]) -> dict[str, Any]:
    """A flat format-1 configuration (26 settings, seqpar ≤ 0.x) in today's format."""
    name = flat["strategy"]
    strategy: dict[str, Any] = {"name": name, "n": flat["n"]}
    if name == "sequential":
        strategy["chains"] = flat.get("chains", 1)
    elif name == "hybrid":
        strategy["hybrid_k"] = flat.get("hybrid_k", 1)
    elif name == "padded-parallel":
        strategy |= {
            "match": flat.get("match"),
            "pad_scale": flat.get("pad_scale", 1.0),
            "filler": flat.get("filler", "other"),
        }
    ablation = AblationSpec.parse(flat.get("ablate_heads", ""), flat.get("ablation", "zero"))
    return {
        "format": CONFIG_FORMAT,
        "model": flat["model"],
        "engine": flat.get("engine", "hf"),
        "task": {
            "name": flat["task"],
            "options": dict(flat.get("task_options", {})),
            "limit": flat.get("limit"),
            "feedback": flat.get("feedback", "none"),
        },
        "strategy": strategy,
        "sampling": {
            "n": 1,
            **{
                key: flat[key]
                for key in ("temperature", "top_p", "top_k", "min_p", "max_tokens", "seed")
            },
        },
        "template": dict(flat.get("template", {})),
        "ablation": {"heads": [list(h) for h in ablation.heads], "mode": ablation.mode},
        "novelty": {
            "mode": flat.get("reject", "none"),
            "max_retries": flat.get("max_retries", 2),
            "threshold": flat.get("reject_threshold", 0.9),
            "embedder": flat.get("embedder", DEFAULT_EMBEDDER),
        },
    }
