"""The in-process llama.cpp engine: prefix arithmetic by hand, then the real bundled SmolLM2
GGUF, where sequential rounds must only evaluate their new tokens."""

import asyncio

import pytest

from seqpar.config import RunConfig
from seqpar.engines.llamacpp import LlamaCppEngine, reused_prefix
from seqpar.run import execute
from seqpar.sampling import SamplingParams
from seqpar.specs import SequentialSpec, SequentialTemplate, TaskSpec
from seqpar.types import Message, Request

from .conftest import TEST_MODEL


def test_reused_prefix_keeps_the_common_part_and_replays_a_fully_cached_prompt():
    assert reused_prefix([], [1, 2, 3]) == 0
    assert reused_prefix([1, 2, 9, 9], [1, 2, 3]) == 2
    assert reused_prefix([1, 2, 3, 4, 5], [1, 2, 3]) == 2  # whole prompt cached: last replayed
    assert reused_prefix([1, 2], [1, 2, 3, 4]) == 2
    assert reused_prefix([7], [1, 2]) == 0


@pytest.fixture(scope="module")
def engine():
    return LlamaCppEngine.load(TEST_MODEL, max_context=4096)


@pytest.mark.slow
def test_same_seed_and_cache_state_same_text_and_repeated_prompts_hit_the_cache(engine):
    request = Request((Message("user", "Name three colours."),), (5, 6))
    params = SamplingParams(max_tokens=24)
    engine.llama.reset()
    first, other = asyncio.run(engine.complete(request, params))
    engine.llama.reset()
    again, _ = asyncio.run(engine.complete(request, params))
    assert first.text == again.text and first.completion_tokens > 0
    assert first.cached_prompt_tokens == 0 and again.cached_prompt_tokens == 0
    assert other.seed == 6 and other.cached_prompt_tokens == other.prompt_tokens - 1


@pytest.mark.slow
def test_sequential_rounds_evaluate_only_their_new_tokens(engine, tmp_path):
    config = RunConfig(
        model=TEST_MODEL, engine="llamacpp",
        task=TaskSpec("arith", {"difficulty": 1}, limit=3), strategy=SequentialSpec(3),
        sampling=SamplingParams(temperature=0.7, max_tokens=40, seed=0),
        template=SequentialTemplate(history="full", layout="multiturn"),
    )  # fmt: skip
    samples = {s.key: s for s in execute(config, tmp_path, engine=engine).samples()}
    assert len(samples) == 9
    for (problem, chain, round_), sample in samples.items():
        if round_ == 1:
            continue
        previous = samples[(problem, chain, round_ - 1)]
        # Round r+1's prompt extends round r's prompt and answer token for token.
        assert (
            sample.cached_prompt_tokens >= previous.prompt_tokens + previous.completion_tokens - 1
        )
        assert sample.prompt_tokens - sample.cached_prompt_tokens < 40
    manifest = execute(config, tmp_path, engine=engine).manifest()
    assert manifest["engine"]["engine"] == "llamacpp"
