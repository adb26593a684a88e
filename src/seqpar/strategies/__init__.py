"""Strategies build prompts and say how many chains and rounds a problem gets; never grade."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from seqpar.errors import unknown
from seqpar.strategies.sequential import SequentialStrategy, SequentialTemplate
from seqpar.types import Attempt, Message

STRATEGIES = ("parallel", "sequential")


class Strategy(Protocol):
    """Round r of every chain is built from the task prompt and the chain's earlier texts."""

    name: str
    chains: int
    rounds: int

    def messages(self, prompt: str, previous: Sequence[Attempt]) -> tuple[Message, ...]: ...


def get_strategy(
    name: str, n: int, *, chains: int = 1, template: SequentialTemplate | None = None
) -> Strategy:
    """`parallel`: n chains of one round; `sequential`: `chains` chains of n rounds."""
    from seqpar.strategies.parallel import ParallelStrategy

    if name == "parallel":
        return ParallelStrategy(n)
    if name == "sequential":
        return SequentialStrategy(n, template or SequentialTemplate(), chains)
    raise unknown("strategy", name, STRATEGIES)
