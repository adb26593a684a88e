"""Decode steps with transformers' sdpa vs seqpar's CPU decoding attention, side by side.

    .venv/bin/python bench/attention.py --model qwen2.5-coder-0.5b-instruct

A batch with no padded row (the case `seqpar.engines.cpu_attention` changes): rows of
random tokens are prefilled, then 5 decode steps are timed with each attention. Prints
milliseconds per step, their ratio, and how far the last step's logits differ.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import DynamicCache

from seqpar.engines.cpu_attention import NAME
from seqpar.registry import load_engine

SHAPES = ((6, 200), (6, 1500), (18, 1500), (64, 400))


def decode_step(model, rows: int, cached: int, steps: int = 5) -> tuple[float, torch.Tensor]:
    """Seconds per decode step over `cached` tokens of `rows` rows; the last logits."""
    ids = torch.randint(100, 10000, (rows, cached), generator=torch.Generator().manual_seed(1))
    token = torch.randint(100, 10000, (rows, 1), generator=torch.Generator().manual_seed(2))
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        start = time.perf_counter()
        for _ in range(steps):
            logits = model(input_ids=token, past_key_values=cache, use_cache=True).logits
    return (time.perf_counter() - start) / steps, logits[:, -1].float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    args = parser.parse_args()
    model = load_engine("hf", args.model, {"progress": False}).model
    print(f"{args.model}, {model.dtype}\n")
    print(
        "| rows × cached tokens | sdpa (ms/step) | cpu_attention (ms/step) | ratio "
        "| max logit diff |"
    )
    print("|---|---:|---:|---:|---:|")
    for rows, cached in SHAPES:
        model.set_attn_implementation("sdpa")
        plain, plain_logits = decode_step(model, rows, cached)
        model.set_attn_implementation(NAME)
        ours, our_logits = decode_step(model, rows, cached)
        diff = (plain_logits - our_logits).abs().max().item()
        print(
            f"| {rows} × {cached:,} | {plain * 1000:.0f} | {ours * 1000:.0f} | "
            f"{plain / ours:.2f}× | {diff:.2f} |"
        )


if __name__ == "__main__":
    main()
