"""seqpar's math grading against math-verify, the reference grader: every MATH-500 and GSM8K
gold against itself and against near-miss mutants must get math-verify's verdict, except the
deliberate differences that docs/concepts.md ("Grading: math answers") names.

By default every gold meets itself and cheap mutants (dropped or added digit, joined tuple, off
by one, decimal comma, `n,5`, `n.0`, thousands separators): all of them on MATH-500, three in
rotation on GSM8K; a letter appended to the gold (`x`, `i`, `k`, which makes math-verify
simplify symbolically, about 15 ms a pair) is tried on a deterministic sample.
`SEQPAR_MATH_ORACLE=all` tries every mutant of every gold (about 100 s of CPU).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from math_verify import parse, verify

from seqpar.tasks.math import as_number, equivalent

VARIABLES = ("x", "i", "k")
# One gold in STRIDE gets a variable appended (cycling through VARIABLES) unless the env asks
# for all; golds with fewer than two cheap mutants always get them.
STRIDE = {"math500": 5, "gsm8k": 13}
CHEAP_PER_GOLD = {"gsm8k": 3}

# The deliberate differences on these pairs: (gold, candidate) -> seqpar's verdict (math-verify
# says the opposite). Plain decimals are compared exactly; math-verify rounds both to 6 places.
DELIBERATE = {
    (".0000672", ".000067"): False,
    (".0000672", ".00006723"): False,
}
# How many pairs the default selection holds (guards against the sample silently shrinking).
EXPECTED_PAIRS = {"math500": 2795, "gsm8k": 5378}


def golds(data_dir: Path) -> dict[str, list[str]]:
    """The reference answers: MATH-500 `answer`, GSM8K `final`."""

    def column(file: str, field: str) -> list[str]:
        lines = (data_dir / file).read_text(encoding="utf-8").splitlines()
        return [json.loads(line)[field] for line in lines if line.strip()]

    return {
        "math500": column("math500.jsonl", "answer"),
        "gsm8k": column("gsm8k_test.jsonl", "final"),
    }


def cheap_mutants(gold: str) -> dict[str, str]:
    """Near misses (and a few equal rewritings) of a gold, by kind; none appends a letter."""
    out: dict[str, str] = {}
    digits = [match.start() for match in re.finditer(r"[0-9]", gold)]
    if digits and len(gold) > 1:
        out["drop a digit"] = gold[: digits[-1]] + gold[digits[-1] + 1 :]
    if digits:
        out["add a digit"] = gold[: digits[-1] + 1] + "3" + gold[digits[-1] + 1 :]
    if "," in gold:
        out["join a tuple"] = re.sub(r",\s*", "", gold)
    value = as_number(gold)
    if value is not None and value.denominator == 1:
        n = int(value)
        out["off by +1"], out["off by -1"] = str(n + 1), str(n - 1)
        out["integer, comma, digit"], out["integer.0"] = f"{n},5", f"{n}.0"
        if abs(n) >= 1000:
            out["thousands separators"] = f"{n:,}"
    elif value is not None and "." in gold:
        out["decimal comma"] = gold.replace(".", ",")
    return {kind: text for kind, text in out.items() if text != gold}


def mutants(gold: str, index: int, benchmark: str, every: bool) -> dict[str, str]:
    """The mutants tried for one gold: its cheap ones (on GSM8K, whose golds all look alike,
    CHEAP_PER_GOLD of them in rotation) plus appended variables (all of them, or one for every
    STRIDE-th gold and for golds with under two cheap mutants)."""
    out = cheap_mutants(gold)
    take = CHEAP_PER_GOLD.get(benchmark)
    if not every and take is not None and len(out) > take:
        kinds = sorted(out)
        chosen = {kinds[(index + j) % len(kinds)] for j in range(take)}
        out = {kind: text for kind, text in out.items() if kind in chosen}
    if every or len(out) < 2:
        variables = VARIABLES
    elif index % STRIDE[benchmark] == 0:
        variables = (VARIABLES[index // STRIDE[benchmark] % len(VARIABLES)],)
    else:
        variables = ()
    out.update({f"append {v}": gold + v for v in variables})
    return out


@cache
def parsed(answer: str) -> list[Any]:
    """math-verify's parse of an answer, boxed as seqpar's compare() boxes it."""
    return parse(f"\\boxed{{{answer}}}")


def math_verify_accepts(gold: str, candidate: str) -> bool:
    """The oracle: math-verify's verdict on a gold and a candidate."""
    expected, given = parsed(gold), parsed(candidate)
    return bool(expected and given and verify(expected, given))


def test_seqpar_agrees_with_math_verify_on_every_gold_and_its_near_misses(data_dir):
    every = os.environ.get("SEQPAR_MATH_ORACLE") == "all"
    disagreements: dict[tuple[str, str], bool] = {}
    figures = []
    for benchmark, answers in golds(data_dir).items():
        pairs = [(gold, gold, "itself") for gold in answers] + [
            (gold, text, kind)
            for index, gold in enumerate(answers)
            for kind, text in mutants(gold, index, benchmark, every).items()
        ]
        if not every:
            assert len(pairs) == EXPECTED_PAIRS[benchmark]
        accepted: Counter[str] = Counter()
        agree = 0
        for gold, candidate, kind in pairs:
            ours = equivalent(gold, candidate)
            accepted[kind] += ours
            if ours == math_verify_accepts(gold, candidate):
                agree += 1
            else:
                disagreements[(gold, candidate)] = ours
        figures.append(f"{benchmark}: {len(pairs)} pairs, agree on {agree}")
        assert accepted["itself"] == len(answers)
    print("; ".join(figures) + f"; differences {disagreements}")
    assert disagreements == DELIBERATE


def test_the_number_fast_path_never_takes_a_gold_with_a_letter_appended(data_dir):
    # The old fast path dropped trailing letters: `2k` = `2`, `3x` = `3`. Now any letter sends
    # the answer to math-verify, for every gold of both benchmarks.
    for answers in golds(data_dir).values():
        for gold in answers:
            assert all(as_number(gold + v) is None for v in (*VARIABLES, "e", "n"))
