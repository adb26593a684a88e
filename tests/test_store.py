import json
import os

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


def test_a_manifest_write_cut_short_by_a_kill_does_not_block_the_rerun(tmp_path, monkeypatch):
    from seqpar import store as module

    store = RunStore(tmp_path / "run")

    def killed(source, target):  # the file is written and synced, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(module.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt), store.locked():
        store.create({"identity": {"config": {"n": 2}}})
    monkeypatch.undo()
    assert not store.exists() and len(list(store.path.iterdir())) == 2  # lock and partial
    store.check_compatible({"config": {"n": 2}})  # the re-run is not refused
    with store.locked():
        store.create({"identity": {"config": {"n": 2}}})
    assert sorted(p.name for p in store.path.iterdir()) == [".lock", "manifest.json"]
    (store.path.parent / "other").mkdir()
    (store.path.parent / "other" / "manifest.json.partial").write_text("{}")  # not ours
    with pytest.raises(SeqparError, match="not a seqpar run"):
        RunStore(store.path.parent / "other").check_compatible({})


def test_regrades_override_stored_grades(tmp_path):
    store = RunStore(tmp_path)
    store.create({"identity": {}})
    store.append([sample("a")])
    store.write_grades([sample("a").with_grade(Grade("2", True, "equivalent"))])
    (graded,) = store.samples()
    assert (graded.answer, graded.correct) == ("2", True)
    assert json.loads(store.samples_path.read_text())["answer"] == "1"  # generations untouched


def test_regrades_reach_the_draw_they_belong_to(tmp_path):
    store = RunStore(tmp_path)
    store.create({"identity": {}})
    rejected = Sample("a", 0, 1, "rejected", text="x", answer="1", attempt=0)
    accepted = Sample("a", 0, 1, "ok", text="y", answer="1", attempt=1)
    store.append([rejected, accepted])
    store.write_grades([accepted.with_grade(Grade("2", True, "equivalent"))])
    first, second = store.samples()
    assert (first.answer, first.correct) == ("1", False)
    assert (second.answer, second.correct) == ("2", True)


LOCK_HOLDER = """
import sys, time
from seqpar.store import RunStore
with RunStore(sys.argv[1]).locked():
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(SeqparError, match=rf"is in use by pid {holder.pid} \("),
            RunStore(tmp_path).locked(),
        ):
            pass
    finally:
        holder.kill()  # SIGKILL: no chance to clean up; the lock file stays behind
        holder.wait()
    assert (tmp_path / ".lock").read_text().startswith(f"pid {holder.pid}")
    with RunStore(tmp_path).locked():
        assert (tmp_path / ".lock").read_text().startswith(f"pid {os.getpid()}")
    RunStore(tmp_path).check_compatible({})  # the lock file alone is not foreign content
