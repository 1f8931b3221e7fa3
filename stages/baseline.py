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
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Sequence

from tuneproof.cli_util import run_main
from tuneproof.config import Paths, Prompt, Task
from tuneproof.generation import GenerateParams
from tuneproof.io import TuneproofError, write_json
from tuneproof.params import load_section
from tuneproof.predict import predict_and_score, rank_and_score, write_predictions
from tuneproof.records import label_of, prompt_text, read_split
from tuneproof.scoring import Scorer, ScoreParams, build_scorer

Strategy = Literal["zero_shot", "few_shot", "retrieval", "rank"]


@dataclass(frozen=True)
class BaselineParams:
    strategies: list[Strategy] = field(default_factory=lambda: ["zero_shot", "few_shot", "retrieval", "rank"])  # run in this order; rank runs only when task.label_field is "completion"
    few_shot_k: int = 4   # fixed train examples before every prompt (encoded once with the system prompt: cheap)
    retrieval_k: int = 2  # nearest train examples before each prompt (encoded per record: the costly strategy on CPU)
    seed: int = 0         # seeds the few-shot choice (which train example stands for each label)


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


def active_strategies(params: BaselineParams, label_field: str | None,
                      params_file: str = "params.yaml") -> list[str]:
    """The configured strategies that apply (rank needs whole-completion labels), checked."""
    if len(set(params.strategies)) != len(params.strategies):
        raise TuneproofError(f"{params_file}: baseline.strategies lists a strategy twice; list each once")
    for strategy, k in (("few_shot", params.few_shot_k), ("retrieval", params.retrieval_k)):
        if strategy in params.strategies and k < 1:
            raise TuneproofError(f"{params_file}: baseline.{strategy}_k is {k}; {strategy} needs at least 1 example")
    active = [s for s in params.strategies if s != "rank" or label_field == "completion"]
    if not active:
        raise TuneproofError(f"{params_file}: baseline.strategies has no strategy that applies to this task "
                             "(rank needs task.label_field: completion); add zero_shot, few_shot or retrieval")
    return active


def run_strategy(strategy: str, model, tokenizer, train: Sequence[dict], test: Sequence[dict],
                 scorer: Scorer, system: str | None, gen: GenerateParams, params: BaselineParams) -> list[dict]:
    """Per-example rows of one strategy on the test records."""
    if strategy == "rank":
        return rank_and_score(model, tokenizer, test, scorer, system, gen, desc=strategy)
    shots = None
    if strategy == "few_shot":
        shots = [select_few_shot(train, params.few_shot_k, scorer.label_field, params.seed)] * len(test)
    elif strategy == "retrieval":
        shots = retrieve_shots(train, test, params.retrieval_k)
    return predict_and_score(model, tokenizer, test, scorer, system, gen, shots, desc=strategy)


def best_strategy(metrics: dict[str, dict], primary: str) -> dict:
    """The strategy with the highest primary metric (first listed wins a tie), with its metrics."""
    name = max(metrics, key=lambda s: (metrics[s][primary], -list(metrics).index(s)))
    return {"strategy": name, **metrics[name]}


def run_baseline(model, tokenizer, train: Sequence[dict], test: Sequence[dict], scorer: Scorer,
                 system: str | None, gen: GenerateParams, params: BaselineParams) -> tuple[dict[str, list[dict]], dict]:
    """(rows per strategy, metrics) for every applicable strategy."""
    rows = {s: run_strategy(s, model, tokenizer, train, test, scorer, system, gen, params)
            for s in active_strategies(params, scorer.label_field)}
    metrics: dict = {s: scorer.aggregate(r) for s, r in rows.items()}
    metrics["best"] = best_strategy({s: metrics[s] for s in rows}, scorer.params.primary)
    metrics["trivial"] = trivial_references(train, test, scorer.label_field)
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
    scorer = build_scorer(score, task.label_field, [*train, *test])
    tokenizer = load_tokenizer(paths.base_model)
    model = load_model(paths.base_model)
    rows, metrics = run_baseline(model, tokenizer, train, test, scorer, system, gen, params)
    write_predictions(rows, paths.output("baseline"))
    write_json(paths.metrics_file("baseline"), metrics)
    primary = score.primary
    for strategy in rows:
        print(f"baseline {strategy}: {primary} = {metrics[strategy][primary]:.3f}")
    print(f"baseline best: {metrics['best']['strategy']} ({primary} = {metrics['best'][primary]:.3f}); "
          f"wrote {paths.baseline}/ and {paths.metrics_file('baseline')}")


if __name__ == "__main__":
    run_main(main)
