"""Sequential sampling: round r reads the problem and the chain's previous r-1 solutions.

The template is data, not code: which part of a previous solution is shown (`history`),
what the model is asked to do with them (`instruction`), and whether they appear in one
user message or as a multi-turn chat (`layout`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from seqpar.config import RunConfig
from seqpar.errors import SeqparError
from seqpar.specs import SequentialSpec, SequentialTemplate
from seqpar.strategies import Chained
from seqpar.tasks.extract import split_reasoning
from seqpar.types import Attempt, Message, Problem

INSTRUCTIONS = {
    "again": "Solve the problem again from the beginning.",
    "different": "Solve the problem again with a different approach from the previous solutions.",
    "improve": "Review the previous solutions, find any mistakes, and write an improved solution.",
}
FORMAT_REMINDER = " Give your final answer in the format requested above."


def shown(template: SequentialTemplate, text: str) -> str:
    """What the next round sees of a previous solution under `template`."""
    if template.history == "full":
        return text
    final = split_reasoning(text)[1]
    return final.strip() if final is not None else "(unfinished: no final answer)"


def render(
    template: SequentialTemplate, prompt: str, previous: Sequence[Attempt]
) -> tuple[Message, ...]:
    """The messages of a round that reads `previous` attempts, laid out by `template`."""
    instruction = INSTRUCTIONS[template.instruction] + FORMAT_REMINDER
    if not previous:
        return (Message("user", prompt),)
    if template.layout == "multiturn":
        turns = [Message("user", prompt)]
        for attempt in previous:
            feedback = f"{attempt.feedback}\n\n" if attempt.feedback else ""
            turns += [
                Message("assistant", shown(template, attempt.text)),
                Message("user", feedback + instruction),
            ]
        return tuple(turns)
    solutions = "\n\n".join(
        f"### Previous solution {i}\n{shown(template, attempt.text)}"
        + (f"\n\n{attempt.feedback}" if attempt.feedback else "")
        for i, attempt in enumerate(previous, 1)
    )
    return (Message("user", f"{prompt}\n\n{solutions}\n\n### Task\n{instruction}"),)


@dataclass(frozen=True)
class SequentialStrategy(Chained):
    """`chains` chains of `n` rounds each."""

    n: int
    template: SequentialTemplate
    chains: int = 1
    name: str = "sequential"

    def __post_init__(self) -> None:
        if self.n < 1 or self.chains < 1:
            raise SeqparError(f"--n and --chains must be >= 1, got {self.n} and {self.chains}")

    @property
    def rounds(self) -> int:
        return self.n

    def messages(
        self, problem: Problem, prompt: str, previous: Sequence[Attempt], round_: int
    ) -> tuple[Message, ...]:
        return render(self.template, prompt, previous)


def build(config: RunConfig, engine: object = None) -> SequentialStrategy:
    spec = config.strategy
    assert isinstance(spec, SequentialSpec)
    return SequentialStrategy(spec.n, config.template, spec.chains)
