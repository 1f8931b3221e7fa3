"""Helpers for the baseline/evaluate stage tests: demo-like split files and a params.yaml that
points the stages at a tiny model with small, fast generation settings."""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from demo.support_tickets import make_ticket
from tuneproof.io import write_jsonl

from params_file import set_params


def demo_records(n: int, seed: int, first_id: int = 1) -> list[dict]:
    """n canonical demo-task records (ticket -> triage JSON) with ids L<first_id>..."""
    rng = random.Random(seed)
    return [{"id": f"L{first_id + i:06d}", "messages": [{"role": "user", "content": t["prompt"]}],
             "completion": t["completion"]} for i, t in enumerate(make_ticket(rng) for _ in range(n))]


def label_records(texts_labels: list[tuple[str, str]], first_id: int = 1) -> list[dict]:
    return [{"id": f"L{first_id + i:06d}", "messages": [{"role": "user", "content": text}], "completion": label}
            for i, (text, label) in enumerate(texts_labels)]


def setup_project(project_dir: Path, model_dir: Path, train: list[dict], test: list[dict],
                  **sections: dict) -> dict:
    """Write the split files and point params.yaml (already in project_dir) at `model_dir`;
    `sections` update params sections key by key. Returns the params written."""
    set_params(project_dir, **{"paths": {"base_model": str(model_dir)},
                               "generate": {"max_new_tokens": 6, "batch_size": 4}, **sections})
    params = yaml.safe_load((project_dir / "params.yaml").read_text())
    split = project_dir / params["paths"]["split"]
    write_jsonl(split / "train.jsonl", train)
    write_jsonl(split / "val.jsonl", train[: max(1, len(train) // 4)])  # val only chooses: a slice of train will do here
    write_jsonl(split / "test.jsonl", test)
    return params
