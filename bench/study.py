"""The same study plan on several arms, side by side: wall time, tokens, seeds.

    .venv/bin/python bench/study.py --arms hf:one-by-one+sdpa@4ba8924 hf:one-by-one hf \\
        --limit 12 --n 4 --max-tokens 300

An arm is an engine with modifiers and an optional revision: `one-by-one` runs the plan's
runs one after another (instead of the independent ones together), `sdpa` decodes with
transformers' plain sdpa attention (instead of `seqpar.engines.cpu_attention`), `@REV`
runs the arm with the `src/` of that git revision (in a subprocess, so the old engine is
measured on the same machine in the same run). `hf:one-by-one+sdpa@4ba8924` is seqpar's hf
path before issue 16 (round-synchronous static batches, no prefix reuse). Each arm runs the
whole plan of `seqpar study` (default model, arith) into its own fresh directory; the table
gives wall time end to end (engine start included), generated tokens, prompt tokens and
the part served from a cache, and each arm's wall time relative to the first. Seeds are
compared run by run: every arm draws the same seeds. Then, per arm: sequential vs parallel
time per generated token (runs alone), prompt tokens evaluated per later sequential round
vs the tokens new in it, and the whole study's rate vs the engine's batched rate on the
same prompts: every request the arm sent (prompt and seeds), replayed afterwards as one
`generate` call on a fresh engine, where nothing waits on anything (not for `@REV` arms).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from seqpar import roles
from seqpar.config import RunConfig
from seqpar.engines import cpu_attention
from seqpar.report.summary import summarize
from seqpar.sampling import SamplingParams
from seqpar.specs import DEFAULT_MODEL, ParallelSpec, TaskSpec
from seqpar.study import run_study
from seqpar.types import Request

MODIFIERS = {"one-by-one", "sdpa"}
REPOSITORY = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", default=["hf:one-by-one+sdpa@4ba8924", "hf"])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=100)
    parser.add_argument("--progress", action="store_true", help="show the progress bars")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # one arm's result, for @REV
    args = parser.parse_args()
    for arm in args.arms:
        if set(arm.partition("@")[0].partition(":")[2].split("+")) - MODIFIERS - {""}:
            parser.error(f"unknown arm {arm!r}; write ENGINE[:one-by-one][+sdpa][@REV]")
    results = [
        measure_elsewhere(arm, args) if "@" in arm else measure(arm, args) for arm in args.arms
    ]
    if args.json:
        args.json.write_text(json.dumps(results))
        return
    report(results)


def measure(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run the study plan on one arm with this process's seqpar; what the report needs."""
    engine, _, how = arm.partition(":")
    modifiers = set(how.split("+")) - {""}
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
    replayable = engine == "hf" and "one-by-one" not in modifiers and not args.json
    with plain_sdpa(active="sdpa" in modifiers), recorded(replayable) as requests:
        run_study(
            config,
            out,
            engine_options=options,
            progress=args.progress,
            together="one-by-one" not in modifiers,
        )
    wall = time.perf_counter() - start
    names = json.loads((out / "study.json").read_text())["runs"]
    runs = {}
    for name in names:
        summary = summarize(str(out / name))
        samples = [json.loads(line) for line in (out / name / "samples.jsonl").open()]
        runs[name] = {
            "samples": summary.samples,
            "generated": summary.generated_tokens,
            "prompt": summary.prompt_tokens,
            "cached": summary.cached_prompt_tokens,
            "elapsed": summary.elapsed_s or 0.0,
            "seeds": sorted(s["seed"] for s in samples),
            "rounds": [
                [
                    s["problem_id"],
                    s["chain"],
                    s["round"],
                    s["prompt_tokens"],
                    s.get("cached_prompt_tokens", 0),
                ]
                for s in samples
                if s["status"] == "ok"
            ],
        }
    result = {"arm": arm, "wall": wall, "dir": str(out), "runs": runs}
    if requests:
        with plain_sdpa(active="sdpa" in modifiers):
            result["batched"] = batched_rate(config, requests, args)
    return result


@contextmanager
def recorded(active: bool) -> Iterator[list[Request]]:
    """The requests the hf engine is sent while active (for the batched reference)."""
    requests: list[Request] = []
    if not active:
        yield requests
        return
    from seqpar.engines.hf import HFEngine

    complete = HFEngine.complete

    async def recording(self: HFEngine, request: Request, params: SamplingParams) -> Any:
        requests.append(request)
        return await complete(self, request, params)

    HFEngine.complete = recording  # type: ignore[method-assign]
    try:
        yield requests
    finally:
        HFEngine.complete = complete  # type: ignore[method-assign]


def batched_rate(
    config: RunConfig, requests: list[Request], args: argparse.Namespace
) -> dict[str, float]:
    """Generated tokens and seconds of one `generate` call over every recorded request
    (same prompts, same seeds) on a freshly loaded engine."""
    from seqpar.engines.hf import HFEngine

    gc.collect()  # the study's engine (and its prefix cache) goes before the second loads
    loaded = HFEngine.load(args.model, progress=args.progress)
    start = time.perf_counter()
    generated = sum(
        c.completion_tokens
        for _, completions in loaded.generate(requests, config.sampling)
        for c in completions
    )
    return {"generated": generated, "seconds": time.perf_counter() - start}


def measure_elsewhere(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    """`measure` with the `src/` of revision REV of `ARM@REV`, in a subprocess."""
    plain, _, revision = arm.partition("@")
    tree = Path(tempfile.mkdtemp(prefix=f"bench-src-{revision}-"))
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", revision, "src"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    result = tree / "result.json"
    command = [sys.executable, __file__, "--arms", plain, "--json", str(result)]
    for flag in ("model", "limit", "n", "max_tokens", "slots"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    command += ["--progress"] if args.progress else []
    environment = os.environ | {"PYTHONPATH": str(tree / "src")}
    subprocess.run(command, env=environment, check=True)
    (measured,) = json.loads(result.read_text())
    return measured | {"arm": arm}


def report(results: list[dict[str, Any]]) -> None:
    first = results[0]["wall"]
    print("| arm | wall (s) | vs first | samples | generated tokens | prompt tokens cached |")
    print("|---|---:|---:|---:|---:|---:|")
    for result in results:
        runs = result["runs"].values()
        print(
            f"| {result['arm']} | {result['wall']:.1f} | {result['wall'] / first:.2f} | "
            f"{sum(r['samples'] for r in runs)} | {sum(r['generated'] for r in runs):,} | "
            f"{sum(r['cached'] for r in runs):,} of {sum(r['prompt'] for r in runs):,} |"
        )
    seeds = [{name: run["seeds"] for name, run in r["runs"].items()} for r in results]
    print(f"\nsame seeds in every run of every arm: {all(s == seeds[0] for s in seeds)}\n")
    for result in results:
        runs = result["runs"]
        evaluated, new = later_rounds(runs[roles.SEQUENTIAL]["rounds"])
        line = (
            f"{result['arm']}: later sequential rounds evaluate {evaluated:,} prompt tokens for "
            f"{new:,} new ones ({evaluated / new:.2f}x)"
        )
        if "one-by-one" in result["arm"]:  # its runs ran alone: their own rates mean something
            par, seq = rate(runs[roles.PARALLEL]), rate(runs[roles.SEQUENTIAL])
            line += (
                f"; parallel alone {par:.1f} tok/s, sequential alone {seq:.1f} tok/s: "
                f"sequential takes {par / seq:.2f}x parallel's time per generated token"
            )
        elif batched := result.get("batched"):
            study = sum(r["generated"] for r in runs.values()) / result["wall"]
            same = batched["generated"] / batched["seconds"]
            line += (
                f"; the whole study {study:.1f} tok/s = {study / same:.0%} of the engine's "
                f"batched rate on the same prompts ({batched['generated']:,} tokens in one "
                f"call: {same:.1f} tok/s)"
            )
        print(line)


def later_rounds(rounds: list[list[Any]]) -> tuple[int, int]:
    """Prompt tokens evaluated (not served from a cache) in rounds 2+ of every chain, and
    the tokens each such prompt has beyond its chain's previous round's prompt."""
    prompts = {(p, c, r): (tokens, cached) for p, c, r, tokens, cached in rounds}
    evaluated = new = 0
    for (problem, chain, round_), (tokens, cached) in prompts.items():
        if round_ > 1 and (problem, chain, round_ - 1) in prompts:
            evaluated += tokens - cached
            new += tokens - prompts[(problem, chain, round_ - 1)][0]
    return evaluated, new


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


def rate(run: dict[str, Any]) -> float:
    """A run's generated tokens per second of its recorded elapsed time."""
    return run["generated"] / (run["elapsed"] or float("nan"))


if __name__ == "__main__":
    main()
