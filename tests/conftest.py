"""Shared fixtures: the offline benchmark data and the smallest bundled model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_MODEL = "smollm2-135m-instruct"


def find_data_dir() -> Path:
    """The benchmark folder: $SEQPAR_DATA_DIR, ../shared/data, or this workplace's copy."""
    candidates = [
        os.environ.get("SEQPAR_DATA_DIR"),
        ROOT.parent / "shared" / "data",
        Path("/work/shared/data"),
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "gsm8k_test.jsonl").is_file():
            return Path(candidate)
    raise RuntimeError(
        "benchmark data not found: set SEQPAR_DATA_DIR to the folder holding gsm8k_test.jsonl"
    )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return find_data_dir()


@pytest.fixture(scope="session")
def small_engine():
    """The real SmolLM2-135M engine, loaded once for the session."""
    from seqpar.engines.hf import HFEngine

    return HFEngine.load(TEST_MODEL, progress=False)


TINY_STUDY = [
    "--model",
    TEST_MODEL,
    "--task",
    "arith",
    "--difficulty",
    "1",
    "--limit",
    "3",
    "--n",
    "2",
    "--max-tokens",
    "28",
    "--no-progress",
]


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> Path:
    """A real tiny study (SmolLM2, 3 arith problems, N = 2), made once for the session."""
    from .test_e2e import cli

    out = tmp_path_factory.mktemp("study")
    result = cli("study", *TINY_STUDY, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out
