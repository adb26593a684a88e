"""Padded parallel: independent samples with irrelevant context where previous solutions
would stand, length-matched to a sequential reference run (hypothesis 2, context length).

Round r of a problem's chain is an independent sample (it reads nothing generated in this
run) whose prompt is the sequential template with r-1 filler "solutions" in the slot of
the previous ones. The filler is sized so the prompt's token count matches the reference
run's round-r prompt for the same problem: target = P1 + scale × (Pr − P1), where Pr is the
reference prompt length at round r. Filler sources: `other` (solutions to *other* problems
of the reference run, default) or `neutral` (plain prose). Achieved and target lengths are
recorded per sample; they agree within 5% unless the filler source runs short.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from seqpar.config import RunConfig
from seqpar.engines import Engine
from seqpar.errors import SeqparError
from seqpar.specs import PaddedSpec, SequentialTemplate
from seqpar.store import RunStore
from seqpar.strategies import Chained
from seqpar.strategies.sequential import render, shown
from seqpar.types import Attempt, Message, Problem

NEUTRAL = (
    "The lighthouse stood on a low rocky island a few miles from the harbour. Its keeper "
    "wrote the weather in a ledger every morning: the direction of the wind, the height of "
    "the waves, the colour of the sky at dawn. Ships passed in the distance, some carrying "
    "timber, others grain or cloth. In winter the fog came in thick and slow, and the horn "
    "sounded every half minute until it lifted. Gulls nested on the ledges below the lamp, "
    "and in spring the rocks were covered with small yellow flowers. Supplies arrived by "
    "boat once a fortnight, weather permitting, with letters, oil and bread."
)


@dataclass(frozen=True)
class PaddedParallelStrategy(Chained):
    """One chain of `n` independent, increasingly padded samples per problem."""

    n: int
    template: SequentialTemplate
    reference: Mapping[str, Sequence[int]]  # problem id → reference prompt tokens per round
    sources: Mapping[str, Sequence[str]]  # problem id → filler texts
    count_tokens: Callable[[Sequence[Message]], int]
    scale: float = 1.0
    name: str = "padded-parallel"
    chains: int = 1
    cache: dict[tuple[str, int], tuple[tuple[Message, ...], list[str]]] = field(
        default_factory=dict
    )

    @property
    def rounds(self) -> int:
        return self.n

    def history(self, chain: int, round_: int) -> list[tuple[int, int]] | None:
        return []  # independent samples: nothing generated in this run is read

    def target_tokens(self, problem: Problem, round_: int) -> int | None:
        lengths = self.reference[problem.id]
        return round(lengths[0] + self.scale * (lengths[round_ - 1] - lengths[0]))

    def messages(
        self, problem: Problem, prompt: str, previous: Sequence[Attempt], round_: int
    ) -> tuple[Message, ...]:
        return self.padded(problem, prompt, round_)[0]

    def fillers(self, problem: Problem, prompt: str, round_: int) -> list[str]:
        """The filler texts standing in the previous solutions' slot."""
        return self.padded(problem, prompt, round_)[1]

    def padded(
        self, problem: Problem, prompt: str, round_: int
    ) -> tuple[tuple[Message, ...], list[str]]:
        """The prompt with round_-1 filler solutions whose total length hits the target."""
        key = (problem.id, round_)
        if key not in self.cache:
            self.cache[key] = self.fit(problem, prompt, round_)
        return self.cache[key]

    def fit(
        self, problem: Problem, prompt: str, round_: int
    ) -> tuple[tuple[Message, ...], list[str]]:
        if round_ == 1:
            return render(self.template, prompt, []), []
        target = self.target_tokens(problem, round_)
        assert target is not None
        words = filler_words(self.sources[problem.id], target * 2)

        def texts(count: int) -> list[str]:
            return [" ".join(chunk) for chunk in split_evenly(words[:count], round_ - 1)]

        def fill(count: int) -> tuple[Message, ...]:
            return render(self.template, prompt, [Attempt(t) for t in texts(count)])

        low, high = 0, len(words)  # largest word count whose prompt fits the target
        while low < high:
            middle = (low + high + 1) // 2
            if self.count_tokens(fill(middle)) <= target:
                low = middle
            else:
                high = middle - 1
        above = min(low + 1, len(words))
        gap = lambda count: abs(self.count_tokens(fill(count)) - target)  # noqa: E731
        best = low if gap(low) <= gap(above) else above
        return fill(best), texts(best)


def filler_words(texts: Sequence[str], at_least: int) -> list[str]:
    """Words of the filler texts, repeated in order until there are `at_least`."""
    words = [w for t in texts for w in t.split()]
    if not words:
        raise SeqparError("the padding source has no text")
    return (words * (at_least // len(words) + 1))[: max(at_least, len(words))]


def split_evenly(words: Sequence[str], parts: int) -> list[Sequence[str]]:
    size, extra = divmod(len(words), parts)
    chunks, start = [], 0
    for index in range(parts):
        end = start + size + (index < extra)
        chunks.append(words[start:end])
        start = end
    return chunks


def filler_sources(
    problem_ids: Sequence[str], texts_by_problem: Mapping[str, Sequence[str]], kind: str, seed: int
) -> dict[str, list[str]]:
    """Filler texts per problem: other problems' solutions (shuffled, seeded) or neutral prose."""
    if kind == "neutral":
        return {p: [NEUTRAL] for p in problem_ids}
    sources = {}
    for problem_id in problem_ids:
        others = [t for other, ts in texts_by_problem.items() if other != problem_id for t in ts]
        if not others:
            raise SeqparError("--filler other needs solutions to at least two problems in --match")
        random.Random(f"{seed}/{problem_id}").shuffle(others)
        sources[problem_id] = others
    return sources


def unmeasured(messages: Sequence[Message]) -> int:
    raise SeqparError("padded-parallel needs a loaded engine to measure its prompts")


def build(config: RunConfig, engine: Engine | None = None) -> PaddedParallelStrategy:
    """Padded parallel sized after the sequential run `--match` on the same problems;
    without an engine, only its shape (for reports)."""
    spec = config.strategy
    assert isinstance(spec, PaddedSpec)
    if engine is None:
        return PaddedParallelStrategy(spec.n, config.template, {}, {}, unmeasured)
    if not spec.match:
        raise SeqparError("--strategy padded-parallel needs --match RUN (a sequential run)")
    reference = RunStore(spec.match)
    manifest = reference.manifest()
    ref_config = RunConfig.from_json(manifest["identity"]["config"])
    if ref_config.strategy.name != "sequential" or ref_config.task.name != config.task.name:
        raise SeqparError(
            f"--match {spec.match} must be a sequential run of task {config.task.name!r}; it "
            f"is a {ref_config.strategy.name} run of {ref_config.task.name!r}"
        )
    if manifest["identity"].get("model_sha256") != engine.describe()["model_sha256"]:
        raise SeqparError(
            f"--match {spec.match} was generated by model {ref_config.model!r}, not "
            f"{config.model!r}; padded lengths are counted in the model's own tokens, so match "
            "a sequential run of the same model"
        )
    rounds = ref_config.n
    if spec.n > rounds:
        raise SeqparError(f"--n {spec.n} exceeds the {rounds} rounds of --match")
    lengths: dict[str, list[int]] = {}
    texts: dict[str, list[str]] = {}
    for sample in reference.samples():
        if sample.chain == 0 and sample.status != "rejected":
            lengths.setdefault(sample.problem_id, [0] * rounds)[sample.round - 1] = (
                sample.prompt_tokens
            )
        if sample.status == "ok":
            texts.setdefault(sample.problem_id, []).append(shown(config.template, sample.text))
    incomplete = [p for p, ls in lengths.items() if 0 in ls[: spec.n]]
    if incomplete or not lengths:
        raise SeqparError(f"--match {spec.match} is incomplete; finish that run first")
    sources = filler_sources(list(lengths), texts, spec.filler, config.sampling.seed)
    return PaddedParallelStrategy(
        spec.n, config.template, lengths, sources, engine.count_prompt_tokens, spec.pad_scale
    )
