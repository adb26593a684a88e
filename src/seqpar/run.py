"""One run: a strategy × task × model × settings, generated into a run directory.

`execute` checks the configuration against what the directory holds, writes the manifest
(configuration, versions, model hash, git commit) and hands the missing samples to the
scheduler (`seqpar.scheduler`), locally or over Ray; re-running the same command resumes.
`execute_together` does the same for several runs whose samples one engine generates at
once (a study's independent runs).
`regrade` grades stored samples again without generating.
"""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from seqpar.config import RunConfig, current_format
from seqpar.engines import Engine
from seqpar.errors import SeqparError, unknown
from seqpar.registry import load_engine
from seqpar.scheduler import Clock, generate_together, prepare_generation
from seqpar.store import RunStore
from seqpar.tasks import Task, grade_safely, select
from seqpar.types import Problem

EXECUTORS = ("local", "ray")
VERSIONED = ("seqpar", "torch", "transformers", "math-verify", "numpy", "gguf", "safetensors")


def stored_identity(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest's identity with its configuration in today's format (older runs resume)."""
    identity = dict(manifest.get("identity", {}))
    if "config" in identity:
        identity["config"] = current_format(identity["config"])
    return identity


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The commit of the seqpar checkout in use, when it is a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def execute(
    config: RunConfig,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    engine: Engine | None = None,
    engine_options: Mapping[str, Any] | None = None,
    executor: str = "local",
    workers: int = 2,
    progress: bool = True,
) -> RunStore:
    """Run (or resume) `config` into the directory `out`; returns its store. With
    `executor="ray"`, problems are spread over `workers` Ray actors, one engine each."""
    task = config.build_task(data_dir)
    problems = select(task.load(), config.task.limit)  # missing data: a clear error first
    store = RunStore(out)
    store.check_compatible(identity(config, task), stored_identity)  # before loading a model
    if executor == "ray":
        from seqpar.distributed import RayPool

        pool = RayPool(config, data_dir, dict(engine_options or {}), workers)
        clock = Clock()
        with opened(config, store, task, problems, pool.describe(), data_dir, clock, workers):
            pool.runner(store, clock)(problems)
        return store
    if executor != "local":
        raise unknown("executor", executor, EXECUTORS)
    if engine is None:
        engine = load_engine(config.engine, config.model, engine_options)
    return execute_together([(config, out)], engine, data_dir=data_dir, progress=progress)[0]


def execute_together(
    runs: Sequence[tuple[RunConfig, str | Path]],
    engine: Engine,
    *,
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> list[RunStore]:
    """Run (or resume) several runs on one engine at once, each into its own directory: the
    engine's batches hold all of their work (`generate_together`). They must share the
    sampling settings and the heads switched off. Returns their stores."""
    if len({config.ablation for config, _ in runs}) > 1:
        raise SeqparError("runs generated together must switch off the same heads")
    with ExitStack() as stack:
        generations, stores = [], []
        for config, out in runs:
            task = config.build_task(data_dir)
            problems = select(task.load(), config.task.limit)
            store = RunStore(out)
            store.check_compatible(identity(config, task), stored_identity)
            generation = prepare_generation(config, engine, task, store, progress)
            generation.clock.shared_with = len(runs) - 1
            described = engine.describe()
            stack.enter_context(
                opened(config, store, task, problems, described, data_dir, generation.clock)
            )
            generations.append((generation, problems))
            stores.append(store)
        generate_together(generations)
    return stores


def identity(config: RunConfig, task: Task) -> dict[str, Any]:
    """What a run directory must match to be resumed: configuration and task data."""
    return {"config": config.to_json(), "task": task.describe()}


@contextmanager
def opened(
    config: RunConfig,
    store: RunStore,
    task: Task,
    problems: Sequence[Problem],
    described: Mapping[str, Any],
    data_dir: str | Path | None,
    clock: Clock,
    workers: int | None = None,
) -> Iterator[None]:
    """Hold `store`'s lock with its manifest written (the model's hash now part of the
    identity) while its samples are generated; the session's times are recorded at the end,
    an interrupted session's too. `workers`: the Ray executor's, None for local."""
    full = {**identity(config, task), "model_sha256": described["model_sha256"]}
    with store.locked():
        store.check_compatible(full, stored_identity)
        store.create(
            {
                "identity": full,
                "engine": dict(described),
                "executor": {"name": "ray", "workers": workers}
                if workers
                else {"name": "local", "workers": 1},
                "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
                "problem_ids": [p.id for p in problems],
                "versions": package_versions(),
                "git_commit": git_commit(),
                "command": sys.argv,
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
        )
        try:
            yield
        finally:
            if (times := clock.record()) is not None:
                store.append_session(times)


def regrade(store: RunStore, data_dir: str | Path | None = None, progress: bool = True) -> int:
    """Grade every stored sample again (generations untouched); returns how many changed."""
    from tqdm.auto import tqdm

    manifest = store.manifest()  # not a run directory: an error before anything is locked
    config = RunConfig.from_json(manifest["identity"]["config"])
    task = config.build_task(data_dir or manifest.get("data_dir"))
    problems = {p.id: p for p in task.load()}
    graded, changed = [], 0
    with store.locked():
        for sample in tqdm(store.samples(), desc="grade", unit="sample", disable=not progress):
            if sample.status != "ok":
                continue
            grade = grade_safely(task, problems[sample.problem_id], sample.text)
            regraded = sample.with_grade(grade)
            changed += (regraded.answer, regraded.correct) != (sample.answer, sample.correct)
            graded.append(regraded)
        store.write_grades(graded)
    return changed
