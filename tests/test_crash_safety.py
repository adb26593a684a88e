"""Crash safety: runs, grading and studies killed with SIGKILL at random moments and re-run
end exactly where an uninterrupted run ends (slow: real bundled model, real CLI)."""

import json
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
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
    args: list[str], kills: int, window: tuple[float, float], seed: int, observe: Callable
) -> tuple[subprocess.CompletedProcess, list]:
    """Start the command `kills` times, SIGKILL each after a random delay and `observe()`
    what it left, then run it to completion; returns that run's result and the observations."""
    rng = random.Random(seed)
    observed = []
    for _ in range(kills):
        process = subprocess.Popen(
            [sys.executable, "-m", "seqpar.cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(*window))
        process.kill()
        process.wait()
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
    final, after_kills = kill_at_random_moments(
        [*RUN, "--out", str(out)], 10, (7, 17), seed=7, observe=lambda: stored(out)
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
    final, _ = kill_at_random_moments(
        grade, 10, (0.5, 4), seed=3, observe=lambda: lines_of(run / "grades.jsonl")
    )
    assert final.returncode == 0
    assert lines_of(run / "grades.jsonl") == expected and len(expected) == 12
