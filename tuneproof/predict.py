"""Format -> generate -> score: the one path every system's predictions take.

Baseline (each prompted strategy) and evaluate (the fine-tune) call these functions, so
prompts, decoding and scoring are the same code by construction; only the model and the
shots differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tuneproof.generation import GenerateParams, count_tokens, generate, rank_classify
from tuneproof.io import atomic_path, write_jsonl
from tuneproof.prompting import format_prompt
from tuneproof.scoring import Scorer


def build_prompts(tokenizer, records: Sequence[dict], system: str | None,
                  shots: Sequence[Sequence[dict]] | None = None) -> list[str]:
    """Served prompt strings: zero-shot when `shots` is None, else `shots[i]` before record i."""
    return [format_prompt(tokenizer, record, system, shots[i] if shots is not None else ())
            for i, record in enumerate(records)]


def _rows(scorer: Scorer, records: Sequence[dict], predictions: Sequence[str],
          shots: Sequence[Sequence[dict]] | None) -> list[dict]:
    # Shot ids go with each row so a reviewer can see what a prediction was shown.
    return [scorer.row(record, prediction, **({"shots": [s["id"] for s in shots[i]]} if shots is not None else {}))
            for i, (record, prediction) in enumerate(zip(records, predictions))]


def predict_and_score(model, tokenizer, records: Sequence[dict], scorer: Scorer, system: str | None,
                      gen: GenerateParams, shots: Sequence[Sequence[dict]] | None = None,
                      desc: str = "generate") -> list[dict]:
    """Per-example rows `{"id", "prediction", "reference", "scores", ...}` (record order) from
    greedy generation on the served prompts."""
    prompts = build_prompts(tokenizer, records, system, shots)
    predictions = generate(model, tokenizer, prompts, gen.max_new_tokens, gen.batch_size,
                           gen.prefix_cache, desc=desc)
    return _rows(scorer, records, predictions, shots)


def rank_and_score(model, tokenizer, records: Sequence[dict], scorer: Scorer, system: str | None,
                   gen: GenerateParams, desc: str = "rank") -> list[dict]:
    """Like predict_and_score, but each prediction is the label the model finds most likely
    (rank classification over the scorer's label set) on the zero-shot prompt."""
    prompts = build_prompts(tokenizer, records, system)
    predictions = rank_classify(model, tokenizer, prompts, list(scorer.labels), gen.batch_size,
                                gen.prefix_cache, desc=desc)
    return _rows(scorer, records, predictions, None)


def answer_cost(tokenizer, rows: Sequence[dict], seconds: float, device, batch_size: int) -> dict:
    """What answering `rows` cost as measured: wall seconds per answer and generated tokens per
    second (batched as generate.batch_size), with the device it ran on."""
    tokens = sum(count_tokens(tokenizer, [r["prediction"] for r in rows]))
    return {"seconds_per_answer": round(seconds / max(len(rows), 1), 6),
            "tokens_per_second": round(tokens / seconds, 2) if seconds > 0 else None,
            "device": str(device), "batch_size": batch_size}


def write_predictions(rows: dict[str, list[dict]], out_dir: str | Path) -> None:
    """`<out_dir>/<name>.jsonl` for each system's rows, replacing the whole folder atomically
    (a stale file of a strategy no longer run cannot survive)."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name, system_rows in rows.items():
            write_jsonl(tmp / f"{name}.jsonl", system_rows)
