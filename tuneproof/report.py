"""What `compare` writes: the metrics file, reports/report.md, the model card and plot data.

Kept apart from the decision logic (tuneproof/verdict.py) so the verdict is testable on its own and
the rendering can change without touching it. It renders an Evidence from CompareInputs
(tuneproof/contract.py); a field a file did not record reads "n/a".
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tuneproof.config import ADAPTER_INFO, SPLITS, Paths, Task, split_file
from tuneproof.contract import BaselineMetrics, CompareInputs, EvaluateMetrics, Evidence, TrainInfo
from tuneproof.io import TuneproofError, atomic_path, remove_outputs, sha256_file, write_json, write_text
from tuneproof.paired import example_score, per_example_metric
from tuneproof.teacher import given_reading

SAMPLES = 5  # sample predictions shown where baseline and fine-tune differ
TEACHER_ROW = "teacher (distilled from: its answers are the test references)"  # the before/after table's distill line



def _fmt(value, spec: str = ".3f") -> str:
    return format(value, spec) if isinstance(value, float) else ("n/a" if value is None else str(value))


def _or(value, default: str = "n/a"):
    """`value`, or `default` where the file did not record it."""
    return default if value is None else value


def _reference(name: str, value) -> str:
    """One trivial reference: `majority_accuracy 0.880`, or `tfidf_logreg accuracy 0.950, macro_f1 0.900`."""
    if isinstance(value, dict):
        return f"{name} " + ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(value.items()))
    return f"{name} {_fmt(value)}"


def _metric_names(metrics: dict[str, dict]) -> list[str]:
    names = sorted({k for m in metrics.values() for k, v in m.items() if isinstance(v, (int, float))})
    return [n for n in names if n not in ("n", "records")]


def before_after_table(evidence: Evidence, baseline: BaselineMetrics, evaluate: EvaluateMetrics) -> str:
    teacher = {} if evidence.teacher is None else {TEACHER_ROW: evidence.teacher["teacher"]}
    systems = {**baseline.strategies, "fine-tune": evaluate.finetune, **teacher}
    names = _metric_names(systems)
    primary, conf = evidence.primary, int(100 * evidence.confidence)
    lines = ["| system | " + " | ".join(f"**{n}**" if n == primary else n for n in names)
             + f" | fine-tune gain on {primary} ({conf}% CI) |",
             "|---" * (len(names) + 2) + "|"]
    for name, metrics in systems.items():
        vs = evidence.versus.get(name)
        gain = f"{vs['gain']:+.3f} [{vs['ci_low']:+.3f}, {vs['ci_high']:+.3f}]" if vs else "—"
        label = f"{name} (best prompted)" if name == evidence.best_strategy else name
        lines.append(f"| {label} | " + " | ".join(_fmt(metrics.get(n)) for n in names) + f" | {gain} |")
    refs = baseline.trivial
    if refs:
        lines.append("")
        lines.append("Trivial references: " + "; ".join(_reference(k, v) for k, v in sorted(refs.items())))
    return "\n".join(lines)


def teacher_section(evidence: Evidence) -> str:
    """The student against the teacher it was distilled from: agreement, the answers the input
    gave (the only measure of whether the teacher is right), and what an answer costs each."""
    ref, primary = evidence.teacher, evidence.primary
    if ref is None:
        return ""
    some = "" if ref["n_teacher"] == ref["n_test"] else f" {ref['n_teacher']} of {ref['n_test']}"
    lines = ["", "", "### The student against its teacher (distill)", "",
             f"On the{some} test records whose reference is the teacher's own answer"
             f"{' (the other lines were not distilled)' if some else ''}, the teacher's line scores "
             f"{_fmt(ref['teacher'].get(primary))} on `{primary}` by construction and the fine-tune's "
             f"{_fmt(ref['student'])} is its agreement with the teacher "
             f"(student/teacher {_fmt(ref['student_over_teacher'])}).", ""]
    given = ref["given"]
    if given:
        conf = int(100 * evidence.confidence)
        lines += [f"On the {given['n']} test records whose input line gave answers of its own, every system "
                  f"scored against those answers by the same scorer:", "",
                  f"| system | `{primary}` on the given answers |", "|---|---|",
                  *(f"| {name}{' (best prompted)' if name == evidence.best_strategy else ''} | {_fmt(score)} |"
                    for name, score in given["scores"].items()), "",
                  f"Student/teacher {_fmt(given['student_over_teacher'])}; fine-tune − teacher "
                  f"{given['gain']:+.3f} [{given['ci_low']:+.3f}, {given['ci_high']:+.3f}] ({conf}% paired bootstrap). "
                  + given_reading(given, evidence.best_strategy), ""]
    else:
        lines += ["The input lines gave no answers of their own, so nothing here says whether the teacher is "
                  "right: keep a human completion on the lines of `distill.prompts` (the teacher's answer is "
                  "trained on, the given one is kept for this comparison).", ""]
    cost = ref["cost"]
    lines.append(f"Cost per answer, as each ran: teacher {_fmt(cost['teacher_seconds_per_answer'], '.3g')} s "
                 f"({_fmt(cost['teacher_tokens_per_second'], '.1f')} tokens/s, measured when distill paid for it), "
                 f"fine-tune {_fmt(cost['student_seconds_per_answer'], '.3g')} s "
                 f"({_fmt(cost['student_tokens_per_second'], '.1f')} tokens/s on {_or(cost['student_device'])}, "
                 f"evaluate): the teacher takes {_fmt(cost['teacher_over_student'], '.1f')}x the student's time per "
                 "answer. Different machines and batching: read it as what each cost as run, not as model sizes.")
    return "\n".join(lines)


def novelty_table(evidence: Evidence) -> str:
    """The primary metric on novel vs familiar test answers (compare's answer novelty): a fine-tune
    that learnt format scores alike on both; one that memorised facts fails on the novel ones."""
    sig = evidence.signals
    if "novel_answers" not in sig:
        return ""
    primary = evidence.primary
    return (f"`{primary}` on the {sig['novel_answers']} test answers whose every accepted form is absent from the "
            f"train completions and the prompt (novel) and the {sig['familiar_answers']} others (familiar):\n\n"
            "| system | novel | familiar |\n|---|---|---|\n"
            f"| fine-tune | {_fmt(sig['finetune_on_novel'])} | {_fmt(sig['finetune_on_familiar'])} |\n"
            f"| {evidence.best_strategy} (best prompted) | {_fmt(sig.get('prompted_on_novel'))} | "
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
    for name in SPLITS:
        path = split_dir / split_file(name)
        count = sum(1 for line in path.open(encoding="utf-8") if line.strip())
        lines.append(f"- `{path}`: {count} records, sha256 `{sha256_file(path)}`")
    lock = Path("dvc.lock")
    if lock.is_file():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        raw = [d for d in stages.get("dedup", {}).get("deps", []) if d.get("path") == paths.raw]
        if raw:
            lines.append(f"- dvc.lock records `{paths.raw}` with md5 `{raw[0].get('md5')}`")
    return "\n".join(lines)


def finetune_configurations(sweep: dict | None, info: TrainInfo) -> str:
    """How many fine-tune configurations were compared on val: the sweep record (paths.sweep) counts
    when its winner is this run, told by the kept checkpoint's val score and metric."""
    tried = (sweep or {}).get("configurations") or []
    if not tried:
        return ("One configuration in this run; a sweep (README: `dvc exp run --queue train ...`, then "
                "`tuneproof sweep-pick --record`) chooses among several on val before test is scored.")
    if (sweep.get("winner_val_score"), sweep.get("selected_by")) != (info.best_val_score, info.selected_by):
        return (f"One configuration counted: the sweep record of {len(tried)} configurations is not this run "
                f"(its winner `{sweep.get('winner')}` kept {sweep.get('selected_by')} "
                f"{_fmt(sweep.get('winner_val_score'))} on val); apply the winner, or record the sweep again.")
    scores = ", ".join(f"{row['name']} {_fmt(row['val_score'])}" for row in tried)
    return (f"{len(tried)} configurations compared on val by `tuneproof sweep-pick` ({scores}); this run is "
            f"the winner, `{sweep['winner']}`.")


def selection_section(baseline: BaselineMetrics, info: TrainInfo, sweep: dict | None = None) -> str:
    """How each side was tuned: on validation only, with the number of configurations tried."""
    sel = baseline.selection
    tried = ", ".join(f"{name} {_fmt(score)}" for name, score in (sel.get("val") or {}).items()) or "none (one configuration)"
    chosen = ", ".join(f"{s} k={k}" for s, k in (sel.get("k") or {}).items() if k is not None)
    recipe, params = info.recipe, info.params
    lr = params.get("learning_rate")
    prompted = (f"- Prompted side: {sel.get('configs_tried', 'n/a')} configurations scored on {sel.get('records', 0)} "
                f"val records ({tried}); chosen: `{sel.get('best', 'n/a')}`{f' ({chosen})' if chosen else ''}. "
                "Test was scored once per strategy, at its chosen k.")
    finetune = (f"- Fine-tune: the `{recipe.get('preset', 'n/a')}` recipe ({recipe.get('why', 'n/a')}): lr "
                f"{f'{lr:g}' if isinstance(lr, (int, float)) else 'n/a'}, {_or(info.steps)} steps, "
                f"balance {params.get('balance', 'n/a')}; the checkpoint of step {_or(info.best_step)} "
                f"was kept by {_or(info.selected_by)} {_fmt(info.best_val_score)} on val. "
                + finetune_configurations(sweep, info))
    return prompted + "\n" + finetune


def method_section(info: TrainInfo, paths: Paths) -> str:
    """The base model, the method and the exact training config the adapter records."""
    base = info.base_model
    config = yaml.safe_dump(info.params, sort_keys=True).strip()
    return f"""- Base model: `{base.get('source', 'n/a')}` ({base.get('model_type', '?')}, {base.get('parameters', 0) / 1e6:.0f}M parameters).
- Method: `{_or(info.method)}`. LoRA is the default: it trains a small adapter (cheap to store and serve beside
  the base) and tends to forget less than full fine-tuning (Biderman et al. 2024); the forgetting
  probe above measures it rather than assuming it.
- Trained {_or(info.steps)} steps, best validation score at step {_or(info.best_step)}
  (the checkpoint kept){', stopped early' if info.stopped_early else ''}.

Exact training config (`{paths.adapter}/{ADAPTER_INFO}`):

```yaml
{config}
```"""


def render_report(evidence: Evidence, paths: Paths, inputs: CompareInputs, dataset: str,
                  sweep: dict | None = None) -> str:
    """reports/report.md. Over the house's ~50 lines on purpose: most of it is one markdown template,
    read top to bottom like the report it writes; splitting it would scatter the page's layout."""
    checks = "\n".join(f"| {c['name']} | **{c['status']}** | {c['evidence']} |" for c in evidence.checks.values())
    signals = "\n".join(f"- {k}: {_fmt(v)}" for k, v in evidence.signals.items())
    reasons = "\n".join(f"- {reason}" for reason in evidence.reasons)
    next_steps = "\n".join(f"- {step}" for step in evidence.next_steps)
    best_rows = inputs.baseline_rows[evidence.best_strategy]
    return f"""# tuneproof verdict: {evidence.verdict}

{reasons}

**Next steps:**
{next_steps}

Primary metric `{evidence.primary}`; the bar is the best prompted strategy, `{evidence.best_strategy}`.

## How each side was tuned (validation only)

{selection_section(inputs.baseline, inputs.train_info, sweep)}

## Failure modes checked

| check | status | evidence |
|---|---|---|
{checks}

## Does the test set look like production?

{drift_section(evidence.checks)}

## Before / after on the held-out test set

{before_after_table(evidence, inputs.baseline, inputs.evaluate)}{teacher_section(evidence)}

## Triage signals

{signals}

{novelty_table(evidence)}

## Method and base model

{method_section(inputs.train_info, paths)}

## Dataset version

{dataset}

## Sample predictions where the best prompted strategy and the fine-tune differ

{sample_differences(best_rows, inputs.finetune_rows, evidence.primary)}
"""


def render_model_card(evidence: Evidence, paths: Paths, evaluate: EvaluateMetrics, info: TrainInfo, dataset: str) -> str:
    base = info.base_model
    front = {
        "library_name": "peft" if info.method in ("lora", "qlora") else "transformers",
        "base_model": base.get("source", "unknown"),
        "tags": ["tuneproof", str(_or(info.method, "unknown"))],
        "model-index": [{"name": Path(paths.adapter).name, "results": [{
            "task": {"type": "text-generation"},
            "metrics": [{"type": k, "value": round(v, 4)} for k, v in sorted(evaluate.finetune.items())
                        if isinstance(v, (int, float))]}]}],
    }
    sig = evidence.checks["significance"]
    return f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# {Path(paths.adapter).name}

A `{_or(info.method, '?')}` fine-tune of `{base.get('source', '?')}` produced by tuneproof.

**tuneproof verdict: {evidence.verdict}.** {'; '.join(evidence.reasons)}

## Evaluation

On the held-out, leak-checked test set ({sig['n']} records), `{evidence.primary}` is
{sig['finetune']:.3f} for this model vs {sig['baseline']:.3f} for the best prompted strategy
(`{evidence.best_strategy}`): gain {sig['gain']:+.3f}, {int(100 * evidence.confidence)}% CI
[{sig['ci_low']:+.3f}, {sig['ci_high']:+.3f}]. Checks: {', '.join(f"{c['name']} {c['status']}" for c in evidence.checks.values())}.
Full report: `{paths.reports}/report.md`.

## Training

- Training data: `{paths.split}/train.jsonl` (sha256 `{_or(info.train_sha256, '?')}`).
- Config: see `{ADAPTER_INFO}` beside the adapter; seed {_or(info.seed, '?')}.

## Dataset version

{dataset}

## Intended use and limits

Serve with the same system prompt and chat template it was trained with (recorded in
`{ADAPTER_INFO}`). It was evaluated only on the task's own test distribution and on the
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


def plot_rows(baseline: BaselineMetrics, evaluate: EvaluateMetrics, teacher: dict | None = None) -> dict[str, list[dict]]:
    """Per metric, one bar per system (prompted strategies, the fine-tune, and a distill teacher's line)."""
    systems = {**baseline.strategies, "finetune": evaluate.finetune, **({"teacher": teacher["teacher"]} if teacher else {})}
    return {metric: [{"system": name, "value": metrics[metric]} for name, metrics in systems.items() if metric in metrics]
            for metric in _metric_names(systems)}


def confusion_rows(rows: list[dict]) -> list[dict]:
    return [{"actual": str(r.get("label")), "predicted": str(r.get("predicted_label"))}
            for r in rows if "label" in r]


def write_outputs(evidence: Evidence, metrics: dict, paths: Paths, task: Task, inputs: CompareInputs,
                  sweep: dict | None = None) -> None:
    """metrics/compare.json, reports/{report.md, MODEL_CARD.md, evidence.json, plots/*.json} and
    the release folder."""
    reports = paths.output("reports")
    check_no_links(paths.adapter)  # before the old set goes: a refused release leaves it whole
    dataset = dataset_version(paths)  # hashes the raw and split files: once for the report and the card
    # One set: the old one goes first, and the metrics file (the verdict `dvc exp show` reads) comes
    # last, so a killed compare never leaves a new report beside an old verdict.
    remove_outputs([paths.metrics_file("compare"), reports / "report.md", reports / "MODEL_CARD.md",
                    reports / "evidence.json", reports / "plots", paths.output("release")])
    write_text(reports / "report.md", render_report(evidence, paths, inputs, dataset, sweep))
    card = render_model_card(evidence, paths, inputs.evaluate, inputs.train_info, dataset)
    write_text(reports / "MODEL_CARD.md", card)
    write_release(paths, card)
    write_json(reports / "evidence.json", evidence.to_json())
    with atomic_path(reports / "plots" / "before_after") as tmp:  # one bar chart per metric (dvc.yaml plots)
        tmp.mkdir()
        for metric, rows in plot_rows(inputs.baseline, inputs.evaluate, evidence.teacher).items():
            write_json(tmp / f"{metric}.json", rows)
    if task.label_field is not None:
        write_json(reports / "plots" / "confusion_finetune.json", confusion_rows(inputs.finetune_rows))
        write_json(reports / "plots" / "confusion_prompted.json",
                   confusion_rows(inputs.baseline_rows[evidence.best_strategy]))
    write_json(paths.metrics_file("compare"), metrics)
