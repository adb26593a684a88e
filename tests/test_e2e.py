"""End to end with the real bundled SmolLM2-135M, real files and the real CLI (slow)."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from seqpar.aggregate import pass_at_k
from seqpar.config import DEFAULT_SAMPLING, RunConfig
from seqpar.report.summary import summarize
from seqpar.run import execute
from seqpar.specs import HybridSpec, PaddedSpec, ParallelSpec, SequentialSpec, TaskSpec
from seqpar.store import RunStore

from .conftest import TEST_MODEL

pytestmark = pytest.mark.slow


def cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "seqpar.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )


SPECS = {"parallel": ParallelSpec, "sequential": SequentialSpec}


def config(strategy="parallel", *, task="gsm8k", n=2, limit=2, max_tokens=48, feedback="none"):
    """A run of the test model: `strategy` by name with its defaults, `n` samples/rounds."""
    return RunConfig(
        model=TEST_MODEL,
        task=TaskSpec(task, limit=limit, feedback=feedback),
        strategy=SPECS[strategy](n),
        sampling=replace(DEFAULT_SAMPLING, max_tokens=max_tokens),
    )


@pytest.mark.parametrize("strategy", ["parallel", "sequential"])
def test_both_strategies_on_gsm8k(tmp_path, data_dir, small_engine, strategy):
    store = execute(config(strategy), tmp_path, data_dir=data_dir, engine=small_engine)
    samples = store.samples()
    assert len(samples) == 4 and all(s.status == "ok" for s in samples)
    manifest = store.manifest()
    assert manifest["identity"]["model_sha256"].startswith("b179c952")
    assert manifest["versions"]["torch"] and manifest["identity"]["task"]["sha256"]
    if strategy == "sequential":
        rounds = {(s.problem_id, s.round): s for s in samples}
        assert {s.chain for s in samples} == {0} and {s.round for s in samples} == {1, 2}
        for pid in manifest["problem_ids"]:
            assert rounds[(pid, 2)].prompt_tokens > rounds[(pid, 1)].prompt_tokens
    else:
        assert {s.round for s in samples} == {1} and {s.chain for s in samples} == {0, 1}
    summary = summarize(str(store.path))
    correct = {
        pid: [s.correct for s in samples if s.problem_id == pid] for pid in manifest["problem_ids"]
    }
    if strategy == "parallel":
        expected = sum(pass_at_k(2, sum(c), 2) for c in correct.values()) / 2
        assert summary.accuracy["pass@k"][-1] == pytest.approx(expected)
    else:
        expected = sum(any(c) for c in correct.values()) / 2
        assert summary.accuracy["pass@k"][-1] == pytest.approx(expected)
    assert summary.generated_tokens == sum(s.completion_tokens for s in samples)


def test_prompt_over_context_is_skipped_and_run_goes_on(tmp_path, data_dir, small_engine):
    from seqpar.registry import get_task

    cfg = config("sequential", limit=1, max_tokens=32)
    task = get_task("gsm8k", data_dir=data_dir)
    problem = task.load()[0]
    first = cfg.build_strategy().messages(problem, task.prompt(problem), [], 1)
    small_engine.max_context = small_engine.count_prompt_tokens(first) + 33
    try:
        store = execute(cfg, tmp_path, data_dir=data_dir, engine=small_engine)
    finally:
        small_engine.max_context = None
    by_round = {s.round: s for s in store.samples()}
    assert by_round[1].status == "ok"
    assert by_round[2].status == "skipped"
    assert "the model's context is" in by_round[2].skip_reason
    assert summarize(str(tmp_path)).skipped == 1


def test_cli_kill_and_resume(tmp_path, data_dir):
    out = tmp_path / "run"
    args = [
        "run",
        "--model",
        TEST_MODEL,
        "--task",
        "gsm8k",
        "--data-dir",
        str(data_dir),
        "--strategy",
        "parallel",
        "--n",
        "2",
        "--limit",
        "4",
        "--max-tokens",
        "48",
        "--max-batch",
        "2",
        "--no-progress",
        "--out",
        str(out),
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "seqpar.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples = out / "samples.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (
        samples.exists() and samples.read_text().count("\n") >= 2
    ):
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stored = samples.read_text().count("\n")
    assert 2 <= stored < 8, "the run should have been killed part-way"
    with samples.open("a") as handle:
        handle.write('{"problem_id": "gsm8k-test-00')  # a write cut short by the kill
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    keys = [
        (r["problem_id"], r["chain"], r["round"])
        for r in map(json.loads, samples.read_text().splitlines())
    ]
    assert len(keys) == 8 and len(set(keys)) == 8
    assert "| pass@k |" in resumed.stdout

    changed = cli(*[a if a != "2" else "3" for a in args])
    assert changed.returncode == 2
    assert "different configuration" in changed.stderr
    assert "config.strategy.n: 2 → 3" in changed.stderr

    report = cli("report", str(out), "--json")
    (summary,) = json.loads(report.stdout)
    assert summary["samples"] == 8 and summary["complete"]
    regrade = cli("grade", str(out), "--no-progress")
    assert regrade.returncode == 0 and "0 grade(s) changed" in regrade.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--task", "gsm9k"], "argument --task: invalid choice: 'gsm9k'"),
        (["--task", "gsm8k", "--data-dir", "EMPTY"], "gsm8k_test.jsonl not found"),
        (["--n", "0"], "--n must be >= 1, got 0"),
        (["--limit", "0"], "--limit must be >= 1, got 0"),
        (["--strategy", "tree"], "argument --strategy: invalid choice: 'tree'"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, args, message):
    (tmp_path / "EMPTY").mkdir()
    args = [str(tmp_path / "EMPTY") if a == "EMPTY" else a for a in args]
    out = tmp_path / "out"
    result = cli("run", "--out", str(out), *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_demo_command_runs_both_strategies(tmp_path):
    result = cli(
        "demo",
        "--model",
        TEST_MODEL,
        "--problems",
        "2",
        "--n",
        "2",
        "--max-tokens",
        "32",
        "--no-progress",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "Comparison at full budget" in result.stdout
    for strategy in ("parallel", "sequential"):
        assert len(RunStore(tmp_path / strategy).samples()) == 4


def test_help_is_fast_and_lists_commands():
    start = time.perf_counter()
    result = cli("--help")
    assert time.perf_counter() - start < 3  # includes interpreter start-up
    for command in ("run", "demo", "grade", "report", "models", "tasks"):
        assert command in result.stdout
    assert (
        "torch"
        not in subprocess.run(
            [sys.executable, "-c", "import seqpar.cli, sys; print(sorted(sys.modules))"],
            capture_output=True,
            text=True,
        ).stdout
    )


def test_humaneval_sequential_hidden_feedback_and_parallel_best_of_n(tmp_path, small_engine):
    common = {"task": "humaneval", "n": 2, "limit": 3, "max_tokens": 96}
    sequential = execute(
        config("sequential", **common, feedback="hidden"), tmp_path / "seq", engine=small_engine
    )
    parallel = execute(config("parallel", **common), tmp_path / "par", engine=small_engine)
    seq_samples = sequential.samples()
    assert len(seq_samples) == 6 and len(parallel.samples()) == 6
    for sample in seq_samples:
        assert sample.hidden_total > 0 or sample.grade_reason == "no code found"
        if sample.grade_reason != "no code found":
            assert sample.feedback.startswith("Feedback from the hidden tests")
    later = [s for s in seq_samples if s.round == 2]
    first = {s.problem_id: s for s in seq_samples if s.round == 1}
    # the feedback on round 1 is part of round 2's prompt, so round 2's prompt is longer
    assert all(s.prompt_tokens > first[s.problem_id].prompt_tokens for s in later)
    summaries = [summarize(str(tmp_path / "seq")), summarize(str(tmp_path / "par"))]
    for summary in summaries:
        assert set(summary.accuracy) == {"last", "majority", "best-of-n", "pass@k"}
    result = cli("report", str(tmp_path / "seq"), str(tmp_path / "par"))
    assert "| best-of-n |" in result.stdout and "Comparison at full budget" in result.stdout


def test_feedback_level_must_suit_the_task(tmp_path):
    result = cli(
        "run",
        "--task",
        "arith",
        "--strategy",
        "sequential",
        "--feedback",
        "hidden",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 2
    assert "does not support --feedback hidden; it supports: none, binary" in result.stderr


def test_padded_parallel_matches_sequential_lengths_and_hybrid_runs(
    tmp_path, data_dir, small_engine
):
    base = config("sequential", n=3, limit=2, max_tokens=24)
    execute(
        base,
        tmp_path / "seq",
        data_dir=data_dir,
        engine=small_engine,
    )
    padded = execute(
        base.with_strategy(PaddedSpec(3, match=str(tmp_path / "seq"))),
        tmp_path / "pad",
        data_dir=data_dir,
        engine=small_engine,
    )
    reference = {s.key: s.prompt_tokens for s in RunStore(tmp_path / "seq").samples()}
    for sample in padded.samples():
        assert sample.target_prompt_tokens == reference[sample.key]
        assert (
            abs(sample.prompt_tokens - sample.target_prompt_tokens)
            <= 0.05 * sample.target_prompt_tokens
        )
    scaled = execute(
        base.with_strategy(
            PaddedSpec(3, match=str(tmp_path / "seq"), pad_scale=2, filler="neutral")
        ),
        tmp_path / "pad2",
        data_dir=data_dir,
        engine=small_engine,
    )
    for sample in scaled.samples():
        if sample.round > 1:
            assert sample.prompt_tokens > reference[sample.key]
    hybrid = execute(
        base.with_strategy(HybridSpec(3, hybrid_k=1)),
        tmp_path / "hyb",
        data_dir=data_dir,
        engine=small_engine,
    )
    slots = sorted(
        (s.chain, s.round) for s in hybrid.samples() if s.problem_id == "gsm8k-test-0000"
    )
    assert slots == [(0, 1), (0, 2), (1, 2), (2, 2)]
    summary = summarize(str(tmp_path / "hyb"))
    assert summary.complete and summary.expected_samples == 8


def test_interp_commands_and_ablated_generation(tmp_path, data_dir):
    heads = cli(
        "interp",
        "heads",
        "--model",
        TEST_MODEL,
        "--seeds",
        "1",
        "--lengths",
        "24",
        "--out",
        str(tmp_path / "heads"),
    )
    assert heads.returncode == 0, heads.stderr
    table = json.loads((tmp_path / "heads" / "heads.json").read_text())["heads"]
    assert len(table) == 30 * 9 and table[0]["rank"] == 1
    assert table[0]["prefix_matching"] >= table[-1]["prefix_matching"]
    assert (tmp_path / "heads" / "heads_prefix_matching.png").read_bytes().startswith(b"\x89PNG")

    common = [
        "--model",
        TEST_MODEL,
        "--task",
        "gsm8k",
        "--data-dir",
        str(data_dir),
        "--n",
        "2",
        "--limit",
        "2",
        "--max-tokens",
        "24",
        "--temperature",
        "0",
        "--no-progress",
    ]
    for name, extra in (
        ("plain", []),
        (
            "ablated",
            ["--ablate-top-k", "3", "--heads-table", str(tmp_path / "heads" / "heads.json")],
        ),
    ):
        result = cli(
            "run", *common, "--strategy", "sequential", *extra, "--out", str(tmp_path / name)
        )
        assert result.returncode == 0, result.stderr
    ablated = RunStore(tmp_path / "ablated")
    top = [f"{row['layer']}.{row['head']}" for row in table[:3]]
    assert ablated.manifest()["engine"]["ablated_heads"] == top
    texts = lambda store: [s.text for s in store.samples()]  # noqa: E731
    assert texts(ablated) != texts(RunStore(tmp_path / "plain"))

    copy = cli("interp", "copy", str(tmp_path / "plain"), "--out", str(tmp_path / "copy"))
    assert copy.returncode == 0, copy.stderr
    summary = json.loads((tmp_path / "copy" / "copy.json").read_text())
    assert summary["sequential"]["2"]["samples"] == 2
    measured = (tmp_path / "copy" / "copy_samples.jsonl").read_text()
    again = cli("interp", "copy", str(tmp_path / "plain"), "--out", str(tmp_path / "copy"))
    assert again.returncode == 0  # resumed: nothing measured twice
    assert (tmp_path / "copy" / "copy_samples.jsonl").read_text() == measured
    assert 0 <= summary["sequential"]["2"]["attention_to_previous"] <= 1
