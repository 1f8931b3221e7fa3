"""Outputs are safe by construction: a stage never deletes or replaces what it did not make.

Each case here destroyed data on an earlier main (issue 13, data loss): `paths.dedup: .` wiped the
checkout, `paths.dedup: data` deleted data/raw, `pr-report --out DIR` replaced a folder of notes
with a file, and dedup run directly deleted DVC's .gitignore beside its outputs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from stages import dedup, train
from tuneproof import checkpoints
from tuneproof.cli import main as cli_main
from tuneproof.config import DEDUP_CLUSTERS, DEDUP_RECORDS, Paths
from tuneproof.io import TMP_MARK, TuneproofError, atomic_files, atomic_path, write_jsonl, write_text
from tuneproof.params import load_section

from params_file import set_params


def tree_hash(root: Path) -> str:
    """Hash of every path and file content under `root` (.git included): any change shows."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def dedup_project(project_dir):
    """project_dir with a small raw file, a folder of notes and a tracked file under data/."""
    write_jsonl(project_dir / "data" / "raw" / "mine.jsonl",
                [{"prompt": "my card was declined twice today", "completion": "pay"},
                 {"prompt": "where is my parcel, it is late", "completion": "ship"}])
    (project_dir / "notes").mkdir()
    (project_dir / "notes" / "todo.md").write_text("keep me\n")
    set_params(project_dir, paths={"raw": "data/raw/mine.jsonl"}, dedup={"truth": None})
    return project_dir


@pytest.mark.parametrize("value,message", [
    (".", "project folder or a folder above it"),
    ("", "empty path"),
    ("..", "project folder or a folder above it"),
    ("../../outside", "outside the project"),
    ("/", "project folder or a folder above it"),
    (".git/dedup", "inside .git or .dvc"),
])
def test_dedup_refuses_an_output_that_is_not_its_own(dedup_project, value, message):
    set_params(dedup_project, paths={"dedup": value})
    before = tree_hash(dedup_project)
    with pytest.raises(TuneproofError, match=rf"paths.dedup: .*{message}"):
        dedup.main()
    assert tree_hash(dedup_project) == before


def test_dedup_into_a_shared_folder_leaves_the_rest_of_it(dedup_project):
    """`paths.dedup: data` used to replace data/ whole, raw file included."""
    set_params(dedup_project, paths={"dedup": "data"})
    raw = (dedup_project / "data" / "raw" / "mine.jsonl").read_bytes()
    dedup.main()
    assert (dedup_project / "data" / "raw" / "mine.jsonl").read_bytes() == raw
    assert (dedup_project / "data" / DEDUP_RECORDS).is_file()


def test_direct_run_keeps_dvc_gitignore_and_leaves_no_temp_folder(dedup_project):
    out = dedup_project / "data" / "dedup"
    out.mkdir(parents=True)
    (out / ".gitignore").write_text("/records.jsonl\n/clusters.json\n")
    dedup.main()
    dedup.main()
    assert sorted(p.name for p in out.iterdir()) == [".gitignore", DEDUP_CLUSTERS, DEDUP_RECORDS]
    assert not list(dedup_project.rglob(f"*{TMP_MARK}*"))


@pytest.mark.parametrize("key", ["baseline", "adapter", "evaluate", "probe", "release", "base_model"])
def test_a_whole_folder_output_may_not_hold_another_path(dedup_project, key):
    set_params(dedup_project, paths={key: "data"})
    with pytest.raises(TuneproofError, match=rf"paths.{key}: 'data' holds paths.raw"):
        load_section(Paths, "paths").output(key)


def test_an_output_may_not_be_the_input_file(dedup_project):
    set_params(dedup_project, paths={"release": "data/raw/mine.jsonl"})
    with pytest.raises(TuneproofError, match="paths.release: .* is also paths.raw"):
        load_section(Paths, "paths").output("release")


def test_a_symlink_out_of_the_project_is_refused(dedup_project, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    os.symlink(outside, dedup_project / "link")
    set_params(dedup_project, paths={"dedup": "link/dedup"})
    with pytest.raises(TuneproofError, match="paths.dedup: .*outside the project"):
        dedup.main()
    assert list(outside.iterdir()) == []


def test_pr_report_never_replaces_a_folder(dedup_project, capsys):
    before = tree_hash(dedup_project / "notes")
    with pytest.raises(TuneproofError, match="notes: is a folder; refusing to replace it with a file"):
        with atomic_path(dedup_project / "notes") as tmp:
            tmp.write_text("report\n")
    assert tree_hash(dedup_project / "notes") == before
    with pytest.raises(SystemExit) as stop:
        cli_main(["pr-report", "--out", "notes"])
    assert stop.value.code == 2 and "--out notes: is a folder" in capsys.readouterr().err
    assert tree_hash(dedup_project / "notes") == before


def test_atomic_path_refuses_the_working_directory_and_above(dedup_project):
    for path in (".", "..", str(dedup_project), str(dedup_project.parent)):
        with pytest.raises(TuneproofError):
            with atomic_path(path) as tmp:
                tmp.mkdir()
    assert (dedup_project / "notes" / "todo.md").is_file() and (dedup_project / ".git").is_dir()


def test_atomic_path_does_not_replace_a_folder_of_tracked_files(dedup_project):
    import subprocess

    subprocess.run(["git", "add", "notes"], cwd=dedup_project, check=True)
    with pytest.raises(TuneproofError, match="tracked by git"):
        with atomic_path(dedup_project / "notes") as tmp:
            tmp.mkdir()
    assert (dedup_project / "notes" / "todo.md").read_text() == "keep me\n"


def test_atomic_path_deletes_only_its_own_temp_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    stale = tmp_path / f".out.json{TMP_MARK}killed"  # what a killed run leaves
    stale.mkdir()
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    write_text(tmp_path / "out.json", "whole\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "out.json"]


def test_atomic_files_replaces_the_set_or_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "split"
    with atomic_files(out, ["a.jsonl", "b.jsonl"]) as tmp:
        (tmp / "a.jsonl").write_text("a1\n")
        (tmp / "b.jsonl").write_text("b1\n")
    with pytest.raises(TuneproofError, match="misses b.jsonl; nothing was replaced"):
        with atomic_files(out, ["a.jsonl", "b.jsonl"]) as tmp:
            (tmp / "a.jsonl").write_text("a2\n")
    assert [(out / n).read_text() for n in ("a.jsonl", "b.jsonl")] == ["a1\n", "b1\n"]
    assert sorted(p.name for p in out.iterdir()) == ["a.jsonl", "b.jsonl"]


def test_train_checkpoints_may_not_be_the_project(dedup_project):
    set_params(dedup_project, train={"checkpoints": "."})
    with pytest.raises(TuneproofError, match="train.checkpoints: '.' is the project folder"):
        train.main()
    assert (dedup_project / "notes" / "todo.md").is_file()


def test_checkpoints_are_cleared_only_in_a_folder_a_train_run_made(tmp_path):
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "model.safetensors").write_text("w")
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(TuneproofError, match="holds files no train run made"):
        checkpoints.clear_checkpoints(tmp_path)
    with pytest.raises(TuneproofError, match="holds files no train run made"):
        checkpoints.resumable_checkpoint(tmp_path, "fingerprint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "mine.txt"]
    (tmp_path / checkpoints.FINGERPRINT).write_text("{}")
    checkpoints.clear_checkpoints(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoints.FINGERPRINT]


def test_release_refuses_an_adapter_holding_a_symlink(project_dir, tmp_path_factory):
    from tuneproof.report import write_release

    secret = tmp_path_factory.mktemp("system") / "passwd"
    secret.write_text("root:x:0:0\n")
    adapter = project_dir / "models" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    os.symlink(secret, adapter / "notes.txt")
    paths = load_section(Paths, "paths")
    with pytest.raises(TuneproofError, match="symbolic link"):
        write_release(paths, "card")
    assert not (project_dir / paths.release).exists()


def test_a_cut_short_or_missing_stage_file_is_named_with_its_line(tmp_path):
    from tuneproof.io import read_json, read_jsonl

    (tmp_path / "probe.json").write_text('{"kl_base_finetune": 0.1, "base": {"text_')
    with pytest.raises(TuneproofError, match=r"probe.json:1: not valid JSON .*re-run the stage"):
        read_json(tmp_path / "probe.json")
    (tmp_path / "test.jsonl").write_text('{"id": "L1"}\n{"id": "L2"\n')
    with pytest.raises(TuneproofError, match=r"test.jsonl:2: not valid JSON"):
        read_jsonl(tmp_path / "test.jsonl")
    with pytest.raises(TuneproofError, match=r"nothing.json: not found"):
        read_json(tmp_path / "nothing.json")
