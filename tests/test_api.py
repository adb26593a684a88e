"""The Python API (docs/api.md): light import, DataFrames equal to samples.jsonl, summaries
equal to `seqpar report --json`, and the documented examples run as written."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT
from .test_e2e import cli


def plain(value: object) -> object:
    """A DataFrame cell as the JSON value it came from (<NA> → None, numpy → Python)."""
    import pandas as pd

    if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def test_import_seqpar_is_light_and_the_api_loads_on_first_use():
    timing = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import seqpar"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    modules = {line.split("|")[-1].strip() for line in timing.splitlines() if "|" in line}
    assert not {m for m in modules if m.split(".")[0] in ("torch", "pandas", "numpy")}
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, seqpar; seqpar.load_run; "
            "seqpar.RunConfig(strategy=seqpar.ParallelSpec(2)); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'pandas'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert loaded.strip() == "[]"  # the API itself imports neither until used
    import seqpar

    assert "load_study" in dir(seqpar)
    with pytest.raises(AttributeError):
        _ = seqpar.no_such_name


@pytest.mark.slow
def test_a_run_dataframe_has_one_row_per_line_of_samples_jsonl(study):
    import seqpar

    for run in seqpar.load_study(study).runs.values():
        lines = (Path(run.path) / "samples.jsonl").read_text().splitlines()
        frame = run.samples()
        assert len(frame) == len(lines) > 0
        for row, line in zip(frame.to_dict("records"), lines, strict=True):
            assert {k: plain(v) for k, v in row.items()} == json.loads(line)
    both = seqpar.load_study(study).samples()
    assert list(both.columns[:4]) == ["run", "strategy", "problem_id", "chain"]
    assert set(both.run) >= {"parallel", "sequential", "padded-parallel", "hybrid-k1"}


@pytest.mark.slow
def test_api_summaries_equal_report_json(study):
    import seqpar

    loaded = seqpar.load_study(study)
    paths = [run.path for run in loaded.runs.values()]
    printed = cli("report", "--json", *paths)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == seqpar.summaries(paths)
    assert list(loaded.summaries().values()) == json.loads(printed.stdout)
    assert loaded["sequential"].summary() == json.loads(printed.stdout)[1]


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)


@pytest.mark.slow
def test_the_examples_of_docs_api_md_run(study, tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    # The shared study itself (a copy would not resume: padded-parallel records the absolute
    # path of the sequential run it matches); the examples only resume it and re-read it.
    (tmp_path / "runs" / "study").symlink_to(study, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks((ROOT / "docs" / "api.md").read_text())
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    assert (tmp_path / "runs" / "study" / "browse.html").is_file()
