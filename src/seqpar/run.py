"""One run: a strategy × task × model × settings, generated round by round into a run store.

Rounds are synchronous across problems: round r of every chain is requested in one engine
call, so sequential sampling batches as well as parallel. Every finished request is graded
and appended at once; re-running the same command skips what is stored.
"""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from seqpar.engines import Engine, derive_seed, load_engine
from seqpar.engines.models import DEFAULT_MODEL
from seqpar.errors import SeqparError
from seqpar.sampling import SamplingParams
from seqpar.store import RunStore
from seqpar.strategies import Strategy, get_strategy
from seqpar.strategies.sequential import SequentialTemplate
from seqpar.tasks import Task, get_task, select
from seqpar.types import Attempt, Completion, Grade, Message, Problem, Request, Sample

VERSIONED = ("seqpar", "torch", "transformers", "math-verify", "numpy", "gguf", "safetensors")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a run generates (its identity in the run store)."""

    model: str = DEFAULT_MODEL
    task: str = "arith"
    strategy: str = "parallel"
    n: int = 4
    chains: int = 1
    limit: int | None = None
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    seed: int = 0
    template: SequentialTemplate = field(default_factory=SequentialTemplate)
    feedback: str = "none"
    task_options: Mapping[str, Any] = field(default_factory=dict)
    engine: str = "hf"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise SeqparError(f"--n must be >= 1, got {self.n}")

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            n=1,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            max_tokens=self.max_tokens,
            seed=self.seed,
        )

    def build_strategy(self) -> Strategy:
        return get_strategy(self.strategy, self.n, chains=self.chains, template=self.template)

    def build_task(self, data_dir: str | Path | None = None) -> Task:
        task = get_task(self.task, data_dir=data_dir, **self.task_options)
        if self.feedback not in task.feedback_levels:
            raise SeqparError(
                f"task {self.task!r} does not support --feedback {self.feedback}; "
                f"it supports: {', '.join(task.feedback_levels)}"
            )
        return task

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunConfig:
        values = dict(data)
        values["template"] = SequentialTemplate(**values.get("template", {}))
        return cls(**values)


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
) -> RunStore:
    """Run (or resume) `config` into the directory `out`; returns its store."""
    task = config.build_task(data_dir)
    strategy = config.build_strategy()
    problems = select(task.load(), config.limit)
    sampling = config.sampling()
    store = RunStore(out)
    identity: dict[str, Any] = {"config": config.to_json(), "task": task.describe()}
    store.check_compatible(identity)
    if engine is None:
        engine = load_engine(config.engine, config.model, **(engine_options or {}))
    described = engine.describe()
    identity["model_sha256"] = described["model_sha256"]
    store.check_compatible(identity)
    store.create(
        {
            "identity": identity,
            "engine": described,
            "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
            "problem_ids": [p.id for p in problems],
            "versions": package_versions(),
            "git_commit": git_commit(),
            "command": sys.argv,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
    )
    generate(engine, task, strategy, problems, sampling, store, config.feedback)
    return store


def generate(
    engine: Engine,
    task: Task,
    strategy: Strategy,
    problems: list[Problem],
    sampling: SamplingParams,
    store: RunStore,
    feedback: str = "none",
) -> None:
    """Fill the store round by round with every missing (problem, chain, round) sample;
    each graded sample carries the `feedback` the next round of its chain will see."""
    stored = {s.key: s for s in store.samples()}
    prompts = {p.id: task.prompt(p) for p in problems}
    for round_ in range(1, strategy.rounds + 1):
        groups: dict[tuple[Message, ...], list[tuple[Problem, int]]] = {}
        for problem in problems:
            for chain in range(strategy.chains):
                if (problem.id, chain, round_) in stored:
                    continue
                history = [stored.get((problem.id, chain, r)) for r in range(1, round_)]
                if any(h is None or h.status != "ok" for h in history):
                    continue  # the chain ended at a skipped round
                previous = [Attempt(h.text, h.feedback) for h in history if h is not None]
                messages = strategy.messages(prompts[problem.id], previous)
                groups.setdefault(messages, []).append((problem, chain))
        requests, owners, skipped = [], [], []
        for messages, members in groups.items():
            length = engine.count_prompt_tokens(messages)
            if length + 1 > engine.context_length:
                reason = (
                    f"prompt has {length} tokens; the model's context is {engine.context_length}"
                )
                skipped += [skip(p, c, round_, length, reason) for p, c in members]
                continue
            seeds = tuple(derive_seed(sampling.seed, p.id, c, round_) for p, c in members)
            requests.append(Request(messages, seeds))
            owners.append(members)
        store.append(skipped)
        stored.update((s.key, s) for s in skipped)
        if not requests:
            continue
        print(
            f"{strategy.name}: round {round_}/{strategy.rounds}, "
            f"{sum(map(len, owners))} samples to generate",
            file=sys.stderr,
        )
        for index, completions in engine.generate(requests, sampling):
            samples = []
            for (problem, chain), completion in zip(owners[index], completions, strict=True):
                grade = task.grade(problem, completion.text)
                sample = record(problem, chain, round_, completion, grade)
                samples.append(replace(sample, feedback=task.feedback(problem, grade, feedback)))
            store.append(samples)
            stored.update((s.key, s) for s in samples)


def record(
    problem: Problem, chain: int, round_: int, completion: Completion, grade: Grade
) -> Sample:
    return Sample(
        problem_id=problem.id,
        chain=chain,
        round=round_,
        status="ok",
        text=completion.text,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        finish_reason=completion.finish_reason,
        seed=completion.seed,
        wall_time=completion.wall_time,
    ).with_grade(grade)


def skip(problem: Problem, chain: int, round_: int, prompt_tokens: int, reason: str) -> Sample:
    return Sample(
        problem_id=problem.id,
        chain=chain,
        round=round_,
        status="skipped",
        prompt_tokens=prompt_tokens,
        skip_reason=reason,
    )


def regrade(store: RunStore, data_dir: str | Path | None = None, progress: bool = True) -> int:
    """Grade every stored sample again (generations untouched); returns how many changed."""
    from tqdm.auto import tqdm

    manifest = store.manifest()
    config = RunConfig.from_json(manifest["identity"]["config"])
    task = config.build_task(data_dir or manifest.get("data_dir"))
    problems = {p.id: p for p in task.load()}
    graded, changed = [], 0
    for sample in tqdm(store.samples(), desc="grade", unit="sample", disable=not progress):
        if sample.status != "ok":
            continue
        regraded = sample.with_grade(task.grade(problems[sample.problem_id], sample.text))
        changed += (regraded.answer, regraded.correct) != (sample.answer, sample.correct)
        graded.append(regraded)
    store.write_grades(graded)
    return changed
