"""The scheduler on scripted engines (no model): waiting, skipping, resuming, slots, seeds.

Each engine answers from the request's seed alone, so any two schedules that send the same
requests store the same samples; what differs between them is observed through the
engine's own log of requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import pytest

from seqpar.config import RunConfig
from seqpar.engines import derive_seed, generate_concurrently
from seqpar.registry import get_task
from seqpar.sampling import SamplingParams
from seqpar.scheduler import Generation, MemoryStore, generate_together, prepare_generation
from seqpar.specs import HybridSpec, NoveltySpec, ParallelSpec, SequentialSpec, TaskSpec
from seqpar.store import RunStore
from seqpar.tasks import select
from seqpar.types import Completion, Message, Request

TASK = TaskSpec("arith", {"difficulty": 1}, limit=3)


def answer(seed: int) -> str:
    return f"Working. The answer is \\boxed{{{seed % 5}}}"


class BatchedEngine:
    """Answers every seed at once, in request order; logs each call's requests."""

    def __init__(self, context_length: int = 100_000) -> None:
        self.context_length = context_length
        self.calls: list[list[Request]] = []

    def describe(self) -> dict[str, str]:
        return {"engine": "scripted", "model_sha256": "scripted"}

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m.content.split()) for m in messages)

    def completion(self, request: Request, seed: int) -> Completion:
        prompt = self.count_prompt_tokens(request.messages)
        return Completion(answer(seed), prompt, 7, "stop", seed, 0.0)

    def generate(self, requests: Sequence[Request], params: SamplingParams):
        self.calls.append(list(requests))
        for index, request in enumerate(requests):
            yield index, [self.completion(request, seed) for seed in request.seeds]


class ConcurrentEngine(BatchedEngine):
    """One request at a time per call, many in flight; logs starts, ends and concurrency."""

    def __init__(self, max_in_flight: int, context_length: int = 100_000) -> None:
        super().__init__(context_length)
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.most_in_flight = 0
        self.log: list[tuple[str, Request]] = []

    async def complete(self, request: Request, params: SamplingParams) -> list[Completion]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.log.append(("start", request))
        for _ in range(3):  # let every other ready chain start before this one ends
            await asyncio.sleep(0)
        self.in_flight -= 1
        self.log.append(("end", request))
        return [self.completion(request, seed) for seed in request.seeds]

    def generate(self, requests: Sequence[Request], params: SamplingParams):
        return generate_concurrently(self, requests, params)


def generate(config: RunConfig, engine, store) -> None:
    task = config.build_task()
    generation = prepare_generation(config, engine, task, store, progress=False)
    generation.run(select(task.load(), config.task.limit))


def config_of(strategy, **changes) -> RunConfig:
    return RunConfig(model="scripted", task=TASK, strategy=strategy, **changes)


def drawn(samples) -> list[tuple]:
    """What a run stored, independent of the order it was stored in."""
    return sorted((s.draw, s.status, s.seed, s.text, s.skip_reason) for s in samples)


@pytest.mark.parametrize(
    "strategy", [SequentialSpec(3, chains=2), HybridSpec(3, hybrid_k=2), ParallelSpec(4)]
)
def test_concurrent_chains_store_what_the_batched_path_stores(strategy):
    batched, concurrent = MemoryStore([]), MemoryStore([])
    generate(config_of(strategy), BatchedEngine(), batched)
    generate(config_of(strategy), ConcurrentEngine(max_in_flight=2), concurrent)
    assert drawn(batched.samples()) == drawn(concurrent.samples())
    assert len({s.seed for s in batched.samples()}) == len(batched.samples())


def test_chains_hold_at_most_max_in_flight_slots_and_fill_them():
    for limit in (1, 2, 3):
        engine = ConcurrentEngine(max_in_flight=limit)
        generate(config_of(SequentialSpec(3, chains=2)), engine, MemoryStore([]))
        # 3 problems × 2 chains = 6 chains: the limit is reached, never passed
        assert engine.most_in_flight == limit


@pytest.mark.parametrize("strategy", [SequentialSpec(3, chains=2), HybridSpec(3, hybrid_k=2)])
def test_a_round_is_sent_only_after_every_round_it_reads_is_back(strategy):
    config = config_of(strategy)
    engine = ConcurrentEngine(max_in_flight=4)
    generate(config, engine, MemoryStore([]))
    plan = config.build_strategy()
    problems = select(config.build_task().load(), TASK.limit)
    slots = [
        (p.id, c, r)
        for p in problems
        for c in range(plan.chains)
        for r in range(1, plan.rounds + 1)
        if plan.history(c, r) is not None
    ]
    slot_of = {derive_seed(config.sampling.seed, *slot): slot for slot in slots}
    back: set[tuple[str, int, int]] = set()
    waited = 0
    for event, request in engine.log:
        problem_id, chain, round_ = slot_of[request.seeds[0]]
        if event == "end":
            back.add((problem_id, chain, round_))
            continue
        reads = {(problem_id, c, r) for c, r in plan.history(chain, round_) or []}
        assert reads <= back, f"{problem_id} chain {chain} round {round_} sent too early"
        waited += bool(reads)
    assert waited == sum(r > 1 for _, _, r in slots)  # every later round read something


def test_a_prompt_that_overflows_the_context_is_skipped_with_its_reason_and_ends_its_chain():
    # round 1 prompts fit; round 2 prompts (problem + a previous solution) do not
    task = get_task("arith", difficulty=1)
    first = max(
        BatchedEngine().count_prompt_tokens([Message("user", task.prompt(p))])
        for p in select(task.load(), TASK.limit)
    )
    for engine in (BatchedEngine(first + 2), ConcurrentEngine(2, first + 2)):
        store = MemoryStore([])
        generate(config_of(SequentialSpec(3)), engine, store)
        by_round = {r: [s for s in store.samples() if s.round == r] for r in (1, 2, 3)}
        assert [s.status for s in by_round[1]] == ["ok"] * 3
        assert [s.status for s in by_round[2]] == ["skipped"] * 3
        for sample in by_round[2]:
            assert sample.skip_reason == (
                f"prompt has {sample.prompt_tokens} tokens; the model's context is {first + 2}"
            )
        assert by_round[3] == []  # a chain ends at its skipped round


@pytest.mark.parametrize("concurrent", [False, True])
def test_resume_after_a_kill_at_any_line_stores_the_same_samples_once(tmp_path, concurrent):
    def engine():
        return ConcurrentEngine(2) if concurrent else BatchedEngine()

    config = config_of(HybridSpec(2, hybrid_k=1), novelty=NoveltySpec("answer", max_retries=1))
    whole = RunStore(tmp_path / "whole")
    whole.path.mkdir()
    generate(config, engine(), whole)
    lines = whole.samples_path.read_bytes().splitlines(keepends=True)
    assert any(s.status == "rejected" for s in whole.samples())  # redraws are resumed too
    for cut in range(len(lines)):
        store = RunStore(tmp_path / f"cut{cut}")
        store.path.mkdir()
        torn = lines[cut][: len(lines[cut]) // 2]  # the line being written when killed
        store.samples_path.write_bytes(b"".join(lines[:cut]) + torn)
        store.repair()
        generate(config, engine(), store)
        assert drawn(store.samples()) == drawn(whole.samples()), f"killed at line {cut}"


def test_a_resumed_run_sends_nothing_that_is_stored(tmp_path):
    config = config_of(SequentialSpec(3, chains=2))
    store = RunStore(tmp_path / "run")
    store.path.mkdir()
    generate(config, BatchedEngine(), store)
    again = BatchedEngine()
    generate(config, again, store)
    assert again.calls == []


def test_an_engine_without_head_ablation_refuses_ablated_heads(tmp_path):
    from seqpar.errors import SeqparError
    from seqpar.specs import AblationSpec

    config = config_of(SequentialSpec(2), ablation=AblationSpec(((0, 1),)))
    with pytest.raises(SeqparError, match="cannot switch heads off"):
        generate(config, BatchedEngine(), MemoryStore([]))


def test_memory_store_of_a_worker_holds_only_what_it_added():
    store = MemoryStore([])
    generate(config_of(ParallelSpec(2)), BatchedEngine(), store)
    resumed = MemoryStore(store.samples()[:3])
    generate(config_of(ParallelSpec(2)), BatchedEngine(), resumed)
    assert len(resumed.new) == len(store.samples()) - 3


class TimedEngine(ConcurrentEngine):
    """Every request takes one second of a fake clock from when it is sent, so requests
    sent together end together; after `fail_after` completions it dies (a crashed server)."""

    def __init__(self, max_in_flight: int, fail_after: int | None = None) -> None:
        super().__init__(max_in_flight)
        self.now = 0.0
        self.fail_after = fail_after
        self.done = 0

    async def complete(self, request: Request, params: SamplingParams) -> list[Completion]:
        if self.fail_after is not None and self.done >= self.fail_after:
            raise RuntimeError("the server died")
        sent = self.now
        (completion,) = await super().complete(request, params)
        self.now = max(self.now, sent + 1.0)
        self.done += 1
        return [replace(completion, wall_time=1.0)]


def test_elapsed_time_counts_overlapping_requests_once_and_sums_sessions(tmp_path, monkeypatch):
    from seqpar import scheduler
    from seqpar.report.summary import markdown, summarize
    from seqpar.run import execute

    config = config_of(SequentialSpec(3))  # 3 problems × 3 rounds, the 3 chains at once
    crashed = TimedEngine(max_in_flight=3, fail_after=4)
    monkeypatch.setattr(scheduler.time, "perf_counter", lambda: crashed.now)
    with pytest.raises(RuntimeError, match="the server died"):
        execute(config, tmp_path / "run", engine=crashed, progress=False)
    first = summarize(str(tmp_path / "run"))
    assert (first.elapsed_s, first.engine_busy_s, first.sessions) == (2.0, 2.0, 1)
    assert first.wall_time_s == 6.0  # rounds 1 and 2 of three chains: durations overlap

    engine = TimedEngine(max_in_flight=3)
    monkeypatch.setattr(scheduler.time, "perf_counter", lambda: engine.now)
    execute(config, tmp_path / "run", engine=engine, progress=False)
    whole = summarize(str(tmp_path / "run"))
    # session 2 sends round 3 of the three chains together: one one-second wave
    assert (whole.elapsed_s, whole.engine_busy_s, whole.sessions) == (3.0, 3.0, 2)
    assert whole.wall_time_s == 9.0
    assert "elapsed 3.0 s, engine busy 3.0 s over 2 sessions" in markdown([whole])


def test_a_batching_engine_is_busy_only_while_it_generates(monkeypatch):
    """Each yielded request costs the engine one second; storing it (after grading) costs
    half a second that is not the engine's."""
    from seqpar import scheduler

    now = [0.0]

    class Slow(BatchedEngine):
        def generate(self, requests, params):
            for item in super().generate(requests, params):
                now[0] += 1.0
                yield item

    class SlowStore(MemoryStore):
        def append(self, samples):
            now[0] += 0.5
            super().append(samples)

    monkeypatch.setattr(scheduler.time, "perf_counter", lambda: now[0])
    config = config_of(ParallelSpec(2))  # one request per problem: 3 requests
    task = config.build_task()
    generation = prepare_generation(config, Slow(), task, SlowStore([]), progress=False)
    generation.run(select(task.load(), TASK.limit))
    # the round's skipped samples (none) are stored first: +0.5; then each request: +1 engine,
    # +0.5 store; elapsed runs from the first request to the last completion
    assert generation.clock.record() == {"elapsed_s": 4.0, "engine_busy_s": 3.0}
    assert generation.generated == 3 * 2 * 7


TOGETHER = (ParallelSpec(3), SequentialSpec(3, chains=2), HybridSpec(3, hybrid_k=2))


def generations_of(engine, stores, strategies=TOGETHER):
    task = get_task("arith", difficulty=1)
    problems = select(task.load(), TASK.limit)
    return [
        (prepare_generation(config_of(s), engine, task, store, progress=False), problems)
        for s, store in zip(strategies, stores, strict=True)
    ]


@pytest.mark.parametrize("concurrent", [False, True])
def test_runs_generated_together_store_what_each_stores_alone(concurrent):
    def engine():
        return ConcurrentEngine(2) if concurrent else BatchedEngine()

    alone = [MemoryStore([]) for _ in TOGETHER]
    for strategy, store in zip(TOGETHER, alone, strict=True):
        generate(config_of(strategy), engine(), store)
    together = [MemoryStore([]) for _ in TOGETHER]
    generate_together(generations_of(engine(), together))
    for one, other in zip(alone, together, strict=True):
        assert drawn(one.samples()) == drawn(other.samples())


def test_a_batching_engine_gets_every_runs_round_in_one_call():
    alone = BatchedEngine()
    for strategy in TOGETHER:
        generate(config_of(strategy), alone, MemoryStore([]))
    engine = BatchedEngine()
    generate_together(generations_of(engine, [MemoryStore([]) for _ in TOGETHER]))
    # alone: parallel 1 call, sequential 3, hybrid 3 (k=2 rounds, then its N samples)
    assert len(alone.calls) == 7
    assert len(engine.calls) == 3  # round r of every run in call r
    # 3 problems: parallel's 3 samples, 2 sequential chains, hybrid's chain 0 until its
    # round 3 of 3 samples
    assert [sum(len(r.seeds) for r in call) for call in engine.calls] == [9 + 6 + 3, 6 + 3, 6 + 9]


def test_a_parallel_run_sends_the_same_requests_together_as_alone():
    """A server may draw a request's N seeds in one call (n > 1): a parallel run generated
    together with other runs must still send one request per problem with its N seeds."""
    engine = ConcurrentEngine(max_in_flight=2)
    generate_together(generations_of(engine, [MemoryStore([]) for _ in TOGETHER]))
    whole = [request for event, request in engine.log if event == "start"]
    # parallel: 3 problems × one 3-seed request; chains (hybrid's too) draw one seed each
    assert sorted(len(r.seeds) for r in whole if len(r.seeds) > 1) == [3, 3, 3]


def test_runs_generated_together_share_one_in_flight_limit():
    engine = ConcurrentEngine(max_in_flight=2)
    strategies = (SequentialSpec(3, chains=2), SequentialSpec(2, chains=2))
    stores = [MemoryStore([]) for _ in strategies]
    generate_together(generations_of(engine, stores, strategies))
    assert engine.most_in_flight == 2
    assert len(stores[0].samples()) == 3 * 2 * 3 and len(stores[1].samples()) == 3 * 2 * 2


def test_runs_with_other_sampling_settings_are_not_generated_together():
    from seqpar.errors import SeqparError

    engine = BatchedEngine()
    task = get_task("arith", difficulty=1)
    problems = select(task.load(), TASK.limit)
    hot = config_of(ParallelSpec(2), sampling=SamplingParams(temperature=1.0, seed=0))
    generations = [
        (prepare_generation(c, engine, task, MemoryStore([]), progress=False), problems)
        for c in (config_of(ParallelSpec(2)), hot)
    ]
    with pytest.raises(SeqparError, match="share one engine and sampling settings"):
        generate_together(generations)
    assert engine.calls == []


def test_runs_interrupted_together_resume_together_with_nothing_lost_or_doubled(tmp_path):
    from seqpar.report.summary import markdown, summarize
    from seqpar.run import execute_together

    class Dying(BatchedEngine):
        """Dies after `left` requests (a killed engine)."""

        def __init__(self, left: int) -> None:
            super().__init__()
            self.left = left

        def generate(self, requests, params):
            for item in super().generate(requests, params):
                if self.left == 0:
                    raise RuntimeError("engine killed")
                self.left -= 1
                yield item

    configs = [config_of(s) for s in TOGETHER]
    whole = [(c, tmp_path / "whole" / c.strategy.name) for c in configs]
    execute_together(whole, BatchedEngine(), progress=False)
    for left in (0, 5, 13):  # in round 1, at its end, in round 2
        runs = [(c, tmp_path / f"killed{left}" / c.strategy.name) for c in configs]
        with pytest.raises(RuntimeError, match="engine killed"):
            execute_together(runs, Dying(left), progress=False)
        unfinished = [
            len(RunStore(out).samples()) < len(RunStore(done).samples())
            for (_, out), (_, done) in zip(runs, whole, strict=True)
        ]
        execute_together(runs, BatchedEngine(), progress=False)
        for (_, done), (_, resumed), resumed_some in zip(whole, runs, unfinished, strict=True):
            assert drawn(RunStore(resumed).samples()) == drawn(RunStore(done).samples())
            # the killed session counts; the resumed one only where it generated something
            sessions = RunStore(resumed).sessions()
            assert len(sessions) == 1 + resumed_some
            # the killed session was generated with the two other runs
            assert sessions[0]["shared_with_runs"] == 2
    assert "generated together with other runs" in markdown([summarize(str(runs[0][1]))])


def test_runs_generate_from_inside_a_running_event_loop_as_in_a_notebook():
    alone, inside = MemoryStore([]), MemoryStore([])
    strategy = SequentialSpec(2, chains=2)
    generate(config_of(strategy), ConcurrentEngine(max_in_flight=2), alone)

    async def notebook_cell() -> None:
        generate(config_of(strategy), ConcurrentEngine(max_in_flight=2), inside)

    asyncio.run(notebook_cell())
    assert drawn(inside.samples()) == drawn(alone.samples())


def test_a_one_slot_engine_gets_a_chain_s_rounds_one_at_a_time_even_when_they_read_nothing():
    from seqpar.specs import PaddedSpec

    class Padded:  # padded-parallel's shape: rounds that read nothing of each other
        rounds, chains, name, scored_round = 3, 1, "padded-parallel", None

        def history(self, chain, round_):
            return []

        def messages(self, problem, prompt, previous, round_):
            return (Message("user", f"{prompt} #{round_}"),)

        def target_tokens(self, problem, round_):
            return None

    engine = ConcurrentEngine(max_in_flight=1)
    task = config_of(PaddedSpec(3)).build_task()
    generation = Generation(engine, task, Padded(), SamplingParams(seed=0), MemoryStore([]))
    generation.run(select(task.load(), 2))
    assert engine.most_in_flight == 1 and len(generation.store.samples()) == 6
