"""Test cases for model-written code and the harness that runs them in the sandbox.

Three kinds of test:

- `assert`: a Python statement run with the solution's names and `candidate` (the entry
  point) bound, e.g. HumanEval's checks. `assert L == R` is split so failures report the
  actual value of L and the expected value of R.
- `functional`: call the entry point (or `Solution().<name>` for LeetCode-style starter
  code) with JSON arguments, one per input line, and compare with the JSON output.
- `stdin`: run the whole program with the input on stdin and compare stdout line by line
  (whitespace at line ends ignored).

Verdict guarantees of the in-process harness (on top of the sandbox's): a solution that
exits or crashes while loading fails every test; one that exits during the tests fails the
tests not yet reported; builtins the solution replaces are restored before every test and
after every call; values returned by the solution must be plain built-in data (so an object
whose `__eq__` always answers True fails); results are only accepted on lines carrying a
random per-run token. A solution that searches the harness's frames or memory for that
token can still forge results: grades are measurements, not a security boundary.
"""

from __future__ import annotations

import ast
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from seqpar.sandbox import Execution, Job, Limits, run_many
from seqpar.types import TestResult

TAIL_CHARS = 600
SHOWN_CHARS = 300


@dataclass(frozen=True)
class TestCase:
    """One test of a solution; see the module docstring for the kinds."""

    kind: str  # "assert" | "functional" | "stdin"
    input: str
    expected: str = ""
    setup: bool = False  # an `assert`-kind statement that only prepares later tests

    def __post_init__(self) -> None:
        if self.kind not in ("assert", "functional", "stdin"):
            raise ValueError(f"unknown test kind {self.kind!r}; known: assert, functional, stdin")


HARNESS = r"""
import builtins as _builtins, io as _io, json as _json, os as _os, sys as _sys
import traceback as _traceback


def _main(token, solution, entry, method, tests):
    plain = (int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set, frozenset)
    saved = dict(_builtins.__dict__)
    write, dumps, type_, repr_, len_ = _os.write, _json.dumps, type, repr, len

    def emit(record):
        write(1, (token + " " + dumps(record) + "\n").encode())

    def restore():
        _builtins.__dict__.clear()
        _builtins.__dict__.update(saved)

    def check_plain(value):
        kind = type_(value)
        if kind not in plain:
            raise TypeError("returned a " + kind.__name__ + ", not plain built-in data")
        if kind in (list, tuple, set, frozenset):
            for item in value:
                check_plain(item)
        elif kind is dict:
            for key, item in value.items():
                check_plain(key)
                check_plain(item)

    def failure(error):
        lines = _traceback.format_exception(type_(error), error, error.__traceback__)
        return "".join(lines)[-%(tail)d:]

    def shown(value):
        text = repr_(value)
        return text if len_(text) <= %(shown)d else text[:%(shown)d] + "…"

    namespace = {"__name__": "__main__"}
    captured = _io.StringIO()
    real_stdout = _sys.stdout
    _sys.stdout = captured
    try:
        exec(compile(solution, "solution.py", "exec"), namespace)
    except BaseException as error:  # SystemExit too: exiting before the tests is a failure
        restore()
        _sys.stdout = real_stdout
        emit({"load_error": failure(error)})
        return
    restore()
    target = namespace.get(entry)
    if method is not None and target is not None:
        try:
            target = getattr(target(), method)
        except BaseException as error:
            target = None
    if target is None:
        _sys.stdout = real_stdout
        emit({"load_error": "the solution defines no " + repr_(method or entry)})
        return

    def candidate(*args, **kwargs):
        try:
            result = target(*args, **kwargs)
        finally:
            restore()
        check_plain(result)
        return result

    scope = dict(namespace)
    scope["candidate"] = candidate
    scope[entry] = candidate
    for index, (kind, source, expected, setup) in enumerate(tests):
        record = {"index": index, "passed": False}
        try:
            restore()
            if kind == "functional":
                args = [_json.loads(line) for line in source.splitlines() if line.strip()]
                actual = candidate(*args)
                record["actual"] = shown(actual)
                record["passed"] = _json.loads(dumps(actual)) == _json.loads(expected)
            elif expected:
                actual = eval(source, scope)
                wanted = eval(expected, scope)
                record["actual"] = shown(actual)
                record["passed"] = bool(type_(actual) in plain and actual == wanted)
            else:
                exec(source, scope)
                record["passed"] = True
        except BaseException as error:
            record["error"] = failure(error)
        if not setup:
            emit(record)
    _sys.stdout = real_stdout
    emit({"done": True})


_main(%(args)s)
"""


def split_assert(statement: str) -> tuple[str, str]:
    """(left, right) sources of `assert left == right`, else (statement, "")."""
    tree = ast.parse(statement)
    node = tree.body[0] if len(tree.body) == 1 else None
    if (
        isinstance(node, ast.Assert)
        and isinstance(node.test, ast.Compare)
        and len(node.test.ops) == 1
        and isinstance(node.test.ops[0], ast.Eq)
    ):
        return ast.unparse(node.test.left), ast.unparse(node.test.comparators[0])
    return statement, ""


def harness(
    solution: str, entry: str, method: str | None, tests: Sequence[TestCase], token: str
) -> str:
    """The program that loads `solution` and runs the in-process tests, one result line each."""
    rows = []
    for test in tests:
        if test.kind == "assert" and not test.expected:
            source, expected = split_assert(test.input)
        else:
            source, expected = test.input, test.expected
        rows.append((test.kind, source, expected, test.setup))
    args = ", ".join(repr(a) for a in (token, solution, entry, method, rows))
    return HARNESS % {"tail": TAIL_CHARS, "shown": SHOWN_CHARS, "args": args}


def parse_results(execution: Execution, tests: Sequence[TestCase], token: str) -> list[TestResult]:
    """Results of the counted (non-setup) tests from the harness output; unreported ones fail."""
    counted = [(i, t) for i, t in enumerate(tests) if not t.setup]
    reported: dict[int, dict] = {}
    load_error = ""
    for line in execution.stdout.splitlines():
        if not line.startswith(token + " "):
            continue
        record = json.loads(line[len(token) + 1 :])
        if "load_error" in record:
            load_error = record["load_error"]
        elif "index" in record:
            reported[record["index"]] = record
    if execution.timed_out:
        missing = "timed out"
    elif execution.output_truncated:
        missing = "output limit exceeded"
    else:
        missing = load_error or (
            "the program stopped before this test ran"
            + (f" (exit code {execution.exit_code})" if execution.exit_code else "")
            + (f"\n{execution.stderr[-TAIL_CHARS:]}" if execution.stderr else "")
        )
    results = []
    for index, test in counted:
        record = reported.get(index)
        if record is None:
            results.append(TestResult(False, test.input, test.expected, "", missing))
        else:
            results.append(
                TestResult(
                    bool(record["passed"]),
                    test.input,
                    test.expected,
                    record.get("actual", ""),
                    record.get("error", ""),
                )
            )
    return results


def same_output(actual: str, expected: str) -> bool:
    """stdin/stdout comparison: equal line by line after stripping line ends and the ends."""
    lines = lambda text: [line.rstrip() for line in text.strip().splitlines()]  # noqa: E731
    return lines(actual) == lines(expected)


def run_tests(
    solution: str,
    entry: str,
    tests: Sequence[TestCase],
    *,
    method: str | None = None,
    limits: Limits | None = None,
    workers: int | None = None,
) -> list[TestResult]:
    """Run every test of `solution` in the sandbox; results in test order (setup ones omitted)."""
    limits = limits or Limits()
    in_process = [t for t in tests if t.kind != "stdin"]
    stdin_tests = [t for t in tests if t.kind == "stdin"]
    token = secrets.token_hex(16)
    jobs = [Job(solution, t.input, limits) for t in stdin_tests]
    if in_process:
        jobs.append(Job(harness(solution, entry, method, in_process, token), "", limits))
    executions = run_many(jobs, workers)
    stdin_results = iter(
        stdin_result(test, execution)
        for test, execution in zip(stdin_tests, executions, strict=False)
    )
    process_results = iter(parse_results(executions[-1], in_process, token) if in_process else [])
    return [
        next(stdin_results) if t.kind == "stdin" else next(process_results)
        for t in tests
        if not t.setup
    ]


def stdin_result(test: TestCase, execution: Execution) -> TestResult:
    passed = execution.ok and same_output(execution.stdout, test.expected)
    if passed:
        error = ""
    elif execution.timed_out:
        error = "timed out"
    elif execution.output_truncated:
        error = "output limit exceeded"
    else:
        error = execution.stderr[-TAIL_CHARS:]
    return TestResult(passed, test.input, test.expected, execution.stdout[:SHOWN_CHARS], error)
