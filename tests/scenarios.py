"""Generated compare scenarios (recorded per-example scores, no model needed): the tasks, the rows
a system with a given accuracy would score, and what compare's input files hold for them."""

from __future__ import annotations

import json
import random
from collections import Counter

from tuneproof.compare_params import CompareParams
from tuneproof.contract import BaselineMetrics, CompareInputs, EvaluateMetrics, TrainInfo, TrainMetrics
from tuneproof.verdict import evaluate_evidence

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


def probe_result(drop: float = 0.0, kl: float = 0.05) -> dict:
    return {"base": {"text_loss": 3.0, "instruction_pass": 0.5},
            "finetune": {"text_loss": 3.05, "instruction_pass": 0.5 - drop}, "kl_base_finetune": kl}


def scenario(make, ft_acc: float, base_acc: dict[str, float], seed: int = 0, leak: bool = False,
             probe: dict | None = None, n_test: int = 120, train_acc: float | None = None):
    """`probe` None = the probe's default PASS result; pass {} for no probe results at all."""
    return evidence_of(scenario_inputs(make, ft_acc, base_acc, seed, leak, probe, n_test, train_acc))


def evidence_of(files: dict, **optional) -> dict:
    """evaluate_evidence on what the files of `scenario_inputs` hold, as reports/evidence.json has it."""
    inputs = CompareInputs(
        baseline_rows=files["baseline_rows"], baseline=BaselineMetrics.from_json(files["baseline_metrics"]),
        finetune_rows=files["finetune_rows"], evaluate=EvaluateMetrics.from_json(files["evaluate_metrics"]),
        test=files["test"], train=files["train"], train_sha256=files["train_sha_now"], audit=files["audit"],
        train_info=TrainInfo(train_sha256=files["train_sha_seen"]),
        train_metrics=TrainMetrics.from_json(files["train_metrics"]), probe=files["probe"], **optional)
    return evaluate_evidence(inputs, files["metric"], files["params"]).to_json()


def scenario_inputs(make, ft_acc: float, base_acc: dict[str, float], seed: int = 0, leak: bool = False,
                    probe: dict | None = None, n_test: int = 120, train_acc: float | None = None) -> dict:
    """What compare's input files hold for a generated scenario (see `scenario`, `evidence_of`)."""
    rng = random.Random(seed)
    train, test = make(300, 0, rng), make(n_test, 1000, rng)
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
                        "train_sample": {"task_success": min(1.0, ft_acc + 0.03) if train_acc is None else train_acc}}
    probe = probe_result() if probe is None else probe or None
    train_metrics = {"best_val_loss": 0.30, "last_val_loss": 0.31, "best_step": 80, "steps": 100}
    audit = {"pass": True, "prompt": {"max": 0.4, "threshold": 0.8}, "ngram": 5}
    return dict(baseline_rows=baseline_rows, baseline_metrics=baseline_metrics, finetune_rows=finetune_rows,
                evaluate_metrics=evaluate_metrics, train_metrics=train_metrics, probe=probe, audit=audit, test=test,
                train=train, train_sha_seen="sha", train_sha_now="sha", metric="task_success", params=CompareParams())
