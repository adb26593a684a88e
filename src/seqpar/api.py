"""The Python API: load runs and studies, read their samples as pandas DataFrames, get the
numbers of `seqpar report --json`, start runs and studies, and write the sample browser.

Everything here calls the functions the command line calls; nothing is computed twice.
`import seqpar` stays light: this module (and pandas) load on first use of a name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqpar import roles
from seqpar.config import RunConfig
from seqpar.errors import SeqparError
from seqpar.report.summary import summarize
from seqpar.run import execute
from seqpar.rundata import RunData
from seqpar.rundata import load_run as load_run_data
from seqpar.sampling import SamplingParams as SamplingParams
from seqpar.specs import AblationSpec as AblationSpec
from seqpar.specs import HybridSpec as HybridSpec
from seqpar.specs import NoveltySpec as NoveltySpec
from seqpar.specs import PaddedSpec as PaddedSpec
from seqpar.specs import ParallelSpec as ParallelSpec
from seqpar.specs import SequentialSpec as SequentialSpec
from seqpar.specs import SequentialTemplate as SequentialTemplate
from seqpar.specs import TaskSpec as TaskSpec
from seqpar.types import Sample

if TYPE_CHECKING:
    import pandas as pd

    from seqpar.analysis.hypotheses import AnalysisPlan

DTYPES = {  # Sample field annotation → pandas dtype (nullable where the field may be None)
    "str": "string",
    "str | None": "string",
    "int": "int64",
    "int | None": "Int64",
    "float": "float64",
    "float | None": "Float64",
    "bool": "bool",
}


def samples_frame(samples: Sequence[Sample]) -> pd.DataFrame:
    """One row per sample, one column per field of samples.jsonl, missing values as <NA>."""
    import pandas as pd

    columns = {f.name: DTYPES[str(f.type)] for f in fields(Sample)}
    rows = [sample.to_json() for sample in samples]
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def summaries(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """What `seqpar report --json PATH…` prints, as Python objects."""
    return json.loads(json.dumps([summarize(str(path)).to_json() for path in paths]))


@dataclass(frozen=True)
class Run:
    """A stored run directory, loaded: configuration, samples and scored grid."""

    path: str
    data: RunData

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def config(self) -> RunConfig:
        return self.data.config

    @property
    def manifest(self) -> dict[str, Any]:
        return self.data.manifest

    def samples(self) -> pd.DataFrame:
        """Every line of samples.jsonl (rejected draws included, re-grades applied)."""
        return samples_frame(self.data.draws)

    def summary(self) -> dict[str, Any]:
        """This run's entry of `seqpar report --json`."""
        return summaries([self.path])[0]


@dataclass(frozen=True)
class Study:
    """A study directory: its shared settings and its runs by name."""

    path: str
    base: RunConfig
    runs: Mapping[str, Run]

    def __getitem__(self, name: str) -> Run:
        return self.runs[name]

    def samples(self) -> pd.DataFrame:
        """The samples of every run, with the run's name and strategy as first columns."""
        import pandas as pd

        frames = []
        for name, run in self.runs.items():
            frame = run.samples()
            frame.insert(
                0, "strategy", pd.Series([run.config.strategy.name] * len(frame), dtype="string")
            )
            frame.insert(0, "run", pd.Series([name] * len(frame), dtype="string"))
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def summaries(self) -> dict[str, dict[str, Any]]:
        """Each run's entry of `seqpar report --json`, by run name."""
        return dict(zip(self.runs, summaries([r.path for r in self.runs.values()]), strict=True))

    @property
    def report(self) -> Path:
        """The study's HTML report."""
        return Path(self.path) / "report.html"


def load_run(path: str | Path) -> Run:
    """Load the run directory `path` (its manifest.json and samples.jsonl)."""
    return Run(str(path), load_run_data(str(path)))


def load_study(path: str | Path) -> Study:
    """Load the study directory `path` (its study.json and every run in it)."""
    plan = Path(path) / roles.PLAN_FILE
    if not plan.is_file():
        raise SeqparError(f"{path} is not a seqpar study directory (no {roles.PLAN_FILE})")
    record = json.loads(plan.read_text(encoding="utf-8"))
    runs = {
        name: load_run(Path(path) / name)
        for name in record["runs"]
        if (Path(path) / name / "manifest.json").is_file()
    }
    return Study(str(path), RunConfig.from_json(record["base"]), runs)


def start_run(
    config: RunConfig,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    engine_options: Mapping[str, Any] | None = None,
    engine: Any = None,
    progress: bool = True,
) -> Run:
    """Run (or resume) `config` into `out`, as `seqpar run` does, and load the result."""
    store = execute(
        config,
        out,
        data_dir=data_dir,
        engine=engine,
        engine_options=engine_options,
        progress=progress,
    )
    return load_run(store.path)


def start_study(
    config: RunConfig,
    out: str | Path,
    *,
    data_dir: str | None = None,
    engine_options: dict[str, Any] | None = None,
    analysis: AnalysisPlan | None = None,
    progress: bool = True,
    chains: int = 1,
) -> Study:
    """Run (or resume) every run of a study of `config` into `out`, as `seqpar study` does
    (report included; `analysis` as its --margin, --h3-k, --long-pad-scale), and load it."""
    from seqpar.study import run_study

    run_study(
        config,
        out,
        data_dir=data_dir,
        engine_options=engine_options,
        analysis=analysis,
        progress=progress,
        chains=chains,
    )
    return load_study(out)


def browse(path: str | Path, out: str | Path | None = None, *, ngram: int | None = None) -> Path:
    """Write the sample browser of a run or study directory; returns the HTML file."""
    from seqpar.report.browse import DEFAULT_NGRAM, write_browser

    return write_browser(Path(path), Path(out) if out else None, ngram=ngram or DEFAULT_NGRAM)
