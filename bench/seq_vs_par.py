"""Sequential vs parallel on the hf engine at equal generated tokens, by chains in flight.

    .venv/bin/python bench/seq_vs_par.py --limit 12 --n 4 --max-tokens 300 --chains 1 4

For each C in --chains: a parallel run of N = C·n samples per problem and a sequential run of
C chains of n rounds per problem (the same number of samples, so about the same generated
tokens), each alone on one loaded engine (default model, arith). A sequential run has C
chains per problem in flight, a parallel run C·n samples: at C = 1 the sequential run keeps
a quarter of the parallel run's rows busy. Prints time per generated token, its ratio, the
rows each run decoded per step on average, and the longest chain's generated tokens.

A chain's tokens come one decode step after another, so no batching can finish a run sooner
than its longest chain's tokens times the cost of a one-row step: the last column, about a
lower bound on the run's wall time (prompts and sampling left out; the step is timed over
700 cached tokens, and one-row steps vary by a few ms with width and with the machine).
--layout and --history set the sequential template (`seqpar run --layout multiturn
--history full`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from decode_step import decode_step

from seqpar.config import RunConfig
from seqpar.engines.hf import HFEngine
from seqpar.run import execute
from seqpar.sampling import SamplingParams
from seqpar.specs import (
    DEFAULT_MODEL,
    HISTORIES,
    LAYOUTS,
    ParallelSpec,
    SequentialSpec,
    SequentialTemplate,
    StrategySpec,
    TaskSpec,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument("--chains", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--layout", choices=LAYOUTS, default="single")
    parser.add_argument("--history", choices=HISTORIES, default="final")
    args = parser.parse_args()
    engine = HFEngine.load(args.model, progress=False)
    one_row_step = decode_step(engine.model, 1, 700)
    root = Path(tempfile.mkdtemp(prefix="bench-seq-vs-par-"))
    print(f"runs: {root}\none-row decode step: {one_row_step * 1000:.1f} ms\n")
    print(
        "| chains | strategy | samples | wall (s) | generated | tok/s | rows per step | "
        "seq / par time per token | longest chain (tokens) | its steps alone (s) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for chains in args.chains:
        rates = {}
        for name, spec in (
            ("parallel", ParallelSpec(chains * args.n)),
            ("sequential", SequentialSpec(args.n, chains=chains)),
        ):
            samples, wall, generated, rows, longest = measure(
                engine, spec, args, root / f"{name}-{chains}"
            )
            rates[name] = generated / wall
            ratio = f"{rates['parallel'] / rates[name]:.2f}" if name == "sequential" else ""
            print(
                f"| {chains} | {name} | {samples} | {wall:.1f} | {generated:,} | "
                f"{rates[name]:.1f} | {rows:.1f} | {ratio} | {longest:,} | "
                f"{longest * one_row_step:.1f} |",
                flush=True,
            )


def measure(
    engine: HFEngine, spec: StrategySpec, args: argparse.Namespace, out: Path
) -> tuple[int, float, int, float, int]:
    """One run alone: samples, seconds, generated tokens, mean rows per decode step, and the
    generated tokens of its longest chain."""
    config = RunConfig(
        model=args.model,
        engine="hf",
        task=TaskSpec("arith", limit=args.limit),
        strategy=spec,
        sampling=SamplingParams(temperature=0.7, max_tokens=args.max_tokens, seed=0),
        template=SequentialTemplate(history=args.history, layout=args.layout),
    )
    start = time.perf_counter()
    store = execute(config, out, engine=engine, progress=False)
    wall = time.perf_counter() - start
    counters = engine.batcher.counters if engine.batcher else None
    rows = counters.decoded_rows / max(counters.decode_steps, 1) if counters else 0.0
    samples = [s for s in store.samples() if s.status == "ok"]
    chains: Counter[tuple[str, int]] = Counter()
    for sample in samples:
        chains[sample.problem_id, sample.chain] += sample.completion_tokens
    generated = sum(chains.values())
    return len(samples), wall, generated, rows, max(chains.values(), default=0)


if __name__ == "__main__":
    main()
