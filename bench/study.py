"""The same study plan on two engines, side by side: wall time, tokens, seeds.

    .venv/bin/python bench/study.py --engines hf llama-server --limit 4 --n 2 --max-tokens 100

Each engine runs the whole plan of `seqpar study` (default model, arith) into its own fresh
directory; the table gives wall time end to end (engine start included), generated tokens,
the sum of the runs' recorded elapsed time, and each engine's wall time relative to the
first. Seeds are compared run by run: a plan on two engines draws the same seeds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from seqpar.config import RunConfig
from seqpar.report.summary import summarize
from seqpar.sampling import SamplingParams
from seqpar.specs import DEFAULT_MODEL, ParallelSpec, TaskSpec
from seqpar.study import run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["hf", "llama-server"])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=100)
    parser.add_argument("--slots", type=int, default=8)
    args = parser.parse_args()
    rows, seeds = [], {}
    for engine in args.engines:
        config = RunConfig(
            model=args.model,
            engine=engine,
            task=TaskSpec("arith", limit=args.limit),
            strategy=ParallelSpec(args.n),
            sampling=SamplingParams(temperature=0.7, max_tokens=args.max_tokens, seed=0),
        )
        options = {"progress": False, **({"slots": args.slots} if engine == "llama-server" else {})}
        out = Path(tempfile.mkdtemp(prefix=f"bench-study-{engine}-"))
        start = time.perf_counter()
        run_study(config, out, engine_options=options, progress=False)
        wall = time.perf_counter() - start
        names = json.loads((out / "study.json").read_text())["runs"]
        summaries = [summarize(str(out / name)) for name in names]
        seeds[engine] = {
            name: sorted(json.loads(line)["seed"] for line in (out / name / "samples.jsonl").open())
            for name in names
        }
        rows.append(
            (
                engine,
                wall,
                sum(s.samples for s in summaries),
                sum(s.generated_tokens for s in summaries),
                sum(s.elapsed_s or 0.0 for s in summaries),
                sum(s.cached_prompt_tokens for s in summaries),
                sum(s.prompt_tokens for s in summaries),
            )
        )
    first = rows[0][1]
    print(
        "| engine | wall (s) | vs first | samples | generated tokens | elapsed in runs (s) "
        "| prompt tokens cached |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for engine, wall, samples, tokens, elapsed, cached, prompt in rows:
        print(
            f"| {engine} | {wall:.1f} | {wall / first:.2f} | {samples} | {tokens:,} | "
            f"{elapsed:.1f} | {cached:,} of {prompt:,} |"
        )
    same = all(seeds[e] == seeds[args.engines[0]] for e in args.engines)
    print(f"\nsame seeds in every run on every engine: {same}")


if __name__ == "__main__":
    main()
