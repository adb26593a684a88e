"""Two threads parsing at once: the race CPython < 3.11.8 has in its AST constructor, forced
deterministically, fails an unguarded parse and leaves a guarded one whole."""

from __future__ import annotations

import ast
import gc
import sys
import threading
import time
from collections.abc import Callable

import pytest

import seqpar.tasks  # noqa: F401  (installs the guard)
from seqpar.tasks import ast_guard

SOURCE = "table = [" + ", ".join(f"({i}, [{i}, 'x'])" for i in range(400)) + "]\n"


def collections_during(parse: Callable[[str], ast.AST]) -> int:
    """How many garbage collections this thread runs while parsing SOURCE (gen0 at every
    allocation), the same count each time since the allocations are."""
    count = 0

    def on_collect(phase: str, info: dict) -> None:
        nonlocal count
        count += phase == "start"

    gc.collect()
    gc.callbacks.append(on_collect)
    try:
        parse(SOURCE)
    finally:
        gc.callbacks.remove(on_collect)
    return count


def parse_while_another_thread_parses(parse: Callable[[str], ast.AST]) -> list[BaseException]:
    """Parse SOURCE here; at a garbage collection halfway through the AST's construction,
    start a second thread's parse and wait until it has finished or is waiting on the guard.
    What either parse raised, this thread's first."""
    here = threading.get_ident()
    errors: list[BaseException] = []

    def other_parse() -> None:
        try:
            parse("other = [1, [2, [3]]]\n")
        except BaseException as error:
            errors.append(error)

    other = threading.Thread(target=other_parse)
    seen = 0

    def waiting_on_guard() -> bool:
        frame = sys._current_frames().get(other.ident or -1)
        return frame is not None and frame.f_code is ast_guard.guarded_parse.__code__

    def on_collect(phase: str, info: dict) -> None:
        nonlocal seen
        if phase != "start" or threading.get_ident() != here:
            return
        seen += 1
        if seen == halfway:
            other.start()
            while other.is_alive() and not waiting_on_guard():
                time.sleep(0.001)

    thresholds = gc.get_threshold()
    gc.set_threshold(1)
    try:
        halfway = collections_during(parse) // 2
        assert halfway > 10, "expected many collections while building the AST"
        gc.collect()
        gc.callbacks.append(on_collect)
        try:
            parse(SOURCE)
        except BaseException as error:
            errors.insert(0, error)
        finally:
            gc.callbacks.remove(on_collect)
    finally:
        gc.set_threshold(*thresholds)
    assert other.ident is not None, "the second parse never started"
    other.join()
    return errors


def test_the_guard_is_installed_exactly_where_the_race_exists():
    assert (ast.parse is ast_guard.guarded_parse) == ast_guard.AFFECTED
    assert ast.parse("x = 1").body  # whichever it is, it parses


def test_a_guarded_parse_survives_another_thread_parsing_mid_construction():
    assert parse_while_another_thread_parses(ast_guard.guarded_parse) == []


def test_the_unguarded_control_fails_where_the_race_exists():
    errors = parse_while_another_thread_parses(ast_guard.unguarded_parse)
    if ast_guard.AFFECTED:
        assert len(errors) == 1 and isinstance(errors[0], SystemError)
        assert "recursion depth mismatch" in str(errors[0])
    else:
        assert errors == []


def test_code_grading_parses_through_the_guard(monkeypatch: pytest.MonkeyPatch):
    from seqpar.tasks.code import assemble

    parsed: list[str] = []

    def recording_parse(source: str, *args: object, **kwargs: object) -> ast.AST:
        parsed.append(source)
        return ast.Module([], [])

    monkeypatch.setattr(ast_guard, "unguarded_parse", recording_parse)
    monkeypatch.setattr(ast_guard, "AFFECTED", True)
    monkeypatch.setattr(ast, "parse", ast.parse)  # restored after the test
    ast_guard.install()
    assemble("def f():\n", "    return 1\n", "f")
    assert parsed == ["    return 1\n"]
