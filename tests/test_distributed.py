"""The Ray executor against the local one: same seeds, same set of samples (slow)."""

import json
from collections import Counter

import pytest

from seqpar.scheduler import MemoryStore
from seqpar.types import Sample

from .conftest import TEST_MODEL
from .test_e2e import cli


def test_memory_store_keeps_what_was_stored_apart_from_what_is_new():
    before = Sample("p", 0, 1, "ok", text="a")
    store = MemoryStore([before])
    store.append([Sample("p", 0, 2, "ok", text="b")])
    assert [s.round for s in store.samples()] == [1, 2]
    assert [s.text for s in store.new] == ["b"]


def identities(out):
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return Counter((r["problem_id"], r["chain"], r["round"], r["attempt"], r["seed"]) for r in rows)


@pytest.mark.slow
def test_ray_executor_produces_the_local_executors_samples(tmp_path):
    args = [
        "run", "--model", TEST_MODEL, "--task", "arith", "--difficulty", "1",
        "--strategy", "sequential", "--limit", "3", "--n", "2", "--max-tokens", "16",
        "--no-progress",
    ]  # fmt: skip
    local = cli(*args, "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    distributed = cli(*args, "--executor", "ray", "--workers", "2", "--out", str(tmp_path / "ray"))
    assert distributed.returncode == 0, distributed.stderr
    expected = identities(tmp_path / "local")
    assert identities(tmp_path / "ray") == expected and set(expected.values()) == {1}
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["executor"] == {"name": "ray", "workers": 2}
    again = cli(*args, "--executor", "ray", "--workers", "2", "--out", str(tmp_path / "ray"))
    assert again.returncode == 0 and identities(tmp_path / "ray") == expected
