"""Generated tokens/s of the HF engine: batched vs one prompt at a time, same prompts and model.

    .venv/bin/python bench/generation.py [--model NAME] [--prompts 24] [--max-tokens 128]

Both arms sample the same arith prompts with the same per-row seeds and token limit; the
script prints a markdown row for docs/benchmarks.md with the ratio.
"""

from __future__ import annotations

import argparse
import platform
import time

from seqpar.engines.hf import HFEngine
from seqpar.engines.models import DEFAULT_MODEL
from seqpar.registry import get_task
from seqpar.sampling import SamplingParams
from seqpar.types import Message, Request


def throughput(
    engine: HFEngine, requests: list[Request], params: SamplingParams, batched: bool
) -> tuple[int, float]:
    start = time.perf_counter()
    groups = [requests] if batched else [[r] for r in requests]
    tokens = sum(
        c.completion_tokens
        for group in groups
        for _, cs in engine.generate(group, params)
        for c in cs
    )
    return tokens, time.perf_counter() - start


def arith_requests(count: int) -> list[Request]:
    """The first `count` arith prompts, one request each, seeded by position."""
    task = get_task("arith")
    return [
        Request((Message("user", task.prompt(p)),), (i,)) for i, p in enumerate(task.load()[:count])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    engine = HFEngine.load(args.model, progress=False, max_batch=max(args.prompts, 16))
    requests = arith_requests(args.prompts)
    params = SamplingParams(temperature=0.7, max_tokens=args.max_tokens)
    throughput(engine, requests[:2], SamplingParams(max_tokens=8), batched=True)  # warm-up
    loop_tokens, loop_s = throughput(engine, requests, params, batched=False)
    batch_tokens, batch_s = throughput(engine, requests, params, batched=True)
    loop_rate, batch_rate = loop_tokens / loop_s, batch_tokens / batch_s
    print(f"one at a time: {loop_tokens} tokens in {loop_s:.1f} s = {loop_rate:.1f} tok/s")
    print(
        f"batched ({args.prompts}): {batch_tokens} tokens in {batch_s:.1f} s "
        f"= {batch_rate:.1f} tok/s"
    )
    print(
        f"| {args.model} | {engine.describe()['dtype']} | {args.prompts} | {args.max_tokens} | "
        f"{loop_rate:.1f} | {batch_rate:.1f} | **{batch_rate / loop_rate:.2f}×** | "
        f"{platform.machine()}, {engine.describe()['device']} |"
    )


if __name__ == "__main__":
    main()
