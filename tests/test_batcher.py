"""Continuous batching and prefix reuse (seqpar.engines.batcher): admission rules by hand,
then the real SmolLM2 engine: reused keys and values give a full evaluation's logits, rows
join a running batch, sessions reproduce, and an engine error reaches every waiting request."""

import asyncio

import pytest
import torch

from seqpar.engines.batcher import MIN_REUSE, Batcher, PrefixCache, Row, right_aligned
from seqpar.engines.hf import sample_tokens
from seqpar.sampling import SamplingParams
from seqpar.types import Message, Request

from .conftest import TEST_MODEL


def batcher_over(model, *, max_batch=10, token_budget=10_000, prefixes=None, **params):
    return Batcher(
        model,
        SamplingParams(**({"max_tokens": 10, "seed": 0} | params)),
        prefixes or PrefixCache(10_000),
        eos_ids={0},
        pad_id=0,
        context_length=1000,
        max_batch=max_batch,
        token_budget=token_budget,
        cache_argument="past_key_values",
        stops=lambda tokens: False,
        sample=sample_tokens,
    )


def rows(*lengths):
    return [Row(tuple(range(1, n + 1)), seed, None) for seed, n in enumerate(lengths)]


def admitted(batcher, waiting):
    for row in waiting:
        batcher.submit(row)
    return [live.row for live in batcher.admit()]


def test_admission_stops_at_max_batch():
    batcher = batcher_over(torch.nn.Linear(1, 1), max_batch=3)
    waiting = rows(5, 5, 5, 5, 5)
    assert admitted(batcher, waiting) == waiting[:3]
    assert list(batcher.waiting) == waiting[3:]


def test_rows_with_more_work_behind_them_join_first_then_in_the_order_sent():
    batcher = batcher_over(torch.nn.Linear(1, 1), max_batch=3)
    sent = [Row((1,) * 20, seed, None, priority) for seed, priority in enumerate((0, 2, 0, 1, 2))]
    assert [row.seed for row in admitted(batcher, sent)] == [1, 4, 3]
    assert [row.seed for row in batcher.waiting] == [0, 2]


def test_admission_keeps_rows_times_widest_footprint_within_the_token_budget():
    # Each row may reach 5 prompt + 45 new tokens: 2 × 50 fits 120, 3 × 50 does not.
    batcher = batcher_over(torch.nn.Linear(1, 1), token_budget=120, max_tokens=45)
    assert len(admitted(batcher, rows(5, 5, 5))) == 2


def test_admission_evaluates_at_most_a_quarter_of_the_budget_at_once():
    # Budget 400: 3 × 50 fits, but the prompts to evaluate stop at 400 // 4 = 100 tokens.
    batcher = batcher_over(torch.nn.Linear(1, 1), token_budget=400)
    assert len(admitted(batcher, rows(40, 40, 40))) == 2


def test_a_row_larger_than_the_budget_still_runs_alone():
    batcher = batcher_over(torch.nn.Linear(1, 1), token_budget=20)
    waiting = rows(500, 5)
    assert admitted(batcher, waiting) == waiting[:1]


def fake_layers(length, value=0.0):
    return [(torch.full((2, length, 4), value), torch.full((2, length, 4), value))]


def test_prefix_cache_finds_the_longest_shared_prefix_and_slices_it():
    cache = PrefixCache(capacity=1000)
    cache.add(list(range(40)), fake_layers(40, 1.0))
    cache.add(list(range(30)) + [99] * 10, fake_layers(40, 2.0))
    shared, layers = cache.longest([*range(35), 7])
    assert shared == 35
    assert layers[0][0].shape == (2, 35, 4) and float(layers[0][0][0, 0, 0]) == 1.0
    # Below MIN_REUSE tokens in common, evaluating is cheaper than copying: no reuse.
    assert cache.longest(list(range(MIN_REUSE - 1)) + [500] * 20) == (0, [])


def test_prefix_cache_drops_the_least_recently_used_beyond_its_capacity():
    cache = PrefixCache(capacity=60)
    first, second = list(range(30)), list(range(100, 130))
    cache.add(first, fake_layers(30))
    cache.add(second, fake_layers(30))
    cache.longest(first)  # used: the second is now the oldest
    cache.add(list(range(200, 230)), fake_layers(30))
    assert cache.tokens == 60
    assert cache.longest(first)[0] == 30
    assert cache.longest(second)[0] == 0


def test_right_alignment_packs_each_row_s_tokens_in_order_at_the_right_end():
    mask = torch.tensor([[1, 1, 0, 1], [0, 0, 0, 1]])
    keys = torch.arange(8.0).reshape(2, 1, 4, 1)  # row 0: 0 1 2 3, row 1: 4 5 6 7
    [(moved, _)], packed = right_aligned([(keys, keys.clone())], mask)
    assert packed.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert moved[0, 0, :, 0].tolist() == [0, 1, 3]
    assert moved[1, 0, -1, 0].item() == 7


# The real engine (slow: loads and runs SmolLM2-135M).

GREEDY = SamplingParams(temperature=0.0, max_tokens=20)


def run_to_end(batcher):
    finished = []
    while batcher.busy:
        finished += batcher.step()[0]
    return finished


def prompt_ids(engine, text):
    return tuple(engine.encode((Message("user", text),))[0])


def first_logits(engine, ids_list, prefixes):
    """Logits after each prompt, evaluated in one prefill group with these cached prefixes."""
    batcher = engine.new_batcher(GREEDY)
    batcher.prefixes = prefixes
    for seed, ids in enumerate(ids_list):
        batcher.submit(Row(ids, seed, None))
    lives = batcher.admit()
    assert len(lives) == len(ids_list)
    with torch.inference_mode():
        logits = batcher.prefill(lives).float()
    batcher.reset()
    return logits, [live.reused for live in lives]


def decoded(engine, ids_list, prefixes):
    """Greedy tokens of each prompt, decoded together with these cached prefixes."""
    batcher = engine.new_batcher(GREEDY)
    batcher.prefixes = prefixes
    for seed, ids in enumerate(ids_list):
        batcher.submit(Row(ids, seed, None))
    return sorted((f.row.seed, f.tokens) for f in run_to_end(batcher))


@pytest.fixture(scope="module")
def exact_engine():
    """SmolLM2 in float32: a reused prefix must then match a full evaluation to rounding."""
    from seqpar.engines.hf import HFEngine

    return HFEngine.load(TEST_MODEL, dtype="float32", progress=False)


@pytest.mark.slow
def test_reused_keys_and_values_give_the_logits_of_a_full_evaluation(exact_engine):
    engine = exact_engine
    batcher = engine.new_batcher(GREEDY)
    first = prompt_ids(engine, "Name three colours and say which one you like best.")
    batcher.submit(Row(first, 1, None))
    (done,) = run_to_end(batcher)
    remembered = first + tuple(done.tokens[:-1])
    follow_up = remembered + tuple(engine.tokenizer(" Now list them again.")["input_ids"])
    other = prompt_ids(engine, "What is 7 times 6?")
    # One group of two rows reusing prefixes of different lengths (the other shares the chat
    # template's opening): padding sits between each one's prefix and its evaluated rest.
    template = next(i for i, (a, b) in enumerate(zip(first, other, strict=False)) if a != b)
    reused, reuse = first_logits(engine, [follow_up, other], batcher.prefixes)
    fresh, no_reuse = first_logits(engine, [follow_up, other], PrefixCache(10_000))
    assert reuse == [len(remembered), template] and no_reuse == [0, 0]
    assert len(remembered) > template >= MIN_REUSE
    assert (reused - fresh).abs().max() < 1e-3
    # Decoding on from the packed cache draws what a fresh evaluation draws.
    assert decoded(engine, [follow_up, other], batcher.prefixes) == decoded(
        engine, [follow_up, other], PrefixCache(10_000)
    )
    # Control: values off by one position from their keys (a misaligned copy) must show.
    scrambled = PrefixCache(10_000)
    (entry_ids, layers) = next(iter(batcher.prefixes.entries.values()))
    scrambled.add(entry_ids.tolist(), [(k, v.roll(1, dims=1)) for k, v in layers])
    wrong, _ = first_logits(engine, [follow_up], scrambled)
    assert (wrong[0] - fresh[0]).abs().max() > 1.0


@pytest.mark.slow
def test_a_request_sent_while_others_decode_joins_their_batch(small_engine):
    params = SamplingParams(temperature=0.7, max_tokens=30, seed=3)
    long = Request((Message("user", "Tell a long story about a ship."),), (1, 2))
    late = Request((Message("user", "Say hi."),), (3,))

    async def go():
        first = asyncio.create_task(small_engine.complete(long, params))
        while small_engine.batcher is None or small_engine.batcher.counters.decode_steps < 3:
            await asyncio.sleep(0)
        second = await small_engine.complete(late, params)
        return await first, second, small_engine.batcher.counters

    (a, b), (c,), counters = asyncio.run(go())
    assert counters.most_rows == 3  # the late row decoded beside the two running ones
    assert [a.seed, b.seed, c.seed] == [1, 2, 3]
    assert all(x.completion_tokens >= 1 for x in (a, b, c))


@pytest.mark.slow
def test_sessions_with_the_same_requests_reproduce_their_texts(small_engine):
    params = SamplingParams(temperature=1.0, max_tokens=16, seed=0)
    requests = [
        Request((Message("user", q),), (11, 12))
        for q in ("What is 2 + 3?", "Name a fruit and describe it.")
    ]

    async def session():
        results = await asyncio.gather(*(small_engine.complete(r, params) for r in requests))
        return [c.text for cs in results for c in cs]

    assert asyncio.run(session()) == asyncio.run(session())


@pytest.mark.slow
def test_an_engine_error_reaches_every_waiting_request_and_the_engine_recovers(
    small_engine, monkeypatch
):
    params = SamplingParams(temperature=0.7, max_tokens=30, seed=0)
    requests = [Request((Message("user", f"Count to {n}."),), (n,)) for n in (3, 4, 5)]
    forward = small_engine.model.forward

    def failing(*args, **kwargs):
        if small_engine.batcher.counters.decode_steps >= 4:
            raise RuntimeError("out of memory (simulated)")
        return forward(*args, **kwargs)

    async def session():
        return await asyncio.gather(
            *(small_engine.complete(r, params) for r in requests), return_exceptions=True
        )

    monkeypatch.setattr(small_engine.model, "forward", failing)
    outcomes = asyncio.run(session())
    assert [str(o) for o in outcomes] == ["out of memory (simulated)"] * 3
    monkeypatch.setattr(small_engine.model, "forward", forward)
    assert all(isinstance(o, list) for o in asyncio.run(session()))


def sequential_run(tmp_path, data_dir, engine, template):
    """A sequential run of the test model on arith: 3 problems, 3 rounds, as stored."""
    from seqpar.config import RunConfig
    from seqpar.run import execute
    from seqpar.specs import SequentialSpec, TaskSpec

    config = RunConfig(
        model=TEST_MODEL,
        task=TaskSpec("arith", limit=3),
        strategy=SequentialSpec(3),
        sampling=SamplingParams(temperature=0.7, max_tokens=24, seed=0),
        template=template,
    )
    store = execute(config, tmp_path, data_dir=data_dir, engine=engine)
    samples = {(s.problem_id, s.round): s for s in store.samples()}
    assert len(samples) == 9 and all(s.status == "ok" for s in samples.values())
    return samples


@pytest.mark.slow
def test_chains_decode_together_and_a_later_round_reuses_its_chain(
    tmp_path, data_dir, small_engine
):
    from seqpar.specs import SequentialTemplate

    multiturn = SequentialTemplate(history="full", layout="multiturn")
    samples = sequential_run(tmp_path / "multiturn", data_dir, small_engine, multiturn)
    assert small_engine.batcher.counters.most_rows == 3  # the three chains, side by side
    for (problem, round_), sample in samples.items():
        if round_ > 1:  # round r's chat is round r-1's plus its answer and a new turn
            before = samples[(problem, round_ - 1)]
            reusable = before.prompt_tokens + before.completion_tokens
            assert sample.cached_prompt_tokens >= reusable - 4, (problem, round_)
    # The default layout rebuilds one message: it shares round r-1's prompt up to the
    # closing instruction, so only the previous answer and that instruction are evaluated.
    samples = sequential_run(tmp_path / "single", data_dir, small_engine, SequentialTemplate())
    for (problem, round_), sample in samples.items():
        if round_ > 1:
            before = samples[(problem, round_ - 1)]
            evaluated = sample.prompt_tokens - sample.cached_prompt_tokens
            assert evaluated <= sample.prompt_tokens - before.prompt_tokens + 40, (problem, round_)


@pytest.mark.slow
def test_a_request_with_more_rounds_behind_it_is_served_first(small_engine, monkeypatch):
    monkeypatch.setattr(small_engine, "max_batch", 1)
    params = SamplingParams(temperature=0.7, max_tokens=8, seed=0)
    ask = lambda text, priority: Request((Message("user", text),), (1,), priority)  # noqa: E731
    order = []

    async def one(name, request):
        await small_engine.complete(request, params)
        order.append(name)

    async def session():
        await asyncio.gather(
            one("first", ask("Say one.", 0)), one("low", ask("Say two.", 0)),
            one("high", ask("Say three.", 5)),
        )  # fmt: skip

    asyncio.run(session())
    assert order == ["high", "first", "low"]


@pytest.mark.slow
def test_a_failure_while_prompts_are_evaluated_reaches_every_request(small_engine, monkeypatch):
    params = SamplingParams(temperature=0.7, max_tokens=8, seed=0)
    requests = [Request((Message("user", f"Count to {n}."),), (n,)) for n in (3, 4)]

    def failing(*args, **kwargs):
        raise RuntimeError("out of memory while evaluating prompts (simulated)")

    async def session():
        calls = (small_engine.complete(r, params) for r in requests)
        return await asyncio.gather(*calls, return_exceptions=True)

    monkeypatch.setattr(small_engine.model, "forward", failing)
    outcomes = asyncio.run(session())
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError]
