"""demo.support_tickets: a deterministic, learnable demo task with a truthful duplicate ground truth."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from demo.support_tickets import (
    INTENTS,
    MAX_BASE_JACCARD,
    WITH_ORDER,
    benchmark_records,
    demo_records,
    near_copy,
    priority_from_text,
    write_demo,
)
from tuneproof.neardup import find_near_duplicates
from tuneproof.text import normalise

ROOT = Path(__file__).resolve().parents[1]
REPLY = re.compile(r"^Hi (?P<first>[A-Z][a-z]+), (?P<sentence>[^.]+)\. - Acme Support$")


@pytest.fixture(scope="module")
def demo():
    return demo_records()


def test_files_are_byte_identical_on_rerun(tmp_path):
    first = [p.read_bytes() for p in write_demo(tmp_path / "a")]
    second = [p.read_bytes() for p in write_demo(tmp_path / "b")]
    assert first == second
    truth = json.loads(first[1])
    assert truth["records"] == len(first[0].decode().splitlines()) == 1500


def test_completions_follow_the_house_style(demo):
    records, truth = demo
    conflicting = {line for g in truth["groups"] if g["kind"] == "conflict" for line in g["duplicates"]}
    seen_intents = set()
    for line, record in enumerate(records, start=1):
        label = json.loads(record["completion"])
        assert list(label) == ["intent", "priority", "reply"]
        assert label["intent"] in INTENTS
        # Planted conflicts carry another priority on purpose; every other label follows the rule.
        assert (label["priority"] == priority_from_text(record["prompt"])) != (line in conflicting)
        seen_intents.add(label["intent"])
        match = REPLY.match(label["reply"])
        assert match, label["reply"]
        assert match["first"].lower() in record["prompt"].lower()
        order = re.search(r"#(\d+)", label["reply"])
        assert (order is not None) == (label["intent"] in WITH_ORDER)
        if order:
            assert order.group(1) in record["prompt"]
    assert seen_intents == set(INTENTS)


def test_priority_rule():
    assert priority_from_text("Please help, this is URGENT") == "high"
    assert priority_from_text("I need it fixed today") == "high"
    assert priority_from_text("no rush, whenever") == "low"
    assert priority_from_text("no hurry. This is urgent") == "high"  # high wins
    assert priority_from_text("the urgently needed todays") == "medium"  # whole words only
    assert priority_from_text("Where is my parcel?") == "medium"


def test_ground_truth_matches_the_file(demo):
    records, truth = demo
    assert truth["counts"] == {"exact": 90, "near": 100, "conflict": 10}
    for group in truth["groups"]:
        original = records[group["original"] - 1]
        for line in group["duplicates"]:
            copy = records[line - 1]
            if group["kind"] == "exact":
                assert copy == original
            elif group["kind"] == "near":
                assert copy["completion"] == original["completion"] and copy["prompt"] != original["prompt"]
            else:
                assert copy["prompt"] == original["prompt"] and copy["completion"] != original["completion"]


def test_unique_tickets_are_not_near_duplicates_of_each_other(demo):
    records, truth = demo
    planted = {line for g in truth["groups"] for line in g["duplicates"]}
    bases = [r["prompt"] for line, r in enumerate(records, start=1) if line not in planted]
    assert len(bases) == truth["unique_tickets"] == len({normalise(b) for b in bases})
    assert find_near_duplicates(bases, MAX_BASE_JACCARD, 3, 256).clusters == []


def test_near_copy_keeps_labels():
    import random

    rng = random.Random(3)
    text = "Hi, please cancel my subscription, I do not want it. This is urgent. Thanks, Maria"
    for _ in range(20):
        copy = near_copy(text, rng)
        assert copy != text and priority_from_text(copy) == "high" and "maria" in copy.lower()


def test_benchmark_records():
    records, truth = benchmark_records(2000, seed=1)
    assert len(records) == 2000 and truth["counts"] == {"exact": 100, "near": 100, "conflict": 0}
    assert benchmark_records(2000, seed=1) == (records, truth)


def test_completions_are_short_for_the_base_tokenizer(demo, embedded_model_dir):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(embedded_model_dir / "tokenizer.json"))
    lengths = [len(e.ids) for e in tokenizer.encode_batch([r["completion"] for r in demo[0]], add_special_tokens=False)]
    assert max(lengths) <= 45, max(lengths)
