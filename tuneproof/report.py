"""What `compare` writes: the metrics file, reports/report.md, the model card and plot data.

Kept apart from the decision logic (stages/compare.py) so the verdict is testable on its own and
the rendering can change without touching it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tuneproof.config import Paths, Task
from tuneproof.io import TuneproofError, atomic_path, remove_outputs, sha256_file, write_json, write_text
from tuneproof.paired import example_score, per_example_metric

SAMPLES = 5  # sample predictions shown where baseline and fine-tune differ


NOT_STRATEGIES = ("best", "trivial", "selection")  # summary entries of metrics/baseline.json beside the strategies


def strategy_metrics(baseline_metrics: dict) -> dict[str, dict]:
    """{strategy: metrics} of metrics/baseline.json, without its `best` and `trivial` summaries."""
    return {k: v for k, v in baseline_metrics.items() if isinstance(v, dict) and k not in NOT_STRATEGIES}


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("n/a" if value is None else str(value))


def _reference(name: str, value) -> str:
    """One trivial reference: `majority_accuracy 0.880`, or `tfidf_logreg accuracy 0.950, macro_f1 0.900`."""
    if isinstance(value, dict):
        return f"{name} " + ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(value.items()))
    return f"{name} {_fmt(value)}"


def _metric_names(metrics: dict[str, dict]) -> list[str]:
    names = sorted({k for m in metrics.values() for k, v in m.items() if isinstance(v, (int, float))})
    return [n for n in names if n not in ("n", "records")]


def before_after_table(evidence: dict, baseline_metrics: dict, evaluate_metrics: dict) -> str:
    systems = strategy_metrics(baseline_metrics)
    systems["fine-tune"] = evaluate_metrics["finetune"]
    names = _metric_names(systems)
    primary, conf = evidence["primary"], int(100 * evidence["confidence"])
    lines = ["| system | " + " | ".join(f"**{n}**" if n == primary else n for n in names)
             + f" | fine-tune gain on {primary} ({conf}% CI) |",
             "|---" * (len(names) + 2) + "|"]
    for name, metrics in systems.items():
        vs = evidence["versus"].get(name)
        gain = f"{vs['gain']:+.3f} [{vs['ci_low']:+.3f}, {vs['ci_high']:+.3f}]" if vs else "—"
        label = f"{name} (best prompted)" if name == evidence["best_strategy"] else name
        lines.append(f"| {label} | " + " | ".join(_fmt(metrics.get(n)) for n in names) + f" | {gain} |")
    refs = baseline_metrics.get("trivial") or {}
    if refs:
        lines.append("")
        lines.append("Trivial references: " + "; ".join(_reference(k, v) for k, v in sorted(refs.items())))
    return "\n".join(lines)


def novelty_table(evidence: dict) -> str:
    """The primary metric on novel vs familiar test answers (compare's answer novelty): a fine-tune
    that learnt format scores alike on both; one that memorised facts fails on the novel ones."""
    sig = evidence["signals"]
    if "novel_answers" not in sig:
        return ""
    primary = evidence["primary"]
    return (f"`{primary}` on the {sig['novel_answers']} test answers whose every accepted form is absent from the "
            f"train completions and the prompt (novel) and the {sig['familiar_answers']} others (familiar):\n\n"
            "| system | novel | familiar |\n|---|---|---|\n"
            f"| fine-tune | {_fmt(sig['finetune_on_novel'])} | {_fmt(sig['finetune_on_familiar'])} |\n"
            f"| {evidence['best_strategy']} (best prompted) | {_fmt(sig.get('prompted_on_novel'))} | "
            f"{_fmt(sig.get('prompted_on_familiar'))} |\n")


def _also_accepted(row: dict) -> str:
    others = [ref for ref in row.get("references", ()) if ref != row["reference"]]
    return f" (also accepted: {', '.join(f'`{ref}`' for ref in others)})" if others else ""


def sample_differences(baseline_rows: list[dict], finetune_rows: list[dict], primary: str) -> str:
    """The first test records where the two systems score differently on the primary metric's
    per-example stand-in (label accuracy for macro_f1, a corpus metric no row carries)."""
    metric = per_example_metric(primary)
    base = {row["id"]: row for row in baseline_rows}
    differ = [(row, base[row["id"]]) for row in finetune_rows
              if row["id"] in base and example_score(row, primary) != example_score(base[row["id"]], primary)]
    if not differ:
        return "No test record where the best prompted strategy and the fine-tune score differently."
    blocks = []
    for ft, bl in differ[:SAMPLES]:
        blocks.append(f"**{ft['id']}** — {metric}: prompted {_fmt(example_score(bl, primary))}, "
                      f"fine-tune {_fmt(example_score(ft, primary))}\n\n"
                      f"- reference: `{ft['reference']}`{_also_accepted(ft)}\n- prompted: `{bl['prediction'].strip()}`\n"
                      f"- fine-tune: `{ft['prediction'].strip()}`")
    return f"{len(differ)} test records score differently; the first {len(blocks)}:\n\n" + "\n\n".join(blocks)


def _term_rows(terms: dict[str, list[dict]]) -> str:
    rows = []
    for i in range(max(len(terms["production"]), len(terms["test"]))):
        cells = [f"`{side[i]['term']}` ({side[i]['production_share']:.0%} / {side[i]['test_share']:.0%})"
                 if i < len(side) else "" for side in (terms["production"], terms["test"])]
        rows.append(f"| {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


def drift_section(checks: dict[str, dict]) -> str:
    """Does the test set look like production (tuneproof/drift.py)? Not run without a sample, never PASS then."""
    drift, overlap = checks.get("drift"), checks.get("production_overlap")
    if drift is None:
        return "Not checked."
    if "auc" not in drift:
        return f"**{drift['status']}**: {drift['evidence']}."
    unlike = "\n".join(f"- `{u['id']}` (highest similarity {u['similarity']:.2f}, to test `{u['nearest_test_id']}`): "
                       f"{u['text']!r}" for u in drift["unlike"]) or "- none listed (compare.drift.examples: 0)"
    return f"""**{drift['status']}**: {drift['evidence']}.

Terms that most separate the two (share of production / test prompts holding the term):

| toward production | toward test |
|---|---|
{_term_rows(drift['terms'])}

Production prompts least like any test prompt (word/character TF-IDF cosine):

{unlike}

Overlap with train (**{overlap['status']}**): {overlap['evidence']}."""


def dataset_version(paths: Paths) -> str:
    split_dir = Path(paths.split)
    lines = [f"- raw data `{paths.raw}`: sha256 `{sha256_file(paths.raw)}`"]
    for name in ("train", "val", "test"):
        path = split_dir / f"{name}.jsonl"
        count = sum(1 for line in path.open(encoding="utf-8") if line.strip())
        lines.append(f"- `{path}`: {count} records, sha256 `{sha256_file(path)}`")
    lock = Path("dvc.lock")
    if lock.is_file():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        raw = [d for d in stages.get("dedup", {}).get("deps", []) if d.get("path") == paths.raw]
        if raw:
            lines.append(f"- dvc.lock records `{paths.raw}` with md5 `{raw[0].get('md5')}`")
    return "\n".join(lines)


def finetune_configurations(sweep: dict | None, train_info: dict) -> str:
    """How many fine-tune configurations were compared on val: the sweep record (paths.sweep) counts
    when its winner is this run, told by the kept checkpoint's val score and metric."""
    tried = (sweep or {}).get("configurations") or []
    if not tried:
        return ("One configuration in this run; a sweep (README: `dvc exp run --queue train ...`, then "
                "`tuneproof sweep-pick --record`) chooses among several on val before test is scored.")
    if (sweep.get("winner_val_score"), sweep.get("selected_by")) != (train_info.get("best_val_score"),
                                                                    train_info.get("selected_by")):
        return (f"One configuration counted: the sweep record of {len(tried)} configurations is not this run "
                f"(its winner `{sweep.get('winner')}` kept {sweep.get('selected_by')} "
                f"{_fmt(sweep.get('winner_val_score'))} on val); apply the winner, or record the sweep again.")
    scores = ", ".join(f"{row['name']} {_fmt(row['val_score'])}" for row in tried)
    return (f"{len(tried)} configurations compared on val by `tuneproof sweep-pick` ({scores}); this run is "
            f"the winner, `{sweep['winner']}`.")


def selection_section(baseline_metrics: dict, train_info: dict, sweep: dict | None = None) -> str:
    """How each side was tuned: on validation only, with the number of configurations tried."""
    sel = baseline_metrics.get("selection") or {}
    tried = ", ".join(f"{name} {_fmt(score)}" for name, score in (sel.get("val") or {}).items()) or "none (one configuration)"
    chosen = ", ".join(f"{s} k={k}" for s, k in (sel.get("k") or {}).items() if k is not None)
    recipe, params = train_info.get("recipe") or {}, train_info.get("params") or {}
    lr = params.get("learning_rate")
    prompted = (f"- Prompted side: {sel.get('configs_tried', 'n/a')} configurations scored on {sel.get('records', 0)} "
                f"val records ({tried}); chosen: `{sel.get('best', 'n/a')}`{f' ({chosen})' if chosen else ''}. "
                "Test was scored once per strategy, at its chosen k.")
    finetune = (f"- Fine-tune: the `{recipe.get('preset', 'n/a')}` recipe ({recipe.get('why', 'n/a')}): lr "
                f"{f'{lr:g}' if isinstance(lr, (int, float)) else 'n/a'}, {train_info.get('steps', 'n/a')} steps, "
                f"balance {params.get('balance', 'n/a')}; the checkpoint of step {train_info.get('best_step', 'n/a')} "
                f"was kept by {train_info.get('selected_by', 'n/a')} {_fmt(train_info.get('best_val_score'))} on val. "
                + finetune_configurations(sweep, train_info))
    return prompted + "\n" + finetune


def render_report(evidence: dict, paths: Paths, baseline_rows: dict[str, list[dict]], baseline_metrics: dict,
                  evaluate_metrics: dict, finetune_rows: list[dict], train_info: dict, dataset: str,
                  sweep: dict | None = None) -> str:
    checks = "\n".join(f"| {c['name']} | **{c['status']}** | {c['evidence']} |" for c in evidence["checks"].values())
    signals = "\n".join(f"- {k}: {_fmt(v)}" for k, v in evidence["signals"].items())
    base = train_info.get("base_model", {})
    config = yaml.safe_dump(train_info.get("params", {}), sort_keys=True).strip()
    method = train_info.get("method", "n/a")
    reasons = "\n".join(f"- {reason}" for reason in evidence["reasons"])
    next_steps = "\n".join(f"- {step}" for step in evidence["next_steps"])
    return f"""# tuneproof verdict: {evidence['verdict']}

{reasons}

**Next steps:**
{next_steps}

Primary metric `{evidence['primary']}`; the bar is the best prompted strategy, `{evidence['best_strategy']}`.

## How each side was tuned (validation only)

{selection_section(baseline_metrics, train_info, sweep)}

## Failure modes checked

| check | status | evidence |
|---|---|---|
{checks}

## Does the test set look like production?

{drift_section(evidence['checks'])}

## Before / after on the held-out test set

{before_after_table(evidence, baseline_metrics, evaluate_metrics)}

## Triage signals

{signals}

{novelty_table(evidence)}

## Method and base model

- Base model: `{base.get('source', 'n/a')}` ({base.get('model_type', '?')}, {base.get('parameters', 0) / 1e6:.0f}M parameters).
- Method: `{method}`. LoRA is the default: it trains a small adapter (cheap to store and serve beside
  the base) and tends to forget less than full fine-tuning (Biderman et al. 2024); the forgetting
  probe above measures it rather than assuming it.
- Trained {train_info.get('steps', 'n/a')} steps, best validation score at step {train_info.get('best_step', 'n/a')}
  (the checkpoint kept){', stopped early' if train_info.get('stopped_early') else ''}.

Exact training config (`{paths.adapter}/tuneproof_train.json`):

```yaml
{config}
```

## Dataset version

{dataset}

## Sample predictions where the best prompted strategy and the fine-tune differ

{sample_differences(baseline_rows[evidence['best_strategy']], finetune_rows, evidence['primary'])}
"""


def render_model_card(evidence: dict, paths: Paths, evaluate_metrics: dict, train_info: dict, dataset: str) -> str:
    base = train_info.get("base_model", {})
    front = {
        "library_name": "peft" if train_info.get("method") in ("lora", "qlora") else "transformers",
        "base_model": base.get("source", "unknown"),
        "tags": ["tuneproof", str(train_info.get("method", "unknown"))],
        "model-index": [{"name": Path(paths.adapter).name, "results": [{
            "task": {"type": "text-generation"},
            "metrics": [{"type": k, "value": round(v, 4)} for k, v in sorted(evaluate_metrics["finetune"].items())
                        if isinstance(v, (int, float))]}]}],
    }
    sig = evidence["checks"]["significance"]
    return f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# {Path(paths.adapter).name}

A `{train_info.get('method', '?')}` fine-tune of `{base.get('source', '?')}` produced by tuneproof.

**tuneproof verdict: {evidence['verdict']}.** {'; '.join(evidence['reasons'])}

## Evaluation

On the held-out, leak-checked test set ({sig['n']} records), `{evidence['primary']}` is
{sig['finetune']:.3f} for this model vs {sig['baseline']:.3f} for the best prompted strategy
(`{evidence['best_strategy']}`): gain {sig['gain']:+.3f}, {int(100 * evidence['confidence'])}% CI
[{sig['ci_low']:+.3f}, {sig['ci_high']:+.3f}]. Checks: {', '.join(f"{c['name']} {c['status']}" for c in evidence['checks'].values())}.
Full report: `{paths.reports}/report.md`.

## Training

- Training data: `{paths.split}/train.jsonl` (sha256 `{train_info.get('data', {}).get('train', {}).get('sha256', '?')}`).
- Config: see `tuneproof_train.json` beside the adapter; seed {train_info.get('seed', '?')}.

## Dataset version

{dataset}

## Intended use and limits

Serve with the same system prompt and chat template it was trained with (recorded in
`tuneproof_train.json`). It was evaluated only on the task's own test distribution and on the
small general-ability probe; check it on a sample of production inputs before relying on it.
"""


def check_no_links(adapter: str | Path) -> None:
    """A link could point anywhere (a system file, a secret): never copy one into what is pushed."""
    links = [str(p) for p in Path(adapter).rglob("*") if p.is_symlink()]
    if links:
        raise TuneproofError(f"{adapter}: holds symbolic link(s) {', '.join(links[:3])}; the release folder "
                             "is pushed as is, so replace them with the files they point to or remove them")


def write_release(paths: Paths, card: str) -> None:
    """<paths.release>/: the adapter (or full model) exactly as trained, with tuneproof_train.json,
    and the model card as README.md beside it (Hugging Face's layout): the folder to push."""
    check_no_links(paths.adapter)
    with atomic_path(paths.output("release")) as tmp:
        shutil.copytree(paths.adapter, tmp)
        write_text(tmp / "README.md", card)


def plot_rows(baseline_metrics: dict, evaluate_metrics: dict) -> dict[str, list[dict]]:
    """Per metric, one bar per system (prompted strategies, then the fine-tune)."""
    systems = strategy_metrics(baseline_metrics)
    systems["finetune"] = evaluate_metrics["finetune"]
    return {metric: [{"system": name, "value": metrics[metric]} for name, metrics in systems.items() if metric in metrics]
            for metric in _metric_names(systems)}


def confusion_rows(rows: list[dict]) -> list[dict]:
    return [{"actual": str(r.get("label")), "predicted": str(r.get("predicted_label"))}
            for r in rows if "label" in r]


def write_outputs(evidence: dict, metrics: dict, paths: Paths, task: Task,
                  baseline_rows: dict[str, list[dict]], baseline_metrics: dict, train_info: dict,
                  evaluate_metrics: dict, finetune_rows: list[dict], sweep: dict | None = None) -> None:
    """metrics/compare.json, reports/{report.md, MODEL_CARD.md, evidence.json, plots/*.json} and
    the release folder."""
    reports = paths.output("reports")
    check_no_links(paths.adapter)  # before the old set goes: a refused release leaves it whole
    dataset = dataset_version(paths)  # hashes the raw and split files: once for the report and the card
    # One set: the old one goes first, and the metrics file (the verdict `dvc exp show` reads) comes
    # last, so a killed compare never leaves a new report beside an old verdict.
    remove_outputs([paths.metrics_file("compare"), reports / "report.md", reports / "MODEL_CARD.md",
                    reports / "evidence.json", reports / "plots", paths.output("release")])
    write_text(reports / "report.md", render_report(evidence, paths, baseline_rows, baseline_metrics,
                                                   evaluate_metrics, finetune_rows, train_info, dataset, sweep))
    card = render_model_card(evidence, paths, evaluate_metrics, train_info, dataset)
    write_text(reports / "MODEL_CARD.md", card)
    write_release(paths, card)
    write_json(reports / "evidence.json", evidence)
    with atomic_path(reports / "plots" / "before_after") as tmp:  # one bar chart per metric (dvc.yaml plots)
        tmp.mkdir()
        for metric, rows in plot_rows(baseline_metrics, evaluate_metrics).items():
            write_json(tmp / f"{metric}.json", rows)
    if task.label_field is not None:
        write_json(reports / "plots" / "confusion_finetune.json", confusion_rows(finetune_rows))
        write_json(reports / "plots" / "confusion_prompted.json",
                   confusion_rows(baseline_rows[evidence["best_strategy"]]))
    write_json(paths.metrics_file("compare"), metrics)
