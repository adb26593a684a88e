"""Two threads parsing at once: the race CPython < 3.11.8 has in its AST constructor, forced
deterministically at a garbage collection inside a parse, fails an unguarded parse; a
guarded parse runs no collection, so the race has nowhere to start."""

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
Parse = Callable[[str], ast.AST]


def parse_racing(parse: Parse, at: int) -> tuple[int, list[BaseException]]:
    """Parse SOURCE here with a collection at every allocation; at the `at`-th collection
    inside `ast.parse` itself, start a second thread's parse and wait until that one has
    finished. How many collections ran inside, and what either parse raised (this thread's
    first)."""
    here = threading.get_ident()
    errors: list[BaseException] = []

    def other_parse() -> None:
        try:
            parse("other = [1, [2, [3]]]\n")
        except BaseException as error:
            errors.append(error)

    other = threading.Thread(target=other_parse)
    seen = 0

    def on_collect(phase: str, info: dict) -> None:
        nonlocal seen
        inside_parse = sys._getframe(1).f_code is ast_guard.unguarded_parse.__code__
        if phase == "start" and threading.get_ident() == here and inside_parse:
            seen += 1
            if seen == at:
                other.start()
                while other.is_alive():
                    time.sleep(0.001)  # hands the GIL over until the other parse is done

    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(1)
    gc.callbacks.append(on_collect)
    try:
        parse(SOURCE)
    except BaseException as error:
        errors.insert(0, error)
    finally:
        gc.callbacks.remove(on_collect)
        gc.set_threshold(*thresholds)
    if other.ident is None:
        other.start()
    other.join()
    return seen, errors


def test_the_guard_is_installed_exactly_where_the_race_exists():
    assert (ast.parse is ast_guard.guarded_parse) == ast_guard.AFFECTED
    assert ast.parse("x = 1").body


def test_a_collection_inside_a_parse_breaks_it_unless_guarded():
    collections, _ = parse_racing(ast_guard.unguarded_parse, at=0)
    if sys.version_info >= (3, 12):  # collections run only between bytecodes: no race
        assert collections == 0
        return
    assert collections > 10
    seen, errors = parse_racing(ast_guard.unguarded_parse, at=collections // 2)
    assert seen > collections // 2  # the other parse ran inside this one
    if ast_guard.AFFECTED:  # the control fails
        assert len(errors) == 1 and isinstance(errors[0], SystemError)
        assert "recursion depth mismatch" in str(errors[0])
    else:
        assert errors == []
    assert parse_racing(ast_guard.guarded_parse, at=collections // 2) == (0, [])
    assert gc.isenabled()


def test_the_pause_counts_overlapping_parses_and_restores_the_collector():
    pause = ast_guard.CollectorPause()
    with pause:
        with pause:
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer one is still inside
    assert gc.isenabled()
    gc.disable()
    try:
        with pause:
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


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
