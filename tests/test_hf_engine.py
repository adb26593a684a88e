"""The real HF engine on the bundled SmolLM2-135M (slow: loads and runs the model)."""

import pytest

from seqpar.sampling import SamplingParams
from seqpar.types import Message, Request

pytestmark = pytest.mark.slow

QUESTIONS = ["What is 2 + 3?", "Name a colour. Then explain why you like it in detail."]


def requests(seeds):
    return [Request((Message("user", q),), seeds) for q in QUESTIONS]


def run(engine, reqs, **params):
    return dict(engine.generate(reqs, SamplingParams(**params)))


def test_batched_generation_accounting(small_engine):
    out = run(small_engine, requests((1, 2)), max_tokens=24, temperature=0.8, seed=0)
    assert sorted(out) == [0, 1]
    for index, completions in out.items():
        prompt = (Message("user", QUESTIONS[index]),)
        assert [c.seed for c in completions] == [1, 2]
        for c in completions:
            assert c.prompt_tokens == small_engine.count_prompt_tokens(prompt)
            assert 1 <= c.completion_tokens <= 24
            assert c.finish_reason in {"stop", "length"}
            assert (c.finish_reason == "length") == (c.completion_tokens == 24)
            assert c.wall_time > 0


def test_seeded_runs_reproduce(small_engine):
    first = run(small_engine, requests((5, 6)), max_tokens=16, temperature=1.0)
    again = run(small_engine, requests((5, 6)), max_tokens=16, temperature=1.0)
    other = run(small_engine, requests((7, 8)), max_tokens=16, temperature=1.0)
    texts = lambda out: [c.text for i in sorted(out) for c in out[i]]  # noqa: E731
    assert texts(first) == texts(again)
    assert texts(first) != texts(other)


def test_n_without_seeds_and_stop_strings(small_engine):
    reqs = [Request((Message("user", "List three fruits, one per line."),))]
    out = run(small_engine, reqs, n=3, max_tokens=40, temperature=0.7, seed=3, stop=("\n",))
    assert len(out[0]) == 3
    assert all("\n" not in c.text for c in out[0])


def test_context_length_cap(small_engine):
    assert small_engine.context_length == 8192
    small_engine.max_context = 100
    try:
        assert small_engine.context_length == 100
    finally:
        small_engine.max_context = None
