"""Engines turn chat prompts into completions behind one small protocol; backends load lazily."""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from seqpar.sampling import SamplingParams
from seqpar.types import Completion, Message, Request


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


@runtime_checkable
class ConcurrentEngine(Protocol):
    """An engine that completes requests one at a time, many in flight (servers): runs
    schedule each chain on its own instead of round by round."""

    max_in_flight: int

    async def complete(self, request: Request, params: SamplingParams) -> list[Completion]: ...


@runtime_checkable
class HeadAblating(Protocol):
    """An engine that can switch attention heads off, and knows its model's geometry."""

    @property
    def layers(self) -> int: ...

    @property
    def heads_per_layer(self) -> int: ...

    def ablate(self, heads: Sequence[tuple[int, int]], mode: str = "zero") -> None:
        """From now on generate with these (layer, head) outputs replaced; () restores."""
        ...


def generate_concurrently(
    engine: ConcurrentEngine, requests: Sequence[Request], params: SamplingParams
) -> Iterator[tuple[int, list[Completion]]]:
    """`Engine.generate` for a concurrent engine: every request in flight (up to the engine's
    limit) on an event loop in a helper thread, yielded as each finishes."""
    finished: queue.Queue[tuple[int, list[Completion]] | BaseException | None] = queue.Queue()

    async def one(index: int, request: Request) -> None:
        finished.put((index, await engine.complete(request, params)))

    async def every() -> None:
        await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))

    def work() -> None:
        try:
            asyncio.run(every())
        except BaseException as error:  # handed to the caller's thread
            finished.put(error)
        finally:
            finished.put(None)

    threading.Thread(target=work, daemon=True).start()
    while (item := finished.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts (same parts, same seed, any machine)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
