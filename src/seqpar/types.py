"""Records shared by every part of seqpar: problems, messages, completions, grades, samples."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: str
    content: str


@dataclass(frozen=True)
class Problem:
    """One task instance: the question and the reference the task grades against."""

    id: str
    question: str
    answer: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    """A previous round as the next round sees it: the solution and the feedback on it."""

    text: str
    feedback: str = ""


@dataclass(frozen=True)
class Request:
    """A chat prompt to complete once per seed; without seeds, `SamplingParams.n` times.
    `priority`: how much work waits on this request (rounds left in its chain); an engine
    with a queue may serve higher first."""

    messages: tuple[Message, ...]
    seeds: tuple[int, ...] = ()
    priority: int = 0


@dataclass(frozen=True)
class Completion:
    """One generated text with its accounting."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or stop string) | "length"
    seed: int | None
    wall_time: float  # seconds of its batch divided by the batch's rows (so sums add up)
    cached_prompt_tokens: int = 0  # prompt tokens served from a prefix cache, not recomputed


@dataclass(frozen=True)
class TestResult:
    """The outcome of one code test, with what a person (or the model) needs to fix a failure."""

    passed: bool
    input: str
    expected: str = ""
    actual: str = ""
    error: str = ""
    behaviour: str = ""  # digest of what the candidate returned/raised/printed; expected unused


@dataclass(frozen=True)
class Grade:
    """The verdict on one completion: the extracted answer and whether it is correct.

    For code, `answer` is the solution's behaviour on the public test inputs (a digest),
    `score` the share of public tests passed, and the per-test results are kept for feedback.
    """

    answer: str | None
    correct: bool
    reason: str = ""
    score: float | None = None
    public: tuple[TestResult, ...] = ()
    hidden: tuple[TestResult, ...] = ()


GRADE_FIELDS = (
    "answer",
    "correct",
    "grade_reason",
    "score",
    "public_passed",
    "public_total",
    "hidden_passed",
    "hidden_total",
)


@dataclass(frozen=True)
class Sample:
    """One stored line of samples.jsonl: a completion in its place in a run, graded."""

    problem_id: str
    chain: int
    round: int
    status: str  # "ok" | "skipped" | "rejected" (a duplicate, redrawn)
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    seed: int | None = None
    wall_time: float = 0.0
    cached_prompt_tokens: int = 0
    answer: str | None = None
    correct: bool = False
    grade_reason: str = ""
    skip_reason: str = ""
    score: float | None = None
    public_passed: int = 0
    public_total: int = 0
    hidden_passed: int = 0
    hidden_total: int = 0
    feedback: str = ""
    attempt: int = 0  # how many rejected draws for this slot came before
    target_prompt_tokens: int | None = None  # padded-parallel: the length it was built to match

    @property
    def key(self) -> tuple[str, int, int]:
        """The slot of the sample within its run (rejected draws share their slot)."""
        return (self.problem_id, self.chain, self.round)

    @property
    def draw(self) -> tuple[str, int, int, int]:
        """Identity of this very draw."""
        return (*self.key, self.attempt)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sample:
        return cls(**data)

    def with_grade(self, grade: Grade) -> Sample:
        """A copy carrying `grade`."""
        return Sample(
            **{
                **asdict(self),
                "answer": grade.answer,
                "correct": grade.correct,
                "grade_reason": grade.reason,
                "score": grade.score,
                "public_passed": sum(r.passed for r in grade.public),
                "public_total": len(grade.public),
                "hidden_passed": sum(r.passed for r in grade.hidden),
                "hidden_total": len(grade.hidden),
            }
        )
