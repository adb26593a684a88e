"""Crash safety: runs, grading and studies killed with SIGKILL at random moments and re-run
end exactly where an uninterrupted run ends (slow: real bundled model, real CLI)."""

import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

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


def kill_at_random_moments(
    args: list[str], kills: int, window: tuple[float, float], seed: int, out: Path
) -> tuple[subprocess.CompletedProcess, list[int]]:
    """Start the command `kills` times, SIGKILL each after a random delay, then run it to
    completion; returns that last run's result and the samples stored after each kill."""
    rng = random.Random(seed)
    after_kills = []
    for _ in range(kills):
        process = subprocess.Popen(
            [sys.executable, "-m", "seqpar.cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(*window))
        process.kill()
        process.wait()
        after_kills.append(stored(out))
    return cli(*args), after_kills


def test_a_run_killed_ten_times_ends_as_the_uninterrupted_run(tmp_path):
    reference = cli(*RUN, "--out", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "killed"
    final, after_kills = kill_at_random_moments(
        [*RUN, "--out", str(out)], kills=10, window=(7, 20), seed=7, out=out
    )
    assert final.returncode == 0, final.stderr
    assert any(0 < count < 12 for count in after_kills), after_kills  # killed mid-run
    expected = identities(tmp_path / "reference")
    assert identities(out) == expected
    assert set(expected.values()) == {1} and len(expected) == 12


def test_grading_killed_at_random_moments_leaves_whole_files_and_the_same_grades(tmp_path):
    run = tmp_path / "run"
    assert cli(*RUN, "--out", str(run)).returncode == 0
    assert cli("grade", str(run), "--no-progress").returncode == 0
    reference = lines_of(run / "grades.jsonl")
    (run / "grades.jsonl").unlink()
    rng = random.Random(3)
    for _ in range(10):
        process = subprocess.Popen(
            [sys.executable, "-m", "seqpar.cli", "grade", str(run), "--no-progress"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.5, 4))
        process.kill()
        process.wait()
        lines_of(run / "grades.jsonl")  # absent or whole, never half-written
    assert cli("grade", str(run), "--no-progress").returncode == 0
    assert lines_of(run / "grades.jsonl") == reference
    assert len(reference) == 12
