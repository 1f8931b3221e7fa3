"""Provenance and resume: what a training run is (its fingerprint) and the checkpoints that belong to it.

<train.checkpoints> holds Trainer checkpoints and FINGERPRINT, the sha256 of everything that
determines the trajectory (resolved params, system prompt, base model weights, data hashes). An
interrupted `dvc repro` resumes the last checkpoint only when the fingerprint matches; checkpoints
of any other run are deleted, and all of them go after a successful run.
"""

from __future__ import annotations

import dataclasses
import glob
import shutil
from pathlib import Path

from tuneproof.config import SOURCE_INFO, split_file
from tuneproof.io import TuneproofError, dumps, read_json, sha256_file, sha256_text, write_json
from tuneproof.train_config import TrainParams

FINGERPRINT = "tuneproof_fingerprint.json"  # inside <train.checkpoints>: what the checkpoints belong to


def base_model_info(base_dir: str | Path) -> dict:
    """What the base model is: the base_model stage's SOURCE_INFO plus the weights' sha256."""
    base_dir = Path(base_dir)
    source = base_dir / SOURCE_INFO
    info = read_json(source) if source.is_file() else {}
    weights = sorted(glob.glob(str(base_dir / "*.safetensors")))
    if not weights:
        raise TuneproofError(f"{base_dir}: no *.safetensors weights; run the base_model stage (dvc repro base_model)")
    return {**info, "path": str(base_dir),
            "weights_sha256": {Path(w).name: sha256_file(w) for w in weights}}


def data_info(split_dir: str | Path, splits: dict[str, list[dict]]) -> dict:
    """sha256 and record count of each split file read (`splits`: name -> its records)."""
    return {name: {"sha256": sha256_file(Path(split_dir) / split_file(name)), "records": len(records)}
            for name, records in splits.items()}


def run_provenance(params: TrainParams, system: str | None, base_dir: str | Path, data: dict) -> dict:
    """What a run is, as ADAPTER_INFO records it: resolved params, system prompt, base model
    (base_model_info), split data (data_info), and their fingerprint."""
    base = base_model_info(base_dir)
    return {"params": dataclasses.asdict(params), "method": params.method, "seed": params.seed,
            "prompt_system": system, "base_model": base, "data": data,
            "fingerprint": run_fingerprint(params, system, base, data)}


def run_fingerprint(params: TrainParams, system: str | None, base: dict, data: dict) -> str:
    """sha256 of everything that determines the training trajectory: checkpoints are resumed only
    by a run with the same fingerprint."""
    return sha256_text(dumps({"params": dataclasses.asdict(params), "prompt_system": system,
                              "base_model": base, "data": data}))


def resumable_checkpoint(checkpoints: str | Path, fingerprint: str, reset: bool = True) -> str | None:
    """The last checkpoint of an interrupted run with this fingerprint, else None. Checkpoints of
    any other run (other params, data or base model) are deleted when `reset` (the main process;
    the others only read, after it): they must not be resumed."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints = Path(checkpoints)
    marker = checkpoints / FINGERPRINT
    if marker.is_file() and read_json(marker).get("fingerprint") == fingerprint:
        last = get_last_checkpoint(str(checkpoints))
        if last is not None:
            return last
    if not reset:
        return None
    clear_checkpoints(checkpoints)
    write_json(marker, {"fingerprint": fingerprint})
    return None


def clear_checkpoints(checkpoints: str | Path) -> None:
    """After a successful run the adapter holds the result; checkpoints (with optimizer state:
    ~3x the model for a full fine-tune) are only useful to resume, so they go. The fingerprint
    file stays, so the dvc.yaml output exists and is the same small file on every re-run. A folder
    without it that holds anything was not made by this stage and is refused, never emptied."""
    checkpoints = Path(checkpoints)
    if not checkpoints.is_dir():
        return
    entries = [p for p in checkpoints.iterdir() if p.name != FINGERPRINT]
    if entries and not (checkpoints / FINGERPRINT).is_file():
        raise TuneproofError(f"train.checkpoints: {checkpoints} holds files no train run made (e.g. {entries[0].name}); "
                             "name an empty or new folder, e.g. models/checkpoints")
    for path in entries:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
