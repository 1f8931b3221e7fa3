"""Atomic, deterministic file output and content hashing shared by every stage.

Every output is written to a temporary sibling and moved into place with `os.replace`, so a
failed stage leaves the previous output (or nothing) behind, never a half-written file.
JSON is written with sorted keys and a trailing newline so re-runs are byte-identical.
"""

from __future__ import annotations

import contextlib
import glob
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


TMP_MARK = ".tuneproof-tmp-"  # temp siblings are named .<target><TMP_MARK><random>; only those are ever deleted


def check_output_path(path: str | Path, key: str, root: str | Path | None = None) -> Path:
    """`path` as a stage output, refused where writing it could destroy what no stage made:
    empty, the project root (`root`, default the working directory) or a folder above it, a
    path outside the project (a symlink on the way is followed first, so a link out is caught),
    or inside .git/.dvc. `key` names the setting in the message."""
    root = Path(root or Path.cwd()).resolve()
    text = str(path).strip()
    if not text:
        raise TuneproofError(f"{key}: empty path; name a file or folder inside the project")
    resolved = (root / text).resolve()
    if resolved == root or resolved in root.parents:
        raise TuneproofError(f"{key}: {text!r} is the project folder or a folder above it; writing it would "
                             "replace the whole project. Name a folder inside it, e.g. data/dedup")
    if root not in resolved.parents:
        raise TuneproofError(f"{key}: {text!r} resolves to {resolved}, outside the project {root}; stage outputs "
                             "stay inside the project (DVC tracks them there). Use a path inside it")
    if {".git", ".dvc"} & set(resolved.relative_to(root).parts):
        raise TuneproofError(f"{key}: {text!r} is inside .git or .dvc; use a path of your own")
    return Path(text)


def _tracked_files(directory: Path) -> list[str]:
    """git-tracked files under `directory` (empty outside a git checkout): a stage's output folder
    never holds any, so a folder that does was not made by a stage and must not be replaced."""
    import subprocess

    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", "."], cwd=directory, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [name for name in out.stdout.decode(errors="replace").split("\0") if name] if out.returncode == 0 else []


def _check_replaceable(path: Path) -> None:
    """Refuse to replace an existing folder that a stage did not make."""
    if not path.is_dir() or path.is_symlink():
        return
    if (path / ".git").exists() or (path / ".dvc").exists():
        raise TuneproofError(f"{path}: is a git or DVC project folder; refusing to replace it. Choose another output path")
    tracked = _tracked_files(path)
    if tracked:
        raise TuneproofError(f"{path}: holds {len(tracked)} file(s) tracked by git (e.g. {tracked[0]}), so no stage "
                             "made it; refusing to replace it. Choose another output path or move those files")


@contextlib.contextmanager
def _workdir(path: Path) -> Iterator[Path]:
    """A fresh temp folder beside `path` (after the safety checks), deleted on the way out."""
    if path.name in ("", ".", ".."):
        raise TuneproofError(f"{path}: not a file or folder name; refusing to write it")
    resolved, cwd = path.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise TuneproofError(f"{path}: is the working directory or a folder above it; refusing to replace it")
    _check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}{TMP_MARK}*"):  # left by a killed run
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent))
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it into place only if the block succeeds.

    Works for files and directories: whatever the block creates at the yielded path replaces
    `path` (an existing directory is removed only after the new one is complete). Only the temp
    folder made here is ever deleted. Refused: a path with no name ('', '.', '..'), the working
    directory or a folder above it, replacing a folder with a file (or a file with a folder),
    and replacing a folder that holds git-tracked files (no stage made it).
    """
    path = Path(path)
    with _workdir(path) as workdir:
        tmp = workdir / path.name
        yield tmp
        if not tmp.exists():
            raise TuneproofError(f"{path}: nothing was written")
        if path.is_dir() and not path.is_symlink():
            if not tmp.is_dir():
                raise TuneproofError(f"{path}: is a folder; refusing to replace it with a file. Name a file path")
            os.replace(path, workdir / f"{path.name}.old")  # inside our own temp folder: deleted with it
        elif tmp.is_dir() and path.exists():
            raise TuneproofError(f"{path}: is a file; refusing to replace it with a folder. Remove it first")
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_files(directory: str | Path, names: Iterable[str]) -> Iterator[Path]:
    """Yield a temp folder; when the block succeeds, its files `names` replace those in `directory`
    as one set: every old file of the set is removed before any new one is moved in, so a kill in
    between leaves files missing (which every reader and `dvc status` reports), never a new file
    beside old ones. Other files in `directory` (e.g. DVC's .gitignore) are left alone."""
    directory, names = Path(directory), list(names)
    directory.mkdir(parents=True, exist_ok=True)
    with _workdir(directory / ".set") as workdir:
        yield workdir
        missing = [n for n in names if not (workdir / n).is_file()]
        if missing:
            raise TuneproofError(f"{directory}: the output set misses {', '.join(missing)}; nothing was replaced")
        for name in names:
            if (directory / name).is_dir() and not (directory / name).is_symlink():
                raise TuneproofError(f"{directory / name}: is a folder; refusing to replace it with a file")
        for name in names:
            (directory / name).unlink(missing_ok=True)
        for name in names:
            os.replace(workdir / name, directory / name)


def remove_outputs(paths: Iterable[str | Path]) -> None:
    """Remove a stage's previous outputs before it writes a new set that spans several files or
    folders: a kill while writing then leaves outputs missing (which readers and `dvc status`
    report), never new files beside old ones. A folder is removed only where a stage could have
    made it (no git-tracked files, no .git/.dvc inside); all are checked before any is removed."""
    paths = [Path(p) for p in paths]
    for path in paths:
        _check_replaceable(path)
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


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


def _stage_file_error(path: str | Path, problem: str) -> TuneproofError:
    return TuneproofError(f"{path}: {problem}; it is a stage output: re-run the stage that writes it (dvc repro)")


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file written by a tuneproof stage (user input goes through records.load_records).
    A missing or damaged file is named, with its line, never a bare traceback."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = list(fh)
    except FileNotFoundError:
        raise _stage_file_error(path, "not found") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise _stage_file_error(f"{path}:{number}", f"not valid JSON ({exc.msg})") from None
    return rows


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by a tuneproof stage; a missing or damaged one is named."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise _stage_file_error(path, "not found") from None
    except json.JSONDecodeError as exc:
        raise _stage_file_error(f"{path}:{exc.lineno}", f"not valid JSON ({exc.msg}), e.g. cut short") from None


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(folder: str | Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder`: a model folder's identity."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
