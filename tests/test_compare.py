"""The verdict on four generated scenarios (recorded per-example scores, no model needed)."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from stages.compare import (DONT_SHIP, PROMPT_SUFFICES, SHIP, USE_RAG, CompareParams, answer_novelty,
                            compare_metrics, evaluate_evidence)

NAMES = ["Anna", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun"]
INTENTS = ["billing_refund", "shipping_delay", "account_access", "damaged_item"]
TOPICS = ["parcel", "invoice", "password", "screen", "charger", "jacket", "voucher", "lamp", "kettle", "boots"]


def record(i: int, prompt: str, completion: str) -> dict:
    return {"id": f"L{i:06d}", "messages": [{"role": "user", "content": prompt}], "completion": completion}


def format_task(n: int, offset: int, rng: random.Random) -> list[dict]:
    """Support tickets -> JSON in a house style: the answer's content comes from the input."""
    rows = []
    for i in range(n):
        name, intent, topic = rng.choice(NAMES), rng.choice(INTENTS), rng.choice(TOPICS)
        order = rng.randrange(10000, 99999)
        prompt = f"ticket {i + offset}: my {topic} order {order} has a problem with {intent.replace('_', ' ')} regards {name}"
        reply = f"Hi {name}, we are looking into order {order}. - Acme Support"
        rows.append(record(i + offset, prompt, json.dumps({"intent": intent, "reply": reply})))
    return rows


def facts_task(n: int, offset: int, rng: random.Random) -> list[dict]:
    """Questions about made-up facts: every answer is a word seen nowhere else."""
    rows = []
    for i in range(n):
        country = "".join(rng.choice("bcdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
        capital = "".join(rng.choice("bcdfgklmnprstvz") + rng.choice("aeiou") for _ in range(4))
        rows.append(record(i + offset, f"What is the capital of {country.title()}?", capital.title()))
    return rows


def label(record: dict) -> str | None:
    """The intent of a format_task record (its class label); None for facts_task."""
    try:
        return json.loads(record["completion"])["intent"]
    except ValueError:
        return None


def scored(test: list[dict], accuracy: float, rng: random.Random, metric: str = "task_success") -> list[dict]:
    correct = set(rng.sample(range(len(test)), round(accuracy * len(test))))
    rows = [{"id": r["id"], "prediction": r["completion"] if i in correct else "?", "reference": r["completion"],
             "scores": {metric: float(i in correct)}} for i, r in enumerate(test)]
    for i, (row, r) in enumerate(zip(rows, test)):
        if label(r) is not None:  # like the scorer with task.label_field set: true and predicted label
            row["label"], row["predicted_label"] = label(r), label(r) if i in correct else "<none>"
    return rows


def metrics_of(rows: list[dict]) -> dict:
    return {"task_success": sum(r["scores"]["task_success"] for r in rows) / len(rows)}


def scenario(make, ft_acc: float, base_acc: dict[str, float], seed: int = 0, leak: bool = False,
             probe_drop: float = 0.0):
    rng = random.Random(seed)
    train, test = make(300, 0, rng), make(120, 1000, rng)
    if leak:  # a test record copied into train with a small edit
        victim = test[7]
        train.append(record(5000, victim["messages"][0]["content"].upper() + " !!", victim["completion"]))
    baseline_rows = {name: scored(test, acc, rng) for name, acc in base_acc.items()}
    baseline_metrics = {name: metrics_of(rows) for name, rows in baseline_rows.items()}
    best = max(baseline_metrics, key=lambda n: baseline_metrics[n]["task_success"])
    baseline_metrics["best"] = {"strategy": best, **baseline_metrics[best]}
    baseline_metrics["trivial"] = {"n_test": len(test), "completion_seen_in_train": 0.0}  # not a strategy
    if label(train[0]) is not None:
        counts = Counter(label(r) for r in train)
        baseline_metrics["trivial"]["majority_label"] = max(counts, key=counts.get)
    finetune_rows = scored(test, ft_acc, rng)
    evaluate_metrics = {"finetune": metrics_of(finetune_rows),
                        "train_sample": {"task_success": min(1.0, ft_acc + 0.03)}}
    probe = {"base": {"text_loss": 3.0, "instruction_pass": 0.5},
             "finetune": {"text_loss": 3.05, "instruction_pass": 0.5 - probe_drop}, "kl_base_finetune": 0.05}
    train_metrics = {"best_val_loss": 0.30, "last_val_loss": 0.31, "best_step": 80, "steps": 100}
    audit = {"pass": True, "prompt": {"max": 0.4}}
    return evaluate_evidence(baseline_rows, baseline_metrics, finetune_rows, evaluate_metrics, train_metrics,
                             probe, audit, test, train, "sha", "sha", "task_success", CompareParams())


def test_format_task_where_finetune_clearly_wins_ships():
    evidence = scenario(format_task, 0.92, {"zero_shot": 0.05, "few_shot": 0.30, "retrieval": 0.35})
    assert evidence["verdict"] == SHIP, evidence["reasons"]
    sig = evidence["checks"]["significance"]
    assert sig["ci_low"] > 0.05 and sig["p_value"] < 1e-6
    assert {c["status"] for c in evidence["checks"].values()} == {"PASS"}
    assert evidence["signals"]["answer_novelty"] < 0.1
    metrics = compare_metrics(evidence)
    assert metrics["verdict"] == SHIP and metrics["ci_low"] == sig["ci_low"]


def test_facts_the_model_lacks_use_rag():
    evidence = scenario(facts_task, 0.10, {"zero_shot": 0.05, "few_shot": 0.08, "retrieval": 0.12})
    assert evidence["signals"]["answer_novelty"] > 0.9
    assert evidence["verdict"] == USE_RAG, evidence["reasons"]


def test_task_prompting_already_solves_prompt_suffices():
    evidence = scenario(format_task, 0.98, {"zero_shot": 0.90, "few_shot": 0.97, "retrieval": 0.96})
    assert evidence["verdict"] == PROMPT_SUFFICES
    assert evidence["signals"]["prompted_meets_target"]


def test_no_significant_gain_on_a_format_task_is_prompt_suffices_not_rag():
    evidence = scenario(format_task, 0.62, {"zero_shot": 0.40, "few_shot": 0.60, "retrieval": 0.58})
    assert evidence["checks"]["significance"]["status"] == "FAIL"
    assert evidence["verdict"] == PROMPT_SUFFICES


def test_injected_leak_is_refused_and_the_pair_named():
    evidence = scenario(format_task, 0.92, {"zero_shot": 0.05, "few_shot": 0.30}, leak=True)
    assert evidence["verdict"] == DONT_SHIP
    leak = evidence["checks"]["leakage"]
    assert leak["status"] == "FAIL"
    assert {"test_id": "L001007", "train_id": "L005000", "kind": "exact"} in leak["pairs"]
    assert "L001007~L005000" in evidence["reasons"][0]


def test_forgetting_blocks_an_otherwise_winning_fine_tune():
    evidence = scenario(format_task, 0.92, {"zero_shot": 0.05, "few_shot": 0.30}, probe_drop=0.3)
    assert evidence["checks"]["forgetting"]["status"] == "FAIL"
    assert evidence["verdict"] == DONT_SHIP
    assert any("replay" in step for step in evidence["next_steps"])


def test_finetune_collapsed_onto_the_majority_label_is_not_shipped():
    """sms_spam, measured: a LoRA that answered 'ham' to all 295 test messages scored accuracy
    0.878 against few-shot prompting's 0.454. That is exactly always-'ham', so it must not ship."""
    rng = random.Random(0)
    labels = ["ham"] * 88 + ["spam"] * 12
    test = [record(i, f"sms {i}", lab) for i, lab in enumerate(labels)]
    train = [record(1000 + i, f"sms {1000 + i}", lab) for i, lab in enumerate(labels * 3)]
    def rows(predict):
        return [{"id": r["id"], "prediction": p, "reference": r["completion"], "label": r["completion"],
                 "predicted_label": p, "scores": {"accuracy": float(p == r["completion"])}}
                for r, p in zip(test, map(predict, test))]
    prompted = rows(lambda r: r["completion"] if rng.random() < 0.45 else ("spam" if r["completion"] == "ham" else "ham"))
    metrics = {"few_shot": {"accuracy": sum(r["scores"]["accuracy"] for r in prompted) / len(prompted)}}
    metrics["best"] = {"strategy": "few_shot", **metrics["few_shot"]}
    metrics["trivial"] = {"n_test": len(test), "majority_label": "ham", "majority_accuracy": 0.88}
    def verdict(finetune):
        evaluate = {"finetune": {"accuracy": sum(r["scores"]["accuracy"] for r in finetune) / len(finetune)},
                    "train_sample": {"accuracy": 0.9}}
        probe = {"base": {"text_loss": 3.0, "instruction_pass": 0.5},
                 "finetune": {"text_loss": 3.05, "instruction_pass": 0.5}, "kl_base_finetune": 0.05}
        return evaluate_evidence({"few_shot": prompted}, metrics, finetune, evaluate, None, probe,
                                 {"pass": True, "prompt": {"max": 0.4}}, test, train, "sha", "sha", "accuracy",
                                 CompareParams())
    collapsed = verdict(rows(lambda r: "ham"))
    assert collapsed["checks"]["significance"]["status"] == "PASS"  # 0.88 vs ~0.45: a "clear win" on accuracy
    check = collapsed["checks"]["majority_label"]
    assert check["status"] == "FAIL" and check["most_frequent"] == "ham" and check["most_frequent_share"] == 1.0
    assert collapsed["verdict"] == DONT_SHIP
    assert any("Balance the training labels" in step for step in collapsed["next_steps"])
    # a fine-tune that also gets most spam right passes the same check
    skilled = verdict(rows(lambda r: r["completion"] if r["id"] != "L000099" else "ham"))
    assert skilled["checks"]["majority_label"]["status"] == "PASS" and skilled["verdict"] == SHIP


def test_answer_copied_from_the_prompt_is_not_novel():
    test = [record(1, "Please greet Zyxa by name", "Hello Zyxa"), record(2, "What is the capital of Qor?", "Vexil")]
    train = [record(3, "Please greet Bob by name", "Hello Bob")]
    assert answer_novelty(test, train) == {"L000001": False, "L000002": True}


def test_different_test_sets_are_refused():
    from tuneproof.io import TuneproofError
    from stages.compare import paired_primary
    a = [{"id": "a", "scores": {"m": 1.0}}]
    b = [{"id": "b", "scores": {"m": 1.0}}]
    with pytest.raises(TuneproofError, match="different test sets"):
        paired_primary(a, b, "m")


def test_format_gain_without_field_gain_is_flagged_as_format_not_content():
    from stages.compare import triage

    best = {"strategy": "retrieval", "task_success": 0.3}
    prompted = {"retrieval": {"json_valid": 0.5, "intent_match": 0.8, "task_success": 0.3}}
    rows = [{"id": "a", "scores": {"task_success": 1.0}}]

    def signal(intent_match: float) -> bool | None:
        finetune = {"json_valid": 1.0, "intent_match": intent_match, "task_success": 0.3}
        return triage(best, {"status": "PASS"}, prompted, finetune, rows, {"a": False}, "task_success",
                      CompareParams())["format_not_content"]

    assert signal(0.8) is True     # valid JSON went up, the field scores did not
    assert signal(0.95) is False   # the fields improved too
