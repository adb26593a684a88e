"""Engines side by side in one run: llama.cpp prefix reuse in sequential vs parallel sampling,
the HTTP engine with 1 vs 4 requests in flight against llama.cpp's server, and single-stream
llama.cpp speed as a fraction of the memory-bandwidth limit.

    .venv/bin/python bench/engines.py [--model NAME] [--problems 8] [--n 4] [--max-tokens 96]

Prints markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from seqpar.config import RunConfig
from seqpar.engines.llamacpp import LlamaCppEngine
from seqpar.engines.models import BUNDLED, bundled_gguf
from seqpar.engines.openai import OpenAIEngine
from seqpar.registry import STRATEGIES, get_task
from seqpar.run import execute
from seqpar.sampling import SamplingParams
from seqpar.specs import SequentialTemplate, TaskSpec
from seqpar.store import RunStore
from seqpar.types import Message, Request


def prefix_reuse(engine: LlamaCppEngine, args: argparse.Namespace, root: Path) -> None:
    """Sequential vs parallel at N on llama.cpp: time per generated token, and prompt tokens
    evaluated vs the tokens new in each round."""
    rows = {}
    for strategy in ("parallel", "sequential"):
        spec = STRATEGIES[strategy].spec
        assert spec is not None
        config = RunConfig(
            model=args.model,
            engine="llamacpp",
            task=TaskSpec("arith", limit=args.problems),
            strategy=spec(args.n),
            sampling=SamplingParams(temperature=0.7, max_tokens=args.max_tokens, seed=0),
            template=SequentialTemplate(history="full", layout="multiturn"),
        )
        start = time.perf_counter()
        store = execute(config, root / strategy, engine=engine, progress=False)
        wall = time.perf_counter() - start
        samples = [s for s in store.samples() if s.status == "ok"]
        generated = sum(s.completion_tokens for s in samples)
        evaluated = sum(s.prompt_tokens - s.cached_prompt_tokens for s in samples)
        rows[strategy] = (wall, generated, evaluated, new_tokens(store))
    print("\n### llama.cpp prefix reuse: sequential vs parallel\n")
    print(
        "| strategy | wall s | generated | s / 1k generated | prompt evaluated | new each round |"
    )
    print("|---|---|---|---|---|---|")
    for strategy, (wall, generated, evaluated, new) in rows.items():
        print(
            f"| {strategy} | {wall:.1f} | {generated:,} | {1000 * wall / generated:.2f} | "
            f"{evaluated:,} | {new:,} |"
        )
    (ps, pg, _, _), (ss, sg, se, sn) = rows["parallel"], rows["sequential"]
    print(
        f"\nwall time per generated token, sequential / parallel: {(ss / sg) / (ps / pg):.2f}; "
        f"sequential prompt tokens evaluated / new: {se / sn:.3f}"
    )


def new_tokens(store: RunStore) -> int:
    """Prompt tokens not already in the chain's previous request and answer."""
    by_slot = {s.key: s for s in store.samples() if s.status == "ok"}
    total = 0
    for (problem, chain, round_), sample in by_slot.items():
        previous = by_slot.get((problem, chain, round_ - 1))
        seen = previous.prompt_tokens + previous.completion_tokens if previous else 0
        total += sample.prompt_tokens - seen if round_ > 1 else sample.prompt_tokens
    return total


def http_in_flight(args: argparse.Namespace, root: Path) -> None:
    """Aggregate generated tokens/s through the HTTP engine with 1 and 4 requests in flight."""
    port = 18000 + os.getpid() % 1000
    gguf = model_file(args.model)
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf)]
    command += ["--model_alias", args.model, "--port", str(port), "--n_ctx", "4096"]
    server = subprocess.Popen(
        command,
        stdout=(root / "server.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/v1/models")
        task = get_task("arith")
        prompts = [task.prompt(p) for p in task.load()[: 2 * args.problems]]
        params = SamplingParams(max_tokens=args.max_tokens, temperature=0.7, seed=0)
        requests = [Request((Message("user", p),), (i,)) for i, p in enumerate(prompts)]
        rates = {}
        for flight in (1, 4):
            engine = OpenAIEngine(args.model, [f"http://127.0.0.1:{port}/v1"], max_in_flight=flight)
            start = time.perf_counter()
            tokens = sum(
                c.completion_tokens for _, cs in engine.generate(requests, params) for c in cs
            )
            rates[flight] = tokens / (time.perf_counter() - start)
        print("\n### HTTP engine against llama_cpp.server\n")
        print(f"1 in flight: {rates[1]:.1f} tok/s; 4 in flight: {rates[4]:.1f} tok/s; ")
        print(f"ratio 4/1: {rates[4] / rates[1]:.2f}")
    finally:
        server.kill()


def wait_for(url: str) -> None:
    import httpx

    for _ in range(240):
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


def model_file(name: str) -> Path:
    return bundled_gguf(BUNDLED[name]) if name in BUNDLED else Path(name)


def bandwidth_gb_s() -> float:
    """Sustained memory read bandwidth, every core reading its own 512 MiB: best of 5."""
    from concurrent.futures import ThreadPoolExecutor

    cores = os.cpu_count() or 1
    chunks = [np.ones(1 << 26, dtype=np.float64) for _ in range(cores)]
    best = float("inf")
    with ThreadPoolExecutor(cores) as pool:  # numpy's reductions release the GIL
        for _ in range(5):
            start = time.perf_counter()
            list(pool.map(np.sum, chunks))
            best = min(best, time.perf_counter() - start)
    return sum(c.nbytes for c in chunks) / best / 1e9


def single_stream(engine: LlamaCppEngine, args: argparse.Namespace) -> None:
    """Decode speed of one stream vs what memory bandwidth allows (all weights read per token)."""
    params = SamplingParams(max_tokens=256, temperature=0.7)
    request = Request((Message("user", "Write a long story about a lighthouse keeper."),), (1,))
    (completion,) = asyncio.run(engine.complete(request, params))
    rate = completion.completion_tokens / completion.wall_time
    bandwidth = bandwidth_gb_s()
    weights = model_file(args.model).stat().st_size
    limit = bandwidth * 1e9 / weights
    print("\n### Single-stream llama.cpp decode vs the memory-bandwidth limit\n")
    print(
        f"{completion.completion_tokens} tokens at {rate:.1f} tok/s (prefill included); "
        f"memory bandwidth {bandwidth:.1f} GB/s ÷ {weights / 1e6:.0f} MB of weights = "
        f"{limit:.0f} tok/s limit → {rate / limit:.1%} of the limit"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    engine = LlamaCppEngine.load(args.model, max_context=4096)
    print(f"model {args.model}, {os.cpu_count()} CPUs, llama.cpp threads {engine.llama.n_threads}")
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        prefix_reuse(engine, args, root)
        single_stream(engine, args)
        del engine
        http_in_flight(args, root)


if __name__ == "__main__":
    main()
