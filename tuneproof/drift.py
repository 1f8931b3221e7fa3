"""Does the test set look like production? A domain classifier between the test prompts and a
sample of production prompts (adversarial validation), and the sample's overlap with train.

* Domain classifier: TF-IDF of word 1-2-grams (through the one normalisation, tuneproof.text) and
  logistic regression, test = 0, production = 1. Stratified K-fold cross-validation gives every
  prompt an out-of-fold score; the ROC AUC of those scores says how well the two can be told
  apart: about 0.5 = indistinguishable, 1.0 = another domain. Its CI is a seeded percentile
  bootstrap that resamples the test and the production prompts separately (scipy.stats.bootstrap).
* The check FAILs when the CI lower bound is above compare.drift.max_auc: like the significance
  check, it claims a difference only where sampling noise cannot explain it, so a small sample
  never blocks a release by chance. A CI that straddles the bar is a WARN (more production
  prompts settle it); one wholly at or below it is a PASS.
* Separating terms: the classifier refit on all prompts; its largest weights toward each side,
  with the share of each side's prompts that hold the term.
* Unlike any test prompt: the production prompts whose highest TF-IDF cosine to any test prompt
  (tuneproof.similar's word/character measure) is lowest.
* Overlap with train: each production prompt against every train prompt with the split audit's
  measure (exact character n-gram Jaccard, tuneproof.contamination) at the audit's n and
  threshold, read from its audit.json. Near-copies are listed: a test set sampled from production
  must leave them out, or it leaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap, rankdata

from tuneproof.contamination import max_jaccard
from tuneproof.io import TuneproofError
from tuneproof.records import leak_text, load_prompts, sample_records
from tuneproof.similar import max_similarity
from tuneproof.text import excerpt, normalise
from tuneproof.verdict_advice import FAIL, NA, PASS, WARN, check

NOT_RUN = ("not run: no production sample (set paths.production to a JSONL file of production prompts, or put "
           "one in its folder); how well the test set represents production is unchecked")
EXCERPT_CHARS = 100  # characters of a prompt shown in the evidence


@dataclass(frozen=True)
class DriftParams:
    max_auc: float = 0.7        # CI lower bound of the test-vs-production AUC above which test does not represent production
    folds: int = 5              # stratified cross-validation folds of the domain classifier
    min_prompts: int = 20       # fewer production (or test) prompts than this is an error: the AUC would be noise
    max_prompts: int = 2000     # prompts per side used (seeded sample): bounds the classifier's and the bootstrap's time
    top_terms: int = 10         # most separating terms listed per side
    examples: int = 5           # production prompts least like any test prompt, listed


@dataclass(frozen=True)
class DomainScore:
    auc: float                  # ROC AUC of the out-of-fold scores (production = positive)
    ci_low: float
    ci_high: float
    n_test: int                 # prompts per side actually used
    n_production: int
    terms: dict[str, list[dict]]  # "production" / "test": the terms that most pull a prompt to that side
    unlike: list[dict]          # production prompts least like any test prompt


def production_files(path: str | None) -> list[Path]:
    """The JSONL files of paths.production: the file itself or the folder's *.jsonl (sorted); none
    for null or a folder without one (the check is then not run)."""
    if path is None:
        return []
    folder = Path(path)
    if folder.is_file():
        return [folder]
    if folder.is_dir():
        return sorted(folder.glob("*.jsonl"))
    raise TuneproofError(f"paths.production: {path!r} not found; point it at a JSONL sample of production prompts "
                         "or a folder of them (an empty folder: the drift check is not run)")


def load_production(path: str | None) -> list[dict] | None:
    """The production prompts of paths.production (tuneproof.records.load_prompts), or None when none are given."""
    files = production_files(path)
    missing = "it is listed in paths.production; restore it or change that key"
    return [record for file in files for record in load_prompts(file, missing)] if files else None


def _classifier(seed: int):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    # words seen in one prompt only cannot separate the sides in another fold: min_df 2
    words = TfidfVectorizer(preprocessor=normalise, token_pattern=r"(?u)\b\w+\b", ngram_range=(1, 2), min_df=2,
                            sublinear_tf=True)
    return make_pipeline(words, LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed))


def _auc(production: np.ndarray, test: np.ndarray, axis: int = -1) -> np.ndarray:
    """ROC AUC from the Mann-Whitney rank sum (ties count half), along `axis` (scipy.stats.bootstrap's batches)."""
    production, test = np.moveaxis(production, axis, -1), np.moveaxis(test, axis, -1)
    ranks = rankdata(np.concatenate([production, test], axis=-1), axis=-1)
    n_p, n_t = production.shape[-1], test.shape[-1]
    return (ranks[..., :n_p].sum(axis=-1) - n_p * (n_p + 1) / 2) / (n_p * n_t)


def _separating_terms(model, texts: list[str], y: np.ndarray, top: int) -> dict[str, list[dict]]:
    vectorizer, classifier = model.steps[0][1], model.steps[1][1]
    present = vectorizer.transform(texts) > 0
    shares = {side: np.asarray(present[y == label].mean(axis=0)).ravel() for side, label in (("production", 1), ("test", 0))}
    names, weights = vectorizer.get_feature_names_out(), classifier.coef_[0]
    order = np.argsort(-weights, kind="stable")
    picks = {"production": [i for i in order[:top] if weights[i] > 0],
             "test": [i for i in order[::-1][:top] if weights[i] < 0]}
    return {side: [{"term": str(names[i]), "weight": round(float(weights[i]), 4),
                    "production_share": round(float(shares["production"][i]), 4),
                    "test_share": round(float(shares["test"][i]), 4)} for i in idx]
            for side, idx in picks.items()}


def _unlike_test(production: list[dict], test: list[dict], k: int) -> list[dict]:
    """The k production prompts whose highest word/character TF-IDF cosine to any test prompt is lowest."""
    best, nearest = max_similarity([leak_text(r) for r in production], [leak_text(r) for r in test])
    nearest = np.maximum(nearest, 0)  # no word anywhere: every cosine is 0, and the first test prompt is as near as any
    order = np.argsort(best, kind="stable")[:k]
    return [{"id": production[i]["id"], "text": excerpt(leak_text(production[i]), EXCERPT_CHARS),
             "similarity": round(float(best[i]), 4), "nearest_test_id": test[nearest[i]]["id"]} for i in order]


def domain_score(test: list[dict], production: list[dict], params: DriftParams, n_resamples: int, confidence: float,
                 seed: int) -> DomainScore:
    """Cross-validated ROC AUC of a test-vs-production classifier with its bootstrap CI (module docstring)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    for side, records in (("production sample (paths.production)", production), ("test set", test)):
        if len(records) < params.min_prompts:
            raise TuneproofError(f"the {side} holds {len(records)} prompt(s), fewer than compare.drift.min_prompts "
                                 f"({params.min_prompts}): a {params.folds}-fold AUC on so few is noise; add prompts")
    test, production = (sample_records(r, params.max_prompts, seed) for r in (test, production))
    texts = [leak_text(r) for r in test] + [leak_text(r) for r in production]
    y = np.array([0] * len(test) + [1] * len(production))
    folds = StratifiedKFold(params.folds, shuffle=True, random_state=seed)
    try:
        scores = cross_val_predict(_classifier(seed), texts, y, cv=folds, method="decision_function")
        model = _classifier(seed).fit(texts, y)
    except ValueError as exc:  # no word shared by two prompts: no vocabulary
        raise TuneproofError(f"drift check: no term occurs in two prompts of test and production ({exc}); "
                             "are the prompts empty or all unique codes?") from None
    ci = bootstrap((scores[y == 1], scores[y == 0]), _auc, vectorized=True, n_resamples=n_resamples,
                   confidence_level=confidence, method="percentile", random_state=np.random.default_rng(seed),
                   batch=max(1, 2_000_000 // len(y))).confidence_interval
    return DomainScore(float(_auc(scores[y == 1], scores[y == 0])), float(ci.low), float(ci.high), len(test),
                       len(production), _separating_terms(model, texts, y, params.top_terms),
                       _unlike_test(production, test, params.examples))


def _terms(terms: list[dict], k: int = 5) -> str:
    return ", ".join(f"'{t['term']}' ({t['production_share']:.0%} vs {t['test_share']:.0%})" for t in terms[:k]) or "none"


def drift_check(score: DomainScore | None, params: DriftParams, confidence: float) -> dict:
    """The `drift` check: FAIL when the AUC's CI lower bound is above max_auc, WARN when the CI
    straddles it, PASS below; N/A (never PASS) without a production sample."""
    if score is None:
        return check("drift", NA, NOT_RUN)
    status = FAIL if score.ci_low > params.max_auc else WARN if score.ci_high > params.max_auc else PASS
    evidence = (f"a TF-IDF + logistic-regression classifier tells {score.n_production} production prompts from "
                f"{score.n_test} test prompts with {params.folds}-fold ROC AUC {score.auc:.3f}, "
                f"{100 * confidence:.0f}% CI [{score.ci_low:.3f}, {score.ci_high:.3f}] (0.5 = indistinguishable; "
                f"fails when the CI lower bound is above compare.drift.max_auc {params.max_auc})")
    if status == FAIL:
        evidence += (f"; the test set does not represent production. Terms of production (share of production vs "
                     f"test prompts holding them): {_terms(score.terms['production'])}; of test: {_terms(score.terms['test'])}")
    elif status == WARN:
        evidence += "; inconclusive: more production prompts would narrow the CI"
    return check("drift", status, evidence, auc=score.auc, ci_low=score.ci_low, ci_high=score.ci_high,
                 n_test=score.n_test, n_production=score.n_production, max_auc=params.max_auc, terms=score.terms,
                 unlike=score.unlike)


def production_overlap(production: list[dict] | None, train: list[dict], audit: dict, top: int = 10) -> dict:
    """The `production_overlap` check: production prompts that nearly copy a train prompt, by the
    split audit's measure and threshold (audit.json). WARN when any does: not a flaw of this
    fine-tune, but a test set sampled from production must leave them out."""
    if production is None:
        return check("production_overlap", NA, NOT_RUN.split(";")[0])
    ngram, threshold = audit.get("ngram"), (audit.get("prompt") or {}).get("threshold")
    if ngram is None or threshold is None:
        raise TuneproofError("the split audit (audit.json) lacks 'ngram' or 'prompt.threshold', written by the "
                             "current split stage; re-run it (dvc repro split)")
    scores, best = max_jaccard([leak_text(r) for r in production], [leak_text(r) for r in train], ngram)
    order = np.argsort(-scores, kind="stable")
    pairs = [{"id": production[i]["id"], "train_id": train[best[i]]["id"], "score": round(float(scores[i]), 4),
              "text": excerpt(leak_text(production[i]), EXCERPT_CHARS)} for i in order[:top] if scores[i] >= threshold]
    copies = int((scores >= threshold).sum())
    measure = f"character {ngram}-gram Jaccard >= {threshold}, the split audit's measure"
    if copies:
        shown = "; ".join(f"{p['id']} ~ train {p['train_id']} ({p['score']:.2f})" for p in pairs[:3])
        evidence = (f"{copies} of {len(production)} production prompts nearly copy a train prompt ({measure}), e.g. "
                    f"{shown}: a test set sampled from production must leave them out, or it leaks")
    else:
        evidence = (f"no production prompt of {len(production)} nearly copies a train prompt ({measure}; "
                    f"max {float(scores.max(initial=0.0)):.2f})")
    return check("production_overlap", WARN if copies else PASS, evidence, copies=copies,
                 max=float(scores.max(initial=0.0)), pairs=pairs)
