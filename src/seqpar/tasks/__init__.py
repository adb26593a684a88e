"""Tasks load problems, build the first prompt and grade answers; registry by name."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from seqpar.errors import HARNESS_ERROR, SeqparError
from seqpar.tasks import ast_guard
from seqpar.types import Grade, Problem

ast_guard.install()


class Task(Protocol):
    """One benchmark: its problems, how they are asked, and how answers are judged."""

    name: str
    feedback_levels: tuple[str, ...]
    answer_kind: str  # "answer" (a final answer) or "behaviour" (outputs on public inputs)

    def load(self) -> list[Problem]: ...

    def prompt(self, problem: Problem) -> str:
        """The user message that poses `problem`."""
        ...

    def grade(self, problem: Problem, text: str) -> Grade: ...

    def equivalent(self, a: str, b: str) -> bool:
        """Whether two extracted answers are the same answer (for majority voting)."""
        ...

    def feedback(self, problem: Problem, grade: Grade, level: str) -> str:
        """What the environment tells the next sequential round about this solution."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the task and its data."""
        ...


def grade_safely(task: Task, problem: Problem, text: str) -> Grade:
    """`task.grade`, except that a failure to grade this one sample becomes its grade
    (incorrect, reason "harness error: …") instead of ending the run. A sandbox that cannot
    isolate at all still ends it: that is the machine's problem, not the sample's."""
    from seqpar.sandbox import SandboxUnavailable

    try:
        return task.grade(problem, text)
    except SandboxUnavailable:
        raise
    except Exception as error:
        return Grade(None, False, f"{HARNESS_ERROR}: {type(error).__name__}: {error}"[:600])


def select(problems: Sequence[Problem], limit: int | None) -> list[Problem]:
    """The first `limit` problems (all when None); an empty selection is an error."""
    if limit is not None and limit < 1:
        raise SeqparError(f"--limit must be >= 1, got {limit}")
    counts = Counter(p.id for p in problems)
    repeated = sorted(id_ for id_, count in counts.items() if count > 1)
    if repeated:
        raise SeqparError(
            f"duplicate problem id(s) {', '.join(map(repr, repeated[:5]))}"
            + (f" and {len(repeated) - 5} more" if len(repeated) > 5 else "")
            + "; every problem needs its own id (samples are stored by id)"
        )
    chosen = list(problems[:limit] if limit else problems)
    if not chosen:
        raise SeqparError("the task has no problems to run")
    return chosen
