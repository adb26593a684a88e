"""Typed settings, one frozen dataclass per component of a run; pure data, no behaviour.

A run's configuration (`seqpar.config.RunConfig`) is made of these: the task, one strategy
spec, the sequential template, sampling (`SamplingParams`), head ablation and novelty
(rejection). Engines have one spec each too; they are how a run is executed, not what it
generates, so they are not part of a run's identity. Every spec is read from JSON or
keyword options by `decode`, which refuses unknown keys by name.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from seqpar.errors import SeqparError, unknown

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"
HISTORIES = ("final", "full")
INSTRUCTION_NAMES = ("again", "different", "improve")
LAYOUTS = ("single", "multiturn")
FEEDBACK_LEVELS = ("none", "binary", "public", "hidden")
FILLERS = ("other", "neutral")
ABLATION_MODES = ("zero", "mean")
NOVELTY_MODES = ("none", "answer", "behaviour", "embedding")
HEAD = re.compile(r"^(\d+)\.(\d+)$")


def decode(cls: type[Any], data: Mapping[str, Any], what: str) -> Any:
    """`cls(**data)`, except that a key `cls` does not have is an error naming `what`."""
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    extra = sorted(set(data) - set(known))
    if extra:
        raise SeqparError(
            f"{what} has no setting {', '.join(map(repr, extra))}; known: {', '.join(known)}"
        )
    return cls(**data)


def check_choice(setting: str, value: str, known: Sequence[str]) -> None:
    if value not in known:
        raise unknown(setting, value, known)


def check_positive(**values: float) -> None:
    for name, value in values.items():
        if value < 1:
            raise SeqparError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


@dataclass(frozen=True)
class SequentialTemplate:
    """How previous solutions enter a prompt (sequential, hybrid and padded-parallel)."""

    history: str = "final"  # "final": reasoning blocks removed; "full": the text as generated
    instruction: str = "again"  # "again" | "different" | "improve"
    layout: str = "single"  # "single": one user message; "multiturn": alternating turns

    def __post_init__(self) -> None:
        check_choice("template history", self.history, HISTORIES)
        check_choice("template instruction", self.instruction, INSTRUCTION_NAMES)
        check_choice("template layout", self.layout, LAYOUTS)


@dataclass(frozen=True)
class TaskSpec:
    """Which problems: the task by name, its own options, how many, and what feedback the
    environment gives the next round."""

    name: str = "arith"
    options: Mapping[str, Any] = field(default_factory=dict)  # e.g. difficulty, release
    limit: int | None = None  # the first `limit` problems; None: all
    feedback: str = "none"

    def __post_init__(self) -> None:
        check_choice("--feedback", self.feedback, FEEDBACK_LEVELS)
        if self.limit is not None and self.limit < 1:
            raise SeqparError(f"--limit must be >= 1, got {self.limit}")
        object.__setattr__(self, "options", dict(self.options))


@dataclass(frozen=True)
class ParallelSpec:
    """`n` independent samples per problem."""

    name: ClassVar[str] = "parallel"
    n: int = 4

    def __post_init__(self) -> None:
        check_positive(n=self.n)


@dataclass(frozen=True)
class SequentialSpec:
    """`chains` chains of `n` rounds, each round reading its chain's earlier ones."""

    name: ClassVar[str] = "sequential"
    n: int = 4
    chains: int = 1

    def __post_init__(self) -> None:
        check_positive(n=self.n, chains=self.chains)


@dataclass(frozen=True)
class HybridSpec:
    """`hybrid_k` sequential rounds, then `n` parallel samples that all read them."""

    name: ClassVar[str] = "hybrid"
    n: int = 4
    hybrid_k: int = 1

    def __post_init__(self) -> None:
        check_positive(n=self.n, hybrid_k=self.hybrid_k)


@dataclass(frozen=True)
class PaddedSpec:
    """`n` independent samples whose prompts are padded to the lengths of the sequential run
    `match`: filler × `pad_scale`, from other problems' solutions or neutral prose."""

    name: ClassVar[str] = "padded-parallel"
    n: int = 4
    match: str | None = None
    pad_scale: float = 1.0
    filler: str = "other"

    def __post_init__(self) -> None:
        check_positive(n=self.n)
        check_choice("--filler", self.filler, FILLERS)


StrategySpec = ParallelSpec | SequentialSpec | HybridSpec | PaddedSpec


@dataclass(frozen=True)
class AblationSpec:
    """Attention heads switched off while generating, and what replaces their output."""

    heads: tuple[tuple[int, int], ...] = ()
    mode: str = "zero"

    def __post_init__(self) -> None:
        check_choice("ablation", self.mode, ABLATION_MODES)
        object.__setattr__(self, "heads", tuple((int(a), int(b)) for a, b in self.heads))

    @classmethod
    def parse(cls, text: str, mode: str = "zero") -> AblationSpec:
        """'3.1,10.7' → heads ((3, 1), (10, 7))."""
        heads = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            match = HEAD.match(part)
            if not match:
                raise SeqparError(
                    f"bad head {part!r} in --ablate-heads; write LAYER.HEAD, e.g. 3.1,10.7"
                )
            heads.append((int(match[1]), int(match[2])))
        return cls(tuple(heads), mode)

    def text(self) -> str:
        """The heads as --ablate-heads takes them."""
        return ",".join(f"{layer}.{head}" for layer, head in self.heads)


@dataclass(frozen=True)
class NoveltySpec:
    """Rejection sampling: redraw a solution that repeats an accepted one of its problem."""

    mode: str = "none"  # "none" | "answer" | "behaviour" | "embedding"
    max_retries: int = 2
    threshold: float = 0.9  # embedding: the cosine that counts as a repeat
    embedder: str = DEFAULT_EMBEDDER

    def __post_init__(self) -> None:
        check_choice("--reject", self.mode, NOVELTY_MODES)


@dataclass(frozen=True)
class HFEngineSpec:
    """transformers in process, batched."""

    device: str = "auto"
    dtype: str = "auto"  # auto: bfloat16 on GPUs and CPUs that have it, else float32
    token_budget: int | None = None  # padded tokens (prompt + max_tokens) per batch
    max_batch: int | None = None  # None: the engine's default for its device
    max_context: int | None = None
    progress: bool = True


@dataclass(frozen=True)
class LlamaCppEngineSpec:
    """llama-cpp-python in process, one slot, prefix reuse."""

    max_context: int | None = None
    threads: int | None = None  # default: every core


@dataclass(frozen=True)
class LlamaServerEngineSpec:
    """llama.cpp's llama-server, started by seqpar: continuous batching, per-slot prompt cache."""

    slots: int = 8  # requests decoded together
    max_context: int | None = None  # per slot; default 4,096
    threads: int | None = None  # default: every core
    request_timeout: float = 600.0


@dataclass(frozen=True)
class OpenAIEngineSpec:
    """An OpenAI-compatible server (vLLM, SGLang, llama.cpp, hosted APIs)."""

    base_url: Sequence[str] | str | None = None
    api: str = "chat"
    api_key_env: str = "OPENAI_API_KEY"
    max_in_flight: int = 16
    server_n: bool = False
    http_retries: int = 6
    request_timeout: float = 600.0
    tokenizer: str | None = None
    max_context: int | None = None
