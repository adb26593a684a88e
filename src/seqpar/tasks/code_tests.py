"""Test cases for model-written code, and the trusted judge that runs them.

Three kinds of test:

- `assert`: a statement of the task's own test code (HumanEval's `check`), run in *this*
  (trusted) process with `candidate` and the entry point's name bound to a proxy: each call
  sends its arguments to the solution loaded in the sandbox and returns the plain data it
  returned (a `sandbox.Session`). `assert L == R` is split so failures report L and R.
- `functional`: call the entry point (or `Solution().<name>` for LeetCode-style starter
  code) with JSON arguments, one per input line, and compare with the JSON output as
  LiveCodeBench does (a returned tuple counts as a list at the top level only).
- `stdin`: run the whole program as `__main__` with the input on its stdin (fd 0, so
  `input()`, `sys.stdin.buffer` and `open(0)` all read it) and compare what it printed to
  `sys.stdout` here, as LiveCodeBench's evaluator does (`same_output`). Like that
  evaluator, the program is loaded once per solution and run once per test in a fresh
  namespace, and `sys.exit()` with any code ends a run normally.

The verdict is computed here, never in the sandbox: the solution can change only what its
own calls return and what it prints. The trusted `context` (HumanEval's prompt, with helpers
such as `poly` that `check` uses) and setup statements run here too, so a solution cannot
redefine what the tests call. The tests see a private `random` module seeded with 0 for
every solution, so randomised checks (HumanEval/32, /38, /50) give every solution the same
inputs: behaviour digests of two solutions are comparable.

Each test has its own time budget (`Limits.timeout_s`). A solution that fails to load fails
every test with the reason; one whose process ends during a test (it exited, crashed, was
killed at its memory limit, or broke the reply protocol) fails that test and is started
afresh for the next; after a test times out, the remaining call tests fail without running.
Each result carries `behaviour`: a digest of what the solution returned or raised (stdin
tests: what it printed and how it ended), never of the expected output, so answer classes
for voting can be built from any test's inputs.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import random
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from seqpar import _sandbox_runner as runner
from seqpar.sandbox import INT_DIGITS, STARTUP_S, CallFailed, Limits, Session, SessionEnded
from seqpar.types import TestResult

SHOWN_CHARS = 300
TIMED_OUT = "timed out"
NOT_RUN_AFTER_TIMEOUT = "not run: an earlier test timed out"

# Expected outputs and returned values may be long integers (LiveCodeBench's evaluator
# allows 50,000 digits); Python's default of 4,300 would make them fail to parse here.
if 0 < sys.get_int_max_str_digits() < INT_DIGITS:
    sys.set_int_max_str_digits(INT_DIGITS)


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


def behaviour_digest(events: Sequence[Any]) -> str:
    """A short digest of what a solution did during one test."""
    return hashlib.sha256(json.dumps(events, sort_keys=True).encode()).hexdigest()[:16]


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def seeded_random() -> types.ModuleType:
    """A private copy of the `random` module whose functions draw from Random(0)."""
    module = types.ModuleType("random")
    module.__dict__.update(vars(random))
    generator = random.Random(0)
    for name, value in vars(random).items():
        if getattr(value, "__self__", None) is random._inst:  # type: ignore[attr-defined]
            setattr(module, name, getattr(generator, name))
    return module


class Judge:
    """Runs the tests of one solution through a sandbox session: `assert` and `functional`
    tests call `entry`; with `entry` None, `stdin` tests run the whole program."""

    def __init__(
        self,
        solution: str,
        entry: str | None,
        method: str | None,
        limits: Limits,
        context: str,
        requests: int,
    ) -> None:
        self.solution, self.entry, self.method, self.limits = solution, entry, method, limits
        self.requests = requests
        self.session: Session | None = None
        self.stopped = ""  # why the remaining tests are not run
        self.events: list[Any] = []
        self.deadline = 0.0
        private = {"random": seeded_random()}
        real_import = builtins.__import__

        def tests_import(name: str, *args: Any, **kwargs: Any) -> Any:
            return private[name] if name in private else real_import(name, *args, **kwargs)

        self.scope: dict[str, Any] = {
            "__name__": "__tests__",
            "__builtins__": {**vars(builtins), "__import__": tests_import},
        }
        exec(compile(context, "context.py", "exec"), self.scope)
        self.scope["candidate"] = self.scope[entry or "candidate"] = self.candidate

    def note(self, ended: SessionEnded) -> None:
        """Record how the session ended; after a timeout no further test runs."""
        self.events.append(["ended", last_line(str(ended).split("\n")[0])])
        if ended.timed_out:
            self.stopped = NOT_RUN_AFTER_TIMEOUT

    def candidate(self, *args: Any, **kwargs: Any) -> Any:
        """The proxy the tests call: forwards the call to the sandboxed solution."""
        if kwargs:
            raise TypeError("the judge forwards positional arguments only")
        session = self.ensure_session()
        try:
            value = session.call(args, self.deadline)
        except SessionEnded as ended:
            self.note(ended)
            raise
        except CallFailed as error:
            self.events.append(["raised", last_line(str(error))])
            raise
        self.events.append(["returned", runner.encode(value)])
        return value

    def ensure_session(self) -> Session:
        if self.session is not None and self.session.alive:
            return self.session
        if self.stopped:
            raise SessionEnded(self.stopped)
        self.close()
        self.session = Session(self.solution, self.entry, self.method, self.limits, self.requests)
        try:
            self.session.load(time.monotonic() + self.limits.timeout_s + STARTUP_S)
        except SessionEnded as ended:
            # A solution that cannot load will not load for the next test either.
            self.stopped = str(ended) if not ended.timed_out else f"{TIMED_OUT} while loading"
            raise SessionEnded(self.stopped, ended.timed_out) from None
        # Loading had its own budget: the test that needed it still gets its whole one.
        self.deadline = max(self.deadline, time.monotonic() + self.limits.timeout_s)
        return self.session

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def run(self, tests: Sequence[TestCase]) -> list[TestResult]:
        """Results of the counted (non-setup) tests, in order."""
        results = []
        try:
            for test in tests:
                result = self.run_one(test)
                if not test.setup:
                    results.append(result)
        finally:
            self.close()
        return results

    def run_stdin(self, test: TestCase) -> tuple[bool, str, str]:
        """(passed, shown output, error) of one stdin test."""
        limit = max(self.limits.output_bytes, 2 * len(test.expected) + 1024)
        try:
            stdout, truncated, raised = self.ensure_session().feed(test.input, self.deadline, limit)
        except SessionEnded as ended:
            self.note(ended)
            raise
        self.events.append([stdout, last_line(raised)])
        error = "output limit exceeded" if truncated else raised
        return not error and same_output(stdout, test.expected), stdout[:SHOWN_CHARS], error

    def run_one(self, test: TestCase) -> TestResult:
        if self.stopped:
            return TestResult(False, test.input, test.expected, "", self.stopped)
        self.events = []
        self.deadline = time.monotonic() + self.limits.timeout_s
        passed, actual, error = False, "", ""
        try:
            if test.kind == "stdin":
                passed, actual, error = self.run_stdin(test)
            elif test.kind == "functional":
                args = [json.loads(line) for line in test.input.splitlines() if line.strip()]
                value = self.candidate(*args)
                actual = shown(value)
                # As LiveCodeBench: a returned tuple counts as a list (only at the top).
                passed = (list(value) if type(value) is tuple else value) == json.loads(
                    test.expected
                )
            else:
                source, expected = (
                    (test.input, test.expected) if test.expected else split_assert(test.input)
                )
                if expected:
                    value = eval(source, self.scope)
                    actual = shown(value)
                    passed = bool(value == eval(expected, self.scope))
                else:
                    exec(source, self.scope)
                    passed = True
        except SessionEnded as ended:
            error = str(ended)
        except CallFailed as failed:
            error = str(failed)
        except Exception as other:  # the test's own assertion, or its code on a bad value
            error = runner.failure(other)
        if self.stopped == NOT_RUN_AFTER_TIMEOUT and not error:
            error = TIMED_OUT
        return TestResult(
            passed and not error,
            test.input,
            test.expected,
            actual,
            error,
            behaviour_digest(self.events),
        )


def stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def as_decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(item) for item in line.split()]
    except InvalidOperation:
        return None


def same_output(actual: str, expected: str) -> bool:
    """stdout comparison as LiveCodeBench's evaluator does it: the same number of lines
    (each stripped, the whole stripped), each line equal as text or as a list of numbers
    compared by value (`30.0` = `30`, `1  2` = `1 2`)."""
    got, wanted = stripped_lines(actual), stripped_lines(expected)
    if len(got) != len(wanted):
        return False
    for line, want in zip(got, wanted, strict=True):
        if line != want:
            numbers = as_decimals(line)
            if numbers is None or numbers != as_decimals(want):
                return False
    return True


def run_tests(
    solution: str,
    entry: str,
    tests: Sequence[TestCase],
    *,
    method: str | None = None,
    limits: Limits | None = None,
    context: str = "",
) -> list[TestResult]:
    """Run every test of `solution`; results in test order (setup ones omitted).

    `context` is trusted code the `assert` tests may use (run here, never in the sandbox);
    functional and stdin tests compare plain data and run none of it, so a benchmark's
    program prefix (LiveCodeBench's `sys.setrecursionlimit(50000)`) never reaches the judge."""
    limits = limits or Limits()
    results: dict[int, TestResult] = {}
    for program in (False, True):  # calls of the entry point; then whole-program runs
        chosen = [(i, t) for i, t in enumerate(tests) if (t.kind == "stdin") == program]
        if chosen:
            trusted = context if any(t.kind == "assert" for _, t in chosen) else ""
            judge = Judge(
                solution, None if program else entry, method, limits, trusted, len(chosen)
            )
            counted = [i for i, t in chosen if not t.setup]
            results.update(zip(counted, judge.run([t for _, t in chosen]), strict=True))
    return [results[i] for i in sorted(results)]
