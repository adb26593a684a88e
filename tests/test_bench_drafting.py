"""The drafting estimate of docs/benchmarks.md (bench/drafting.py): its lookup, its replay of
a run's schedule on hand-made chains, and its pricing between measured shapes."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from drafting import END, QUERIES, ROWS, WIDTHS, Lookup, replay, step_cost

# linear in rows, width and query tokens, so pricing between measured shapes is exact
COSTS = {
    (rows, width, q): 0.01 * q + 0.001 * rows + 0.00001 * width
    for rows in ROWS
    for width in WIDTHS
    for q in QUERIES
}


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
    chain = [(300, [5, 6, 7, END]), (500, [5, 6, 7, END])]
    steps, seconds, longest = replay([chain], 0, COSTS, rows=64)
    assert (steps, longest) == (8, (8, 8))
    widths = [300, 301, 302, 303, 500, 501, 502, 503]
    assert seconds == pytest.approx(sum(0.011 + 0.00001 * w for w in widths))
    # round 2: 5 is drafted from nothing, then 6, 7 are drafted from round 1 and END follows
    steps, seconds, longest = replay([chain], 2, COSTS, rows=64)
    assert (steps, longest) == (6, (8, 6))
    widths = [300, 301, 302, 303, 500]
    assert seconds == pytest.approx(sum(0.011 + 0.00001 * w for w in widths) + 0.031 + 0.00501)


def test_replay_waits_for_a_free_row():
    chains = [[(200, [1, END])], [(200, [2, END])]]
    assert replay(chains, 0, COSTS, rows=2)[0] == 2
    steps, seconds, _ = replay(chains, 0, COSTS, rows=1)
    assert steps == 4
    assert seconds == pytest.approx(2 * (0.011 + 0.002) + 2 * (0.011 + 0.00201))


def test_step_cost_prices_the_widest_row_within_the_measured_widths():
    assert step_cost(COSTS, 30, 1000, 4) == pytest.approx(0.04 + 0.03 + 0.01)
    assert step_cost(COSTS, 30, 50, 4) == step_cost(COSTS, 30, WIDTHS[0], 4)
    assert step_cost(COSTS, 30, 5000, 4) == step_cost(COSTS, 30, WIDTHS[-1], 4)
