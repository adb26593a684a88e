"""Hybrid: k sequential rounds, then m parallel samples that all read the round-k context.

Hypothesis 3(b) of the paper: if earlier solutions in the context suppress exploration,
these m samples are worse than m fresh parallel samples. Chain 0 holds the k sequential
rounds; round k+1 of every chain 0..m-1 reads them. Only round k+1 is scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from seqpar.config import RunConfig
from seqpar.errors import SeqparError
from seqpar.specs import HybridSpec, SequentialTemplate
from seqpar.strategies import Chained
from seqpar.strategies.sequential import render
from seqpar.types import Attempt, Message, Problem


@dataclass(frozen=True)
class HybridStrategy(Chained):
    """`k` shared sequential rounds, then `m` samples from that context."""

    k: int
    m: int
    template: SequentialTemplate
    name: str = "hybrid"

    def __post_init__(self) -> None:
        if self.k < 1 or self.m < 1:
            raise SeqparError(f"hybrid needs --hybrid-k >= 1 and --n >= 1, got {self.k}, {self.m}")

    @property
    def chains(self) -> int:
        return self.m

    @property
    def rounds(self) -> int:
        return self.k + 1

    @property
    def scored_round(self) -> int:  # type: ignore[override]
        return self.k + 1

    def history(self, chain: int, round_: int) -> list[tuple[int, int]] | None:
        if round_ <= self.k and chain != 0:
            return None  # the sequential prefix exists once, in chain 0
        return [(0, r) for r in range(1, round_)]

    def messages(
        self, problem: Problem, prompt: str, previous: Sequence[Attempt], round_: int
    ) -> tuple[Message, ...]:
        return render(self.template, prompt, previous)


def build(config: RunConfig, engine: object = None) -> HybridStrategy:
    spec = config.strategy
    assert isinstance(spec, HybridSpec)
    return HybridStrategy(spec.hybrid_k, spec.n, config.template)
