"""Size and open time of `seqpar browse` for a large study, without generating one.

    .venv/bin/python bench/browse.py [--problems 100] [--n 4] [--chars 2000]

Writes a study in the real on-disk format (study.json, manifests, samples.jsonl) with the
runs `seqpar study` plans for an answer task (parallel, sequential, padded-parallel,
hybrid-k1, hybrid-k{N/2}), invented texts of about --chars characters in which each round
that reads earlier solutions repeats a passage of the last one, then times `seqpar browse`
and opens the page in Chromium: load, opening one problem, opening every problem.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seqpar.config import RunConfig
from seqpar.registry import get_task
from seqpar.specs import ParallelSpec, TaskSpec
from seqpar.store import RunStore
from seqpar.strategies.padded import PaddedParallelStrategy
from seqpar.study import PLAN_FILE, plan
from seqpar.tasks import select
from seqpar.types import Sample

WORDS = ("the", "of", "and", "to", "a", "in", "so", "then", "step", "total", "each", "answer")


def text(rng: random.Random, chars: int, copied: str) -> str:
    words = []
    while sum(len(w) + 1 for w in words) < chars - len(copied):
        words.append(rng.choice(WORDS))
    return f"{copied} {' '.join(words)}\nThe answer is \\boxed{{{rng.randint(1, 60)}}}.".strip()


def write_study(out: Path, problems: int, n: int, chars: int) -> int:
    """The study's directories; returns the number of samples written."""
    base = RunConfig(
        model="smollm2-135m-instruct",
        task=TaskSpec("arith", limit=problems),
        strategy=ParallelSpec(n),
    )
    chosen = select(get_task("arith").load(), problems)
    runs = plan(base, out, code_task=False)
    record = {"base": base.to_json(), "data_dir": None, "runs": [r.name for r in runs]}
    out.mkdir(parents=True)
    (out / PLAN_FILE).write_text(json.dumps(record))
    rng, total = random.Random(0), 0
    for run in runs:
        strategy = (
            PaddedParallelStrategy(n, base.template, {}, {}, len)
            if run.config.strategy.name == "padded-parallel"
            else run.config.build_strategy()
        )
        store = RunStore(out / run.name)
        identity = {"config": run.config.to_json(), "task": {}}
        store.create({"identity": identity, "problem_ids": [p.id for p in chosen]})
        samples = []
        for problem in chosen:
            texts: dict[tuple[int, int], str] = {}
            for chain in range(strategy.chains):
                for round_ in range(1, strategy.rounds + 1):
                    reads = strategy.history(chain, round_)
                    if reads is None:
                        continue
                    last = texts[reads[-1]] if reads else ""
                    start = rng.randint(0, len(last) // 2)
                    copied = last[start : start + rng.randint(100, 600)]
                    body = texts[(chain, round_)] = text(rng, chars, copied)
                    samples.append(
                        Sample(
                            problem_id=problem.id,
                            chain=chain,
                            round=round_,
                            status="ok",
                            text=body,
                            prompt_tokens=300 * round_,
                            completion_tokens=len(body) // 4,
                            finish_reason="stop",
                            seed=rng.randint(0, 2**62),
                            answer=str(rng.randint(1, 60)),
                            correct=rng.random() < 0.4,
                        )
                    )
        store.append(samples)
        total += len(samples)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--chars", type=int, default=2000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "study"
        samples = write_study(study, args.problems, args.n, args.chars)
        start = time.perf_counter()
        command = [sys.executable, "-m", "seqpar.cli", "browse", str(study)]
        subprocess.run(command, check=True, capture_output=True)
        written = time.perf_counter() - start
        page_path = study / "browse.html"
        print(f"{args.problems} problems, N = {args.n}, {samples} samples of ~{args.chars} chars")
        print(f"seqpar browse: {written:.1f} s; page {page_path.stat().st_size / 1e6:.1f} MB")
        with sync_playwright() as driver:
            browser = driver.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"]
            )
            for _ in range(3):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                start = time.perf_counter()
                page.goto(page_path.as_uri(), wait_until="load")
                loaded = time.perf_counter() - start
                render = page.evaluate(
                    "n => { const t = performance.now(); renderBody(items[n]); "
                    "return performance.now() - t; }",
                    args.problems // 3,
                )  # in-page: parse one problem's JSON and build its panels
                middle = page.locator("details.problem").nth(args.problems // 2)
                start = time.perf_counter()
                middle.locator("summary").click()
                middle.locator("article.panel").first.wait_for()
                one = time.perf_counter() - start
                start = time.perf_counter()
                page.click("#open-all")
                panels = page.locator("article.panel").count()
                every = time.perf_counter() - start
                print(
                    f"Chromium: load {loaded * 1000:.0f} ms; one problem: render {render:.0f} ms, "
                    f"click to shown {one * 1000:.0f} ms; open all {every:.1f} s ({panels} panels)"
                )
                page.close()
            browser.close()


if __name__ == "__main__":
    main()
