"""Run directories: `manifest.json` plus append-only `samples.jsonl`, resumable.

A run directory is created only once a run is about to generate. Re-opening it with a
different configuration is refused; re-opening it with the same one resumes. A last line
cut short by a kill is removed on open; any other unreadable line is an error. Re-grading
writes `grades.jsonl` (replaced atomically), which overrides the grades stored with samples.

One process at a time writes a run directory: it holds an exclusive `flock` on `.lock`,
which also names the holder. The kernel drops the lock when its holder dies, so a lock file
left by a killed process is stale by construction and is simply taken over.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from seqpar.errors import SeqparError
from seqpar.types import GRADE_FIELDS, Sample

MANIFEST = "manifest.json"
SAMPLES = "samples.jsonl"
GRADES = "grades.jsonl"
SESSIONS = "sessions.jsonl"
LOCK = ".lock"
PARTIAL = ".partial"  # suffix of a file being written; a kill can leave one behind


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers see the old or the new file, never half."""
    with tempfile.NamedTemporaryFile(
        "w",
        dir=path.parent,
        prefix=f".{path.name}.",
        suffix=PARTIAL,
        delete=False,
        encoding="utf-8",
    ) as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(f.name, path)


def ours(name: str) -> bool:
    """Whether a file in a run directory without a manifest is seqpar's: its lock, or a
    write cut short before the manifest existed."""
    return name == LOCK or (name.startswith(".") and name.endswith(PARTIAL))


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """'key: old → new' for every key of `new` whose value differs in `old` (nested: dotted)."""
    before, after = flatten(old), flatten(new)
    return [
        f"{k}: {before.get(k)!r} → {v!r}" for k, v in sorted(after.items()) if before.get(k) != v
    ]


class RunStore:
    """One run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def samples_path(self) -> Path:
        return self.path / SAMPLES

    @property
    def grades_path(self) -> Path:
        return self.path / GRADES

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        if not self.exists():
            raise SeqparError(f"{self.path} is not a seqpar run directory (no {MANIFEST})")
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def check_compatible(
        self,
        identity: Mapping[str, Any],
        stored: Callable[[Mapping[str, Any]], Mapping[str, Any]] = lambda m: m.get("identity", {}),
    ) -> None:
        """Refuse to resume a run whose identity (config, task data, model) differs;
        `stored` reads the identity out of the existing manifest."""
        if not self.exists():
            if self.path.exists() and any(not ours(p.name) for p in self.path.iterdir()):
                raise SeqparError(
                    f"{self.path} exists, is not empty and is not a seqpar run; "
                    "choose another --out directory"
                )
            return
        old = stored(self.manifest())
        changes = config_differences(old, identity)
        if changes:
            raise SeqparError(
                f"{self.path} holds a run with a different configuration ("
                + "; ".join(changes)
                + "); use another --out directory, or delete this one to start over"
            )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's write lock; a live holder elsewhere is an error naming it."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK
        with lock.open("a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise SeqparError(
                    f"{self.path} is in use by {holder}; wait for it to finish or stop it, "
                    "or write to another --out directory"
                ) from None
            handle.seek(0)
            handle.truncate()
            since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            handle.write(f"pid {os.getpid()} ({' '.join(sys.argv)[:200]}) since {since}\n")
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def create(self, manifest: Mapping[str, Any]) -> None:
        """Write the manifest (first time only) and make sure samples.jsonl is whole; files a
        killed write left behind are removed (the caller holds the lock)."""
        self.path.mkdir(parents=True, exist_ok=True)
        for leftover in self.path.glob(f".*{PARTIAL}"):
            leftover.unlink()
        if not self.exists():
            write_atomic(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        self.repair()

    def repair(self) -> int:
        """Cut a partial last line left by an interrupted write; return bytes removed."""
        if not self.samples_path.is_file():
            return 0
        with self.samples_path.open("rb+") as handle:
            data = handle.read()
            if not data or data.endswith(b"\n"):
                return 0
            keep = data.rfind(b"\n") + 1
            handle.truncate(keep)
            return len(data) - keep

    def samples(self) -> list[Sample]:
        """Stored samples with re-grades applied; a complete but unreadable line is an error."""
        if not self.samples_path.is_file():
            return []
        samples = []
        lines = self.samples_path.read_bytes().split(b"\n")
        complete = lines[:-1]  # a trailing fragment without newline is an interrupted write
        for number, line in enumerate(complete, start=1):
            try:
                samples.append(Sample.from_json(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as error:
                raise SeqparError(
                    f"{self.samples_path}:{number}: unreadable sample ({error})"
                ) from error
        regrades = self.grades()
        return [replace(s, **regrades[s.draw]) if s.draw in regrades else s for s in samples]

    def append(self, samples: Iterable[Sample]) -> None:
        """Append samples as whole lines, flushed to disk before returning."""
        text = "".join(json.dumps(s.to_json(), ensure_ascii=False) + "\n" for s in samples)
        if not text:
            return
        with self.samples_path.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def append_session(self, times: Mapping[str, float]) -> None:
        """Record one generation session's times (a resumed run has several)."""
        ended = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        path = self.path / SESSIONS
        torn = path.is_file() and not path.read_bytes().endswith(b"\n")
        with path.open("a", encoding="utf-8") as handle:
            handle.write(("\n" if torn else "") + json.dumps({"ended": ended, **times}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def sessions(self) -> list[dict[str, Any]]:
        """Every recorded session (none for runs made before seqpar recorded them); a line
        cut short by a kill is ignored."""
        path = self.path / SESSIONS
        if not path.is_file():
            return []
        sessions = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                sessions.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the line a killed session left half-written
        return sessions

    def grades(self) -> dict[tuple[str, int, int, int], dict[str, Any]]:
        """Re-graded fields by sample key, from grades.jsonl (empty when never re-graded)."""
        if not self.grades_path.is_file():
            return {}
        grades = {}
        for line in self.grades_path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            draw = (
                row.pop("problem_id"),
                row.pop("chain"),
                row.pop("round"),
                row.pop("attempt", 0),
            )
            grades[draw] = row
        return grades

    def write_grades(self, regraded: Iterable[Sample]) -> None:
        """Replace grades.jsonl with the grade fields of `regraded` samples."""
        rows = [
            {
                "problem_id": s.problem_id,
                "chain": s.chain,
                "round": s.round,
                "attempt": s.attempt,
                **{name: getattr(s, name) for name in GRADE_FIELDS},
            }
            for s in regraded
        ]
        write_atomic(self.grades_path, "".join(json.dumps(r) + "\n" for r in rows))
