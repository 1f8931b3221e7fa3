"""Stage `compare`: the verdict, with evidence — ship the fine-tune only if it provably should.

    python -m stages.compare    # reads params.yaml: compare, score.primary, task.label_field, paths

Inputs: per-example scores of every prompted strategy (baseline) and of the fine-tune (evaluate),
the train stage's metrics and provenance, the split audit, the probe, and the split files.

Checks (each PASS / FAIL / WARN with its evidence):
  * same_test_set  - baseline and fine-tune were scored on exactly the same test ids.
  * significance   - paired bootstrap CI of primary(fine-tune) - primary(best prompted strategy);
                     "clearly wins" = CI lower bound > compare.min_gain. McNemar's exact p for
                     binary scores is reported beside it.
  * leakage        - the split audit passed, AND an independent re-check of the test prompts
                     against the train file the adapter actually saw (its sha256 must match the
                     one recorded at training): exact normalised matches and word-shingle MinHash
                     near-duplicates (a different measure from the audit's character n-grams).
  * forgetting     - probe: general-text loss increase, KL(base || tuned), instruction pass drop.
  * overfitting    - train-sample vs test gap on the primary metric (FAIL above the limit);
                     validation loss rising after the best step (WARN: early stopping kept the best).
  * majority_label - tasks with a class label: the fine-tune's label accuracy must beat always
                     answering the majority train label (paired bootstrap, CI lower bound > 0; not
                     min_gain, which a perfect model could not clear on a 97%-majority task). A
                     fine-tune collapsed onto the majority class beats weak prompting on the
                     accuracy of an imbalanced task while having learnt nothing.
Triage signals (seed step 1: is fine-tuning the right tool?):
  * prompting_suffices - the best prompted strategy already meets compare.target, or the
                         fine-tune is not clearly better than it.
  * knowledge_gap      - answer novelty (share of test answers whose content words occur neither
                         in any training completion nor in the record's own prompt) is high, and
                         either retrieval few-shot does at least as well as the fine-tune or the
                         fine-tune fails more on novel answers than on familiar ones.
  * format_not_content - for JSON tasks: validity/style improved but field correctness did not.
Verdict: leakage FAIL -> DON'T SHIP; prompted meets target -> PROMPT SUFFICES; no clear win ->
USE RAG when the knowledge-gap signal holds, else PROMPT SUFFICES; a clear win with forgetting,
overfitting or majority_label FAIL -> DON'T SHIP; else SHIP.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tuneproof.cli_util import run_main
from tuneproof.config import Paths, Task
from tuneproof.io import TuneproofError, read_json, read_jsonl, sha256_file, write_json
from tuneproof.neardup import near_duplicate_clusters, normalise
from tuneproof.params import load_section
from tuneproof.records import prompt_text
from tuneproof.report import strategy_metrics, write_outputs
from tuneproof.scoring import FIELD_MATCH, ScoreParams
from tuneproof.stats import mcnemar_exact, paired_bootstrap

SHIP, DONT_SHIP, PROMPT_SUFFICES, USE_RAG = "SHIP", "DON'T SHIP", "PROMPT SUFFICES", "USE RAG"
PASS, FAIL, WARN, NA = "PASS", "FAIL", "WARN", "N/A"
STOPWORDS = frozenset("""a an and are as at be but by for from has have he her his i in is it its
    of on or our she that the their them they this to was we were will with you your""".split())


@dataclass(frozen=True)
class LeakageParams:
    threshold: float = 0.8      # word-shingle Jaccard above which a test prompt counts as seen in training
    shingle_size: int = 3       # words per shingle
    num_perm: int = 128         # MinHash permutations


@dataclass(frozen=True)
class ForgettingParams:
    max_loss_increase: float = 0.10     # relative increase of general-text loss allowed (0.10 = +10%)
    max_kl: float = 0.5                 # mean KL(base || tuned) per token allowed, in nats
    max_instruction_drop: float = 0.15  # absolute drop of the general-instruction pass rate allowed


@dataclass(frozen=True)
class OverfittingParams:
    max_train_test_gap: float = 0.15    # primary(train sample) - primary(test) allowed
    max_val_rise: float = 0.10          # relative rise of val loss after its best step before a WARN


@dataclass(frozen=True)
class KnowledgeParams:
    novelty_threshold: float = 0.5      # answer novelty above which the task looks like knowledge, not format


@dataclass(frozen=True)
class CompareParams:
    min_gain: float = 0.05              # fine-tune must beat the best prompted strategy by more than this (CI lower bound)
    target: float = 0.95                # primary metric that is good enough: prompted already there -> PROMPT SUFFICES
    bootstrap_resamples: int = 10_000   # paired bootstrap resamples
    confidence: float = 0.95            # confidence level of the interval
    seed: int = 0                       # bootstrap seed
    leakage: LeakageParams = field(default_factory=LeakageParams)
    forgetting: ForgettingParams = field(default_factory=ForgettingParams)
    overfitting: OverfittingParams = field(default_factory=OverfittingParams)
    knowledge: KnowledgeParams = field(default_factory=KnowledgeParams)


def check(name: str, status: str, evidence: str, **data) -> dict:
    return {"name": name, "status": status, "evidence": evidence, **data}


def paired_primary(finetune: list[dict], baseline: list[dict], metric: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Align two systems' per-example rows by id; error if they were not scored on the same test set."""
    ft = {row["id"]: row["scores"][metric] for row in finetune}
    base = {row["id"]: row["scores"][metric] for row in baseline}
    if set(ft) != set(base):
        missing, extra = sorted(set(base) - set(ft))[:5], sorted(set(ft) - set(base))[:5]
        raise TuneproofError(f"baseline and fine-tune were scored on different test sets "
                             f"(only in baseline: {missing}, only in fine-tune: {extra}); re-run both")
    ids = sorted(ft)
    return ids, np.array([ft[i] for i in ids], float), np.array([base[i] for i in ids], float)


def significance(finetune: list[dict], baseline: list[dict], metric: str, params: CompareParams) -> dict:
    _, a, b = paired_primary(finetune, baseline, metric)
    boot = paired_bootstrap(a, b, params.bootstrap_resamples, params.seed, params.confidence)
    binary = bool(np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all())
    mcnemar = mcnemar_exact(a, b) if binary else None
    wins = boot.ci_low > params.min_gain
    evidence = (f"{metric}: fine-tune {a.mean():.3f} vs best prompted {b.mean():.3f}, gain {boot.mean_diff:+.3f}, "
                f"{100 * params.confidence:.0f}% CI [{boot.ci_low:+.3f}, {boot.ci_high:+.3f}] over {boot.n} paired examples"
                + (f"; McNemar exact p = {mcnemar.p_value:.2g} ({mcnemar.a_only} fixed, {mcnemar.b_only} broken)" if mcnemar else "")
                + f"; clearly wins = CI lower bound > {params.min_gain}")
    return check("significance", PASS if wins else FAIL, evidence, gain=boot.mean_diff, ci_low=boot.ci_low,
                 ci_high=boot.ci_high, n=boot.n, finetune=float(a.mean()), baseline=float(b.mean()),
                 p_value=mcnemar.p_value if mcnemar else None)


def leaked_pairs(test: list[dict], train: list[dict], params: LeakageParams) -> list[dict]:
    """Test records whose prompt occurs in the training file: exact after normalisation, or a
    word-shingle near-duplicate (MinHash LSH, confirmed Jaccard >= threshold)."""
    train_by_norm = {}
    for record in train:
        train_by_norm.setdefault(normalise(prompt_text(record)), record["id"])
    pairs = [{"test_id": r["id"], "train_id": train_by_norm[normalise(prompt_text(r))], "kind": "exact"}
             for r in test if normalise(prompt_text(r)) in train_by_norm]
    exact_ids = {p["test_id"] for p in pairs}
    texts = [prompt_text(r) for r in test] + [prompt_text(r) for r in train]
    for cluster in near_duplicate_clusters(texts, params.threshold, params.shingle_size, params.num_perm):
        test_members = [i for i in cluster if i < len(test)]
        train_members = [i - len(test) for i in cluster if i >= len(test)]
        for i in test_members:
            if train_members and test[i]["id"] not in exact_ids:
                pairs.append({"test_id": test[i]["id"], "train_id": train[train_members[0]]["id"], "kind": "near"})
    return sorted(pairs, key=lambda p: p["test_id"])


def leakage(audit: dict, test: list[dict], train: list[dict], train_sha_seen: str | None,
            train_sha_now: str, params: LeakageParams) -> dict:
    problems = []
    if not audit.get("pass", False):
        problems.append("the split stage's contamination audit did not pass")
    if train_sha_seen is not None and train_sha_seen != train_sha_now:
        problems.append(f"the adapter was trained on a different train file (sha256 {train_sha_seen[:12]}, "
                        f"now {train_sha_now[:12]}); re-run train")
    pairs = leaked_pairs(test, train, params)
    if pairs:
        shown = ", ".join(f"{p['test_id']}~{p['train_id']} ({p['kind']})" for p in pairs[:10])
        problems.append(f"{len(pairs)} test prompt(s) found in the training file: {shown}")
    evidence = "; ".join(problems) or (f"split audit passed (max prompt overlap {audit.get('prompt', {}).get('max', 'n/a')}); no test prompt of "
                                       f"{len(test)} found in the {len(train)} training records (exact or word-shingle "
                                       f"Jaccard >= {params.threshold})")
    return check("leakage", FAIL if problems else PASS, evidence, pairs=pairs)


def forgetting(probe: dict | None, params: ForgettingParams) -> dict:
    if probe is None:
        return check("forgetting", NA, "no probe results")
    base, tuned = probe["base"], probe["finetune"]
    loss_rise = (tuned["text_loss"] - base["text_loss"]) / base["text_loss"]
    drop = base["instruction_pass"] - tuned["instruction_pass"]
    kl = probe["kl_base_finetune"]
    failed = [what for what, bad in (
        (f"general-text loss +{100 * loss_rise:.1f}% > {100 * params.max_loss_increase:.0f}%", loss_rise > params.max_loss_increase),
        (f"KL {kl:.3f} > {params.max_kl}", kl > params.max_kl),
        (f"instruction pass rate dropped {drop:.2f} > {params.max_instruction_drop}", drop > params.max_instruction_drop)) if bad]
    evidence = (f"general-text loss {base['text_loss']:.3f} -> {tuned['text_loss']:.3f} ({100 * loss_rise:+.1f}%), "
                f"KL(base||tuned) {kl:.3f} nats/token, general instructions {base['instruction_pass']:.2f} -> "
                f"{tuned['instruction_pass']:.2f}" + (f"; exceeds: {'; '.join(failed)}" if failed else ""))
    return check("forgetting", FAIL if failed else PASS, evidence, loss_increase=loss_rise, kl=kl, instruction_drop=drop)


def overfitting(train_metrics: dict | None, evaluate: dict, metric: str, params: OverfittingParams) -> dict:
    gap = evaluate["train_sample"][metric] - evaluate["finetune"][metric]
    parts = [f"{metric} train sample {evaluate['train_sample'][metric]:.3f} vs test {evaluate['finetune'][metric]:.3f} (gap {gap:+.3f})"]
    status = FAIL if gap > params.max_train_test_gap else PASS
    if gap > params.max_train_test_gap:
        parts.append(f"gap exceeds {params.max_train_test_gap}")
    rise = None
    if train_metrics and train_metrics.get("best_val_loss") and train_metrics.get("last_val_loss") is not None:
        rise = (train_metrics["last_val_loss"] - train_metrics["best_val_loss"]) / train_metrics["best_val_loss"]
        parts.append(f"val loss best {train_metrics['best_val_loss']:.4f} at step {train_metrics['best_step']} of "
                     f"{train_metrics['steps']}, last {train_metrics['last_val_loss']:.4f} ({100 * rise:+.1f}%)")
        if rise > params.max_val_rise and status == PASS:
            status = WARN
            parts.append("validation loss rose after its best step (early stopping kept the best checkpoint)")
    return check("overfitting", status, "; ".join(parts), gap=gap, val_rise=rise)


def majority_label(finetune: list[dict], trivial: dict, params: CompareParams) -> dict:
    """Does the fine-tune's label beat always answering the majority train label (CI lower bound > 0)?"""
    majority = trivial.get("majority_label")
    rows = [r for r in finetune if "label" in r]
    if majority is None or not rows:
        return check("majority_label", NA, "the task has no class label (task.label_field: null)")
    right = np.array([str(r["predicted_label"]) == str(r["label"]) for r in rows], float)
    constant = np.array([str(r["label"]) == majority for r in rows], float)
    boot = paired_bootstrap(right, constant, params.bootstrap_resamples, params.seed, params.confidence)
    top, count = Counter(str(r["predicted_label"]) for r in rows).most_common(1)[0]
    wins = boot.ci_low > 0
    evidence = (f"label accuracy: fine-tune {right.mean():.3f} vs always '{majority}' {constant.mean():.3f}, "
                f"gain {boot.mean_diff:+.3f}, {100 * params.confidence:.0f}% CI [{boot.ci_low:+.3f}, {boot.ci_high:+.3f}]; "
                f"its most frequent answer, '{top}', is {count / len(rows):.0%} of the test set"
                + ("" if wins else f"; no better than answering '{majority}' every time"))
    return check("majority_label", PASS if wins else FAIL, evidence, gain=boot.mean_diff, ci_low=boot.ci_low,
                 ci_high=boot.ci_high, most_frequent=top, most_frequent_share=count / len(rows))


def content_words(text: str) -> set[str]:
    return {w for w in normalise(text).split() if w not in STOPWORDS and (len(w) > 2 or w.isdigit())}


def answer_novelty(test: list[dict], train: list[dict]) -> dict[str, bool]:
    """Per test id: is the answer novel, i.e. are most of its content words neither in any
    training completion nor in the record's own prompt (copying from the input is not knowledge)?"""
    seen = set().union(*(content_words(r["completion"]) for r in train)) if train else set()
    novel = {}
    for record in test:
        words = content_words(record["completion"])
        unseen = words - seen - content_words(prompt_text(record))
        novel[record["id"]] = bool(words) and len(unseen) >= 0.5 * len(words)
    return novel


def triage(best: dict, sig: dict, strategies: dict, finetune: dict, finetune_rows: list[dict],
           novel: dict[str, bool], metric: str, params: CompareParams) -> dict:
    novelty = float(np.mean(list(novel.values()))) if novel else 0.0
    scores = {row["id"]: row["scores"][metric] for row in finetune_rows}
    novel_ids = [i for i in scores if novel.get(i)]
    familiar_ids = [i for i in scores if not novel.get(i)]
    ft_novel = float(np.mean([scores[i] for i in novel_ids])) if novel_ids else None
    ft_familiar = float(np.mean([scores[i] for i in familiar_ids])) if familiar_ids else None
    retrieval = strategies.get("retrieval", {}).get(metric)
    retrieval_helps = retrieval is not None and retrieval >= finetune[metric]
    fails_on_novel = ft_novel is not None and ft_familiar is not None and ft_novel < ft_familiar - params.min_gain
    knowledge_gap = novelty >= params.knowledge.novelty_threshold and (retrieval_helps or fails_on_novel or not novel_ids)
    format_not_content = None
    correctness = [k for k in finetune if k.endswith(FIELD_MATCH)]
    if "json_valid" in finetune and correctness:
        prompted = strategies[best["strategy"]]
        format_gain = finetune["json_valid"] - prompted.get("json_valid", 0.0)
        content_gain = np.mean([finetune[k] - prompted.get(k, 0.0) for k in correctness])
        format_not_content = bool(format_gain > params.min_gain and content_gain <= params.min_gain)
    return {
        "prompting_suffices": bool(best[metric] >= params.target or sig["status"] != PASS),
        "prompted_meets_target": bool(best[metric] >= params.target),
        "answer_novelty": novelty, "finetune_on_novel": ft_novel, "finetune_on_familiar": ft_familiar,
        "retrieval_beats_finetune": bool(retrieval_helps), "knowledge_gap": bool(knowledge_gap),
        "format_not_content": format_not_content,
    }


def decide(checks: dict[str, dict], signals: dict) -> tuple[str, list[str]]:
    """Verdict and the reasons behind it (see module docstring for the order)."""
    if checks["leakage"]["status"] == FAIL:
        return DONT_SHIP, ["leakage: " + checks["leakage"]["evidence"]]
    if signals["prompted_meets_target"]:
        return PROMPT_SUFFICES, ["the best prompted strategy already meets the target"]
    if checks["significance"]["status"] != PASS:
        if signals["knowledge_gap"]:
            return USE_RAG, ["the fine-tune does not clearly beat prompting and the answers carry content "
                             "absent from training (answer novelty "
                             f"{signals['answer_novelty']:.2f}): the model lacks facts, not format"]
        return PROMPT_SUFFICES, ["the fine-tune is not clearly better than the best prompted strategy: "
                                 + checks["significance"]["evidence"]]
    failed = [f"{name}: {c['evidence']}" for name, c in checks.items() if c["status"] == FAIL]
    if failed:
        return DONT_SHIP, failed
    return SHIP, ["the fine-tune clearly beats the best prompted strategy without regressing general ability"]


NEXT_STEPS = {
    "leakage": "Remove the leaked test records from training (re-run dedup/split with a lower split.group_threshold), "
               "then retrain: every number above is inflated until then.",
    PROMPT_SUFFICES: "Serve the best prompted strategy. If the target is not met yet, improve the prompt and the few-shot "
                     "pool first; fine-tune only once the data covers what prompting cannot (check label balance and "
                     "label correctness on the errors in the samples below).",
    USE_RAG: "Put the facts in a retrieval index (the training completions are a start) and prompt with retrieved "
             "context; fine-tuning teaches format and style, not new facts. Fine-tune afterwards only for the format.",
    "forgetting": "Mix general instruction data into training (replay, 10-30%), prefer LoRA over full fine-tuning, "
                  "lower the rank or learning rate; then re-check the probe.",
    "majority_label": "Balance the training labels (oversample the minority classes or cap the majority one) and check "
                      "the minority labels are right; an accuracy on an imbalanced test set hides a constant answer, "
                      "so read macro_f1 beside it.",
    "overfitting": "Add more varied training examples (coverage of phrasings and labels) and fix inconsistent labels "
                   "before training longer; early stopping already keeps the best step.",
    SHIP: "Ship the adapter with the model card; keep the test set frozen and re-run this pipeline on new data.",
}


def next_steps(verdict: str, checks: dict[str, dict]) -> list[str]:
    if verdict == DONT_SHIP:
        return [NEXT_STEPS[name] for name, c in checks.items() if c["status"] == FAIL and name in NEXT_STEPS]
    return [NEXT_STEPS[verdict]]


def evaluate_evidence(baseline_rows: dict[str, list[dict]], baseline_metrics: dict, finetune_rows: list[dict],
                      evaluate_metrics: dict, train_metrics: dict | None, probe: dict | None, audit: dict,
                      test: list[dict], train: list[dict], train_sha_seen: str | None, train_sha_now: str,
                      metric: str, params: CompareParams) -> dict:
    """All checks, triage signals, the verdict and next steps, as one JSON-able dict."""
    best_name = baseline_metrics["best"]["strategy"]
    strategies = strategy_metrics(baseline_metrics)
    ids, _, _ = paired_primary(finetune_rows, baseline_rows[best_name], metric)
    checks = {
        "same_test_set": check("same_test_set", PASS, f"{len(ids)} test ids, identical for baseline and fine-tune"),
        "significance": significance(finetune_rows, baseline_rows[best_name], metric, params),
        "leakage": leakage(audit, test, train, train_sha_seen, train_sha_now, params.leakage),
        "forgetting": forgetting(probe, params.forgetting),
        "overfitting": overfitting(train_metrics, evaluate_metrics, metric, params.overfitting),
        "majority_label": majority_label(finetune_rows, baseline_metrics.get("trivial") or {}, params),
    }
    signals = triage(baseline_metrics["best"], checks["significance"], strategies, evaluate_metrics["finetune"],
                     finetune_rows, answer_novelty(test, train), metric, params)
    verdict, reasons = decide(checks, signals)
    versus = {}  # the fine-tune against every prompted strategy, for the before/after table
    for name, rows in baseline_rows.items():
        if not all(metric in row["scores"] for row in rows):
            continue  # e.g. a label-only strategy on a task whose primary metric needs the whole answer
        _, a, b = paired_primary(finetune_rows, rows, metric)
        boot = paired_bootstrap(a, b, params.bootstrap_resamples, params.seed, params.confidence)
        versus[name] = {"gain": boot.mean_diff, "ci_low": boot.ci_low, "ci_high": boot.ci_high}
    return {"verdict": verdict, "reasons": reasons, "next_steps": next_steps(verdict, checks),
            "primary": metric, "best_strategy": best_name, "checks": checks, "signals": signals,
            "versus": versus, "confidence": params.confidence}


def compare_metrics(evidence: dict) -> dict:
    """The flat metrics file: `dvc exp show` gets columns for verdict, gain and CI."""
    sig = evidence["checks"]["significance"]
    return {"verdict": evidence["verdict"], "primary": evidence["primary"], "best_strategy": evidence["best_strategy"],
            "gain": sig["gain"], "ci_low": sig["ci_low"], "ci_high": sig["ci_high"], "p_value": sig["p_value"],
            "answer_novelty": evidence["signals"]["answer_novelty"],
            "checks": {name: c["status"] for name, c in evidence["checks"].items()}}


def _optional_json(path: Path) -> dict | None:
    return read_json(path) if path.is_file() else None


def main(params_file: str = "params.yaml") -> None:
    params = load_section(CompareParams, "compare", params_file)
    score = load_section(ScoreParams, "score", params_file)
    task = load_section(Task, "task", params_file)
    paths = load_section(Paths, "paths", params_file)
    baseline_metrics = read_json(paths.metrics_file("baseline"))
    baseline_rows = {name: read_jsonl(Path(paths.baseline) / f"{name}.jsonl") for name in strategy_metrics(baseline_metrics)}
    split_dir = Path(paths.split)
    train_info = _optional_json(Path(paths.adapter) / "tuneproof_train.json") or {}
    finetune_rows = read_jsonl(Path(paths.evaluate) / "test.jsonl")
    evaluate_metrics = read_json(paths.metrics_file("evaluate"))
    evidence = evaluate_evidence(
        baseline_rows, baseline_metrics, finetune_rows, evaluate_metrics, _optional_json(paths.metrics_file("train")),
        _optional_json(paths.metrics_file("probe")), read_json(split_dir / "audit.json"),
        read_jsonl(split_dir / "test.jsonl"), read_jsonl(split_dir / "train.jsonl"),
        train_info.get("data", {}).get("train", {}).get("sha256"), sha256_file(split_dir / "train.jsonl"),
        score.primary, params)
    write_outputs(evidence, compare_metrics(evidence), paths, task, baseline_rows, baseline_metrics,
                  train_info, evaluate_metrics, finetune_rows)
    print(f"verdict: {evidence['verdict']} - " + "; ".join(evidence["reasons"]))


if __name__ == "__main__":
    run_main(main)
