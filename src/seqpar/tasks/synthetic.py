"""`arith`: seeded, procedurally generated multi-step arithmetic word problems (offline).

Each problem starts from a quantity and applies `difficulty` steps (buy packs, give away,
find more, share equally), so difficulty is the number of operations to chain. The same
(seed, difficulty, count) always gives the same problems.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqpar.errors import SeqparError
from seqpar.tasks.math import AnswerTask
from seqpar.types import Problem

NAMES = ("Maya", "Omar", "Lena", "Kofi", "Ines", "Ravi", "Sofia", "Tariq", "Yuki", "Elena")
ITEMS = ("marbles", "stickers", "apples", "coins", "pencils", "cards", "shells", "beads")

Step = Callable[[random.Random, int, str, str], tuple[int, str] | None]


def buy_groups(rng: random.Random, total: int, name: str, item: str) -> tuple[int, str]:
    groups, each = rng.randint(2, 6), rng.randint(3, 12)
    return total + groups * each, f"{name} buys {groups} packs with {each} {item} in each pack."


def give_away(rng: random.Random, total: int, name: str, item: str) -> tuple[int, str] | None:
    if total < 4:
        return None
    amount = rng.randint(1, total - 1)
    return total - amount, f"{name} gives {amount} {item} to a friend."


def find_more(rng: random.Random, total: int, name: str, item: str) -> tuple[int, str]:
    amount = rng.randint(5, 40)
    return total + amount, f"{name} finds {amount} more {item}."


def share_equally(rng: random.Random, total: int, name: str, item: str) -> tuple[int, str] | None:
    divisors = [d for d in (2, 3, 4, 5) if total % d == 0 and total // d >= 2]
    if not divisors:
        return None
    parts = rng.choice(divisors)
    return total // parts, (
        f"{name} splits all the {item} equally into {parts} boxes and keeps only one box."
    )


STEPS: tuple[Step, ...] = (buy_groups, give_away, find_more, share_equally)


def make_problem(seed: int, difficulty: int, index: int) -> Problem:
    """Problem `index` of the (seed, difficulty) family."""
    rng = random.Random(f"arith/{seed}/{difficulty}/{index}")
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    total = rng.randint(5, 60)
    sentences = [f"{name} has {total} {item}."]
    while len(sentences) <= difficulty:
        outcome = rng.choice(STEPS)(rng, total, name, item)
        if outcome is not None:
            total, sentence = outcome
            sentences.append(sentence)
    sentences.append(f"How many {item} does {name} have now?")
    return Problem(
        id=f"arith-d{difficulty}-s{seed}-{index:04d}",
        question=" ".join(sentences),
        answer=str(total),
        meta={"difficulty": difficulty},
    )


class ArithTask(AnswerTask):
    """Built-in offline task; `difficulty` = number of chained operations."""

    name = "arith"

    def __init__(self, difficulty: int = 2, count: int = 100, seed: int = 0) -> None:
        if difficulty < 1 or count < 1:
            raise SeqparError(
                f"arith needs difficulty >= 1 and count >= 1, got {difficulty} and {count}"
            )
        self.difficulty, self.count, self.seed = difficulty, count, seed

    def load(self) -> list[Problem]:
        return [make_problem(self.seed, self.difficulty, i) for i in range(self.count)]

    def describe(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "difficulty": self.difficulty,
            "count": self.count,
            "seed": self.seed,
        }


def build(name: str, data_dir: str | Path | None = None, **options: Any) -> ArithTask:
    """The registry's builder: arith needs no data (its options: difficulty, count, seed)."""
    return ArithTask(**options)
