"""What one forward pass of the hf engine's model costs on this machine, by batch shape.

    .venv/bin/python bench/decode_step.py [--model NAME]

Prompt evaluation (rows × tokens, one padded row) and one decode step (rows over a cache of
W tokens, one padded row, in the engine's growing cache), in tokens per second: the numbers behind
the hf engine's CPU batch limits (engines/hf.py) and its budget for evaluating prompts. A
step with Q > 1 query tokens per row is what checking Q - 1 drafted tokens per row would
cost (speculative decoding).
"""

from __future__ import annotations

import argparse
import time

import torch

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


def decode_step(model: torch.nn.Module, rows: int, width: int, queries: int = 1) -> float:
    """Seconds of one decode step for `rows` rows over `width` cached tokens, `queries` new
    tokens per row (best of 3)."""
    _, layers = evaluate(model, 1, width)
    layers = [
        (k.expand(rows, -1, -1, -1).contiguous(), v.expand(rows, -1, -1, -1).contiguous())
        for k, v in layers
    ]
    mask = torch.ones(rows, width + queries, dtype=torch.long)
    mask[0, 0] = 0
    tokens = torch.randint(100, 20000, (rows, queries))
    times = []
    with torch.inference_mode():
        for _ in range(4):  # as the engine keeps its cache: room for the new column
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
