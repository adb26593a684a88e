import pytest

from seqpar.errors import SeqparError
from seqpar.registry import get_task
from seqpar.tasks import select
from seqpar.tasks.synthetic import make_problem


def test_gsm8k_loads_from_shared_data(data_dir):
    problems = get_task("gsm8k", data_dir=data_dir).load()
    assert len(problems) == 1319
    assert problems[0].id == "gsm8k-test-0000" and problems[0].answer == "18"


@pytest.mark.parametrize(("name", "count"), [("math500", 500), ("aime24", 30), ("aime25", 30)])
def test_other_math_tasks_load(data_dir, name, count):
    assert len(get_task(name, data_dir=data_dir).load()) == count


def test_math_grading(data_dir):
    task = get_task("gsm8k", data_dir=data_dir)
    problem = task.load()[0]
    assert task.grade(problem, "She makes \\boxed{18} dollars").correct
    assert task.grade(problem, "The answer is $18.00.").correct
    wrong = task.grade(problem, "\\boxed{17}")
    assert (wrong.answer, wrong.correct) == ("17", False)
    assert task.grade(problem, "no idea").reason == "no answer found"


def test_missing_data_file(tmp_path):
    with pytest.raises(SeqparError, match=r"gsm8k_test.jsonl not found; pass --data-dir"):
        get_task("gsm8k", data_dir=tmp_path).load()


def test_malformed_line_names_file_and_line(tmp_path):
    (tmp_path / "aime24.jsonl").write_text('{"problem": "p", "answer": "1"}\n{oops\n')
    with pytest.raises(SeqparError, match=r"aime24.jsonl:2: malformed JSON"):
        get_task("aime24", data_dir=tmp_path).load()


def test_missing_field_and_empty_file(tmp_path):
    (tmp_path / "aime24.jsonl").write_text('{"problem": "p"}\n')
    with pytest.raises(SeqparError, match=r"aime24.jsonl:1: missing or empty field\(s\) answer"):
        get_task("aime24", data_dir=tmp_path).load()
    (tmp_path / "aime24.jsonl").write_text("\n")
    with pytest.raises(SeqparError, match="holds no problems"):
        get_task("aime24", data_dir=tmp_path).load()


def test_unknown_task_lists_known():
    with pytest.raises(SeqparError, match=r"unknown task 'gsm9k'; known: arith, gsm8k, math500"):
        get_task("gsm9k")


def test_select_limits():
    problems = get_task("arith", count=5).load()
    assert len(select(problems, 2)) == 2
    with pytest.raises(SeqparError):
        select(problems, 0)
    with pytest.raises(SeqparError, match="no problems"):
        select([], None)


def test_arith_is_seeded_and_correct_by_construction():
    assert make_problem(0, 2, 7) == make_problem(0, 2, 7)
    assert make_problem(0, 2, 7) != make_problem(1, 2, 7)
    task = get_task("arith", difficulty=1, count=200)
    for problem in task.load():
        words = problem.question.split()
        start = int(words[2])
        if "finds" in problem.question:
            amount = int(words[words.index("finds") + 1])
            assert int(problem.answer) == start + amount
        elif "gives" in problem.question:
            amount = int(words[words.index("gives") + 1])
            assert int(problem.answer) == start - amount
        assert task.grade(problem, f"\\boxed{{{problem.answer}}}").correct
