"""Real kills (issue 13): dedup, split and compare are SIGKILLed at 20 seeded random points each.

Each kill runs the stage in a forked child (no interpreter start-up, so 60 kills stay cheap) whose
file-system calls (os.replace, unlink, rmdir, mkdir, opening a file to write) are counted; at the
drawn call the child SIGKILLs itself, just before or just after it, so no `finally`, no cleanup
runs, exactly as `kill -9` would leave things. The project is a real git + DVC project whose
dvc.lock records the new run. After each kill:
  * the output set is the old run's or the new run's, never some of each, and the metrics file
    (which says the stage finished) only stands beside a whole set;
  * `dvc status` does not call the stage up to date unless its outputs are exactly the new set;
  * a direct re-run writes the complete new set, byte-identical to an uninterrupted run, and no
    temp folder is left.
"""

from __future__ import annotations

import builtins
import io as pyio
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneproof.io import TMP_MARK

import cheap_project as cp
from conftest import ROOT, git_init

KILLS = 20
SEEDS = {"dedup": 101, "split": 202, "compare": 303}
WRAPPED = ("replace", "unlink", "rmdir", "mkdir")


def counted_calls(on_call) -> list:
    """Wrap the file-system calls the stages make: `on_call(phase)` runs before ("before") and
    after ("after") each. Returns the undo list."""
    undo = []

    def wrap(owner, name, writes_only=False):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            counts = not writes_only or any(c in (args[1] if len(args) > 1 else kwargs.get("mode", "r")) for c in "wax+")
            if not counts:
                return real(*args, **kwargs)
            on_call("before")
            try:
                return real(*args, **kwargs)
            finally:  # a call that fails (mkdir of an existing folder) is still a point to kill after
                on_call("after")

        setattr(owner, name, wrapper)
        undo.append((owner, name, real))

    for name in WRAPPED:
        wrap(os, name)
    wrap(builtins, "open", writes_only=True)
    wrap(pyio, "open", writes_only=True)
    return undo


def count_calls(stage: str) -> int:
    """File-system calls of an uninterrupted run of `stage` (which rewrites the same outputs)."""
    seen = {"n": 0}
    undo = counted_calls(lambda phase: seen.__setitem__("n", seen["n"] + (phase == "before")))
    try:
        cp.STAGES[stage]()
    finally:
        for owner, name, real in undo:
            setattr(owner, name, real)
    return seen["n"]


def run_killed(stage: str, call: int, phase: str) -> int:
    """Run `stage` in a forked child that SIGKILLs itself at its `call`-th file-system call."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            seen = {"n": 0}

            def on_call(when: str) -> None:
                if when == "before":
                    seen["n"] += 1
                if seen["n"] == call and when == phase:
                    os.kill(os.getpid(), signal.SIGKILL)

            counted_calls(on_call)
            cp.STAGES[stage]()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return status


def restore(root: Path, stage: str, files: dict[str, bytes]) -> None:
    """Put a stage's output set back to `files` (the old run's)."""
    for name in cp.OUTPUTS[stage]:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)


def one_version(now: dict, old: dict, new: dict) -> set[str]:
    """The runs every surviving file could come from (a file may equal both)."""
    versions = {"old", "new"}
    for name, content in now.items():
        versions &= {kind for kind, run in (("old", old), ("new", new)) if run.get(name) == content}
    return versions


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory):
    """A git + DVC project holding the old (seed 0) and new (seed 1) outputs of every cheap stage;
    the new ones are in place and committed to dvc.lock."""
    root = tmp_path_factory.mktemp("kill") / "project"
    root.mkdir()
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {s: pipeline["stages"][s] for s in cp.STAGES}}))
    for package in ("stages", "tuneproof", "eval"):  # the deps dvc.yaml lists
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    git_init(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        dvc("init", "-q")
        cp.build(root, seed=0)
        old = {stage: cp.files_under(root, outs) for stage, outs in cp.OUTPUTS.items()}
        cp.write_raw(root, seed=1)
        cp.STAGES["dedup"]()
        cp.STAGES["split"]()
        cp.write_compare_inputs(root, seed=1)
        dvc("commit", "-f", "-q", *cp.STAGES)
        cp.STAGES["compare"]()  # again: the report quotes dvc.lock's hash of the raw file
        dvc("commit", "-f", "-q", "compare")
        new = {stage: cp.files_under(root, outs) for stage, outs in cp.OUTPUTS.items()}
    finally:
        os.chdir(cwd)
    return root, old, new


def dvc(*args: str) -> None:
    subprocess.run([str(Path(sys.executable).with_name("dvc")), *args], check=True)


def up_to_date(root: Path, stage: str) -> bool:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return not repo.status(targets=[stage])


@pytest.mark.parametrize("stage", list(cp.STAGES))
def test_a_killed_stage_leaves_nothing_that_passes_for_output(dvc_project, monkeypatch, stage):
    root, old, new = dvc_project
    monkeypatch.chdir(root)
    assert old[stage] != new[stage] and up_to_date(root, stage)
    calls = count_calls(stage)
    assert cp.files_under(root, cp.OUTPUTS[stage]) == new[stage]
    rng = random.Random(SEEDS[stage])
    points = [(rng.randint(1, calls), rng.choice(("before", "after"))) for _ in range(KILLS)]
    for call, phase in points:
        restore(root, stage, old[stage])
        status = run_killed(stage, call, phase)
        where = f"{stage} killed {phase} file-system call {call} of {calls}"
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, where
        now = cp.files_under(root, cp.OUTPUTS[stage])
        if up_to_date(root, stage):
            assert now == new[stage], f"dvc status accepts a partial set: {where}"
        now = {name: content for name, content in now.items() if TMP_MARK not in name}  # temp files: checked below
        assert one_version(now, old[stage], new[stage]), f"mixed output set: {where}"
        metrics = cp.OUTPUTS[stage][-1]
        assert metrics not in now or now in (old[stage], new[stage]), f"metrics beside a partial set: {where}"
        cp.STAGES[stage]()
        assert cp.files_under(root, cp.OUTPUTS[stage]) == new[stage], f"re-run differs: {where}"
        assert not list(root.rglob(f"*{TMP_MARK}*")), f"temp folder left: {where}"
        assert up_to_date(root, stage), where
