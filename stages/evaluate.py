"""Stage `evaluate`: the fine-tune on the same test split, through the same code as the baseline.

    python -m stages.evaluate   # reads params.yaml: evaluate, generate, score, prompt.system,
                                # task.label_field, paths.{base_model,adapter,split,evaluate,metrics}

The fine-tune (base model + paths.adapter) is served zero-shot with the same system prompt it
was trained with, and its predictions go through tuneproof.predict.predict_and_score, the very
function the baseline uses. A seeded sample of the TRAIN split is scored too, so a large
train/test gap (overfitting) is visible next to the test score.
Writes `<paths.evaluate>/{test,train_sample}.jsonl` (one row per record) and
metrics/evaluate.json `{"finetune": {metric: value}, "train_sample": {metric: value}, "cost": {...}}`,
with the same metric names as metrics/baseline.json; `cost` is the measured seconds per test answer
and generated tokens per second, as run here (timings: not byte-identical between runs).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from tuneproof.cli_util import run_main
from tuneproof.config import EvaluateParams, Paths, Prompt, Task
from tuneproof.generation import GenerateParams
from tuneproof.io import TuneproofError, write_json
from tuneproof.params import load_section
from tuneproof.records import read_split, sample_records
from tuneproof.predict import answer_cost, predict_and_score, write_predictions
from tuneproof.scoring import Scorer, ScoreParams, build_scorer


def run_evaluate(model, tokenizer, train: Sequence[dict], test: Sequence[dict], scorer: Scorer,
                 system: str | None, gen: GenerateParams, params: EvaluateParams) -> tuple[dict[str, list[dict]], dict]:
    """(rows per split, metrics) of the fine-tune on the test split and a train sample, and what
    answering the test split cost on this machine (compare sets it beside a distill teacher's)."""
    begin = time.perf_counter()
    rows = {"test": predict_and_score(model, tokenizer, test, scorer, system, gen, desc="finetune test")}
    metrics = {"finetune": scorer.aggregate(rows["test"]),
               "cost": answer_cost(tokenizer, rows["test"], time.perf_counter() - begin, model.device, gen.batch_size)}
    sample = sample_records(train, params.train_sample, params.seed)
    if sample:
        rows["train_sample"] = predict_and_score(model, tokenizer, sample, scorer, system, gen, desc="finetune train")
        metrics["train_sample"] = scorer.aggregate(rows["train_sample"])
    return rows, metrics


def main(params_file: str = "params.yaml") -> None:
    from tuneproof.modeling import load_model, load_tokenizer

    params = load_section(EvaluateParams, "evaluate", params_file)
    if params.train_sample < 0:
        raise TuneproofError(f"{params_file}: evaluate.train_sample is {params.train_sample}; use 0 or more")
    gen = load_section(GenerateParams, "generate", params_file)
    score = load_section(ScoreParams, "score", params_file)
    system = load_section(Prompt, "prompt", params_file).system
    task = load_section(Task, "task", params_file)
    paths = load_section(Paths, "paths", params_file)
    if not Path(paths.adapter).is_dir():
        raise TuneproofError(f"{paths.adapter}: no fine-tune found (paths.adapter); run the train stage first")
    train, test = read_split(paths.split, "train"), read_split(paths.split, "test")
    scorer = build_scorer(score, task.label_field, [*train, *test])
    # The adapter dir carries the tokenizer train used; left padding is set for batched decoding.
    tokenizer = load_tokenizer(paths.adapter if (Path(paths.adapter) / "tokenizer_config.json").is_file()
                               else paths.base_model)
    model = load_model(paths.base_model, paths.adapter)
    rows, metrics = run_evaluate(model, tokenizer, train, test, scorer, system, gen, params)
    write_predictions(rows, paths.output("evaluate"))
    write_json(paths.metrics_file("evaluate"), metrics)
    primary = score.primary
    gap = (f"; train sample {metrics['train_sample'][primary]:.3f}" if "train_sample" in metrics else "")
    print(f"evaluate finetune: {primary} = {metrics['finetune'][primary]:.3f} on {len(test)} test records{gap}; "
          f"wrote {paths.evaluate}/ and {paths.metrics_file('evaluate')}")


if __name__ == "__main__":
    run_main(main)
