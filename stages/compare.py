"""Stage `compare`: the verdict, with evidence — ship the fine-tune only if it provably should.

    python -m stages.compare    # reads params.yaml: compare, score.primary, task.label_field, paths

Inputs: per-example scores of every prompted strategy and of the trivial references (baseline),
of the fine-tune on the test set and on a train sample (evaluate), the train stage's metrics and
provenance, the split audit, the probe, and the split files.

Checks (each PASS / FAIL / WARN / N/A with its evidence):
  * same_test_set  - baseline and fine-tune were scored on exactly the same test ids.
  * significance   - paired bootstrap CI of primary(fine-tune) - primary(best prompted strategy);
                     "clearly wins" = CI lower bound > compare.min_gain. A primary of macro_f1 (a
                     corpus metric) is recomputed for both systems on every resample. McNemar's
                     exact p for binary per-example scores (label accuracy for macro_f1) beside it.
  * evidence       - the test set can resolve compare.min_gain: at least compare.min_test_records
                     records, and not a CI that straddles min_gain while wider than it (its width
                     scales as 1/sqrt(n), which gives the number of records needed).
  * leakage        - the split audit passed, AND an independent re-check of the test prompts
                     against the train file the adapter actually saw (its sha256 must match the
                     one recorded at training): exact normalised matches and word-shingle MinHash
                     near-duplicates (a different measure from the audit's character n-grams).
  * learnt         - the fine-tune fits its own training data: its train-sample primary beats the
                     untrained base model (zero_shot on test) and (label tasks) the constant majority answer on that
                     sample by min_gain (a train score at the target always counts), and its most
                     frequent test answer is not a collapse (share above the majority share +
                     compare.max_collapse_excess).
  * beats_trivial  - label tasks: the best prompted strategy beats every trivial reference (the
                     majority answer; the baseline stage's TF-IDF + logistic regression) on the
                     primary metric (paired bootstrap, CI lower bound > 0).
  * forgetting     - probe: general-text loss increase, KL(base || tuned), instruction pass drop;
                     N/A without probe results, which never ships.
  * overfitting    - train-sample vs test gap on the primary metric (FAIL above the limit);
                     validation loss rising after the best step (WARN: early stopping kept the best).
  * majority_label - tasks with a class label: the fine-tune's label accuracy must beat always
                     answering the majority train label (paired bootstrap, CI lower bound > 0; not
                     min_gain, which a perfect model could not clear on a 97%-majority task).
  * drift          - with a production sample (paths.production): can a TF-IDF + logistic-regression
                     classifier tell the test prompts from production's? FAIL when the CI lower bound
                     of its cross-validated AUC is above compare.drift.max_auc (tuneproof/drift.py);
                     N/A, never PASS, without a sample.
  * production_overlap - production prompts that nearly copy a train prompt, by the split audit's
                     measure (WARN: a test set sampled from production must leave them out).
Triage signals (seed step 1: is fine-tuning the right tool?):
  * prompting_suffices - the best prompted strategy already meets compare.target, or the
                         fine-tune is not clearly better than it.
  * knowledge_gap      - answer novelty (share of test answers none of whose accepted forms, the
                         completion and its references, has most content words in a training
                         completion or in the record's own prompt) is high, and
                         either retrieval few-shot does at least as well as the fine-tune or the
                         fine-tune fails more on novel answers than on familiar ones.
  * format_not_content - for JSON tasks: validity/style improved but field correctness did not.
Verdict, first match wins:
  leakage FAIL -> DON'T SHIP; evidence FAIL -> INSUFFICIENT EVIDENCE (with the records needed);
  no clear win and the knowledge-gap signal -> USE RAG; learnt FAIL -> FINE-TUNE FAILED (a failed
  attempt has not lost to prompting); prompted meets target or no clear win -> PROMPT SUFFICES
  when beats_trivial is PASS or N/A, else NOTHING BEATS TRIVIAL; a clear win that a trivial
  reference (TF-IDF + logistic regression) still beats -> NOTHING BEATS TRIVIAL; a clear win with
  forgetting, overfitting, majority_label or drift FAIL, or forgetting unchecked -> DON'T SHIP; else SHIP.
A drift FAIL adds "sample test from production" to the next steps of any verdict.
NaN or infinite probe numbers, primary scores or gains are refused with the file and key.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneproof.cli_util import run_main
from tuneproof.config import ADAPTER_INFO, Paths, Task
from tuneproof.drift import DriftParams, domain_score, drift_check, load_production, production_overlap
from tuneproof.io import TuneproofError, read_json, read_jsonl, sha256_file
from tuneproof.neardup import near_duplicate_clusters
from tuneproof.text import normalise
from tuneproof.paired import (LABEL_METRICS, example_score, label_score, label_set, paired_gain, paired_primary,
                              per_example_metric, scores_metric)
from tuneproof.params import load_section, require
from tuneproof.records import accepted_answers, prompt_text
from tuneproof.report import strategy_metrics, write_outputs
from tuneproof.scoring import FIELD_MATCH, NO_LABEL, ScoreParams
from tuneproof.stats import mcnemar_exact, paired_bootstrap
from tuneproof.verdict_advice import (DONT_SHIP, FAIL, FINETUNE_FAILED, FORGETTING_UNCHECKED, INSUFFICIENT_EVIDENCE, NA,
                                      NO_SKILL, PASS, PROMPT_SUFFICES, SHIP, USE_RAG, WARN, check, next_steps)

NO_TRAIN_SAMPLE = "no train sample scored (evaluate.train_sample: 0)"
REFERENCE_PREFIX = "reference_"  # <paths.baseline>/reference_<name>.jsonl: a trivial reference's per-example rows
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
    min_test_records: int = 30          # fewer paired test records than this -> INSUFFICIENT EVIDENCE, whatever the CI
    max_collapse_excess: float = 0.1    # share of the fine-tune's most frequent test answer allowed above the majority label's share
    leakage: LeakageParams = field(default_factory=LeakageParams)
    forgetting: ForgettingParams = field(default_factory=ForgettingParams)
    overfitting: OverfittingParams = field(default_factory=OverfittingParams)
    knowledge: KnowledgeParams = field(default_factory=KnowledgeParams)
    drift: DriftParams = field(default_factory=DriftParams)


def require_finite(where: str, values: dict[str, float | None], fix: str) -> None:
    """Refuse NaN and infinity: every comparison with one is False, so a check would pass or fail by accident."""
    for key, value in values.items():
        if value is not None and not math.isfinite(value):
            raise TuneproofError(f"{where}: {key} is {value}; {fix}")


def bootstrap_gain(a_rows: list[dict], b_rows: list[dict], metric: str, params: CompareParams,
                   names: tuple[str, str] = ("fine-tune", "baseline")):
    """(bootstrap of metric(a) - metric(b), a's score, b's score) with the compare params."""
    return paired_gain(a_rows, b_rows, metric, params.bootstrap_resamples, params.seed, params.confidence, names)


def significance(finetune: list[dict], baseline: list[dict], metric: str, params: CompareParams) -> dict:
    boot, ft, base = bootstrap_gain(finetune, baseline, metric, params)
    require_finite(f"significance of {metric}", {"gain": boot.mean_diff, "ci_low": boot.ci_low, "ci_high": boot.ci_high},
                   "check the per-example rows of baseline and evaluate")
    per_example = per_example_metric(metric)
    _, a, b = paired_primary(finetune, baseline, metric)
    binary = bool(np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all())
    mcnemar = mcnemar_exact(a, b) if binary else None
    wins = boot.ci_low > params.min_gain
    on = "" if per_example == metric else f" on per-example {per_example}"
    evidence = (f"{metric}: fine-tune {ft:.3f} vs best prompted {base:.3f}, gain {boot.mean_diff:+.3f}, "
                f"{100 * params.confidence:.0f}% CI [{boot.ci_low:+.3f}, {boot.ci_high:+.3f}] over {boot.n} paired examples"
                + (f"; McNemar exact p{on} = {mcnemar.p_value:.2g} ({mcnemar.a_only} fixed, {mcnemar.b_only} broken)" if mcnemar else "")
                + f"; clearly wins = CI lower bound > {params.min_gain}")
    return check("significance", PASS if wins else FAIL, evidence, gain=boot.mean_diff, ci_low=boot.ci_low,
                 ci_high=boot.ci_high, n=boot.n, finetune=ft, baseline=base,
                 p_value=mcnemar.p_value if mcnemar else None)


def evidence_size(sig: dict, params: CompareParams) -> dict:
    """Can this test set resolve compare.min_gain? A CI that straddles min_gain while wider than it
    cannot tell the gain from noise; the CI width scales as 1/sqrt(n), which gives the n needed."""
    n, low, high, bar = sig["n"], sig["ci_low"], sig["ci_high"], params.min_gain
    half = (high - low) / 2
    n_needed = max(params.min_test_records, math.ceil(n * (half / bar) ** 2) if bar > 0 else n)
    problems = []
    if n < params.min_test_records:
        problems.append(f"{n} paired test record(s), fewer than compare.min_test_records {params.min_test_records}")
    if low <= bar <= high and half > bar:
        problems.append(f"the CI [{low:+.3f}, {high:+.3f}] contains min_gain {bar} and its half-width {half:.3f} is wider")
    if problems:
        evidence = "; ".join(problems) + f": about {n_needed} test records are needed to resolve a gain of {bar}"
    else:
        evidence = f"{n} paired test records; the CI [{low:+.3f}, {high:+.3f}] (half-width {half:.3f}) resolves a gain of {bar}"
    # n_needed only where the evidence falls short: a decided CI needs no more records
    return check("evidence", FAIL if problems else PASS, evidence, n=n, n_needed=n_needed if problems else None,
                 half_width=half)


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


def forgetting(probe: dict | None, params: ForgettingParams, where: str = "metrics/probe.json") -> dict:
    if probe is None:
        return check("forgetting", NA, "no probe results (run the probe stage)")
    base, tuned = probe["base"], probe["finetune"]
    require_finite(where, {"base.text_loss": base["text_loss"], "finetune.text_loss": tuned["text_loss"],
                           "base.instruction_pass": base["instruction_pass"],
                           "finetune.instruction_pass": tuned["instruction_pass"],
                           "kl_base_finetune": probe["kl_base_finetune"]}, "re-run probe")
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
    if metric not in (evaluate.get("train_sample") or {}):
        return check("overfitting", NA, NO_TRAIN_SAMPLE)
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


def fit_on_train_sample(score: float, train_rows: list[dict] | None, untrained: float | None, majority: str | None,
                        metric: str, params: CompareParams) -> tuple[bool, str, dict]:
    """Does the fine-tune's train-sample primary clear, by min_gain, what no training gives: the
    base model served as the fine-tune is (zero-shot, `untrained`) and (label tasks) the constant
    majority answer on that sample? Not the best prompted score: a fine-tune that fits its data
    has learnt even where prompting is near perfect (sms_spam: retrieval 0.98). A train score at
    the target counts as learnt (the bar is capped there)."""
    references = {} if untrained is None else {"the untrained base model (zero_shot) on test": untrained}
    labelled = [r for r in train_rows or [] if r.get("label") is not None]
    if majority is not None and labelled and metric in LABEL_METRICS:
        true = [str(r["label"]) for r in labelled]
        labels = sorted({*label_set(labelled), majority})
        references[f"always '{majority}' on the train sample"] = label_score(true, [majority] * len(true), metric, labels)
    bar = min(max(references.values(), default=0.0) + params.min_gain, params.target)
    failed = score <= bar
    text = (f"train-sample {metric} {score:.3f} {'<=' if failed else '>'} {bar:.3f} = min(max("
            + ", ".join(f"{name} {value:.3f}" for name, value in references.items())
            + f") + min_gain {params.min_gain}, target {params.target})"
            + ("; it did not fit its own training data" if failed else ""))
    return failed, text, {"train_sample": score, "bar": bar, "references": references}


def label_collapse(rows: list[dict], max_excess: float) -> tuple[bool, str, dict] | None:
    """Is the fine-tune's most frequent test answer far more frequent than the majority label?
    None when the rows carry no label or no answer names one."""
    labelled = [r for r in rows if "label" in r and "predicted_label" in r]
    answers = Counter(str(r["predicted_label"]) for r in labelled if r["predicted_label"] not in (None, NO_LABEL))
    if not answers:
        return None
    top, count = answers.most_common(1)[0]
    majority, majority_count = Counter(str(r["label"]) for r in labelled).most_common(1)[0]
    share, majority_share = count / len(labelled), majority_count / len(labelled)
    failed = share > majority_share + max_excess
    text = (f"its most frequent test answer, '{top}', is {share:.0%} of the answers vs {majority_share:.0%} for the "
            f"majority label '{majority}' (allowed excess {max_excess})" + ("; it collapsed onto one answer" if failed else ""))
    return failed, text, {"most_frequent": top, "most_frequent_share": share, "majority_share": majority_share}


def learnt(evaluate: dict, train_sample_rows: list[dict] | None, finetune_rows: list[dict], untrained: float | None,
           majority: str | None, metric: str, params: CompareParams) -> dict:
    """Did the fine-tune learn the task at all? One that cannot fit its own training sample, or
    that answers one label whatever the input, has not lost to prompting: the attempt failed."""
    score = (evaluate.get("train_sample") or {}).get(metric)
    fit = None if score is None else fit_on_train_sample(score, train_sample_rows, untrained, majority, metric, params)
    parts = [part for part in (fit, label_collapse(finetune_rows, params.max_collapse_excess)) if part]
    if not parts:
        return check("learnt", NA, NO_TRAIN_SAMPLE)
    failed = any(part[0] for part in parts)
    evidence = "; ".join(([] if fit else [NO_TRAIN_SAMPLE]) + [part[1] for part in parts])
    status = FAIL if failed else PASS if fit else NA
    return check("learnt", status, evidence, **{key: value for part in parts for key, value in part[2].items()})


def majority_rows(rows: list[dict], majority: str | None) -> list[dict]:
    """The constant answer `majority` as a system, scored on the labelled test rows."""
    if majority is None or not rows or not all("label" in r for r in rows):
        return []
    return [{"id": r["id"], "prediction": majority, "reference": r["reference"], "label": r["label"],
             "predicted_label": majority, "scores": {"accuracy": float(str(r["label"]) == majority),
                                                     "exact": float(r["reference"].strip() == majority)}}
            for r in rows]


def reference_gain(best_rows: list[dict], finetune_rows: list[dict], name: str, rows: list[dict], metric: str,
                   params: CompareParams) -> dict:
    """The best prompted strategy (and the fine-tune) against one trivial reference."""
    boot, prompted, score = bootstrap_gain(best_rows, rows, metric, params, ("best prompted strategy", name))
    ft_boot, finetune, _ = bootstrap_gain(finetune_rows, rows, metric, params, ("fine-tune", name))
    return {"score": score, "prompted": prompted, "finetune": finetune, "gain": boot.mean_diff, "ci_low": boot.ci_low,
            "ci_high": boot.ci_high, "finetune_beats": bool(ft_boot.ci_low > 0)}


def beats_trivial(best_rows: list[dict], finetune_rows: list[dict], references: dict[str, list[dict]], metric: str,
                  params: CompareParams) -> dict:
    """Does the best prompted strategy beat every trivial reference on the primary metric (CI lower bound > 0)?"""
    usable = {name: rows for name, rows in references.items() if scores_metric(rows, metric)}
    if not usable:
        return check("beats_trivial", NA, f"no trivial reference produces {metric}" if references
                     else "the task has no class label (task.label_field: null)")
    results = {name: reference_gain(best_rows, finetune_rows, name, rows, metric, params) for name, rows in usable.items()}
    unbeaten = sorted((name for name, r in results.items() if r["ci_low"] <= 0), key=lambda name: -results[name]["score"])
    evidence = f"{metric} of the best prompted strategy vs " + "; ".join(
        f"{name} {r['score']:.3f}: gain {r['gain']:+.3f}, CI [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        for name, r in results.items()) + (f"; not beaten: {', '.join(unbeaten)}" if unbeaten else "")
    return check("beats_trivial", FAIL if unbeaten else PASS, evidence, references=results,
                 strongest_unbeaten=unbeaten[0] if unbeaten else None)


def content_words(text: str) -> set[str]:
    return {w for w in normalise(text).split() if w not in STOPWORDS and (len(w) > 2 or w.isdigit())}


def answer_novelty(test: list[dict], train: list[dict]) -> dict[str, bool]:
    """Per test id: is the answer novel, i.e. for every accepted answer (the completion and any
    `references`), are most of its content words neither in any training completion nor in the
    record's own prompt (copying from the input is not knowledge)? One familiar form makes the
    answer familiar: "6 geese a-laying" is not new knowledge when training held "six geese a-laying".
    Only train completions count as seen: a train record's other references were never trained on."""
    seen = set().union(*(content_words(r["completion"]) for r in train)) if train else set()
    novel = {}
    for record in test:
        known = seen | content_words(prompt_text(record))
        forms = [content_words(answer) for answer in accepted_answers(record)]
        novel[record["id"]] = all(words and len(words - known) >= 0.5 * len(words) for words in forms)
    return novel


def novel_familiar_scores(rows: list[dict], novel: dict[str, bool], metric: str) -> tuple[float | None, float | None]:
    """A system's mean per-example `metric` on the novel and on the familiar test answers (None: no such answer)."""
    scores = {row["id"]: example_score(row, metric) for row in rows}
    parts = ([scores[i] for i in scores if novel.get(i)], [scores[i] for i in scores if not novel.get(i)])
    return tuple(float(np.mean(part)) if part else None for part in parts)


def triage(best: dict, sig: dict, strategies: dict, finetune: dict, finetune_rows: list[dict],
           novel: dict[str, bool], metric: str, params: CompareParams, prompted_rows: list[dict] | None = None) -> dict:
    """The triage signals; `prompted_rows` (the best prompted strategy's) adds its novel/familiar split."""
    novelty = float(np.mean(list(novel.values()))) if novel else 0.0
    ft_novel, ft_familiar = novel_familiar_scores(finetune_rows, novel, metric)
    prompted_novel, prompted_familiar = novel_familiar_scores(prompted_rows or [], novel, metric)
    n_novel = sum(bool(novel.get(row["id"])) for row in finetune_rows)
    retrieval = strategies.get("retrieval", {}).get(metric)
    retrieval_helps = retrieval is not None and retrieval >= finetune[metric]
    fails_on_novel = ft_novel is not None and ft_familiar is not None and ft_novel < ft_familiar - params.min_gain
    knowledge_gap = novelty >= params.knowledge.novelty_threshold and (retrieval_helps or fails_on_novel or not n_novel)
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
        "answer_novelty": novelty, "novel_answers": n_novel, "familiar_answers": len(finetune_rows) - n_novel,
        "finetune_on_novel": ft_novel, "finetune_on_familiar": ft_familiar,
        "prompted_on_novel": prompted_novel, "prompted_on_familiar": prompted_familiar,
        "retrieval_beats_finetune": bool(retrieval_helps), "knowledge_gap": bool(knowledge_gap),
        "format_not_content": format_not_content,
    }


def prompting_verdict(checks: dict[str, dict], signals: dict) -> tuple[str, list[str]]:
    """No clear win for the fine-tune (or prompting already meets the target): PROMPT SUFFICES,
    unless prompting does not even beat a trivial reference."""
    trivial = checks["beats_trivial"]
    if trivial["status"] == FAIL:
        name = trivial["strongest_unbeaten"]
        ref = trivial["references"][name]
        who = ("neither prompting nor the fine-tune beats" if not ref["finetune_beats"] else
               "the fine-tune is not clearly better than prompting, and prompting does not beat")
        return NO_SKILL, [f"{who} {name} at {ref['score']:.3f} (prompting {ref['prompted']:.3f}, fine-tune "
                          f"{ref['finetune']:.3f}); use that classifier or fix the data: {trivial['evidence']}"]
    if signals["prompted_meets_target"]:
        return PROMPT_SUFFICES, ["the best prompted strategy already meets the target"]
    return PROMPT_SUFFICES, ["the fine-tune is not clearly better than the best prompted strategy: "
                             + checks["significance"]["evidence"]]


def decide(checks: dict[str, dict], signals: dict) -> tuple[str, list[str]]:
    """Verdict and the reasons behind it (see module docstring for the order)."""
    status = {name: c["status"] for name, c in checks.items()}
    if status["leakage"] == FAIL:
        return DONT_SHIP, ["leakage: " + checks["leakage"]["evidence"]]
    if status["evidence"] == FAIL:
        return INSUFFICIENT_EVIDENCE, ["the test set cannot resolve a gain of compare.min_gain: "
                                       + checks["evidence"]["evidence"]]
    clear_win = status["significance"] == PASS
    if not clear_win and signals["knowledge_gap"]:
        return USE_RAG, ["the fine-tune does not clearly beat prompting and the answers carry content "
                         "absent from training (answer novelty "
                         f"{signals['answer_novelty']:.2f}): the model lacks facts, not format"]
    if status["learnt"] == FAIL:
        return FINETUNE_FAILED, ["the fine-tune did not learn the task, so it has not lost to prompting: "
                                 + checks["learnt"]["evidence"]]
    if signals["prompted_meets_target"] or not clear_win:
        return prompting_verdict(checks, signals)
    trivial = checks["beats_trivial"]
    unbeaten = [name for name, ref in (trivial.get("references") or {}).items() if not ref["finetune_beats"]]
    if unbeaten:  # a clear win over prompting, but a classifier trained on the same data does better
        ref = trivial["references"][unbeaten[0]]
        return NO_SKILL, [f"the fine-tune beats prompting but not {unbeaten[0]} ({ref['finetune']:.3f} vs "
                          f"{ref['score']:.3f}), a classifier trained on the same train split; serve that, or fix "
                          "the data before an LLM fine-tune: " + trivial["evidence"]]
    failed = [f"{name}: {checks[name]['evidence']}" for name in ("forgetting", "overfitting", "majority_label", "drift")
              if status.get(name) == FAIL]
    if status["forgetting"] == NA:
        failed.append(FORGETTING_UNCHECKED)
    if failed:
        return DONT_SHIP, failed
    return SHIP, ["the fine-tune clearly beats the best prompted strategy without regressing general ability"]


def require_finite_primary(baseline_metrics: dict, evaluate_metrics: dict, metric: str, metrics_dir: str) -> None:
    """The primary scores every check reads, refused when NaN or infinite."""
    require_finite(f"{metrics_dir}/evaluate.json", {f"{part}.{metric}": evaluate_metrics[part].get(metric)
                                                    for part in ("finetune", "train_sample") if part in evaluate_metrics},
                   "re-run evaluate")
    systems = {"best": baseline_metrics["best"], **strategy_metrics(baseline_metrics)}
    require_finite(f"{metrics_dir}/baseline.json", {f"{name}.{metric}": m.get(metric) for name, m in systems.items()},
                   "re-run baseline")


def versus_table(finetune_rows: list[dict], baseline_rows: dict[str, list[dict]], metric: str,
                 params: CompareParams) -> dict:
    """The fine-tune against every prompted strategy, for the before/after table."""
    versus = {}
    for name, rows in baseline_rows.items():
        if not scores_metric(rows, metric):
            continue  # e.g. a label-only strategy on a task whose primary metric needs the whole answer
        boot, _, _ = bootstrap_gain(finetune_rows, rows, metric, params, ("fine-tune", name))
        versus[name] = {"gain": boot.mean_diff, "ci_low": boot.ci_low, "ci_high": boot.ci_high}
    return versus


def evaluate_evidence(baseline_rows: dict[str, list[dict]], baseline_metrics: dict, finetune_rows: list[dict],
                      evaluate_metrics: dict, train_metrics: dict | None, probe: dict | None, audit: dict,
                      test: list[dict], train: list[dict], train_sha_seen: str | None, train_sha_now: str,
                      metric: str, params: CompareParams, train_sample_rows: list[dict] | None = None,
                      reference_rows: dict[str, list[dict]] | None = None, metrics_dir: str = "metrics",
                      production: list[dict] | None = None) -> dict:
    """All checks, triage signals, the verdict and next steps, as one JSON-able dict.

    `train_sample_rows`: the fine-tune's per-example rows on the evaluate stage's train sample;
    `reference_rows`: trivial references' per-example test rows by name (the majority answer is
    added here); `metrics_dir`: where the metrics files are, for error messages; `production`:
    the production prompts (tuneproof.drift.load_production), None when no sample was given."""
    require_finite_primary(baseline_metrics, evaluate_metrics, metric, metrics_dir)
    best, trivial = baseline_metrics["best"], baseline_metrics.get("trivial") or {}
    best_rows = baseline_rows[best["strategy"]]
    ids, _, _ = paired_primary(finetune_rows, best_rows, metric)
    references = {"majority": majority_rows(finetune_rows, trivial.get("majority_label"))}
    references = {name: rows for name, rows in {**references, **(reference_rows or {})}.items() if rows}
    sig = significance(finetune_rows, best_rows, metric, params)
    checks = {
        "same_test_set": check("same_test_set", PASS, f"{len(ids)} test ids, identical for baseline and fine-tune"),
        "significance": sig,
        "evidence": evidence_size(sig, params),
        "leakage": leakage(audit, test, train, train_sha_seen, train_sha_now, params.leakage),
        "learnt": learnt(evaluate_metrics, train_sample_rows, finetune_rows,
                         strategy_metrics(baseline_metrics).get("zero_shot", {}).get(metric), trivial.get("majority_label"),
                         metric, params),
        "beats_trivial": beats_trivial(best_rows, finetune_rows, references, metric, params),
        "forgetting": forgetting(probe, params.forgetting, f"{metrics_dir}/probe.json"),
        "overfitting": overfitting(train_metrics, evaluate_metrics, metric, params.overfitting),
        "majority_label": majority_label(finetune_rows, trivial, params),
        "drift": drift_check(None if production is None else domain_score(
            test, production, params.drift, params.bootstrap_resamples, params.confidence, params.seed),
            params.drift, params.confidence),
        "production_overlap": production_overlap(production, train, audit),
    }
    signals = triage(best, sig, strategy_metrics(baseline_metrics), evaluate_metrics["finetune"], finetune_rows,
                     answer_novelty(test, train), metric, params, prompted_rows=best_rows)
    verdict, reasons = decide(checks, signals)
    return {"verdict": verdict, "reasons": reasons, "next_steps": next_steps(verdict, checks),
            "primary": metric, "best_strategy": best["strategy"], "checks": checks, "signals": signals,
            "versus": versus_table(finetune_rows, baseline_rows, metric, params), "confidence": params.confidence}


def compare_metrics(evidence: dict) -> dict:
    """The flat metrics file: `dvc exp show` gets columns for verdict, gain, CI and the records needed."""
    checks = evidence["checks"]
    sig = checks["significance"]
    metrics = {"verdict": evidence["verdict"], "primary": evidence["primary"], "best_strategy": evidence["best_strategy"],
               "gain": sig["gain"], "ci_low": sig["ci_low"], "ci_high": sig["ci_high"], "p_value": sig["p_value"],
               "answer_novelty": evidence["signals"]["answer_novelty"],
               "finetune_on_novel": evidence["signals"]["finetune_on_novel"],
               "finetune_on_familiar": evidence["signals"]["finetune_on_familiar"], "n_needed": checks["evidence"]["n_needed"],
               "checks": {name: c["status"] for name, c in checks.items()}}
    if checks["learnt"].get("train_sample") is not None:
        metrics["finetune_train_sample"] = checks["learnt"]["train_sample"]
    drift = checks.get("drift", {})
    if "auc" in drift:  # absent when no production sample was given
        metrics["drift"] = {key: drift[key] for key in ("auc", "ci_low", "ci_high", "n_test", "n_production")}
        metrics["drift"]["production_overlap"] = checks["production_overlap"]["copies"]
    return metrics


def _optional_json(path: Path) -> dict | None:
    return read_json(path) if path.is_file() else None


def _optional_jsonl(path: Path) -> list[dict] | None:
    return read_jsonl(path) if path.is_file() else None


def validate(params: CompareParams, params_file: str = "params.yaml") -> None:
    """Every compare knob in its range, named by its key."""
    share = "a share in [0, 1]"
    for key, value, ok, expected in (
            ("min_gain", params.min_gain, 0.0 <= params.min_gain < 1.0, "a gain in [0, 1)"),
            ("target", params.target, 0.0 < params.target <= 1.0, "a score in (0, 1]"),
            ("bootstrap_resamples", params.bootstrap_resamples, params.bootstrap_resamples >= 1000,
             "at least 1000 resamples"),
            ("confidence", params.confidence, 0.5 <= params.confidence < 1.0, "a level in [0.5, 1), e.g. 0.95"),
            ("min_test_records", params.min_test_records, params.min_test_records >= 1, "1 or more"),
            ("max_collapse_excess", params.max_collapse_excess, 0.0 <= params.max_collapse_excess <= 1.0, share),
            ("leakage.threshold", params.leakage.threshold, 0.0 < params.leakage.threshold <= 1.0,
             "a Jaccard similarity in (0, 1]"),
            ("leakage.shingle_size", params.leakage.shingle_size, params.leakage.shingle_size >= 1, "1 or more words"),
            ("leakage.num_perm", params.leakage.num_perm, params.leakage.num_perm >= 2, "at least 2 permutations"),
            ("forgetting.max_loss_increase", params.forgetting.max_loss_increase,
             params.forgetting.max_loss_increase >= 0.0, "0 or more"),
            ("forgetting.max_kl", params.forgetting.max_kl, params.forgetting.max_kl >= 0.0, "0 or more nats"),
            ("forgetting.max_instruction_drop", params.forgetting.max_instruction_drop,
             0.0 <= params.forgetting.max_instruction_drop <= 1.0, share),
            ("overfitting.max_train_test_gap", params.overfitting.max_train_test_gap,
             0.0 <= params.overfitting.max_train_test_gap <= 1.0, share),
            ("overfitting.max_val_rise", params.overfitting.max_val_rise, params.overfitting.max_val_rise >= 0.0, "0 or more"),
            ("knowledge.novelty_threshold", params.knowledge.novelty_threshold,
             0.0 <= params.knowledge.novelty_threshold <= 1.0, share),
            ("drift.max_auc", params.drift.max_auc, 0.5 <= params.drift.max_auc < 1.0, "an AUC in [0.5, 1), e.g. 0.7"),
            ("drift.folds", params.drift.folds, params.drift.folds >= 2, "2 or more folds"),
            ("drift.min_prompts", params.drift.min_prompts, params.drift.min_prompts >= params.drift.folds,
             f"at least compare.drift.folds ({params.drift.folds}) prompts"),
            ("drift.max_prompts", params.drift.max_prompts, params.drift.max_prompts >= params.drift.min_prompts,
             "at least compare.drift.min_prompts"),
            ("drift.top_terms", params.drift.top_terms, params.drift.top_terms >= 1, "1 or more"),
            ("drift.examples", params.drift.examples, params.drift.examples >= 0, "0 or more")):
        require(ok, f"compare.{key}", value, expected, params_file)


def main(params_file: str = "params.yaml") -> None:
    params = load_section(CompareParams, "compare", params_file)
    validate(params, params_file)
    score = load_section(ScoreParams, "score", params_file)
    task = load_section(Task, "task", params_file)
    paths = load_section(Paths, "paths", params_file)
    baseline_metrics = read_json(paths.metrics_file("baseline"))
    baseline_dir, evaluate_dir, split_dir = Path(paths.baseline), Path(paths.evaluate), Path(paths.split)
    baseline_rows = {name: read_jsonl(baseline_dir / f"{name}.jsonl") for name in strategy_metrics(baseline_metrics)}
    references = {path.stem[len(REFERENCE_PREFIX):]: read_jsonl(path)
                  for path in sorted(baseline_dir.glob(f"{REFERENCE_PREFIX}*.jsonl"))}
    train_info = _optional_json(Path(paths.adapter) / ADAPTER_INFO) or {}
    finetune_rows = read_jsonl(evaluate_dir / "test.jsonl")
    evaluate_metrics = read_json(paths.metrics_file("evaluate"))
    evidence = evaluate_evidence(
        baseline_rows, baseline_metrics, finetune_rows, evaluate_metrics, _optional_json(paths.metrics_file("train")),
        _optional_json(paths.metrics_file("probe")), read_json(split_dir / "audit.json"),
        read_jsonl(split_dir / "test.jsonl"), read_jsonl(split_dir / "train.jsonl"),
        train_info.get("data", {}).get("train", {}).get("sha256"), sha256_file(split_dir / "train.jsonl"),
        score.primary, params, train_sample_rows=_optional_jsonl(evaluate_dir / "train_sample.jsonl"),
        reference_rows=references, metrics_dir=paths.metrics, production=load_production(paths.production))
    write_outputs(evidence, compare_metrics(evidence), paths, task, baseline_rows, baseline_metrics,
                  train_info, evaluate_metrics, finetune_rows, _optional_json(Path(paths.sweep)))
    print(f"verdict: {evidence['verdict']} - " + "; ".join(evidence["reasons"]))


if __name__ == "__main__":
    run_main(main)
