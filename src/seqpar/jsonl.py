"""Reading JSONL data files, with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seqpar.errors import SeqparError


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of a JSONL file; a line that is not UTF-8 JSON is an error naming
    the file and line."""
    rows = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise SeqparError(
                    f"{path}:{number}: not UTF-8 (byte {error.start}); re-encode the file"
                ) from error
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise SeqparError(f"{path}:{number}: malformed JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise SeqparError(f"{path}:{number}: expected a JSON object per line")
            rows.append((number, row))
    return rows
