"""Synthetic records for the split tests and the cheap stages' test projects: texts of random
made-up words (unrelated texts share almost no word 3-grams) and families of near-copies."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

from tuneproof.config import SPLITS

VOCAB = [f"{a}{b}" for a in ("ba", "ke", "mo", "ti", "ru", "sa", "lo", "pe", "du", "vi")
         for b in ("rn", "sk", "lt", "mp", "ng", "ft", "rd", "xe", "zo", "qu")]
INTENTS = ("billing_refund", "shipping_delay", "account_access")


def random_text(rng: random.Random, words: int = 14) -> str:
    """A sentence of random made-up words: unrelated texts share (almost) no word 3-grams."""
    return " ".join(rng.choice(VOCAB) for _ in range(words)).capitalize() + "."


def record(i: int, prompt: str, label: str | None = "billing_refund", system: str | None = None) -> dict:
    completion = json.dumps({"intent": label, "priority": "low"}) if label is not None else "no json here"
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return {"id": f"L{i:06d}", "messages": messages, "completion": completion}


def edited_copy(text: str) -> str:
    """A leak: the same text with one word changed, re-cased and re-punctuated."""
    words = text.rstrip(".").split()
    words[len(words) // 2] = "changed"
    return " ".join(words).upper() + "!!"


def family_records(families: int = 30, per_family: int = 3, singles: int = 150, seed: int = 0) -> list[dict]:
    """Near-duplicate families (edited copies of one text) plus unrelated single records."""
    rng = random.Random(seed)
    records = []
    for f in range(families):
        base = random_text(rng, 16)
        for k in range(per_family):
            records.append(record(len(records) + 1, base if k == 0 else edited_copy(base) + " " * k,
                                  INTENTS[f % len(INTENTS)]))
    for s in range(singles):
        records.append(record(len(records) + 1, random_text(rng), INTENTS[s % len(INTENTS)]))
    return records


def write_dedup_records(project_dir: Path, records: list[dict]) -> Path:
    """`records` as the dedup stage's output, where params.yaml's paths.dedup puts it (split's input)."""
    params = yaml.safe_load((project_dir / "params.yaml").read_text())
    path = project_dir / params["paths"]["dedup"] / "records.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def outputs(project_dir: Path) -> dict[str, bytes]:
    """relative path -> bytes of every file the split stage declares that exists now."""
    params = yaml.safe_load((project_dir / "params.yaml").read_text())
    split_dir = project_dir / params["paths"]["split"]
    files = [split_dir / f"{s}.jsonl" for s in SPLITS] + [split_dir / "audit.json",
                                                          project_dir / params["paths"]["metrics"] / "split.json"]
    return {str(f.relative_to(project_dir)): f.read_bytes() for f in files if f.exists()}
