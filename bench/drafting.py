"""What drafting from a chain's own earlier text (prompt lookup) would do to a run's decode time.

    .venv/bin/python bench/drafting.py RUN_DIR [RUN_DIR ...] [--drafts 2 4]

Replays the stored samples of each run (e.g. the runs `bench/seq_vs_par.py` leaves in the
directory it prints) through the engine's schedule, one decode step at a time: every chain
in flight is one row (at most --rows, the engine's CPU default; the others wait for a free
row), a chain's rounds come one after another, and with K drafts a row proposes the K
tokens that followed the last earlier occurrence of its last 3 (else 2, else 1) tokens in
its chain's text so far; the step keeps the drafts that match what the row really
generated, plus one token. A step is priced at what one forward pass of the default model
costs at that many rows, query tokens (1 + the longest draft in the step) and cached tokens
(the widest row's prompt and completion so far, as the engine pads rows to the widest),
measured here with the key/value heads shared across query tokens
(`decode_step.shared_heads_attention`) and interpolated linearly between the measured
shapes (widths outside them priced at the nearest); each shape is timed in three sweeps
over all of them, the least kept. Prompts, sampling and retiring rows are left out: the
estimate is the decode forward passes alone, K = 0 (no drafts) included, and its seconds
are best read as ratios to K = 0 (the machine's speed drifts between the sweep and a run).
"""

from __future__ import annotations

import argparse
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from decode_step import decode_step, evaluate, use_shared_heads

from seqpar.engines.hf import HFEngine
from seqpar.specs import DEFAULT_MODEL
from seqpar.store import RunStore

NGRAMS = (3, 2, 1)
ROWS = (1, 4, 12, 24, 48, 64)
WIDTHS = (200, 800, 1400)
QUERIES = (1, 2, 3, 4, 5)
END = -1  # the end-of-turn token a stopped round generated last

Round = tuple[int, list[int]]  # prompt tokens, generated tokens
Costs = dict[tuple[int, int, int], float]  # (rows, width, queries) -> seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--drafts", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    if not all(0 < k < QUERIES[-1] for k in args.drafts):
        parser.error(f"--drafts: each from 1 to {QUERIES[-1] - 1}")
    if not 1 <= args.rows <= ROWS[-1]:
        parser.error(f"--rows: from 1 to {ROWS[-1]}")
    engine = HFEngine.load(args.model, progress=False)
    use_shared_heads(engine.model)
    costs = measure_costs(engine.model)
    for width in WIDTHS:
        print(f"\nstep cost (ms) over {width} cached tokens, by rows and query tokens per row:\n")
        print("| queries | " + " | ".join(map(str, ROWS)) + " |\n|---:|" + "---:|" * len(ROWS))
        for q in QUERIES:
            cells = " | ".join(f"{costs[rows, width, q] * 1000:.0f}" for rows in ROWS)
            print(f"| {q} | {cells} |")
    print(
        "\n| run | drafts | tokens | steps | tokens per step | longest chain: tokens, steps | "
        "decode passes (s) |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for run in args.runs:
        chains = chain_rounds(run, engine.tokenizer)
        tokens = sum(len(ids) for rounds in chains for _, ids in rounds)
        for drafts in [0, *args.drafts]:
            steps, seconds, longest = replay(chains, drafts, costs, args.rows)
            print(
                f"| {run.name} | {drafts} | {tokens:,} | {steps:,} | {tokens / steps:.2f} | "
                f"{longest[0]:,}, {longest[1]:,} | {seconds:.1f} |",
                flush=True,
            )


def measure_costs(model: torch.nn.Module, passes: int = 3) -> Costs:
    """Seconds of one forward pass for every measured shape: the best of 3 timings in each
    of `passes` sweeps over all shapes, the least over the sweeps (so that a spell of a
    slower machine does not skew one block of shapes)."""
    prompts = {width: evaluate(model, 1, width)[1] for width in WIDTHS}
    costs: Costs = {}
    for _ in range(passes):
        for width, prompt in prompts.items():
            for rows in ROWS:
                for q in QUERIES:
                    seconds = decode_step(model, rows, width, q, prompt)
                    costs[rows, width, q] = min(seconds, costs.get((rows, width, q), seconds))
    return costs


def chain_rounds(run: Path, tokenizer: object) -> list[list[Round]]:
    """Each chain's rounds in order: prompt tokens and the text as token ids."""
    rounds: dict[tuple[str, int], list[tuple[int, Round]]] = defaultdict(list)
    for sample in RunStore(run).samples():
        if sample.status == "ok":
            ids = tokenizer(sample.text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
            ids += [END] if sample.finish_reason == "stop" else []
            if ids:
                key = (sample.problem_id, sample.chain)
                rounds[key].append((sample.round, (sample.prompt_tokens, ids)))
    return [[r for _, r in sorted(chain, key=lambda item: item[0])] for chain in rounds.values()]


class Lookup:
    """A chain's text so far, and where each of its short n-grams last occurred."""

    def __init__(self) -> None:
        self.text: list[int] = []
        self.after: dict[tuple[int, ...], int] = {}

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            # the n-grams ending just before the new token, so the text's own last n-gram
            # is found at its earlier occurrence
            end = len(self.text)
            for n in NGRAMS:
                if end >= n:
                    self.after[tuple(self.text[end - n : end])] = end
            self.text.append(token)

    def draft(self, count: int) -> list[int]:
        for n in NGRAMS:
            start = self.after.get(tuple(self.text[-n:])) if len(self.text) >= n else None
            if start is not None:
                return self.text[start : start + count]
        return []


def replay(
    chains: list[list[Round]], drafts: int, costs: Costs, rows: int
) -> tuple[int, float, tuple[int, int]]:
    """Decode steps, their estimated seconds, and (tokens, steps) of the chain that took
    the most steps, with `drafts` drafted tokens per row and step and at most `rows` chains
    in flight."""
    lookups = [Lookup() for _ in chains]
    place = [(0, 0) for _ in chains]  # (round, tokens of it generated)
    chain_steps = [0] * len(chains)
    steps, seconds = 0, 0.0
    waiting = [c for c, rounds in enumerate(chains) if rounds][::-1]
    active: list[int] = []
    while waiting or active:
        while waiting and len(active) < rows:
            active.append(waiting.pop())
        proposals = {c: lookups[c].draft(drafts) if drafts else [] for c in active}
        queries = 1 + max(len(p) for p in proposals.values())
        width = max(chains[c][place[c][0]][0] + place[c][1] for c in active)
        seconds += step_cost(costs, len(active), width, queries)
        steps += 1
        for c in active:
            round_, done = place[c]
            target = chains[c][round_][1]
            accepted = 0
            for drafted, real in zip(proposals[c], target[done:], strict=False):
                if drafted != real:
                    break
                accepted += 1
            taken = target[done : done + accepted + 1]
            lookups[c].extend(taken)
            chain_steps[c] += 1
            done += len(taken)
            place[c] = (round_ + 1, 0) if done >= len(target) else (round_, done)
        active = [c for c in active if place[c][0] < len(chains[c])]
    slowest = max(range(len(chains)), key=chain_steps.__getitem__)
    return steps, seconds, (sum(len(ids) for _, ids in chains[slowest]), chain_steps[slowest])


def step_cost(costs: Costs, rows: int, width: int, queries: int) -> float:
    """The measured cost of a step, linear in rows and in width between measured shapes."""
    width = min(max(width, WIDTHS[0]), WIDTHS[-1])
    (low_rows, high_rows), (low_width, high_width) = bracket(ROWS, rows), bracket(WIDTHS, width)

    def at(w: int) -> float:
        return between(
            rows, low_rows, high_rows, costs[low_rows, w, queries], costs[high_rows, w, queries]
        )

    return between(width, low_width, high_width, at(low_width), at(high_width))


def bracket(points: Sequence[int], x: int) -> tuple[int, int]:
    """The two neighbouring points around `x` (the outermost two beyond the ends)."""
    i = min(max(bisect_left(points, x), 1), len(points) - 1)
    return points[i - 1], points[i]


def between(x: float, x0: float, x1: float, y0: float, y1: float) -> float:
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
