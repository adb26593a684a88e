"""Where sequential rounds look and what they copy: spans of a stored sample's prompt,
teacher-forced attention shares per head, and n-gram copy rates."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqpar.analysis.induction import (
    copied_ngrams,
    copy_rate,
    induction_score,
    induction_targets,
    layer_head_scores,
    share_copied,
    span_mass,
)
from seqpar.rundata import RunData
from seqpar.strategies import Strategy
from seqpar.strategies.padded import PaddedParallelStrategy
from seqpar.strategies.sequential import shown
from seqpar.types import Attempt, Message, Problem, Sample


@dataclass(frozen=True)
class Layout:
    """A prompt (+ optional completion) as token ids with the positions of its parts."""

    ids: list[int]
    problem: np.ndarray  # positions of the problem statement
    previous: np.ndarray  # positions of the previous solutions (or padded filler)
    completion: np.ndarray  # positions of the teacher-forced completion
    previous_ids: list[int]  # the previous solutions' tokens, concatenated


def rebuild(
    run: RunData, strategy: Strategy, problems: dict[str, Problem], sample: Sample
) -> tuple[tuple[Message, ...], list[str]]:
    """The messages the sample was generated from, and the texts standing as previous
    solutions in them (filler for padded-parallel)."""
    stored = {s.key: s for s in run.samples}
    problem = problems[sample.problem_id]
    reads = strategy.history(sample.chain, sample.round) or []
    previous = [
        Attempt(stored[(problem.id, c, r)].text, stored[(problem.id, c, r)].feedback)
        for c, r in reads
    ]
    prompt = run.task.prompt(problem)
    messages = strategy.messages(problem, prompt, previous, sample.round)
    if isinstance(strategy, PaddedParallelStrategy):
        return messages, strategy.fillers(problem, prompt, sample.round)
    return messages, [shown(run.config.template, a.text) for a in previous]


def layout(
    engine: Any,
    problem_text: str,
    messages: Sequence[Message],
    previous: Sequence[str],
    completion: str = "",
) -> Layout:
    """Tokenize the rendered chat (plus completion) and locate its parts by character span."""
    rendered = engine.render(messages)
    encoded = engine.tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
    starts = np.array([start for start, _ in offsets])

    def positions(spans: list[tuple[int, int]]) -> np.ndarray:
        mask = np.zeros(len(ids), dtype=bool)
        for begin, end in spans:
            mask |= (starts >= begin) & (starts < end)
        return np.flatnonzero(mask)

    begin = rendered.find(problem_text)
    problem_span = [(begin, begin + len(problem_text))] if begin >= 0 else []
    cursor, previous_spans = max(begin, 0) + len(problem_text), []
    for text in previous:
        at = rendered.find(text, cursor)
        if at >= 0 and text:
            previous_spans.append((at, at + len(text)))
            cursor = at + len(text)
    previous_positions = positions(previous_spans)
    completion_ids = (
        engine.tokenizer(completion, add_special_tokens=False)["input_ids"] if completion else []
    )
    return Layout(
        ids=ids + list(completion_ids),
        problem=positions(problem_span),
        previous=previous_positions,
        completion=np.arange(len(ids), len(ids) + len(completion_ids)),
        previous_ids=[ids[i] for i in previous_positions],
    )


def induction_on_previous(model: Any, parts: Layout) -> np.ndarray:
    """Per (layer, head): attention from tokens of the previous solutions to the token after
    an earlier occurrence of the same token inside them."""
    inside = np.zeros(len(parts.ids), dtype=bool)
    inside[parts.previous] = True
    pairs = induction_targets(parts.ids, queries=inside, keys=inside)
    return layer_head_scores(model, parts.ids, lambda attention: induction_score(attention, pairs))


def attention_shares(model: Any, parts: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Per (layer, head): mean attention from completion tokens into previous solutions, and
    into the problem statement."""
    queries = parts.completion.tolist()
    shares: list[np.ndarray] = []

    def both(attention: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                span_mass(attention, queries, parts.previous),
                span_mass(attention, queries, parts.problem),
            ]
        )

    scores = layer_head_scores(model, parts.ids, both)  # (layers, 2, heads)
    shares = [scores[:, 0, :], scores[:, 1, :]]
    return shares[0], shares[1]


def copy_rates(parts: Layout, ns: Sequence[int]) -> dict[int, float]:
    completion = [parts.ids[i] for i in parts.completion]
    return {n: copy_rate(completion, parts.previous_ids, n) for n in ns}


WORD = re.compile(r"\w+|[^\w\s]")


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """Model-free tokens of `text` (words and single punctuation marks) with their
    character spans: a cheap stand-in for a tokenizer when none is loaded."""
    return [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]


@dataclass(frozen=True)
class Copied:
    """Where a text repeats n-grams of earlier texts: merged character spans and the share
    of its n-grams found in them (`copy_rate`; nan when the text has fewer than n tokens)."""

    spans: tuple[tuple[int, int], ...]
    rate: float


def copied_spans(text: str, sources: Sequence[str], n: int) -> Copied:
    """The copy analysis' n-gram matching on word tokens: the spans of `text` covered by an
    n-gram that also occurs in the concatenated `sources`, with the copy rate."""
    tokens = word_spans(text)
    words = [word for word, _, _ in tokens]
    source = [word for earlier in sources for word, _, _ in word_spans(earlier)]
    copied = copied_ngrams(words, source, n)
    runs: list[list[int]] = []  # [first, last] token of overlapping copied n-grams
    for start, hit in enumerate(copied):
        if hit and runs and start <= runs[-1][1]:
            runs[-1][1] = start + n - 1
        elif hit:
            runs.append([start, start + n - 1])
    spans = tuple((tokens[first][1], tokens[last][2]) for first, last in runs)
    return Copied(spans, share_copied(copied))
