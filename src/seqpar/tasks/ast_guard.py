"""`ast.parse` that several threads may call at once, on the CPython versions that need it.

Before 3.11.8 the AST constructor kept its recursion depth in interpreter-wide state. A
garbage collection inside one thread's parse may run Python code (finalisers, gc callbacks)
and so hand the GIL to another thread, whose parse resets that depth; the first then fails
with "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905, fixed by
gh-113035). Code grading parses model output in worker threads, and a grading failure would
mark a correct sample wrong. So there, while any thread is inside `ast.parse` (which
`ast.literal_eval` and sympy's `parse_expr` call too), automatic collection is off: no
Python code runs inside a parse, so the GIL cannot pass mid-construction. A lock around the
parse would not do: a finaliser parsing in the same thread would still re-enter it, and one
waiting on another thread's lock could deadlock. From 3.12, collections run only between
bytecodes, never inside a parse.
"""

from __future__ import annotations

import ast
import functools
import gc
import sys
import threading
from typing import Any

AFFECTED = sys.implementation.name == "cpython" and sys.version_info < (3, 11, 8)
unguarded_parse = ast.parse


class CollectorPause:
    """Automatic garbage collection off while any thread is inside this block, and back as
    it was when the last one leaves."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # held only to count, never across a parse
        self.inside = 0
        self.was_enabled = False

    def __enter__(self) -> None:
        with self.lock:
            self.inside += 1
            if self.inside == 1:
                self.was_enabled = gc.isenabled()
                gc.disable()

    def __exit__(self, *_: object) -> None:
        with self.lock:
            self.inside -= 1
            if self.inside == 0 and self.was_enabled:
                gc.enable()


PAUSE = CollectorPause()


@functools.wraps(unguarded_parse)
def guarded_parse(*args: Any, **kwargs: Any) -> ast.AST:
    """`ast.parse` with automatic garbage collection paused."""
    with PAUSE:
        return unguarded_parse(*args, **kwargs)


def install() -> None:
    """Route `ast.parse` through the pause where this Python has the race."""
    if AFFECTED:
        ast.parse = guarded_parse  # type: ignore[assignment]
