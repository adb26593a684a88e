"""Engines turn chat prompts into completions behind one small protocol; backends load lazily."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from seqpar.errors import unknown
from seqpar.sampling import SamplingParams
from seqpar.types import Completion, Message, Request

ENGINES = ("hf",)


class Engine(Protocol):
    """Generates `params.n` completions per request, yielding each request as it finishes."""

    @property
    def context_length(self) -> int: ...

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this engine and its model."""
        ...

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int: ...

    def generate(
        self, requests: Sequence[Request], params: SamplingParams
    ) -> Iterator[tuple[int, list[Completion]]]:
        """Yield (request index, its n completions) in completion order, not input order."""
        ...


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts (same parts, same seed, any machine)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def load_engine(name: str, model: str, **options: Any) -> Engine:
    """Build the engine `name` serving `model` (a bundled name, GGUF, HF directory or hub id)."""
    if name == "hf":
        from seqpar.engines.hf import HFEngine

        return HFEngine.load(model, **options)
    raise unknown("engine", name, ENGINES)
