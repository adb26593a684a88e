"""Runs and studies written by seqpar before the typed specs (manifest format 1) still load,
re-grade, report and resume, with the same numbers as the seqpar that wrote them.

The fixture (tests/fixtures/format1, made by `make.sh` there at commit d5e1a7a) holds two
tiny studies (arith and humaneval, SmolLM2) and an ablated run, exactly as written, plus
what that seqpar's `seqpar report --json` and study report said about them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from seqpar.report.summary import markdown, summarize
from seqpar.run import regrade
from seqpar.store import RunStore

from .conftest import TEST_MODEL, TINY_STUDY
from .test_e2e import cli

FIXTURE = Path(__file__).parent / "fixtures" / "format1"
WRITTEN_AT = "/tmp/fmt1"  # where the fixture was made; its manifests name these paths
EXPECTED = json.loads((FIXTURE / "expected_reports.json").read_text())
STUDIES = {  # the commands that wrote them (make.sh)
    "study-arith": TINY_STUDY,
    "study-humaneval": ["--model", TEST_MODEL, "--task", "humaneval", "--limit", "2", "--n", "2",
                        "--max-tokens", "40", "--no-progress"],
}  # fmt: skip


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """The fixture copied to a fresh place, its recorded paths moved along with it."""
    root = tmp_path / "fmt1"
    shutil.copytree(FIXTURE, root)
    for path in [*root.rglob("manifest.json"), *root.rglob("study.json")]:
        path.write_text(path.read_text().replace(WRITTEN_AT, str(root)))
    return root


def runs(root: Path) -> list[str]:
    return sorted(str(p.parent.relative_to(root)) for p in root.rglob("manifest.json"))


def report(root: Path, run: str) -> dict:
    """The numbers `seqpar report --json` gave when the run was written; the times seqpar
    records since are absent (None) for such runs."""
    summary = {**summarize(str(root / run)).to_json(), "run": run}
    since = ("elapsed_s", "engine_busy_s", "sessions", "shared")
    assert [summary.pop(key) for key in since] == [None, None, 0, False]
    return summary


def markdown_then(run: str) -> str:
    """The table the old seqpar printed, with its summed per-sample "wall time" (which
    counted overlapping requests repeatedly) worded as today's report words it."""
    seconds = EXPECTED[run]["json"]["wall_time_s"]
    return EXPECTED[run]["markdown"].replace(
        f" · wall time {seconds:.1f} s",
        " · elapsed not recorded (no session record: an older seqpar, or killed outright; "
        f"per-sample times sum to {seconds:.1f} s)",
    )


def test_the_fixture_is_of_the_old_format(old):
    for run in runs(old):
        config = json.loads((old / run / "manifest.json").read_text())["identity"]["config"]
        assert "format" not in config and "ablate_heads" in config
    assert set(EXPECTED) == set(runs(old)) and len(EXPECTED) == 18


def test_old_runs_report_the_same_numbers(old):
    for run in runs(old):
        assert report(old, run) == EXPECTED[run]["json"], run
        text = markdown([summarize(str(old / run))]).replace(str(old), WRITTEN_AT)
        assert text == markdown_then(run), run


def test_old_runs_regrade_to_the_same_grades(old):
    for run in runs(old):
        assert regrade(RunStore(old / run), progress=False) == 0, run
        assert report(old, run) == EXPECTED[run]["json"], run


@pytest.mark.slow
@pytest.mark.parametrize("study", sorted(STUDIES))
def test_an_old_study_resumes_generating_nothing_and_reports_the_same(old, study):
    out = old / study
    before = {run: (out / run / "samples.jsonl").read_bytes() for run in runs(out)}
    manifests = {run: (out / run / "manifest.json").read_bytes() for run in runs(out)}
    written = (out / "report.md").read_text()
    result = cli("study", *STUDIES[study], "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "samples to generate" not in result.stderr
    assert {run: (out / run / "samples.jsonl").read_bytes() for run in runs(out)} == before
    assert {run: (out / run / "manifest.json").read_bytes() for run in runs(out)} == manifests
    assert (out / "report.md").read_text().replace(str(old), WRITTEN_AT) == written


@pytest.mark.slow
def test_an_old_ablated_run_resumes_and_a_changed_setting_is_refused(old):
    args = [
        "--model",
        TEST_MODEL,
        "--task",
        "arith",
        "--limit",
        "2",
        "--n",
        "2",
        "--max-tokens",
        "20",
        "--strategy",
        "sequential",
        "--ablation",
        "mean",
        "--no-progress",
        "--out",
        str(old / "run-ablate"),
    ]
    samples = (old / "run-ablate" / "samples.jsonl").read_bytes()
    result = cli("run", *args, "--ablate-heads", "1.0,2.1")
    assert result.returncode == 0, result.stderr
    assert (old / "run-ablate" / "samples.jsonl").read_bytes() == samples
    refused = cli("run", *args, "--ablate-heads", "1.0")
    assert refused.returncode == 2
    assert "ablation.heads: [[1, 0], [2, 1]] → [[1, 0]]" in refused.stderr
