"""A project where the cheap stages (dedup, split, compare) run for real, for the bad-input corpus
and the kill tests: raw data with near-copies, and compare's inputs (baseline, evaluate, probe,
train metrics, adapter) made up to fit the split files."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

from stages import compare, dedup, split
from tuneproof.io import read_jsonl, sha256_file, write_json, write_jsonl

from params_file import set_params
from scenarios import metrics_of, probe_result, scored
from split_data import family_records

RAW = "data/raw/mine.jsonl"
STAGES = {"dedup": dedup.main, "split": split.main, "compare": compare.main}
# Each stage's declared outputs (dvc.yaml) under the default paths: files or whole folders.
OUTPUTS = {
    "dedup": ["data/dedup/records.jsonl", "data/dedup/clusters.json", "metrics/dedup.json"],
    "split": ["data/split/train.jsonl", "data/split/val.jsonl", "data/split/test.jsonl", "data/split/audit.json",
              "metrics/split.json"],
    "compare": ["reports", "models/release", "metrics/compare.json"],
}
STRATEGIES = ("zero_shot", "few_shot", "retrieval")


def write_raw(root: Path, seed: int) -> None:
    """Raw prompt/completion lines: near-copy families and single records (tests/split_data.py)."""
    rows = [{"prompt": r["messages"][-1]["content"], "completion": r["completion"]}
            for r in family_records(families=12, singles=100, seed=seed)]
    write_jsonl(root / RAW, rows)


def write_compare_inputs(root: Path, seed: int) -> None:
    """Everything compare reads besides the split files, made up for the split's test records."""
    rng = random.Random(seed)
    test, train = read_jsonl(root / "data/split/test.jsonl"), read_jsonl(root / "data/split/train.jsonl")
    baseline_metrics = {}
    for name, accuracy in zip(STRATEGIES, (0.2, 0.4, 0.5)):
        rows = scored(test, accuracy, rng)
        write_jsonl(root / "outputs/baseline" / f"{name}.jsonl", rows)
        baseline_metrics[name] = metrics_of(rows)
    labels = Counter(json.loads(r["completion"])["intent"] for r in train)
    baseline_metrics["best"] = {"strategy": "retrieval", **baseline_metrics["retrieval"]}
    baseline_metrics["trivial"] = {"n_test": len(test), "completion_seen_in_train": 0.0,
                                   "majority_label": max(sorted(labels), key=labels.get)}
    write_json(root / "metrics/baseline.json", baseline_metrics)
    finetune = scored(test, 0.9, rng)
    write_jsonl(root / "outputs/evaluate/test.jsonl", finetune)
    write_json(root / "metrics/evaluate.json", {"finetune": metrics_of(finetune), "train_sample": {"task_success": 0.95}})
    write_json(root / "metrics/probe.json", probe_result())
    write_json(root / "metrics/train.json", {"best_val_loss": 0.3, "last_val_loss": 0.31, "best_step": 8, "steps": 10})
    adapter = root / "models/adapter"
    write_json(adapter / "adapter_config.json", {"r": 4, "seed": seed})
    write_json(adapter / "tuneproof_train.json", {"data": {"train": {"sha256": sha256_file(root / "data/split/train.jsonl")}}})


def build(root: Path, seed: int = 0) -> None:
    """Raw data, params and every cheap stage's outputs in `root` (the working directory)."""
    set_params(root, paths={"raw": RAW}, dedup={"truth": None},
               split={"val_ratio": 0.15, "test_ratio": 0.25},
               compare={"bootstrap_resamples": 1000})
    write_raw(root, seed)
    (root / "data/production").mkdir(parents=True, exist_ok=True)  # paths.production, empty: drift check not run
    dedup.main()
    split.main()
    write_compare_inputs(root, seed)
    compare.main()


def files_under(root: Path, names: list[str]) -> dict[str, bytes]:
    """relative path -> bytes of every file at or under `names` (symlinks: their target text)."""
    found = {}
    for name in names:
        top = root / name
        for path in ([top] if not top.is_dir() or top.is_symlink() else sorted(top.rglob("*"))):
            if path.is_symlink():
                found[str(path.relative_to(root))] = b"->" + str(path.readlink()).encode()
            elif path.is_file():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


def tree_hash(root: Path, exclude: list[str] = ()) -> str:
    """Hash of every path, file content and link target under `root` (.git included), except
    those at or under `exclude`: any other change shows."""
    digest = hashlib.sha256()
    skip = [root / e for e in exclude]
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_symlink():
            digest.update(str(path.readlink()).encode())
        elif path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
