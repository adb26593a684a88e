import json

import pytest

from seqpar.errors import SeqparError
from seqpar.store import RunStore
from seqpar.types import Grade, Sample


def sample(pid: str, round_: int = 1) -> Sample:
    return Sample(problem_id=pid, chain=0, round=round_, status="ok", text="t", answer="1")


def test_append_and_read_back(tmp_path):
    store = RunStore(tmp_path / "run")
    store.check_compatible({"config": {"n": 2}})
    store.create({"identity": {"config": {"n": 2}}})
    store.append([sample("a"), sample("b")])
    assert [s.problem_id for s in store.samples()] == ["a", "b"]


def test_truncated_last_line_is_repaired(tmp_path):
    store = RunStore(tmp_path)
    store.create({"identity": {}})
    store.append([sample("a")])
    with store.samples_path.open("a") as handle:
        handle.write('{"problem_id": "b", "cha')  # killed mid-write
    assert [s.problem_id for s in store.samples()] == ["a"]
    removed = store.repair()
    assert removed == len('{"problem_id": "b", "cha')
    store.append([sample("b")])
    assert [s.problem_id for s in store.samples()] == ["a", "b"]


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    store = RunStore(tmp_path)
    store.create({"identity": {}})
    store.append([sample("a")])
    with store.samples_path.open("a") as handle:
        handle.write("not json\n")
    with pytest.raises(SeqparError, match=r"samples.jsonl:2"):
        store.samples()


def test_different_config_is_refused(tmp_path):
    store = RunStore(tmp_path)
    store.create({"identity": {"config": {"n": 2, "seed": 0}}})
    store.check_compatible({"config": {"n": 2, "seed": 0}})
    with pytest.raises(SeqparError, match=r"config.n: 2 → 4"):
        store.check_compatible({"config": {"n": 4, "seed": 0}})


def test_foreign_nonempty_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SeqparError, match="not a seqpar run"):
        RunStore(tmp_path).check_compatible({})


def test_regrades_override_stored_grades(tmp_path):
    store = RunStore(tmp_path)
    store.create({"identity": {}})
    store.append([sample("a")])
    store.write_grades([sample("a").with_grade(Grade("2", True, "equivalent"))])
    (graded,) = store.samples()
    assert (graded.answer, graded.correct) == ("2", True)
    assert json.loads(store.samples_path.read_text())["answer"] == "1"  # generations untouched
