"""The verdict, with evidence: ship the fine-tune only if it provably should (stages/compare.py runs it).

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
Triage signals (is fine-tuning the right tool? tuneproof/triage.py):
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

from tuneproof.checks import (beats_trivial, bootstrap_gain, evidence_size, forgetting, leakage, learnt, majority_label,
                              majority_rows, overfitting, require_finite, significance)
from tuneproof.compare_params import CompareParams
from tuneproof.contract import CompareInputs, Evidence
from tuneproof.drift import domain_score, drift_check, production_overlap
from tuneproof.paired import paired_primary, scores_metric
from tuneproof.teacher import teacher_columns
from tuneproof.triage import answer_novelty, triage
from tuneproof.verdict_advice import (DONT_SHIP, FAIL, FINETUNE_FAILED, FORGETTING_UNCHECKED, INSUFFICIENT_EVIDENCE, NA,
                                      NO_SKILL, PASS, PROMPT_SUFFICES, SHIP, USE_RAG, check, next_steps)



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


def require_finite_primary(inputs: CompareInputs, metric: str) -> None:
    """The primary scores every check reads, refused when NaN or infinite."""
    evaluate, where = inputs.evaluate, inputs.metrics_dir
    parts = {"finetune": evaluate.finetune, "train_sample": evaluate.train_sample}
    require_finite(f"{where}/evaluate.json", {f"{part}.{metric}": scores.get(metric)
                                              for part, scores in parts.items() if scores is not None},
                   "re-run evaluate")
    systems = {"best": inputs.baseline.best, **inputs.baseline.strategies}
    require_finite(f"{where}/baseline.json", {f"{name}.{metric}": m.get(metric) for name, m in systems.items()},
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


def run_checks(inputs: CompareInputs, metric: str, params: CompareParams) -> dict[str, dict]:
    """Every check, by name, in the report's order (the module docstring says what each one asks)."""
    best_rows = inputs.baseline_rows[inputs.baseline.best_strategy]
    rows, majority = inputs.finetune_rows, inputs.baseline.majority_label
    ids, _, _ = paired_primary(rows, best_rows, metric)
    references = {"majority": majority_rows(rows, majority)}
    references = {name: refs for name, refs in {**references, **inputs.reference_rows}.items() if refs}
    sig = significance(rows, best_rows, metric, params)
    return {
        "same_test_set": check("same_test_set", PASS, f"{len(ids)} test ids, identical for baseline and fine-tune"),
        "significance": sig,
        "evidence": evidence_size(sig, params),
        "leakage": leakage(inputs.audit, inputs.test, inputs.train, inputs.train_info.train_sha256,
                           inputs.train_sha256, params.leakage),
        "learnt": learnt(inputs.evaluate, inputs.train_sample_rows, rows,
                         inputs.baseline.strategies.get("zero_shot", {}).get(metric), majority, metric, params),
        "beats_trivial": beats_trivial(best_rows, rows, references, metric, params),
        "forgetting": forgetting(inputs.probe, params.forgetting, f"{inputs.metrics_dir}/probe.json"),
        "overfitting": overfitting(inputs.train_metrics, inputs.evaluate, metric, params.overfitting),
        "majority_label": majority_label(rows, majority, params),
        "drift": drift(inputs, params),
        "production_overlap": production_overlap(inputs.production, inputs.train, inputs.audit),
    }


def drift(inputs: CompareInputs, params: CompareParams) -> dict:
    """Does the test set look like the production sample? N/A without one (tuneproof/drift.py)."""
    score = None if inputs.production is None else domain_score(
        inputs.test, inputs.production, params.drift, params.bootstrap_resamples, params.confidence, params.seed)
    return drift_check(score, params.drift, params.confidence)


def evaluate_evidence(inputs: CompareInputs, metric: str, params: CompareParams) -> Evidence:
    """All checks, triage signals, the verdict and next steps on `metric` (score.primary)."""
    require_finite_primary(inputs, metric)
    baseline = inputs.baseline
    checks = run_checks(inputs, metric, params)
    signals = triage(baseline.best, checks["significance"], baseline.strategies, inputs.evaluate.finetune,
                     inputs.finetune_rows, answer_novelty(inputs.test, inputs.train), metric, params,
                     prompted_rows=inputs.baseline_rows[baseline.best_strategy])
    verdict, reasons = decide(checks, signals)
    return Evidence(verdict=verdict, reasons=reasons, next_steps=next_steps(verdict, checks), primary=metric,
                    best_strategy=baseline.best_strategy, checks=checks, signals=signals,
                    versus=versus_table(inputs.finetune_rows, inputs.baseline_rows, metric, params),
                    confidence=params.confidence)


def compare_metrics(evidence: Evidence) -> dict:
    """The flat metrics file: `dvc exp show` gets columns for verdict, gain, CI and the records needed."""
    checks, signals = evidence.checks, evidence.signals
    sig = checks["significance"]
    metrics = {"verdict": evidence.verdict, "primary": evidence.primary, "best_strategy": evidence.best_strategy,
               "gain": sig["gain"], "ci_low": sig["ci_low"], "ci_high": sig["ci_high"], "p_value": sig["p_value"],
               "answer_novelty": signals["answer_novelty"], "finetune_on_novel": signals["finetune_on_novel"],
               "finetune_on_familiar": signals["finetune_on_familiar"], "n_needed": checks["evidence"]["n_needed"],
               "checks": {name: c["status"] for name, c in checks.items()}}
    if checks["learnt"].get("train_sample") is not None:
        metrics["finetune_train_sample"] = checks["learnt"]["train_sample"]
    drift = checks.get("drift", {})
    if "auc" in drift:  # absent when no production sample was given
        metrics["drift"] = {key: drift[key] for key in ("auc", "ci_low", "ci_high", "n_test", "n_production")}
        metrics["drift"]["production_overlap"] = checks["production_overlap"]["copies"]
    if evidence.teacher is not None:  # the data was distilled: the student against its teacher
        metrics["teacher"] = teacher_columns(evidence.teacher, evidence.primary)
    return metrics
