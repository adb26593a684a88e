"""Parallel sampling: N independent samples of the same prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from seqpar.config import RunConfig
from seqpar.errors import SeqparError
from seqpar.strategies import Chained
from seqpar.types import Attempt, Message, Problem


@dataclass(frozen=True)
class ParallelStrategy(Chained):
    """N chains of one round each; the runner asks for all N in one request (n=N)."""

    n: int
    name: str = "parallel"
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.n < 1:
            raise SeqparError(f"--n must be >= 1, got {self.n}")

    @property
    def chains(self) -> int:
        return self.n

    def messages(
        self, problem: Problem, prompt: str, previous: Sequence[Attempt], round_: int
    ) -> tuple[Message, ...]:
        return (Message("user", prompt),)


def build(config: RunConfig, engine: object = None) -> ParallelStrategy:
    return ParallelStrategy(config.strategy.n)
