"""What one forward pass of the hf engine's model costs on this machine, by batch shape.

    .venv/bin/python bench/decode_step.py [--model NAME]

Prompt evaluation (rows × tokens, one padded row) and one decode step (rows over a cache of
W tokens, one padded row, in the engine's growing cache), in tokens per second: the numbers behind
the hf engine's CPU batch limits (engines/hf.py) and its budget for evaluating prompts. A
step with Q > 1 query tokens per row is what checking Q - 1 drafted tokens per row would
cost (speculative decoding), timed twice: with the engine's attention (transformers copies
the key/value heads for each query head when a mask comes with several query tokens) and
with `shared_heads_attention`, which packs the query heads onto their key/value heads as
the engine's one-token steps do (a measurement, not part of the engine: it only pays with
drafted tokens, which the engine does not make).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
import torch.nn.functional as F

from seqpar.engines import cpu_attention
from seqpar.engines.batcher import GrowingLayer, as_cache, widen
from seqpar.engines.hf import HFEngine
from seqpar.specs import DEFAULT_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    model = HFEngine.load(args.model, progress=False).model
    torch.manual_seed(0)
    print("| pass | rows | tokens | seconds | tokens/s |\n|---|---:|---:|---:|---:|")
    for rows, length in [(1, 1500), (4, 1500), (10, 1500), (16, 500), (1, 4000)]:
        seconds, _ = evaluate(model, rows, length)
        print(f"| prompt | {rows} | {length} | {seconds:.2f} | {rows * length / seconds:.0f} |")
    for rows, width, queries in [
        (12, 700, 1),
        (12, 700, 5),
        (24, 700, 1),
        (48, 200, 1),
        (16, 1500, 1),
        (32, 1500, 1),
        (64, 1500, 1),
        (128, 1500, 1),
        (64, 400, 1),
        (128, 400, 1),
    ]:
        seconds = decode_step(model, rows, width, queries)
        name = "decode step" if queries == 1 else f"step, {queries} query tokens"
        print(f"| {name} | {rows} | {width} | {seconds:.3f} | {rows * queries / seconds:.0f} |")
    use_shared_heads(model)
    seconds = decode_step(model, 12, 700, 5)
    print(f"| step, 5 query tokens, heads shared | 12 | 700 | {seconds:.3f} | {60 / seconds:.0f} |")


SHARED_HEADS = "bench_shared_heads"
packed_calls = [0]  # layers that packed query heads: proof the check below used the packing


def shared_heads_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any
) -> tuple[Any, None]:
    """The engine's attention, except that several query tokens under a mask are packed onto
    their key/value heads, (batch, heads, q, dim) -> (batch, kv heads, group·q, dim), instead
    of the key/value heads being copied for every query head."""
    batch, heads, queries, dim = query.shape
    if queries == 1 or attention_mask is None or attention_mask.dtype != torch.bool:
        return cpu_attention.attention(module, query, key, value, attention_mask, **kwargs)
    kv_heads, width = key.shape[1], key.shape[2]
    group = heads // kv_heads
    packed_calls[0] += 1
    packed_mask = attention_mask[:, :, None].expand(batch, 1, group, queries, width)
    out = F.scaled_dot_product_attention(
        query.reshape(batch, kv_heads, group * queries, dim),
        key,
        value,
        attn_mask=packed_mask.reshape(batch, 1, group * queries, width),
        scale=kwargs.get("scaling"),
    )
    return out.view(batch, heads, queries, dim).transpose(1, 2).contiguous(), None


def use_shared_heads(model: torch.nn.Module) -> None:
    """Make `model` attend with `shared_heads_attention`, once it has given the logits of the
    model's own attention on a batch of padded rows."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SHARED_HEADS, shared_heads_attention)
    AttentionMaskInterface.register(SHARED_HEADS, sdpa_mask)
    ids = torch.randint(100, 20000, (3, 40))
    mask = torch.ones(3, 40, dtype=torch.long)
    mask[0, :7] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        own = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        model.set_attn_implementation(SHARED_HEADS)
        shared = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    difference = (own - shared)[mask.bool()].abs().max().item()
    if difference > 0.05 or not packed_calls[0]:
        raise SystemExit(
            f"shared-heads attention differs from the model's ({difference}) or never packed"
        )
    print(f"shared-heads attention: largest logit difference {difference:.3g} on padded rows")


def evaluate(model: torch.nn.Module, rows: int, length: int) -> tuple[float, list]:
    """Seconds to evaluate `rows` prompts of `length` tokens; the keys and values."""
    from transformers import DynamicCache

    ids = torch.randint(100, 20000, (rows, length))
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[0, :5] = 0
    cache = DynamicCache()
    start = time.perf_counter()
    with torch.inference_mode():
        model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    return time.perf_counter() - start, [(layer.keys, layer.values) for layer in cache.layers]


def decode_step(
    model: torch.nn.Module,
    rows: int,
    width: int,
    queries: int = 1,
    prompt: list | None = None,
    repeats: int = 3,
) -> float:
    """Seconds of one decode step for `rows` rows over `width` cached tokens, `queries` new
    tokens per row (best of `repeats`); `prompt`: the keys and values of one row of `width`
    tokens from `evaluate`, to time several shapes over one evaluation."""
    if prompt is None:
        prompt = evaluate(model, 1, width)[1]
    layers = [
        (k.expand(rows, -1, -1, -1).contiguous(), v.expand(rows, -1, -1, -1).contiguous())
        for k, v in prompt
    ]
    mask = torch.ones(rows, width + queries, dtype=torch.long)
    mask[0, 0] = 0
    tokens = torch.randint(100, 20000, (rows, queries))
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):  # as the engine keeps its cache: room for the new column
            cache = as_cache([GrowingLayer((widen(k, 8), widen(v, 8)), width) for k, v in layers])
            start = time.perf_counter()
            model(
                input_ids=tokens,
                attention_mask=mask,
                position_ids=(width + torch.arange(queries)).expand(rows, -1),
                past_key_values=cache,
                use_cache=True,
            )
            times.append(time.perf_counter() - start)
    return min(times[1:])


if __name__ == "__main__":
    main()
