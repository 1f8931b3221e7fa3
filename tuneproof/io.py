"""Atomic, deterministic file output and content hashing shared by every stage.

Every output is written to a temporary sibling and moved into place with `os.replace`, so a
failed stage leaves the previous output (or nothing) behind, never a half-written file.
JSON is written with sorted keys and a trailing newline so re-runs are byte-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


class TuneproofError(Exception):
    """A user-facing error: the message says what is wrong and what to change."""


def dumps(obj: Any) -> str:
    """Deterministic pretty JSON (sorted keys, trailing newline)."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def jsonl_line(obj: Any) -> str:
    """One deterministic JSONL line (keys sorted, no trailing newline)."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it into place only if the block succeeds.

    Works for files and directories: whatever the block creates at the yielded path replaces
    `path` (an existing directory is removed only after the new one is complete).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    """Atomically write `text` (UTF-8) to `path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write deterministic JSON."""
    write_text(path, dumps(obj))


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    """Atomically write one deterministic JSON object per line."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(jsonl_line(row) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file written by a tuneproof stage (trusted; user input goes through records.load_records)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
