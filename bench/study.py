"""The same study plan on several arms, side by side: wall time, tokens, seeds.

    .venv/bin/python bench/study.py --arms hf:one-by-one+sdpa hf --limit 12 --n 4

An arm is an engine with modifiers: `one-by-one` runs the plan's runs one after another
(instead of the independent ones together), `sdpa` decodes with transformers' plain sdpa
attention (instead of `seqpar.engines.cpu_attention`); `hf:one-by-one+sdpa` is seqpar's hf
path before both. Each arm runs the whole plan of `seqpar
study` (default model, arith) into its own fresh directory; the table gives wall time end
to end (engine start included), generated tokens, the sum of the runs' recorded elapsed
time, and each arm's wall time relative to the first. Seeds are compared run by run: every
arm draws the same seeds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from seqpar import roles
from seqpar.config import RunConfig
from seqpar.engines import cpu_attention
from seqpar.report.summary import RunSummary, summarize
from seqpar.sampling import SamplingParams
from seqpar.specs import DEFAULT_MODEL, ParallelSpec, TaskSpec
from seqpar.study import run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", default=["hf:one-by-one+sdpa", "hf"])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=100)
    parser.add_argument("--progress", action="store_true", help="show the progress bars")
    parser.add_argument("--slots", type=int, default=8)
    args = parser.parse_args()
    rows, seeds, rates = [], {}, {}
    for arm in args.arms:
        engine, _, how = arm.partition(":")
        modifiers = set(how.split("+")) - {""}
        if modifiers - {"one-by-one", "sdpa"}:
            parser.error(f"unknown arm {arm!r}; write ENGINE[:one-by-one][+sdpa]")
        config = RunConfig(
            model=args.model,
            engine=engine,
            task=TaskSpec("arith", limit=args.limit),
            strategy=ParallelSpec(args.n),
            sampling=SamplingParams(temperature=0.7, max_tokens=args.max_tokens, seed=0),
        )
        options = {
            "progress": args.progress,
            **({"slots": args.slots} if engine == "llama-server" else {}),
        }
        out = Path(tempfile.mkdtemp(prefix=f"bench-study-{engine}-"))
        start = time.perf_counter()
        with plain_sdpa(active="sdpa" in modifiers):
            run_study(
                config,
                out,
                engine_options=options,
                progress=args.progress,
                together="one-by-one" not in modifiers,
            )
        wall = time.perf_counter() - start
        names = json.loads((out / "study.json").read_text())["runs"]
        summaries = [summarize(str(out / name)) for name in names]
        seeds[arm] = {
            name: sorted(json.loads(line)["seed"] for line in (out / name / "samples.jsonl").open())
            for name in names
        }
        by_name = dict(zip(names, summaries, strict=True))
        rates[arm] = {name: rate(by_name[name]) for name in (roles.PARALLEL, roles.SEQUENTIAL)}
        rates[arm]["study"] = sum(s.generated_tokens for s in summaries) / wall
        rows.append(
            (
                arm + (f" ({args.slots} slots)" if engine == "llama-server" else ""),
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
        "| arm | wall (s) | vs first | samples | generated tokens | elapsed in runs (s) "
        "| prompt tokens cached |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for engine, wall, samples, tokens, elapsed, cached, prompt in rows:
        print(
            f"| {engine} | {wall:.1f} | {wall / first:.2f} | {samples} | {tokens:,} | "
            f"{elapsed:.1f} | {cached:,} of {prompt:,} |"
        )
    same = all(seeds[a] == seeds[args.arms[0]] for a in args.arms)
    print(f"\nsame seeds in every run of every arm: {same}\n")
    for arm in args.arms:
        engine, _, how = arm.partition(":")
        alone = next(
            (rates[a] for a in args.arms if a.startswith(f"{engine}:") and "one-by-one" in a),
            None,
        )
        if "one-by-one" in how:  # its runs ran alone: their own rates mean something
            par, seq = rates[arm][roles.PARALLEL], rates[arm][roles.SEQUENTIAL]
            print(
                f"{arm}: parallel alone {par:.1f} tok/s, sequential alone {seq:.1f} tok/s: "
                f"sequential takes {par / seq:.2f}x parallel's time per generated token"
            )
        elif alone:
            study = rates[arm]["study"]
            print(
                f"{arm}: the whole study {study:.1f} tok/s = {study / alone[roles.PARALLEL]:.0%} "
                f"of the parallel run alone on {engine} (the engine batched on these prompts; "
                "short prompts, so the attention fix barely changes it)"
            )


@contextmanager
def plain_sdpa(active: bool) -> Iterator[None]:
    """While active, the hf engine keeps transformers' sdpa attention on CPU."""
    if not active:
        yield
        return
    install = cpu_attention.install
    cpu_attention.install = lambda model: None
    try:
        yield
    finally:
        cpu_attention.install = install


def rate(summary: RunSummary) -> float:
    """A run's generated tokens per second of its recorded elapsed time."""
    return summary.generated_tokens / (summary.elapsed_s or float("nan"))


if __name__ == "__main__":
    main()
