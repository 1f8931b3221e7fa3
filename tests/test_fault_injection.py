"""A stage stopped at any write leaves no mixed output set (issue 13): every file of the set is the
previous run's or the new run's, never some of each, and the metrics file - which readers take
as "the stage finished" - exists only beside a complete new set. The stop is injected at every
`os.replace` the stage makes (each one is a point where a kill could land), then a direct re-run
must restore the full new set and leave no temp folder."""

from __future__ import annotations

import os

import pytest

import tuneproof.io as io
from stages import split as split_stage
from tuneproof.io import TMP_MARK

from params_file import set_params
from split_data import family_records, outputs, write_dedup_records


class Stop(Exception):
    pass


def stop_at(call: int, monkeypatch) -> None:
    """Make the `call`-th os.replace of tuneproof.io raise, as a kill there would stop the stage."""
    real, count = os.replace, {"n": 0}

    def replace(src, dst):
        count["n"] += 1
        if count["n"] == call:
            raise Stop(f"stopped at replace {call}")
        return real(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)


def one_version(now: dict, old: dict, new: dict) -> set[str]:
    """The runs ("old", "new") that every surviving file could come from (a file may equal both)."""
    versions = {"old", "new"}
    for name, content in now.items():
        versions &= {kind for kind, run in (("old", old), ("new", new)) if run.get(name) == content}
    return versions


@pytest.mark.parametrize("call", range(1, 10))  # 4 files into the temp set, 4 into place, the metrics
def test_split_stopped_at_any_write_leaves_no_mixed_set(project_dir, monkeypatch, call):
    set_params(project_dir, split={"val_ratio": 0.1, "test_ratio": 0.1})
    write_dedup_records(project_dir, family_records(seed=11))
    split_stage.main()
    old = outputs(project_dir)
    write_dedup_records(project_dir, family_records(seed=12))  # new input: every output changes
    with monkeypatch.context() as patch:
        stop_at(call, patch)
        with pytest.raises(Stop):
            split_stage.main()
    now = outputs(project_dir)
    metrics = "metrics/split.json"
    assert metrics not in now  # removed first, written last: absent until the set is whole
    split_stage.main()
    new = outputs(project_dir)
    assert one_version(now, old, new), f"mixed set after a stop at write {call}"
    assert not list(project_dir.rglob(f"*{TMP_MARK}*"))


def dedup_outputs(project_dir) -> dict[str, bytes]:
    files = [project_dir / "data" / "dedup" / "records.jsonl", project_dir / "data" / "dedup" / "clusters.json",
             project_dir / "metrics" / "dedup.json"]
    return {str(f.relative_to(project_dir)): f.read_bytes() for f in files if f.exists()}


@pytest.mark.parametrize("call", range(1, 6))  # 2 files into the temp set, 2 into place, the metrics
def test_dedup_stopped_at_any_write_leaves_no_mixed_set(project_dir, monkeypatch, call):
    from stages import dedup
    from tuneproof.io import write_jsonl

    def raw(seed: int) -> list[dict]:
        return [{"prompt": f"{seed} {r['messages'][0]['content']}", "completion": r["completion"]}
                for r in family_records(seed=seed)]

    set_params(project_dir, paths={"raw": "mine.jsonl"}, dedup={"truth": None})
    write_jsonl(project_dir / "mine.jsonl", raw(1))
    dedup.main()
    old = dedup_outputs(project_dir)
    write_jsonl(project_dir / "mine.jsonl", raw(2))
    with monkeypatch.context() as patch:
        stop_at(call, patch)
        with pytest.raises(Stop):
            dedup.main()
    now = dedup_outputs(project_dir)
    assert "metrics/dedup.json" not in now
    dedup.main()
    new = dedup_outputs(project_dir)
    assert one_version(now, old, new), f"mixed set after a stop at write {call}"
    assert not list(project_dir.rglob(f"*{TMP_MARK}*"))
