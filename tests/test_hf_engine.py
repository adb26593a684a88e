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


def test_batch_limits_default_to_the_device_and_keep_what_is_given(small_engine):
    from seqpar.engines.hf import HFEngine

    # CPU: 2 GiB of keys and values, SmolLM2's being 30 layers × 2 × 3 heads × 64 × 2 bytes.
    per_token = 30 * 2 * 3 * 64 * small_engine.model.dtype.itemsize
    assert small_engine.token_budget == min(131072, (2 << 30) // per_token)
    assert small_engine.max_batch == 64
    given = HFEngine(small_engine.model, small_engine.tokenizer, small_engine.local,
                     token_budget=1000, max_batch=3)  # fmt: skip
    assert (given.token_budget, given.max_batch) == (1000, 3)


def test_context_length_cap(small_engine):
    assert small_engine.context_length == 8192
    small_engine.max_context = 100
    try:
        assert small_engine.context_length == 100
    finally:
        small_engine.max_context = None


def spy_on_sdpa(monkeypatch):
    """Record, for each call of PyTorch's attention kernel, whether it got a mask and
    whether it was asked for grouped-query attention (the slow CPU kernel in bfloat16)."""
    import torch

    calls = []
    kernel = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append((kwargs.get("attn_mask") is not None, kwargs.get("enable_gqa", False)))
        return kernel(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return calls


def grouped_query_decode(batch=3, heads=6, kv_heads=2, keys=40, dim=16):
    import torch

    generator = torch.Generator().manual_seed(0)
    shapes = ((batch, heads, 1, dim), (batch, kv_heads, keys, dim), (batch, kv_heads, keys, dim))
    q, k, v = (torch.randn(s, generator=generator).to(torch.bfloat16) for s in shapes)
    return type("Attention", (), {"num_key_value_groups": heads // kv_heads})(), q, k, v


def test_decoding_attention_never_takes_the_grouped_query_kernel(monkeypatch):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from seqpar.engines.cpu_attention import attention

    module, q, k, v = grouped_query_decode()
    reference = torch.nn.functional.scaled_dot_product_attention(
        q.double(), k.double(), v.double(), enable_gqa=True
    ).transpose(1, 2)
    calls = spy_on_sdpa(monkeypatch)
    plain, _ = sdpa_attention_forward(module, q, k, v, None)
    assert calls == [(False, True)]  # unprotected control: no padding, the slow kernel
    calls.clear()
    ours, _ = attention(module, q, k, v, None)
    assert calls == [(True, False)]
    assert (ours.double() - reference).abs().max() < 0.02  # bfloat16's rounding of the output
    assert (plain.double() - reference).abs().max() < 0.02
    assert ours.shape == plain.shape == (3, 1, 6, 16)


def test_a_padded_batch_attends_exactly_as_sdpa(monkeypatch):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from seqpar.engines.cpu_attention import attention

    module, q, k, v = grouped_query_decode()
    mask = torch.ones((3, 1, 1, 40), dtype=torch.bool)
    mask[0, ..., :10] = False  # a left-padded row
    assert torch.equal(
        attention(module, q, k, v, mask)[0], sdpa_attention_forward(module, q, k, v, mask)[0]
    )


def test_the_cpu_engine_never_asks_for_the_grouped_query_kernel(small_engine, monkeypatch):
    from seqpar.engines.cpu_attention import NAME

    assert small_engine.model.config._attn_implementation == NAME
    calls = spy_on_sdpa(monkeypatch)
    # one row: no padding, the case where plain sdpa took the slow kernel
    one = run(small_engine, [requests((1,))[0]], max_tokens=12, temperature=0.8, seed=0)
    layers = small_engine.layers
    assert len(calls) == layers * one[0][0].completion_tokens  # the prompt, then each token
    # every decode step; the prompt may take the grouped kernel: it is fast for many queries
    assert calls[layers:] and all(masked and not gqa for masked, gqa in calls[layers:])
