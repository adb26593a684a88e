"""The scheduler: fills a sample store with every missing (problem, chain, round) sample.

With a concurrent engine (hf's continuous batching, servers, llama.cpp), every chain is
scheduled on its own: a round is requested as soon as the rounds it reads are graded, so
the engine's batch stays full while slow chains finish. An engine that only batches gets
round r of every chain in one call instead. Every finished request is graded and appended
at once, so an interrupted generation resumes from what is stored.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from seqpar.config import RunConfig
from seqpar.engines import ConcurrentEngine, Engine, HeadAblating, derive_seed
from seqpar.errors import SeqparError
from seqpar.sampling import SamplingParams
from seqpar.strategies import Strategy
from seqpar.strategies.novelty import Novelty
from seqpar.strategies.novelty import build as build_novelty
from seqpar.tasks import Task, grade_safely
from seqpar.types import Attempt, Completion, Grade, Message, Problem, Request, Sample

T = TypeVar("T")


def prepare_generation(
    config: RunConfig, engine: Engine, task: Task, store: SampleStore, progress: bool = True
) -> Generation:
    """The generation of `config` on a loaded engine (head ablation applied) into `store`."""
    if isinstance(engine, HeadAblating):
        engine.ablate(config.ablation.heads, config.ablation.mode)  # clears an earlier one
    elif config.ablation.heads:
        raise SeqparError(
            f"engine {config.engine!r} cannot switch heads off (--ablate-heads, "
            "--ablate-top-k); use --engine hf"
        )
    return Generation(
        engine,
        task,
        config.build_strategy(engine),
        config.sampling,
        store,
        config.task.feedback,
        build_novelty(config, task),
        progress,
    )


@dataclass
class Clock:
    """Elapsed time of a session (first request sent to last completion back) and engine-busy
    time (some request in flight). Concurrent requests overlap, so neither sums the
    requests' own durations."""

    first: float | None = None
    last: float | None = None
    busy: float = 0.0
    in_flight: int = 0
    since: float = 0.0
    shared_with: int = 0  # other runs generated together: their rows were in the same calls

    def sent(self) -> None:
        now = time.perf_counter()
        self.first = now if self.first is None else self.first
        if not self.in_flight:
            self.since = now
        self.in_flight += 1

    def back(self, completed: bool = True) -> None:
        """A request is back; `completed` False: it ended without a result (the end of a
        batched call), which is no completion for elapsed time."""
        now = time.perf_counter()
        self.last = now if completed else self.last
        self.in_flight -= 1
        if not self.in_flight:
            self.busy += now - self.since

    def record(self) -> dict[str, float | int] | None:
        """This session's times as `RunStore.append_session` stores them; None when it sent
        nothing (a resumed run that was complete)."""
        if self.first is None or self.last is None:
            return None
        times = {"elapsed_s": self.last - self.first, "engine_busy_s": self.busy}
        return times | ({"shared_with_runs": self.shared_with} if self.shared_with else {})


class SampleStore(Protocol):
    """What a generation reads and appends: a run store, or a Ray worker's in-memory part."""

    def samples(self) -> list[Sample]: ...

    def append(self, samples: Iterable[Sample]) -> None: ...


class MemoryStore:
    """A `SampleStore` in memory: what was stored before, and what a worker adds."""

    def __init__(self, stored: Iterable[Sample]) -> None:
        self.stored = list(stored)
        self.new: list[Sample] = []

    def samples(self) -> list[Sample]:
        return self.stored + self.new

    def append(self, samples: Iterable[Sample]) -> None:
        self.new.extend(samples)


@dataclass
class Generation:
    """Fills a run store round by round with every missing (problem, chain, round) sample.

    Each graded sample carries the `feedback` the next round of its chain will see. With a
    `novelty` rule, a draw that duplicates an accepted solution of its problem is stored as
    rejected and redrawn with a new seed, up to the rule's retry budget.
    """

    engine: Engine
    task: Task
    strategy: Strategy
    sampling: SamplingParams
    store: SampleStore
    feedback: str = "none"
    novelty: Novelty | None = None
    progress: bool = True
    clock: Clock = field(default_factory=Clock)
    generated: int = 0  # tokens generated in this session
    stored: dict[tuple[str, int, int], Sample] = field(default_factory=dict)
    attempts: Counter[tuple[str, int, int]] = field(default_factory=Counter)
    accepted: defaultdict[str, list[Sample]] = field(default_factory=lambda: defaultdict(list))

    def run(self, problems: list[Problem]) -> None:
        """Generate every missing sample of `problems` (this generation alone on its engine)."""
        generate_together([(self, problems)])

    def load_stored(self) -> None:
        """Take what the store holds: stored slots, redraw counts, accepted samples."""
        for sample in self.store.samples():
            if sample.status == "rejected":
                self.attempts[sample.key] += 1
                continue
            self.stored[sample.key] = sample
            if sample.status == "ok":
                self.accepted[sample.problem_id].append(sample)

    def batches(self, problems: list[Problem]) -> Iterator[Batch]:
        """The engine calls of a batching engine, round after round: each batch holds one
        round's missing slots (or its redraws) and must be accepted before the next one."""
        prompts = {p.id: self.task.prompt(p) for p in problems}
        for round_ in range(1, self.strategy.rounds + 1):
            slots = [
                (problem, chain, messages)
                for problem in problems
                for chain in range(self.strategy.chains)
                if (messages := self.open_slot(problem, prompts[problem.id], chain, round_))
            ]
            while slots and (batch := self.prepare(slots, round_)) is not None:
                yield batch
                slots = batch.again

    def open_slot(
        self, problem: Problem, prompt: str, chain: int, round_: int
    ) -> tuple[Message, ...] | None:
        """The messages of this round of the chain, or None when it is stored, not part of
        the strategy, or its chain ended at a skipped round."""
        reads = self.strategy.history(chain, round_)
        if reads is None or (problem.id, chain, round_) in self.stored:
            return None
        history = [self.stored.get((problem.id, c, r)) for c, r in reads]
        if any(h is None or h.status != "ok" for h in history):
            return None
        previous = [Attempt(h.text, h.feedback) for h in history if h is not None]
        return self.strategy.messages(problem, prompt, previous, round_)

    async def run_chains(self, problems: list[Problem], in_flight: asyncio.Semaphore) -> None:
        """Every chain on its own: round r+1 is requested as soon as round r is graded, so a
        server's batch stays full while slow chains finish. A round waits only for the
        rounds it reads (hybrid chains read chain 0). A chain holds one of `in_flight`'s
        slots (shared by the generations decoded together) from its first round to its last:
        a one-slot engine runs chain after chain and keeps each chain's prefix in its cache.
        Chains start in order, so a hybrid chain waiting on chain 0 never blocks it."""
        prompts = {p.id: self.task.prompt(p) for p in problems}
        done: defaultdict[tuple[str, int, int], asyncio.Event] = defaultdict(asyncio.Event)
        print(f"{self.strategy.name}: chains scheduled independently", file=sys.stderr)
        bar = self.progress_bar(problems)
        rounds = range(1, self.strategy.rounds + 1)
        in_loop = decodes_in_event_loop(self.engine)

        async def chain(problem: Problem, chain: int) -> None:
            try:
                async with in_flight:
                    if in_loop:  # rounds that read nothing of each other go at once
                        await asyncio.gather(*(one_round(problem, chain, r) for r in rounds))
                    else:  # one request at a time: a one-slot engine keeps the chain's prefix
                        for round_ in rounds:
                            await one_round(problem, chain, round_)
            finally:  # a failed or ended chain must not leave its readers waiting
                for round_ in rounds:
                    done[(problem.id, chain, round_)].set()

        async def one_round(problem: Problem, chain: int, round_: int) -> None:
            for c, r in self.strategy.history(chain, round_) or []:
                await done[(problem.id, c, r)].wait()
            prompt = prompts[problem.id]
            while messages := self.open_slot(problem, prompt, chain, round_):
                await self.draw_one(problem, chain, round_, messages)
            done[(problem.id, chain, round_)].set()
            bar.update(1)
            bar.set_postfix_str(self.throughput())

        try:
            await asyncio.gather(
                *(chain(p, c) for p in problems for c in range(self.strategy.chains))
            )
        finally:
            bar.close()

    async def run_requests(self, problems: list[Problem], in_flight: asyncio.Semaphore) -> None:
        """A one-round generation on a concurrent engine: its requests as they are alone (the
        samples of a problem in one request), each holding one of `in_flight`'s slots."""
        bar = self.progress_bar(problems)
        for batch in self.batches(problems):

            async def one(index: int, batch: Batch = batch) -> None:
                async with in_flight:
                    self.clock.sent()
                    try:
                        completions = await self.engine.complete(  # type: ignore[attr-defined]
                            batch.requests[index], self.sampling
                        )
                    finally:
                        self.clock.back()
                grades = await self.grade(problems_of(batch, index), completions)
                batch.accept(index, completions, grades)
                bar.update(len(completions))
                bar.set_postfix_str(self.throughput())

            await asyncio.gather(*(one(i) for i in range(len(batch.requests))))
        bar.close()

    def throughput(self) -> str:
        """Tokens generated so far in this session, and their rate."""
        seconds = time.perf_counter() - (self.clock.first or time.perf_counter())
        rate = f", {self.generated / seconds:.1f} tok/s" if seconds > 0 else ""
        return f"{self.generated:,} tok{rate}"

    def progress_bar(self, problems: list[Problem]) -> Any:
        from tqdm.auto import tqdm

        slots = len(problems) * self.strategy.chains * self.strategy.rounds
        return tqdm(total=slots, desc=self.strategy.name, unit="slot", disable=not self.progress)

    async def draw_one(
        self, problem: Problem, chain: int, round_: int, messages: tuple[Message, ...]
    ) -> None:
        """Generate, grade and store one draw of one slot (a concurrent engine's unit)."""
        length, overflow = self.overflow(messages)
        if overflow:
            skipped = skip(problem, chain, round_, length, overflow)
            self.store.append([skipped])
            self.stored[skipped.key] = skipped
            return
        # The rounds left in this chain wait on this one: a batch should serve it first.
        priority = self.strategy.rounds - round_
        request = Request(messages, (self.seed(problem.id, chain, round_),), priority)
        assert isinstance(self.engine, ConcurrentEngine)
        self.clock.sent()
        try:
            (completion,) = await self.engine.complete(request, self.sampling)
        finally:
            self.clock.back()
        self.generated += completion.completion_tokens
        (grade,) = await self.grade([problem], [completion])
        self.store.append([self.judge(problem, chain, round_, completion, grade)])

    async def grade(self, problems: list[Problem], completions: list[Completion]) -> list[Grade]:
        """Grades of completions, off the event loop where that keeps a server busy: code runs
        in the sandbox, which bounds its own time; math-verify's bound (SIGALRM) works in
        the main thread only. An engine that decodes in the loop grades inline (see hf)."""

        if self.task.answer_kind == "behaviour" and not decodes_in_event_loop(self.engine):
            return await asyncio.to_thread(grade_each, self.task, problems, completions)
        return grade_each(self.task, problems, completions)

    def prepare(
        self, slots: list[tuple[Problem, int, tuple[Message, ...]]], round_: int
    ) -> Batch | None:
        """One engine call's requests for `slots` (slots with the same messages share a
        request); slots whose prompt leaves no room are stored as skipped. None: none left."""
        groups: dict[tuple[Message, ...], list[tuple[Problem, int]]] = {}
        for problem, chain, messages in slots:
            groups.setdefault(messages, []).append((problem, chain))
        requests, owners, skipped = [], [], []
        for messages, members in groups.items():
            length, overflow = self.overflow(messages)
            if overflow:
                skipped += [skip(p, c, round_, length, overflow) for p, c in members]
                continue
            seeds = tuple(self.seed(p.id, c, round_) for p, c in members)
            requests.append(Request(messages, seeds))
            owners.append(members)
        self.store.append(skipped)
        self.stored.update((s.key, s) for s in skipped)
        if not requests:
            return None
        redraws = sum(self.attempts[(p.id, c, round_)] > 0 for m in owners for p, c in m)
        print(
            f"{self.strategy.name}: round {round_}/{self.strategy.rounds}, "
            f"{sum(map(len, owners))} samples to generate"
            + (f" ({redraws} redrawn as duplicates)" if redraws else ""),
            file=sys.stderr,
        )
        return Batch(self, round_, requests, owners)

    def overflow(self, messages: tuple[Message, ...]) -> tuple[int, str]:
        """The prompt's length, and why it cannot be sent ("" when it leaves room)."""
        length, limit = self.engine.count_prompt_tokens(messages), self.engine.context_length
        if length + 1 <= limit:
            return length, ""
        return length, f"prompt has {length} tokens; the model's context is {limit}"

    def seed(self, problem_id: str, chain: int, round_: int) -> int:
        attempt = self.attempts[(problem_id, chain, round_)]
        parts = (problem_id, chain, round_) + ((attempt,) if attempt else ())
        return derive_seed(self.sampling.seed, *parts)

    def judge(
        self, problem: Problem, chain: int, round_: int, completion: Completion, grade: Grade
    ) -> Sample:
        """Decide whether a graded draw is accepted or rejected as a duplicate."""
        key = (problem.id, chain, round_)
        sample = replace(
            record(problem, chain, round_, completion, grade),
            feedback=self.task.feedback(problem, grade, self.feedback),
            attempt=self.attempts[key],
            target_prompt_tokens=self.strategy.target_tokens(problem, round_),
        )
        novelty = self.novelty
        if (
            novelty is not None
            and self.attempts[key] < novelty.max_retries
            and novelty.duplicate(sample, self.accepted[problem.id])
        ):
            self.attempts[key] += 1
            return replace(sample, status="rejected")
        self.stored[key] = sample
        self.accepted[problem.id].append(sample)
        return sample


@dataclass
class Batch:
    """One round's requests of one generation, and the slots to draw again once accepted."""

    generation: Generation
    round: int
    requests: list[Request]
    owners: list[list[tuple[Problem, int]]]  # the (problem, chain) slots of each request
    again: list[tuple[Problem, int, tuple[Message, ...]]] = field(default_factory=list)

    def accept(
        self, index: int, completions: list[Completion], grades: list[Grade] | None = None
    ) -> None:
        """Grade (unless `grades` are given) and store the completions of request `index`;
        rejected draws go to `again`."""
        generation = self.generation
        generation.generated += sum(c.completion_tokens for c in completions)
        samples = []
        owners = self.owners[index]
        if grades is None:
            grades = grade_each(generation.task, problems_of(self, index), completions)
        for (problem, chain), completion, grade in zip(owners, completions, grades, strict=True):
            sample = generation.judge(problem, chain, self.round, completion, grade)
            samples.append(sample)
            if sample.status == "rejected":
                self.again.append((problem, chain, self.requests[index].messages))
        generation.store.append(samples)


def decodes_in_event_loop(engine: Engine) -> bool:
    """Whether the engine computes in the scheduler's event loop (hf): then grading inline
    keeps which rows share a step, and so the texts, independent of timing."""
    return bool(getattr(engine, "decodes_in_event_loop", False))


def problems_of(batch: Batch, index: int) -> list[Problem]:
    return [problem for problem, _ in batch.owners[index]]


def grade_each(task: Task, problems: list[Problem], completions: list[Completion]) -> list[Grade]:
    return [grade_safely(task, p, c.text) for p, c in zip(problems, completions, strict=True)]


def generate_together(generations: Sequence[tuple[Generation, list[Problem]]]) -> None:
    """Fill generations that share one engine and sampling settings at once, so the engine's
    batch holds all their work: a concurrent engine (hf, servers) gets every chain of every
    generation under one in-flight limit, each round as soon as the rounds it reads are
    stored, and one-round generations' requests as they send them alone; an engine that
    only batches gets every generation's next round in one call. One generation alone runs
    the same way."""
    if not generations:
        return
    engine, sampling = generations[0][0].engine, generations[0][0].sampling
    if any(g.engine is not engine or g.sampling != sampling for g, _ in generations):
        raise SeqparError("runs generated together must share one engine and sampling settings")
    for generation, _ in generations:
        generation.load_stored()
    if isinstance(engine, ConcurrentEngine):

        async def every_generation() -> None:
            in_flight = asyncio.Semaphore(engine.max_in_flight)
            await asyncio.gather(
                *(
                    g.run_chains(p, in_flight)
                    if g.strategy.rounds > 1
                    else g.run_requests(p, in_flight)
                    for g, p in generations
                )
            )

        run_coroutine(every_generation())
        return
    cursors = [g.batches(p) for g, p in generations]
    current = [(cursor, batch) for cursor in cursors if (batch := next(cursor, None))]
    while current:
        owners = [(batch, i) for _, batch in current for i in range(len(batch.requests))]
        requests = [request for _, batch in current for request in batch.requests]
        clocks = [batch.generation.clock for _, batch in current]
        for index, completions in timed(engine.generate(requests, sampling), clocks):
            batch, own_index = owners[index]
            batch.accept(own_index, completions)
        current = [(cursor, batch) for cursor, _ in current if (batch := next(cursor, None))]


def timed(results: Iterator[T], clocks: Sequence[Clock]) -> Iterator[T]:
    """`results` of one batching engine call, timed on the clock of every generation it
    serves: the engine works only while asked for its next result, not while results are
    graded and stored."""

    def sent() -> None:
        for clock in clocks:
            clock.sent()

    def back(completed: bool = True) -> None:
        for clock in clocks:
            clock.back(completed)

    while True:
        sent()
        try:
            result = next(results)
        except StopIteration:
            back(completed=False)
            return
        except BaseException:
            back()
            raise
        back()
        yield result


def record(
    problem: Problem, chain: int, round_: int, completion: Completion, grade: Grade
) -> Sample:
    return Sample(
        problem_id=problem.id,
        chain=chain,
        round=round_,
        status="ok",
        text=completion.text,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        finish_reason=completion.finish_reason,
        seed=completion.seed,
        wall_time=completion.wall_time,
        cached_prompt_tokens=completion.cached_prompt_tokens,
    ).with_grade(grade)


def skip(problem: Problem, chain: int, round_: int, prompt_tokens: int, reason: str) -> Sample:
    return Sample(
        problem_id=problem.id,
        chain=chain,
        round=round_,
        status="skipped",
        prompt_tokens=prompt_tokens,
        skip_reason=reason,
    )


def run_coroutine(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run `coroutine` to its end on a new event loop; from inside a running loop (a
    notebook), on a helper thread, since a thread runs one loop at a time."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    failures: list[BaseException] = []

    def work() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as error:  # handed to the caller's thread
            failures.append(error)

    helper = threading.Thread(target=work)
    helper.start()
    helper.join()
    if failures:
        raise failures[0]
