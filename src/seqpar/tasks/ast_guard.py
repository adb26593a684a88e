"""`ast.parse` that several threads may call at once, on the CPython versions that need it.

Before 3.11.8 (and in 3.12.0-3.12.1) the AST constructor kept its recursion depth in
interpreter-wide state. A garbage collection inside one thread's parse may run Python code
(finalisers, gc callbacks) and so hand the GIL to another thread, whose parse resets that
depth; the first then fails with "SystemError: AST constructor recursion depth mismatch"
(CPython gh-106905, fixed by gh-113035). Code grading parses model output in worker threads,
and a grading failure would mark a correct sample wrong, so on those versions every caller's
`ast.parse` (which `ast.literal_eval` and sympy's `parse_expr` use too) takes one lock.
"""

from __future__ import annotations

import ast
import functools
import sys
import threading
from typing import Any

AFFECTED = sys.implementation.name == "cpython" and (
    sys.version_info < (3, 11, 8) or (3, 12) <= sys.version_info < (3, 12, 2)
)
LOCK = threading.RLock()
unguarded_parse = ast.parse


@functools.wraps(unguarded_parse)
def guarded_parse(*args: Any, **kwargs: Any) -> ast.AST:
    """`ast.parse`, one thread at a time."""
    with LOCK:
        return unguarded_parse(*args, **kwargs)


def install() -> None:
    """Route `ast.parse` through the lock where this Python has the race."""
    if AFFECTED:
        ast.parse = guarded_parse  # type: ignore[assignment]
