"""The drafting estimate of docs/benchmarks.md (bench/drafting.py): its lookup and its replay
of a run's schedule, on hand-made chains."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from drafting import END, ROWS, Lookup, replay

# linear in rows and query tokens, so interpolation between measured rows is exact
COSTS = {(rows, q): 0.01 * q + 0.001 * rows for rows in ROWS for q in (1, 2, 3, 5)}


def test_lookup_drafts_what_followed_the_last_earlier_match():
    lookup = Lookup()
    lookup.extend([1, 2, 3, 1, 2])
    # (3, 1, 2) never came before; (1, 2) did, followed by 3, 1
    assert lookup.draft(2) == [3, 1]
    lookup.extend([9])
    assert lookup.draft(2) == []  # 9 is new
    lookup.extend([1, 2])
    # (9, 1, 2) is new; the last earlier (1, 2) is the one followed by 9, 1
    assert lookup.draft(3) == [9, 1, 2]


def test_replay_counts_steps_and_prices_them():
    chain = [[5, 6, 7, END], [5, 6, 7, END]]
    steps, seconds, longest = replay([chain], 0, COSTS, rows=64)
    assert (steps, longest) == (8, (8, 8))
    assert seconds == pytest.approx(8 * 0.011)
    # round 2: 5 is drafted from nothing, then 6, 7 are drafted from round 1 and END follows
    steps, seconds, longest = replay([chain], 2, COSTS, rows=64)
    assert (steps, longest) == (6, (8, 6))
    assert seconds == pytest.approx(5 * 0.011 + 0.031)


def test_replay_waits_for_a_free_row():
    chains = [[[1, END]], [[2, END]]]
    assert replay(chains, 0, COSTS, rows=2)[:1] == (2,)
    steps, seconds, _ = replay(chains, 0, COSTS, rows=1)
    assert steps == 4
    assert seconds == pytest.approx(4 * 0.011)
