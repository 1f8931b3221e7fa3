"""Stage `baseline`: the bar a fine-tune must clear — the base model, prompted as well as we can.

    python -m stages.baseline   # reads params.yaml: baseline, generate, score, prompt.system,
                                # task.label_field, paths.{base_model,split,baseline,metrics}

Strategies (all on the test split, all shots drawn from TRAIN only, all through
tuneproof.predict, the path evaluate uses for the fine-tune):
  * zero_shot - the system prompt (instructions) and the record;
  * few_shot  - k fixed train examples before every record, chosen deterministically to cover
                the most frequent labels first;
  * retrieval - the k train examples nearest to each record by TF-IDF cosine of the prompts;
  * rank      - label tasks only (task.label_field: completion): the label whose completion the
                model finds most likely (no free text, so no format errors).
Writes `<paths.baseline>/<strategy>.jsonl` (one row per test record) and metrics/baseline.json:
`{strategy: {metric: value}, "best": {"strategy": name, metric: value}, "trivial": {...}}`;
"best" is chosen by `score.primary`, "trivial" holds the references every bar is read against
(majority class; share of test completions seen verbatim in train).

A killed run loses no finished work: each configuration's rows (on val and on test) go to
`.tuneproof/cache/baseline/<sha256>.json` as soon as they are done, named by a fingerprint of
everything that decides them (RowCache); a re-run reuses those whose fingerprint matches. The
folder is not a DVC output (DVC deletes outputs before it re-runs a stage) and is removed once
the outputs are written.
"""

from __future__ import annotations

import dataclasses
import importlib
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from tuneproof.cli_util import run_main
from tuneproof.config import BaselineParams, Paths, Prompt, Task
from tuneproof.generation import GenerateParams
from tuneproof.io import TuneproofError, dumps, jsonl_line, read_json, sha256_file, sha256_text, sha256_tree, write_json
from tuneproof.params import load_section
from tuneproof.predict import predict_and_score, rank_and_score, write_predictions
from tuneproof.records import label_of, prompt_text, read_split, sample_records
from tuneproof.scoring import Scorer, ScoreParams, build_scorer

REFERENCE = "tfidf_logreg"  # the trivial learnt reference of label tasks (rows: <paths.baseline>/reference_tfidf_logreg.jsonl)
CACHE_DIR = Path(".tuneproof/cache/baseline")  # rows of finished configurations while a run is in progress (not a DVC output)
# the code a configuration's rows depend on: an edit to any of it invalidates the cached rows
CODE = ("stages.baseline", "tuneproof.generation", "tuneproof.modeling", "tuneproof.predict", "tuneproof.prompting",
        "tuneproof.records", "tuneproof.scoring", "tuneproof.text")


def select_few_shot(train: Sequence[dict], k: int, label_field: str | None, seed: int) -> list[dict]:
    """k fixed train examples: a seeded shuffle, then one example per label in turn, most
    frequent labels first, so the shots cover as many labels as k allows. Without labels, the
    first k of the shuffle."""
    order = sorted(train, key=lambda r: r["id"])
    random.Random(seed).shuffle(order)
    if label_field is None:
        return order[:k]
    groups: dict[str, list[dict]] = {}
    for record in order:
        groups.setdefault(str(label_of(record, label_field)), []).append(record)
    labels = sorted(groups, key=lambda lab: (-len(groups[lab]), lab))
    shots: list[dict] = []
    depth = 0
    while len(shots) < min(k, len(order)):
        for lab in labels:
            if depth < len(groups[lab]) and len(shots) < k:
                shots.append(groups[lab][depth])
        depth += 1
    return shots


def retrieve_shots(train: Sequence[dict], queries: Sequence[dict], k: int) -> list[list[dict]]:
    """For each query, its k nearest train records by TF-IDF cosine of the prompt text, the
    nearest LAST (next to the query, where the model attends most). Ties keep train order."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True)
    train_matrix = vectorizer.fit_transform([prompt_text(r) for r in train])
    similarity = (vectorizer.transform([prompt_text(q) for q in queries]) @ train_matrix.T).toarray()
    shots = []
    for row in similarity:
        nearest = np.argsort(-row, kind="stable")[:k]  # rows are L2-normalised: dot = cosine
        shots.append([train[int(i)] for i in nearest[::-1]])
    return shots


def warn_uncovered_labels(train: Sequence[dict], params: BaselineParams, label_field: str | None) -> None:
    """Say when few-shot cannot show every label: with k below the label count some labels are
    never demonstrated, and the prompt alone must name them."""
    if label_field is None or "few_shot" not in params.strategies:
        return
    n_labels = len({str(label_of(r, label_field)) for r in train})
    if max(params.few_shot_k) < n_labels:
        print(f"baseline: few_shot shows at most {max(params.few_shot_k)} of the {n_labels} labels "
              f"(baseline.few_shot_k {params.few_shot_k}); the system prompt must name the rest, and retrieval "
              "shows the labels nearest each record")


def trivial_references(train: Sequence[dict], test: Sequence[dict], label_field: str | None) -> dict:
    """What a model with no skill scores: always the majority train label, and the share of
    test completions that appear verbatim in train (answers that could be memorised)."""
    seen = {r["completion"].strip() for r in train}
    out: dict = {"n_test": len(test),
                 "completion_seen_in_train": sum(r["completion"].strip() in seen for r in test) / len(test)}
    if label_field is not None:
        counts = Counter(str(label_of(r, label_field)) for r in train)
        majority = min(counts, key=lambda lab: (-counts[lab], lab))
        out["majority_label"] = majority
        out["majority_accuracy"] = sum(str(label_of(r, label_field)) == majority for r in test) / len(test)
    return out


def tfidf_logreg_rows(train: Sequence[dict], test: Sequence[dict], scorer: Scorer) -> list[dict]:
    """The trivial learnt reference for label tasks: scikit-learn TF-IDF (words and character
    3-5-grams) + logistic regression fitted on train, scored on test by the same scorer. A prompt
    or fine-tune that cannot beat it is no reason to serve an LLM."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    labels = [str(label_of(r, scorer.label_field)) for r in train]
    if len(set(labels)) < 2:
        return [scorer.row(r, labels[0]) for r in test]
    features = make_union(TfidfVectorizer(sublinear_tf=True),
                          TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2))
    model = make_pipeline(features, LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced"))
    model.fit([prompt_text(r) for r in train], labels)
    return [scorer.row(r, str(p)) for r, p in zip(test, model.predict([prompt_text(r) for r in test]))]


def active_strategies(params: BaselineParams, label_field: str | None,
                      params_file: str = "params.yaml") -> list[str]:
    """The configured strategies that apply (rank needs whole-completion labels), checked."""
    if len(set(params.strategies)) != len(params.strategies):
        raise TuneproofError(f"{params_file}: baseline.strategies lists a strategy twice; list each once")
    for strategy, ks in (("few_shot", params.few_shot_k), ("retrieval", params.retrieval_k)):
        if strategy in params.strategies and (not ks or min(ks) < 1 or len(set(ks)) != len(ks)):
            raise TuneproofError(f"{params_file}: baseline.{strategy}_k is {ks}; list distinct example counts of at least 1")
    if params.val_records < 1:
        raise TuneproofError(f"{params_file}: baseline.val_records is {params.val_records}; use 1 or more")
    active = [s for s in params.strategies if s != "rank" or label_field == "completion"]
    if not active:
        raise TuneproofError(f"{params_file}: baseline.strategies has no strategy that applies to this task "
                             "(rank needs task.label_field: completion); add zero_shot, few_shot or retrieval")
    return active


def run_strategy(strategy: str, k: int | None, model, tokenizer, train: Sequence[dict], records: Sequence[dict],
                 scorer: Scorer, system: str | None, gen: GenerateParams, seed: int, desc: str) -> list[dict]:
    """Per-example rows of one strategy (with k shots where it takes shots) on `records`."""
    if strategy == "rank":
        return rank_and_score(model, tokenizer, records, scorer, system, gen, desc=desc)
    shots = None
    if strategy == "few_shot":
        shots = [select_few_shot(train, k, scorer.label_field, seed)] * len(records)
    elif strategy == "retrieval":
        shots = retrieve_shots(train, records, k)
    return predict_and_score(model, tokenizer, records, scorer, system, gen, shots, desc=desc)


def records_digest(records: Sequence[dict]) -> str:
    """sha256 of the records in order (ids, prompts, completions: every field)."""
    return sha256_text("\n".join(jsonl_line(r) for r in records))


def cache_context(model_dir: str | Path, model, train: Sequence[dict], scorer: Scorer, system: str | None,
                  gen: GenerateParams, seed: int) -> dict:
    """Everything besides the configuration and its records that decides a configuration's rows:
    the model folder's files (weights, tokenizer, chat template), where and in what dtype it runs,
    the code and library versions, the prompt, decoding and scoring settings, the seed, train."""
    import torch
    import transformers

    parameter = next(model.parameters())
    return {"model_files": sha256_tree(model_dir),
            "device": str(parameter.device), "dtype": str(parameter.dtype),
            "code": {name: sha256_file(importlib.import_module(name).__file__) for name in CODE},
            "libraries": {"torch": torch.__version__, "transformers": transformers.__version__},
            "system": system, "generate": dataclasses.asdict(gen), "score": dataclasses.asdict(scorer.params),
            "label_field": scorer.label_field, "labels": list(scorer.labels), "seed": seed,
            "train": records_digest(train)}


@dataclass(frozen=True)
class RowCache:
    """Each finished configuration's rows, so that a re-run after a kill reuses them: one JSON file
    per configuration in `folder` (None: keep nothing), named by the sha256 of `context`
    (cache_context), the strategy, k and the records. A different fingerprint is never reused."""

    folder: Path | None
    context: dict = field(default_factory=dict)

    def rows(self, strategy: str, k: int | None, records: Sequence[dict], compute: Callable[[], list[dict]],
             desc: str) -> list[dict]:
        """The cached rows of this configuration on `records`, else compute() (then cached)."""
        if self.folder is None:
            return compute()
        key = sha256_text(dumps({"context": self.context, "strategy": strategy, "k": k,
                                 "records": records_digest(records)}))
        path = self.folder / f"{key}.json"
        if path.is_file():
            print(f"{desc}: reusing the rows of an interrupted run ({path})")
            return read_json(path)["rows"]
        rows = compute()
        write_json(path, {"strategy": strategy, "k": k, "records": len(records), "rows": rows})
        return rows

    def clear(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def candidates(strategies: Sequence[str], params: BaselineParams) -> list[tuple[str, int | None]]:
    """Every configuration tried on val: each strategy with each of its candidate k."""
    ks = {"few_shot": params.few_shot_k, "retrieval": params.retrieval_k}
    return [(s, k) for s in strategies for k in ks.get(s, [None])]


def best_strategy(metrics: dict[str, dict], primary: str) -> str:
    """The name with the highest primary metric (first listed wins a tie)."""
    return max(metrics, key=lambda s: (metrics[s][primary], -list(metrics).index(s)))


def config_name(strategy: str, k: int | None) -> str:
    return strategy if k is None else f"{strategy}@{k}"


def tune_on_val(model, tokenizer, train: Sequence[dict], val: Sequence[dict], scorer: Scorer, system: str | None,
                gen: GenerateParams, params: BaselineParams, strategies: Sequence[str],
                cache: RowCache = RowCache(None)) -> dict:
    """Each strategy's k and the best strategy, chosen on `val` only (never on test): the prompted
    side gets the same selection on validation as the fine-tune's checkpoint."""
    configs = candidates(strategies, params)
    if len(configs) == 1:  # nothing to choose between: spend no decoding on val
        (strategy, k), = configs
        return {"on": "val", "records": 0, "configs_tried": 1, "val": {}, "k": {strategy: k}, "best": strategy}
    primary = scorer.params.primary
    scores = {}
    for strategy, k in configs:
        desc = f"baseline val {config_name(strategy, k)}"
        rows = cache.rows(strategy, k, val, partial(run_strategy, strategy, k, model, tokenizer, train, val, scorer,
                                                    system, gen, params.seed, desc), desc)
        scores[config_name(strategy, k)] = scorer.aggregate(rows)
    chosen = {}
    for strategy in strategies:
        options = {config_name(s, k): k for s, k in configs if s == strategy}
        chosen[strategy] = options[best_strategy({n: scores[n] for n in options}, primary)]
    return {"on": "val", "records": len(val), "configs_tried": len(configs),
            "val": {name: m.get(primary) for name, m in scores.items()}, "k": chosen,
            "best": best_strategy({s: scores[config_name(s, k)] for s, k in chosen.items()}, primary)}


def run_baseline(model, tokenizer, train: Sequence[dict], val: Sequence[dict], test: Sequence[dict], scorer: Scorer,
                 system: str | None, gen: GenerateParams, params: BaselineParams,
                 cache: RowCache = RowCache(None)) -> tuple[dict[str, list[dict]], dict]:
    """(rows per strategy, metrics): k and the best strategy chosen on val, then each strategy
    scored once on test at its chosen k. `best` is the val winner with its test metrics. Every
    configuration's rows go through `cache` (reused after a kill)."""
    strategies = active_strategies(params, scorer.label_field)
    selection = tune_on_val(model, tokenizer, train, val, scorer, system, gen, params, strategies, cache)
    rows = {}
    for s in strategies:
        k, desc = selection["k"][s], f"baseline {s}"
        rows[s] = cache.rows(s, k, test, partial(run_strategy, s, k, model, tokenizer, train, test, scorer, system,
                                                 gen, params.seed, desc), desc)
    metrics: dict = {s: scorer.aggregate(r) for s, r in rows.items()}
    metrics["best"] = {"strategy": selection["best"], **metrics[selection["best"]]}
    metrics["selection"] = selection
    metrics["trivial"] = trivial_references(train, test, scorer.label_field)
    if scorer.params.kind == "label":
        reference = tfidf_logreg_rows(train, test, scorer)
        metrics["trivial"][REFERENCE] = scorer.aggregate(reference)
        rows[f"reference_{REFERENCE}"] = reference
    return rows, metrics


def main(params_file: str = "params.yaml") -> None:
    from tuneproof.modeling import load_model, load_tokenizer

    params = load_section(BaselineParams, "baseline", params_file)
    gen = load_section(GenerateParams, "generate", params_file)
    score = load_section(ScoreParams, "score", params_file)
    system = load_section(Prompt, "prompt", params_file).system
    task = load_section(Task, "task", params_file)
    paths = load_section(Paths, "paths", params_file)
    train, test = read_split(paths.split, "train"), read_split(paths.split, "test")
    val = sample_records(read_split(paths.split, "val"), params.val_records, params.seed)
    scorer = build_scorer(score, task.label_field, [*train, *test])
    warn_uncovered_labels(train, params, scorer.label_field)
    tokenizer = load_tokenizer(paths.base_model)
    model = load_model(paths.base_model)
    cache = RowCache(CACHE_DIR, cache_context(paths.base_model, model, train, scorer, system, gen, params.seed))
    rows, metrics = run_baseline(model, tokenizer, train, val, test, scorer, system, gen, params, cache)
    write_predictions(rows, paths.output("baseline"))
    write_json(paths.metrics_file("baseline"), metrics)
    cache.clear()  # the outputs hold it all now
    primary, selection = score.primary, metrics["selection"]
    for strategy, k in selection["k"].items():
        print(f"baseline {config_name(strategy, k)}: {primary} = {metrics[strategy][primary]:.3f} on test")
    if REFERENCE in metrics["trivial"]:
        print(f"baseline reference {REFERENCE}: {primary} = {metrics['trivial'][REFERENCE][primary]:.3f} on test")
    print(f"baseline best: {metrics['best']['strategy']} (chosen on {selection['records']} val records among "
          f"{selection['configs_tried']} configurations; {primary} = {metrics['best'][primary]:.3f} on test); "
          f"wrote {paths.baseline}/ and {paths.metrics_file('baseline')}")


if __name__ == "__main__":
    run_main(main)
