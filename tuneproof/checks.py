"""The evidence checks of the verdict (tuneproof/verdict.py runs them, in that module's order).

Each returns tuneproof.verdict_advice.check(name, PASS / FAIL / WARN / N/A, evidence in words, **numbers).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from tuneproof.compare_params import CompareParams, ForgettingParams, LeakageParams, OverfittingParams
from tuneproof.contract import EvaluateMetrics, TrainMetrics
from tuneproof.io import TuneproofError
from tuneproof.neardup import near_duplicate_clusters
from tuneproof.paired import LABEL_METRICS, label_score, label_set, paired_gain, paired_primary, per_example_metric, scores_metric
from tuneproof.records import prompt_text
from tuneproof.scoring import NO_LABEL
from tuneproof.stats import mcnemar_exact, paired_bootstrap
from tuneproof.text import normalise
from tuneproof.verdict_advice import FAIL, NA, PASS, WARN, check

NO_TRAIN_SAMPLE = "no train sample scored (evaluate.train_sample: 0)"


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
    """Paired bootstrap CI of metric(fine-tune) - metric(best prompted); PASS when its lower bound > min_gain."""
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
    """The split audit passed, the adapter saw this train file, and no test prompt is in it."""
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
    """The probe's general-text loss, KL and instruction pass rate within their limits."""
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


def overfitting(train: TrainMetrics | None, evaluate: EvaluateMetrics, metric: str, params: OverfittingParams) -> dict:
    """Train-sample vs test gap (FAIL above the limit); val loss rising after its best step (WARN)."""
    if metric not in (evaluate.train_sample or {}):
        return check("overfitting", NA, NO_TRAIN_SAMPLE)
    sample, test = evaluate.train_sample[metric], evaluate.finetune[metric]
    gap = sample - test
    parts = [f"{metric} train sample {sample:.3f} vs test {test:.3f} (gap {gap:+.3f})"]
    status = FAIL if gap > params.max_train_test_gap else PASS
    if gap > params.max_train_test_gap:
        parts.append(f"gap exceeds {params.max_train_test_gap}")
    rise = None
    if train is not None and train.best_val_loss and train.last_val_loss is not None:
        rise = (train.last_val_loss - train.best_val_loss) / train.best_val_loss
        parts.append(f"val loss best {train.best_val_loss:.4f} at step {train.best_step} of "
                     f"{train.steps}, last {train.last_val_loss:.4f} ({100 * rise:+.1f}%)")
        if rise > params.max_val_rise and status == PASS:
            status = WARN
            parts.append("validation loss rose after its best step (early stopping kept the best checkpoint)")
    return check("overfitting", status, "; ".join(parts), gap=gap, val_rise=rise)


def majority_label(finetune: list[dict], majority: str | None, params: CompareParams) -> dict:
    """Does the fine-tune's label beat always answering the majority train label (CI lower bound > 0)?"""
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


def learnt(evaluate: EvaluateMetrics, train_sample_rows: list[dict] | None, finetune_rows: list[dict], untrained: float | None,
           majority: str | None, metric: str, params: CompareParams) -> dict:
    """Did the fine-tune learn the task at all? One that cannot fit its own training sample, or
    that answers one label whatever the input, has not lost to prompting: the attempt failed."""
    score = (evaluate.train_sample or {}).get(metric)
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
