"""What drafting from a chain's own earlier text (prompt lookup) would do to a run's decode time.

    .venv/bin/python bench/drafting.py RUN_DIR [RUN_DIR ...] [--drafts 2 4]

Replays the stored samples of each run (e.g. the runs `bench/seq_vs_par.py` leaves in its
temporary directory) through the engine's schedule, one decode step at a time: every chain
in flight is one row (at most --rows, as the engine's CPU default; the others wait for a
free row), a chain's rounds come one after another, and with K drafts a row
proposes the K tokens that followed the last earlier occurrence of its last 3 (else 2, else
1) tokens in its chain's text so far; the step keeps the drafts that match what the row
really generated, plus one token. A step costs what one forward pass of the default model
costs at that many rows and query tokens (1 + the longest draft in the step), measured here
with the key/value heads shared across query tokens (`decode_step.shared_heads_attention`)
and interpolated in rows. Prompts, sampling and retiring rows are left out: the estimate is
the decode forward passes alone, with K = 0 (no drafts) as the check against measured runs.
"""

from __future__ import annotations

import argparse
from bisect import bisect_left
from collections import defaultdict
from pathlib import Path

import torch
from decode_step import decode_step, use_shared_heads

from seqpar.engines.hf import HFEngine
from seqpar.specs import DEFAULT_MODEL
from seqpar.store import RunStore

NGRAMS = (3, 2, 1)
ROWS = (1, 4, 12, 24, 48)
QUERIES = (1, 2, 3, 5)
WIDTH = 700
END = -1  # the end-of-turn token a stopped round generated last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--drafts", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    if max(args.drafts) + 1 > max(QUERIES):
        parser.error(f"--drafts at most {max(QUERIES) - 1}")
    engine = HFEngine.load(args.model, progress=False)
    use_shared_heads(engine.model)
    costs = {(rows, q): decode_step(engine.model, rows, WIDTH, q) for rows in ROWS for q in QUERIES}
    print("step cost (ms) by rows (columns) and query tokens per row, over 700 cached tokens:\n")
    print("| queries | " + " | ".join(map(str, ROWS)) + " |\n|---:|" + "---:|" * len(ROWS))
    for q in QUERIES:
        print(f"| {q} | " + " | ".join(f"{costs[rows, q] * 1000:.0f}" for rows in ROWS) + " |")
    print(
        "\n| run | drafts | tokens | steps | tokens per step | longest chain: tokens, steps | "
        "decode passes (s) |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for run in args.runs:
        chains = chain_tokens(run, engine.tokenizer)
        for drafts in [0, *args.drafts]:
            steps, seconds, longest = replay(chains, drafts, costs, args.rows)
            tokens = sum(len(t) for rounds in chains for t in rounds)
            print(
                f"| {run.name} | {drafts} | {tokens:,} | {steps:,} | {tokens / steps:.2f} | "
                f"{longest[0]:,}, {longest[1]:,} | {seconds:.1f} |",
                flush=True,
            )


def chain_tokens(run: Path, tokenizer: object) -> list[list[list[int]]]:
    """Each chain's rounds in order, each round's text as token ids."""
    rounds: dict[tuple[str, int], list[tuple[int, list[int]]]] = defaultdict(list)
    for sample in RunStore(run).samples():
        if sample.status == "ok":
            ids = tokenizer(sample.text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
            end = [END] if sample.finish_reason == "stop" else []
            rounds[sample.problem_id, sample.chain].append((sample.round, ids + end))
    return [[ids for _, ids in sorted(chain)] for chain in rounds.values()]


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
    chains: list[list[list[int]]], drafts: int, costs: dict[tuple[int, int], float], rows: int
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
        seconds += step_cost(costs, len(active), queries)
        steps += 1
        for c in active:
            round_, done = place[c]
            target = chains[c][round_]
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
    return steps, seconds, (sum(map(len, chains[slowest])), chain_steps[slowest])


def step_cost(costs: dict[tuple[int, int], float], rows: int, queries: int) -> float:
    """Measured cost at `queries`, linear in rows between the measured row counts."""
    i = min(max(bisect_left(ROWS, rows), 1), len(ROWS) - 1)
    low, high = ROWS[i - 1], ROWS[i]
    slope = (costs[high, queries] - costs[low, queries]) / (high - low)
    return costs[low, queries] + slope * (rows - low)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
