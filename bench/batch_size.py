"""One engine call of 72 rows on the HF engine: batch limits of GPUs vs of CPUs, side by side.

    .venv/bin/python bench/batch_size.py [--model NAME] [--rows 72] [--max-tokens 300]

A study's merged round is one call with more rows than a GPU-sized batch (64 rows, 32,768
padded tokens); the rest becomes a second batch that takes another pass of decode steps.
Both arms sample the same arith prompts with the same per-row seeds.
"""

from __future__ import annotations

import argparse

from generation import arith_requests, throughput

from seqpar.registry import load_engine
from seqpar.sampling import SamplingParams
from seqpar.specs import DEFAULT_MODEL

LIMITS = ((64, 32768), (128, 65536))  # (max_batch, token_budget): GPU and CPU defaults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--rows", type=int, default=72)
    parser.add_argument("--max-tokens", type=int, default=300)
    args = parser.parse_args()
    engine = load_engine("hf", args.model, {"progress": False})
    requests = arith_requests(args.rows)
    params = SamplingParams(temperature=0.7, max_tokens=args.max_tokens, seed=0)
    print("| max rows | token budget | seconds | generated tokens | tokens/s |")
    print("|---:|---:|---:|---:|---:|")
    seconds = []
    for max_batch, budget in LIMITS:
        engine.max_batch, engine.token_budget = max_batch, budget
        tokens, spent = throughput(engine, requests, params, batched=True)
        seconds.append(spent)
        print(f"| {max_batch} | {budget:,} | {spent:.1f} | {tokens:,} | {tokens / spent:.1f} |")
    print(f"\nratio (CPU limits / GPU limits, time): {seconds[1] / seconds[0]:.2f}")


if __name__ == "__main__":
    main()
