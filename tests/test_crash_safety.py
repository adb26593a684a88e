"""Crash safety: runs, grading and studies killed with SIGKILL at moments of observed
progress (drawn at random, never clock windows) and re-run end exactly where an
uninterrupted run ends (slow: real bundled model, real CLI)."""

import json
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from seqpar.store import LOCK

from .conftest import TEST_MODEL
from .test_e2e import cli

pytestmark = pytest.mark.slow
RUN = [
    "run", "--model", TEST_MODEL, "--task", "arith", "--difficulty", "1",
    "--strategy", "sequential", "--limit", "4", "--n", "3", "--max-tokens", "16",
    "--no-progress",
]  # fmt: skip


def lines_of(path: Path) -> list[dict]:
    """Every line of a JSONL file, each required to be whole, valid JSON."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    assert not text or text.endswith("\n"), f"{path} ends in a partial line"
    return [json.loads(line) for line in text.splitlines()]


def identities(out: Path) -> Counter:
    return Counter(
        (r["problem_id"], r["chain"], r["round"], r["attempt"], r["seed"], r["status"])
        for r in lines_of(out / "samples.jsonl")
    )


def stored(out: Path) -> int:
    """Samples stored so far under `out` (a run or a study directory)."""
    return sum(len(lines_of(path)) for path in out.rglob("samples.jsonl"))


Moment = Callable[[list[str]], bool]  # has the process reached it? (given its stderr lines)


def kill_on_progress(
    args: list[str], kills: int, moments: list[Callable[[], Moment]], seed: int, observe: Callable
) -> tuple[subprocess.CompletedProcess, list]:
    """Start the command `kills` times; each time SIGKILL it as soon as it reaches a moment
    drawn from `moments` (observed progress, never a clock) and `observe()` what it left;
    then run it to completion. Returns that run's result and the observations."""
    rng = random.Random(seed)
    observed = []
    for _ in range(kills):
        reached = rng.choice(moments)()
        process = subprocess.Popen(
            [sys.executable, "-m", "seqpar.cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(process.stderr,), daemon=True)
        reader.start()
        guard = time.monotonic() + 600  # against a hang only; never decides when to kill
        while process.poll() is None and not reached(lines):
            assert time.monotonic() < guard, "the command neither progressed nor ended"
            time.sleep(0.01)
        process.kill()
        process.wait()
        reader.join()
        observed.append(observe())
    return cli(*args), observed


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    result = cli(*RUN, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_a_run_killed_ten_times_ends_as_the_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "killed"

    def generating() -> Moment:  # a round has started generating (or loading the model)
        return lambda lines: any("samples to generate" in line for line in lines)

    def new_lines() -> Moment:  # samples were stored since this start
        before = stored(out)
        return lambda lines: stored(out) > before

    final, after_kills = kill_on_progress(
        [*RUN, "--out", str(out)], 10, [generating, new_lines], seed=7, observe=lambda: stored(out)
    )
    assert final.returncode == 0, final.stderr
    assert any(0 < count < 12 for count in after_kills), after_kills  # killed mid-run
    expected = identities(reference)
    assert identities(out) == expected
    assert set(expected.values()) == {1} and len(expected) == 12


def test_grading_killed_at_random_moments_leaves_whole_files_and_the_same_grades(
    reference, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    grade = ["grade", str(run), "--no-progress"]
    assert cli(*grade).returncode == 0
    expected = lines_of(run / "grades.jsonl")
    (run / "grades.jsonl").unlink()
    # lines_of fails on a half-written file: each kill must leave it absent or whole.

    def grading() -> Moment:  # the run's lock is held: grading is under way
        return lambda lines: (run / LOCK).exists() and "pid" in (run / LOCK).read_text()

    def writing() -> Moment:  # the new grades file is being written next to the run
        return lambda lines: any(p.name.startswith("tmp") for p in run.iterdir())

    final, _ = kill_on_progress(
        grade, 10, [grading, writing], seed=3, observe=lambda: lines_of(run / "grades.jsonl")
    )
    assert final.returncode == 0
    assert lines_of(run / "grades.jsonl") == expected and len(expected) == 12
