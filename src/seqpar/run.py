"""One run: a strategy × task × model × settings, generated round by round into a run store.

With a batching engine (hf), rounds are synchronous across problems: round r of every
chain is requested in one engine call, so sequential sampling batches as well as parallel.
With a concurrent engine (servers, llama.cpp), multi-round chains are scheduled each on its
own instead. Every finished request is graded and appended at once; re-running the same
command skips what is stored.
"""

from __future__ import annotations

import asyncio
import datetime
import platform
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from seqpar.analysis.ablation import parse_heads
from seqpar.analysis.embeddings import DEFAULT_EMBEDDER
from seqpar.engines import ConcurrentEngine, Engine, derive_seed, load_engine
from seqpar.engines.models import DEFAULT_MODEL
from seqpar.errors import SeqparError, unknown
from seqpar.sampling import SamplingParams
from seqpar.store import RunStore
from seqpar.strategies import Strategy, check_strategy
from seqpar.strategies.hybrid import HybridStrategy
from seqpar.strategies.novelty import Novelty
from seqpar.strategies.padded import PaddedParallelStrategy, filler_sources
from seqpar.strategies.parallel import ParallelStrategy
from seqpar.strategies.sequential import SequentialStrategy, SequentialTemplate
from seqpar.tasks import Task, get_task, grade_safely, select
from seqpar.types import Attempt, Completion, Grade, Message, Problem, Request, Sample

EXECUTORS = ("local", "ray")
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
    match: str | None = None
    pad_scale: float = 1.0
    filler: str = "other"
    hybrid_k: int = 1
    ablate_heads: str = ""  # "LAYER.HEAD,…": heads switched off during generation
    ablation: str = "zero"  # "zero" or "mean"
    reject: str = "none"
    max_retries: int = 2
    reject_threshold: float = 0.9
    embedder: str = DEFAULT_EMBEDDER
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

    def build_strategy(self, engine: Engine | None = None) -> Strategy:
        """The strategy; padded-parallel reads its reference run and needs the engine's
        tokenizer to size its filler."""
        check_strategy(self.strategy)
        if self.strategy == "parallel":
            return ParallelStrategy(self.n)
        if self.strategy == "sequential":
            return SequentialStrategy(self.n, self.template, self.chains)
        if self.strategy == "hybrid":
            return HybridStrategy(self.hybrid_k, self.n, self.template)
        return padded_strategy(self, engine)

    def build_task(self, data_dir: str | Path | None = None) -> Task:
        task = get_task(self.task, data_dir=data_dir, **self.task_options)
        if self.feedback not in task.feedback_levels:
            raise SeqparError(
                f"task {self.task!r} does not support --feedback {self.feedback}; "
                f"it supports: {', '.join(task.feedback_levels)}"
            )
        return task

    def build_novelty(self, task: Task) -> Novelty | None:
        """The rejection rule of `--reject`, checked against what the task's answers are."""
        if self.reject == "none":
            return None
        if self.reject in ("answer", "behaviour") and self.reject != task.answer_kind:
            raise SeqparError(
                f"--reject {self.reject} does not apply to task {self.task!r}, whose solutions "
                f"are compared by {task.answer_kind}; use --reject {task.answer_kind} or embedding"
            )
        embedder = None
        if self.reject == "embedding":
            from seqpar.analysis.embeddings import Embedder

            embedder = Embedder(self.embedder)
        return Novelty(
            self.reject, task.equivalent, self.max_retries, self.reject_threshold, embedder
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunConfig:
        values = dict(data)
        values["template"] = SequentialTemplate(**values.get("template", {}))
        return cls(**values)


def unmeasured(messages: Sequence[Message]) -> int:
    raise SeqparError("padded-parallel needs a loaded engine to measure its prompts")


def padded_strategy(config: RunConfig, engine: Engine | None) -> PaddedParallelStrategy:
    """Padded parallel sized after the sequential run `config.match` on the same problems;
    without an engine, only its shape (for reports)."""
    if engine is None:
        return PaddedParallelStrategy(config.n, config.template, {}, {}, unmeasured)
    if not config.match:
        raise SeqparError("--strategy padded-parallel needs --match RUN (a sequential run)")
    reference = RunStore(config.match)
    manifest = reference.manifest()
    ref_config = manifest["identity"]["config"]
    if ref_config["strategy"] != "sequential" or ref_config["task"] != config.task:
        raise SeqparError(
            f"--match {config.match} must be a sequential run of task {config.task!r}; it is a "
            f"{ref_config['strategy']} run of {ref_config['task']!r}"
        )
    model_sha256 = engine.describe()["model_sha256"]
    if manifest["identity"].get("model_sha256") != model_sha256:
        raise SeqparError(
            f"--match {config.match} was generated by model {ref_config['model']!r}, not "
            f"{config.model!r}; padded lengths are counted in the model's own tokens, so match "
            "a sequential run of the same model"
        )
    if config.n > ref_config["n"]:
        raise SeqparError(f"--n {config.n} exceeds the {ref_config['n']} rounds of --match")
    lengths: dict[str, list[int]] = {}
    texts: dict[str, list[str]] = {}
    for sample in reference.samples():
        if sample.chain == 0 and sample.status != "rejected":
            lengths.setdefault(sample.problem_id, [0] * ref_config["n"])[sample.round - 1] = (
                sample.prompt_tokens
            )
        if sample.status == "ok":
            texts.setdefault(sample.problem_id, []).append(config.template.shown(sample.text))
    incomplete = [p for p, ls in lengths.items() if 0 in ls[: config.n]]
    if incomplete or not lengths:
        raise SeqparError(f"--match {config.match} is incomplete; finish that run first")
    sources = filler_sources(list(lengths), texts, config.filler, config.seed)
    return PaddedParallelStrategy(
        config.n, config.template, lengths, sources, engine.count_prompt_tokens, config.pad_scale
    )


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
) -> RunStore:
    """Run (or resume) `config` into the directory `out`; returns its store. With
    `executor="ray"`, problems are spread over `workers` Ray actors, one engine each."""
    task = config.build_task(data_dir)
    check_strategy(config.strategy)
    problems = select(task.load(), config.limit)
    store = RunStore(out)
    identity: dict[str, Any] = {"config": config.to_json(), "task": task.describe()}
    store.check_compatible(identity)
    options = dict(engine_options or {})
    if executor == "ray":
        from seqpar.distributed import RayPool

        pool = RayPool(config, data_dir, options, workers)
        described, generate = pool.describe(), pool.runner(store)
    elif executor == "local":
        if engine is None:
            engine = load_engine(config.engine, config.model, **options)
        generation = prepare_generation(config, engine, task, store, options.get("progress", True))
        described, generate = engine.describe(), generation.run
    else:
        raise unknown("executor", executor, EXECUTORS)
    identity["model_sha256"] = described["model_sha256"]
    with store.locked():
        store.check_compatible(identity)
        store.create(
            {
                "identity": identity,
                "engine": described,
                "executor": {"name": executor, "workers": workers if executor == "ray" else 1},
                "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
                "problem_ids": [p.id for p in problems],
                "versions": package_versions(),
                "git_commit": git_commit(),
                "command": sys.argv,
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
        )
        generate(problems)
    return store


def prepare_generation(
    config: RunConfig, engine: Engine, task: Task, store: SampleStore, progress: bool = True
) -> Generation:
    """The generation of `config` on a loaded engine (head ablation applied) into `store`."""
    heads = parse_heads(config.ablate_heads)
    if heads and not hasattr(engine, "ablate"):
        raise SeqparError(f"engine {config.engine!r} cannot ablate heads; use --engine hf")
    if hasattr(engine, "ablate"):
        engine.ablate(heads, config.ablation)  # also clears an earlier run's ablation
    return Generation(
        engine,
        task,
        config.build_strategy(engine),
        config.sampling(),
        store,
        config.feedback,
        config.build_novelty(task),
        bool(progress),
    )


class SampleStore(Protocol):
    """What a generation reads and appends: a run store, or a Ray worker's in-memory part."""

    def samples(self) -> list[Sample]: ...

    def append(self, samples: Iterable[Sample]) -> None: ...


@dataclass
class Generation:
    """Fills a run store round by round with every missing (problem, chain, round) sample.

    Each graded sample carries the `feedback` the next round of its chain will see. With a
    `novelty` rule, a draw that duplicates an accepted solution of its problem is stored as
    rejected and redrawn with a new seed, up to the rule's retry budget.
    """

    engine: Engine
    task: Task
    strategy: Strategy
    sampling: SamplingParams
    store: SampleStore
    feedback: str = "none"
    novelty: Novelty | None = None
    progress: bool = True
    stored: dict[tuple[str, int, int], Sample] = field(default_factory=dict)
    attempts: Counter[tuple[str, int, int]] = field(default_factory=Counter)
    accepted: defaultdict[str, list[Sample]] = field(default_factory=lambda: defaultdict(list))

    def run(self, problems: list[Problem]) -> None:
        for sample in self.store.samples():
            if sample.status == "rejected":
                self.attempts[sample.key] += 1
                continue
            self.stored[sample.key] = sample
            if sample.status == "ok":
                self.accepted[sample.problem_id].append(sample)
        prompts = {p.id: self.task.prompt(p) for p in problems}
        if isinstance(self.engine, ConcurrentEngine) and self.strategy.rounds > 1:
            asyncio.run(self.run_chains(problems, prompts))
            return
        for round_ in range(1, self.strategy.rounds + 1):
            slots = [
                (problem, chain, messages)
                for problem in problems
                for chain in range(self.strategy.chains)
                if (messages := self.open_slot(problem, prompts[problem.id], chain, round_))
            ]
            while slots:
                slots = self.draw(slots, round_)

    def open_slot(
        self, problem: Problem, prompt: str, chain: int, round_: int
    ) -> tuple[Message, ...] | None:
        """The messages of this round of the chain, or None when it is stored, not part of
        the strategy, or its chain ended at a skipped round."""
        reads = self.strategy.history(chain, round_)
        if reads is None or (problem.id, chain, round_) in self.stored:
            return None
        history = [self.stored.get((problem.id, c, r)) for c, r in reads]
        if any(h is None or h.status != "ok" for h in history):
            return None
        previous = [Attempt(h.text, h.feedback) for h in history if h is not None]
        return self.strategy.messages(problem, prompt, previous, round_)

    async def run_chains(self, problems: list[Problem], prompts: dict[str, str]) -> None:
        """Every chain on its own: round r+1 is requested as soon as round r is graded, so a
        server's batch stays full while slow chains finish. A round waits only for the
        rounds it reads (hybrid chains read chain 0); up to `max_in_flight` chains at once."""
        assert isinstance(self.engine, ConcurrentEngine)
        # Chains, not requests, hold the slots: a chain keeps its slot between rounds, so a
        # one-slot engine runs chain after chain and keeps each chain's prefix in its cache.
        # Chains start in order, so a hybrid chain waiting on chain 0 never blocks it.
        in_flight = asyncio.Semaphore(self.engine.max_in_flight)
        done: defaultdict[tuple[str, int, int], asyncio.Event] = defaultdict(asyncio.Event)
        bar = self.progress_bar(problems)

        async def chain(problem: Problem, chain: int) -> None:
            try:
                async with in_flight:
                    await rounds(problem, chain)
            finally:  # a failed or ended chain must not leave its readers waiting
                for round_ in range(1, self.strategy.rounds + 1):
                    done[(problem.id, chain, round_)].set()

        async def rounds(problem: Problem, chain: int) -> None:
            for round_ in range(1, self.strategy.rounds + 1):
                for c, r in self.strategy.history(chain, round_) or []:
                    await done[(problem.id, c, r)].wait()
                prompt = prompts[problem.id]
                while messages := self.open_slot(problem, prompt, chain, round_):
                    await self.draw_one(problem, chain, round_, messages)
                done[(problem.id, chain, round_)].set()
                bar.update(1)

        try:
            await asyncio.gather(
                *(chain(p, c) for p in problems for c in range(self.strategy.chains))
            )
        finally:
            bar.close()

    def progress_bar(self, problems: list[Problem]) -> Any:
        from tqdm.auto import tqdm

        slots = len(problems) * self.strategy.chains * self.strategy.rounds
        print(
            f"{self.strategy.name}: {slots} slots, chains scheduled independently", file=sys.stderr
        )
        return tqdm(total=slots, desc=self.strategy.name, unit="slot", disable=not self.progress)

    async def draw_one(
        self, problem: Problem, chain: int, round_: int, messages: tuple[Message, ...]
    ) -> None:
        """Generate, grade and store one draw of one slot (a concurrent engine's unit)."""
        length, overflow = self.overflow(messages)
        if overflow:
            skipped = skip(problem, chain, round_, length, overflow)
            self.store.append([skipped])
            self.stored[skipped.key] = skipped
            return
        request = Request(messages, (self.seed(problem.id, chain, round_),))
        assert isinstance(self.engine, ConcurrentEngine)
        (completion,) = await self.engine.complete(request, self.sampling)
        if self.task.answer_kind == "behaviour":  # the sandbox bounds its own time
            grade = await asyncio.to_thread(grade_safely, self.task, problem, completion.text)
        else:  # math-verify's time bound (SIGALRM) works in the main thread only
            grade = grade_safely(self.task, problem, completion.text)
        self.store.append([self.judge(problem, chain, round_, completion, grade)])

    def draw(
        self, slots: list[tuple[Problem, int, tuple[Message, ...]]], round_: int
    ) -> list[tuple[Problem, int, tuple[Message, ...]]]:
        """Generate, grade and store one draw per slot; return the slots to draw again."""
        groups: dict[tuple[Message, ...], list[tuple[Problem, int]]] = {}
        for problem, chain, messages in slots:
            groups.setdefault(messages, []).append((problem, chain))
        requests, owners, skipped = [], [], []
        for messages, members in groups.items():
            length, overflow = self.overflow(messages)
            if overflow:
                skipped += [skip(p, c, round_, length, overflow) for p, c in members]
                continue
            seeds = tuple(self.seed(p.id, c, round_) for p, c in members)
            requests.append(Request(messages, seeds))
            owners.append(members)
        self.store.append(skipped)
        self.stored.update((s.key, s) for s in skipped)
        if not requests:
            return []
        redraws = sum(self.attempts[(p.id, c, round_)] > 0 for m in owners for p, c in m)
        print(
            f"{self.strategy.name}: round {round_}/{self.strategy.rounds}, "
            f"{sum(map(len, owners))} samples to generate"
            + (f" ({redraws} redrawn as duplicates)" if redraws else ""),
            file=sys.stderr,
        )
        again = []
        for index, completions in self.engine.generate(requests, self.sampling):
            samples = []
            for (problem, chain), completion in zip(owners[index], completions, strict=True):
                grade = grade_safely(self.task, problem, completion.text)
                sample = self.judge(problem, chain, round_, completion, grade)
                samples.append(sample)
                if sample.status == "rejected":
                    again.append((problem, chain, requests[index].messages))
            self.store.append(samples)
        return again

    def overflow(self, messages: tuple[Message, ...]) -> tuple[int, str]:
        """The prompt's length, and why it cannot be sent ("" when it leaves room)."""
        length, limit = self.engine.count_prompt_tokens(messages), self.engine.context_length
        if length + 1 <= limit:
            return length, ""
        return length, f"prompt has {length} tokens; the model's context is {limit}"

    def seed(self, problem_id: str, chain: int, round_: int) -> int:
        attempt = self.attempts[(problem_id, chain, round_)]
        parts = (problem_id, chain, round_) + ((attempt,) if attempt else ())
        return derive_seed(self.sampling.seed, *parts)

    def judge(
        self, problem: Problem, chain: int, round_: int, completion: Completion, grade: Grade
    ) -> Sample:
        """Decide whether a graded draw is accepted or rejected as a duplicate."""
        key = (problem.id, chain, round_)
        sample = replace(
            record(problem, chain, round_, completion, grade),
            feedback=self.task.feedback(problem, grade, self.feedback),
            attempt=self.attempts[key],
            target_prompt_tokens=self.strategy.target_tokens(problem, round_),
        )
        novelty = self.novelty
        if (
            novelty is not None
            and self.attempts[key] < novelty.max_retries
            and novelty.duplicate(sample, self.accepted[problem.id])
        ):
            self.attempts[key] += 1
            return replace(sample, status="rejected")
        self.stored[key] = sample
        self.accepted[problem.id].append(sample)
        return sample


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
        cached_prompt_tokens=completion.cached_prompt_tokens,
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
