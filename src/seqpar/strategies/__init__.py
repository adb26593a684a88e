"""Strategies build prompts and say which (chain, round) slots a problem gets; never grade."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from seqpar.types import Attempt, Message, Problem


class Strategy(Protocol):
    """Round r of a chain is built from the task prompt and the attempts it reads."""

    name: str
    chains: int
    rounds: int
    scored_round: int | None  # when set, only this round's samples are scored, as parallel ones

    def history(self, chain: int, round_: int) -> list[tuple[int, int]] | None:
        """The (chain, round) slots whose attempts this slot reads; None if the slot is unused."""
        ...

    def messages(
        self, problem: Problem, prompt: str, previous: Sequence[Attempt], round_: int
    ) -> tuple[Message, ...]: ...

    def target_tokens(self, problem: Problem, round_: int) -> int | None:
        """The prompt length this slot is built to reach (padded-parallel), else None."""
        ...


class Chained:
    """Defaults: every slot is used and reads its own chain's earlier rounds; no targets."""

    scored_round: int | None = None

    def history(self, chain: int, round_: int) -> list[tuple[int, int]] | None:
        return [(chain, r) for r in range(1, round_)]

    def target_tokens(self, problem: Problem, round_: int) -> int | None:
        return None
