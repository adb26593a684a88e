"""Rejection sampling for novelty: a new solution that repeats an accepted one is redrawn.

Modes: `answer` (math: an equivalent final answer), `behaviour` (code: the same outputs
on the public test inputs), `embedding` (cosine similarity of sentence embeddings of the
solutions' final text above a threshold). A solution without an answer/behaviour is never
a duplicate under the first two. Rejected attempts stay in the run store, marked, and
their tokens count in every compute figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqpar.config import RunConfig
from seqpar.errors import SeqparError, unknown
from seqpar.specs import NOVELTY_MODES, NoveltySpec
from seqpar.tasks import Task
from seqpar.tasks.extract import split_reasoning
from seqpar.types import Sample


def repeats_answer(
    answer: str | None, earlier: Sequence[str | None], equivalent: Callable[[str, str], bool]
) -> bool:
    """Whether `answer` is equivalent to any earlier (non-missing) answer."""
    return answer is not None and any(
        e is not None and (e == answer or equivalent(e, answer)) for e in earlier
    )


def max_similarity(vector: np.ndarray, earlier: np.ndarray) -> float:
    """Largest cosine similarity between a unit vector and rows of unit vectors (-1 if none)."""
    return float((earlier @ vector).max()) if len(earlier) else -1.0


@dataclass
class Novelty:
    """Decides whether a new solution duplicates one already accepted for its problem."""

    mode: str
    equivalent: Callable[[str, str], bool]
    max_retries: int = 2
    threshold: float = 0.9
    embedder: Any = None
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in NOVELTY_MODES[1:]:
            raise unknown("--reject mode", self.mode, NOVELTY_MODES)
        if self.max_retries < 0:
            raise SeqparError(f"--max-retries must be >= 0, got {self.max_retries}")

    @classmethod
    def from_spec(cls, spec: NoveltySpec, equivalent: Callable[[str, str], bool]) -> Novelty:
        """The rule of `spec` ("none" excluded), with its embedder loaded when it needs one."""
        embedder = None
        if spec.mode == "embedding":
            from seqpar.analysis.embeddings import Embedder

            embedder = Embedder(spec.embedder)
        return cls(spec.mode, equivalent, spec.max_retries, spec.threshold, embedder)

    def vector(self, text: str) -> np.ndarray:
        if text not in self.vectors:
            final = split_reasoning(text)[1]
            self.vectors[text] = self.embedder.encode([final if final is not None else text])[0]
        return self.vectors[text]

    def duplicate(self, sample: Sample, accepted: Sequence[Sample]) -> bool:
        if not accepted:
            return False
        if self.mode in ("answer", "behaviour"):
            return repeats_answer(sample.answer, [s.answer for s in accepted], self.equivalent)
        earlier = np.stack([self.vector(s.text) for s in accepted])
        return max_similarity(self.vector(sample.text), earlier) > self.threshold


def build(config: RunConfig, task: Task) -> Novelty | None:
    """The rejection rule of `--reject`, checked against what the task's answers are."""
    spec = config.novelty
    if spec.mode == "none":
        return None
    if spec.mode in ("answer", "behaviour") and spec.mode != task.answer_kind:
        raise SeqparError(
            f"--reject {spec.mode} does not apply to task {config.task.name!r}, whose "
            f"solutions are compared by {task.answer_kind}; use --reject "
            f"{task.answer_kind} or embedding"
        )
    return Novelty.from_spec(spec, task.equivalent)
