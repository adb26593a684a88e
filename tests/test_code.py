"""Code tasks with the real sandbox: HumanEval, LiveCodeBench fixtures, hostile solutions."""

from pathlib import Path

import pytest

from seqpar.tasks.code import HumanEvalTask, LiveCodeBenchTask, check_tests, docstring_tests
from seqpar.tasks.extract import extract_code

FIXTURES = Path(__file__).parent / "fixtures" / "livecodebench"


@pytest.fixture(scope="module")
def humaneval():
    task = HumanEvalTask()
    return task, {p.id: p for p in task.load()}


def block(code: str) -> str:
    return f"Here it is:\n```python\n{code}\n```\nDone."


def test_extract_code_variants():
    assert extract_code("```python\na = 1\n```\ntext\n```python\nb = 2\n```") == "b = 2\n"
    assert extract_code("```\nc = 3\n```") == "c = 3\n"
    assert extract_code("Sure:\n```python\ndef f():\n    return 1") == "def f():\n    return 1"
    assert extract_code("def g():\n    return 2") == "def g():\n    return 2"
    assert extract_code("<think>```python\nx=1\n```</think>no code") is None
    assert extract_code("just words") is None


def test_docstring_examples_become_public_tests():
    prompt = 'def add(x, y):\n    """Add.\n    >>> add(2, 3)\n    5\n    add(1, 1) ==> 2\n    """\n'
    tests = docstring_tests(prompt, "add")
    assert [(t.input, t.expected) for t in tests] == [("add(2, 3)", "5")]
    arrow = 'def inc(x):\n    """For example:\n    inc(1) ==> 2\n    inc(a) ==> b\n    """\n'
    assert [(t.input, t.expected) for t in docstring_tests(arrow, "inc")] == [("inc(1)", "2")]


def test_check_function_split_into_tests():
    tests = check_tests(
        "X = 1\n\ndef check(candidate):\n    import math\n    assert candidate(1) == 2\n"
        "    for i in range(3):\n        assert candidate(i) == i + 1\n"
    )
    assert [t.setup for t in tests] == [True, True, False, False]


def test_all_canonical_solutions_pass_and_stubs_fail(humaneval):
    task, problems = humaneval
    assert len(problems) == 164
    from concurrent.futures import ThreadPoolExecutor

    def grades(problem):
        good = task.grade(problem, block(problem.question + problem.meta["canonical"]))
        stub = task.grade(problem, block(problem.question + "    return None\n"))
        return problem.id, good.correct, stub.correct

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(grades, problems.values()))
    assert [pid for pid, good, _ in results if not good] == []
    assert [pid for pid, _, stub in results if stub] == []


def test_full_function_answer_and_feedback(humaneval):
    task, problems = humaneval
    problem = problems["HumanEval/53"]  # add(x, y)
    right = task.grade(problem, block("def add(x: int, y: int):\n    return x + y"))
    assert right.correct and right.score == 1.0 and right.answer
    wrong = task.grade(problem, block("def add(x: int, y: int):\n    return x - y"))
    assert not wrong.correct and wrong.score == 0.0 and wrong.answer != right.answer
    assert task.feedback(problem, wrong, "binary") == "Feedback: the solution is incorrect."
    public = task.feedback(problem, wrong, "public")
    assert public.startswith("Feedback from the public tests: 0 of 2 passed.")
    assert "Expected: 5" in public and "Got: -1" in public
    hidden = task.feedback(problem, wrong, "hidden")
    assert "hidden tests" in hidden and "assert candidate(0, 1) == 1" in hidden
    assert task.feedback(problem, wrong, "none") == ""
    crash = task.grade(problem, block("def add(x, y):\n    raise ValueError('boom')"))
    assert "ValueError: boom" in task.feedback(problem, crash, "hidden")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("sys.exit before tests", "import sys\nsys.exit(0)\ndef add(x, y):\n    return x + y"),
        ("os._exit before tests", "import os\nos._exit(0)\ndef add(x, y):\n    return x + y"),
        ("exit inside the call", "import os\ndef add(x, y):\n    os._exit(0)"),
        (
            "always-equal object",
            "class Yes:\n    def __eq__(self, other):\n        return True\n"
            "def add(x, y):\n    return Yes()",
        ),
        (
            "patched builtins",
            "import builtins\nbuiltins.bool = lambda v: True\nbuiltins.type = lambda v: int\n"
            "builtins.isinstance = lambda *a: True\ndef add(x, y):\n    return None",
        ),
        (
            "patched json and print of fake results",
            "import json\njson.loads = lambda s: {'index': 0, 'passed': True}\n"
            'print(\'{"index": 0, "passed": true}\')\ndef add(x, y):\n    return None',
        ),
        ("infinite loop", "def add(x, y):\n    while True:\n        pass"),
    ],
)
def test_hostile_solutions_fail(humaneval, name, code):
    task, problems = humaneval
    grade = task.grade(problems["HumanEval/53"], block(code))
    assert not grade.correct, name
    assert all(not r.passed for r in grade.hidden if "candidate(0, 1)" in r.input), name


def test_livecodebench_fixtures_both_test_types():
    task = LiveCodeBenchTask(FIXTURES, release="v1")
    problems = {p.id: p for p in task.load()}
    assert set(problems) == {"fixture_stdin_1", "fixture_functional_1"}
    stdin = problems["fixture_stdin_1"]
    assert len(stdin.meta["spec"].hidden) == 2  # decoded from the compressed private cases
    assert "Read the inputs from stdin" in task.prompt(stdin)
    good = task.grade(stdin, block("a, b = map(int, input().split())\nprint(a + b)"))
    assert good.correct and good.score == 1.0
    bad = task.grade(stdin, block("a, b = map(int, input().split())\nprint(a * b)"))
    assert not bad.correct
    assert "Expected: 30" in task.feedback(stdin, bad, "hidden")

    functional = problems["fixture_functional_1"]
    assert "class Solution" in task.prompt(functional)
    solution = (
        "class Solution:\n    def countPairs(self, nums: List[int], target: int) -> int:\n"
        "        return sum(1 for i in range(len(nums)) for j in range(i + 1, len(nums))"
        " if nums[i] + nums[j] == target)"
    )
    assert task.grade(functional, block(solution)).correct
    off = solution.replace("i + 1", "i")
    assert not task.grade(functional, block(off)).correct


def test_livecodebench_prefix_runs_in_the_solution_never_in_the_judge():
    """LiveCodeBench's prefix sets `sys.setrecursionlimit(50000)`: in the judge it would let
    trusted code recurse past a thread's C stack. Grading both test kinds leaves the judge's
    limit alone; control: the prefix as the judge's context raises it."""
    import sys

    from seqpar.sandbox import Limits
    from seqpar.tasks.code import LCB_IMPORTS
    from seqpar.tasks.code_tests import Judge

    task = LiveCodeBenchTask(FIXTURES, release="v1")
    limit = sys.getrecursionlimit()
    code = "import sys\nprint(sys.getrecursionlimit())\nclass Solution:\n    pass\n"
    grades = [task.grade(problem, block(code)) for problem in task.load()]
    assert sys.getrecursionlimit() == limit
    assert "50000" in grades[0].hidden[0].actual + grades[1].hidden[0].actual  # in the solution
    try:
        Judge("", "f", None, Limits(), LCB_IMPORTS, 1)
        assert sys.getrecursionlimit() == 50000
    finally:
        sys.setrecursionlimit(limit)


def test_livecodebench_date_filter_and_errors(tmp_path):
    assert [p.id for p in LiveCodeBenchTask(FIXTURES, "v1", since="2025-01-01").load()] == [
        "fixture_stdin_1"
    ]
    with pytest.raises(Exception, match="no problems match"):
        LiveCodeBenchTask(FIXTURES, "v1", since="2030-01-01").load()
    with pytest.raises(Exception, match=r"none of test\.jsonl"):
        LiveCodeBenchTask(tmp_path, "v1").load()
    with pytest.raises(Exception, match=r"unknown LiveCodeBench release 'v9'"):
        LiveCodeBenchTask(FIXTURES, "v9")


def test_digest_uses_behaviour_not_expected_outputs():
    from seqpar.tasks.code import digest
    from seqpar.types import TestResult

    passing = TestResult(True, "f(1)", "2", "2", "", behaviour="returned 2")
    failing = TestResult(False, "f(1)", "3", "2", "", behaviour="returned 2")
    assert digest([passing]) == digest([failing])  # same behaviour, different expectations
    other = TestResult(True, "f(1)", "2", "2", "", behaviour="returned 2.0")
    assert digest([other]) != digest([passing])
    assert digest([]) is None
    # Results from a harness without `behaviour`: (actual, last error line), as before.
    old = TestResult(False, "f(1)", "2", "", "Traceback ...\nValueError: x")
    same_error = TestResult(False, "f(1)", "5", "", "Traceback (other)\nValueError: x")
    assert digest([old]) == digest([same_error])
    assert digest([TestResult(False, "f(1)", "2", "", " \n")]) is not None


def test_canonical_solutions_win_the_majority_vote_on_every_problem(humaneval):
    from concurrent.futures import ThreadPoolExecutor

    from seqpar.aggregate import Solution, majority_score

    task, problems = humaneval
    # HumanEval/50 has no public tests: a wrong program must get its own class, a rewrite of
    # the canonical solution the canonical one's.
    extra = {
        "wrong": problems["HumanEval/50"].question + "    return s\n",
        "rewrite": "def decode_shift(s: str):\n"
        "    return ''.join(chr((ord(c) - 97 - 5) % 26 + 97) for c in s)\n",
    }
    jobs = [(pid, p, p.question + p.meta["canonical"]) for pid, p in problems.items()]
    jobs += [(name, problems["HumanEval/50"], code) for name, code in extra.items()]
    with ThreadPoolExecutor(2) as pool:
        graded = pool.map(lambda job: (job[0], task.grade(job[1], block(job[2]))), jobs)
        grades = dict(graded)
    without_public = [pid for pid, p in problems.items() if not task.spec(p).public]
    assert len(without_public) == 42  # their behaviour class comes from the hidden inputs
    assert [pid for pid in problems if grades[pid].answer is None] == []
    majority = {
        pid: majority_score([Solution(grades[pid].answer, grades[pid].correct)]) for pid in problems
    }
    assert [pid for pid, score in majority.items() if score != 1.0] == []
    wrong, rewrite = grades["wrong"], grades["rewrite"]
    assert rewrite.correct and not wrong.correct
    assert rewrite.answer == grades["HumanEval/50"].answer != wrong.answer
    votes = [Solution(wrong.answer, False)] * 2 + [Solution(rewrite.answer, True)] * 3
    assert majority_score(votes) == 1.0
