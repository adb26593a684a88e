import time

import pytest

from seqpar.tasks.math import as_number, equivalent


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("18", "18.0"),
        ("1000", "1,000"),
        ("18", "\\$18"),
        ("\\frac{1}{2}", "0.5"),
        ("\\frac{1}{2}", "1/2"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
        ("3", "3 \\text{ apples}"),
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
    ],
)
def test_equivalent_answers(a, b):
    assert equivalent(a, b)


@pytest.mark.parametrize(
    ("a", "b"), [("3", "4"), ("\\frac{1}{2}", "0.6"), ("(1,2)", "(2,1)"), ("5", "")]
)
def test_different_answers(a, b):
    assert not equivalent(a, b)


def test_as_number():
    assert as_number("1,234") == 1234.0
    assert as_number("$-7.5$") == -7.5
    assert as_number("50\\%") == 50.0
    assert as_number("\\frac{1}{2}") is None


POWER_TOWER = "\\boxed{9^{9^{9^{9^{9^{9}}}}}}"


def test_a_grading_that_runs_out_of_time_is_recorded_and_counted_incorrect(tmp_path):
    from seqpar.report.summary import markdown, summarize
    from seqpar.run import RunConfig
    from seqpar.store import RunStore
    from seqpar.tasks import get_task
    from seqpar.tasks.math import GRADE_TIMED_OUT
    from seqpar.types import Problem, Sample

    start = time.perf_counter()
    grade = get_task("arith").grade(Problem("p", "q", "1"), f"So {POWER_TOWER}.")
    assert time.perf_counter() - start < 20
    assert (grade.answer, grade.correct, grade.reason) == (
        POWER_TOWER[7:-1],
        False,
        GRADE_TIMED_OUT,
    )

    store = RunStore(tmp_path)
    config = RunConfig(task="arith", n=2, limit=1)
    store.create({"identity": {"config": config.to_json()}, "problem_ids": ["p"]})
    store.append(
        [
            Sample("p", 0, 1, "ok", answer="x", grade_reason=GRADE_TIMED_OUT),
            Sample("p", 1, 1, "ok", answer="1", correct=True, grade_reason="equivalent"),
        ]
    )
    summary = summarize(str(tmp_path))
    assert summary.grading_timeouts == 1 and summary.accuracy["last"] == [0.5, 0.5]
    assert "grading timeouts 1 (counted incorrect)" in markdown([summary])
