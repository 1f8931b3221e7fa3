"""Stage `compare`: the verdict, with evidence — ship the fine-tune only if it provably should.

    python -m stages.compare    # reads params.yaml: compare, score, task.label_field, paths

Inputs: per-example scores of every prompted strategy and of the trivial references (baseline),
of the fine-tune on the test set and on a train sample (evaluate), the train stage's metrics and
provenance, the split audit, the probe, the split files, the production sample and, when paths.raw
is the distill stage's output, the teacher's per-line details (tuneproof.contract.CompareInputs).
The checks, the triage signals and the order in which they decide the verdict are in
tuneproof/verdict.py; the advice after each verdict in tuneproof/verdict_advice.py; the teacher's
reference line and the student/teacher ratios in tuneproof/teacher.py. Outputs
(tuneproof/report.py): metrics/compare.json, reports/{report.md, MODEL_CARD.md, evidence.json,
plots/}, and the release folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tuneproof.cli_util import run_main
from tuneproof.compare_params import CompareParams, validate
from tuneproof.config import Paths, Task
from tuneproof.contract import CompareInputs
from tuneproof.io import read_json
from tuneproof.params import load_section
from tuneproof.report import write_outputs
from tuneproof.scoring import ScoreParams, build_scorer
from tuneproof.teacher import teacher_reference
from tuneproof.verdict import compare_metrics, evaluate_evidence


def main(params_file: str = "params.yaml") -> None:
    params = load_section(CompareParams, "compare", params_file)
    validate(params, params_file)
    score = load_section(ScoreParams, "score", params_file)
    task = load_section(Task, "task", params_file)
    paths = load_section(Paths, "paths", params_file)
    inputs = CompareInputs.load(paths)
    evidence = evaluate_evidence(inputs, score.primary, params)
    if inputs.teacher:  # paths.raw is the distill stage's output: the teacher is a reference line
        scorer = build_scorer(score, task.label_field, [*inputs.train, *inputs.test])
        evidence = replace(evidence, teacher=teacher_reference(inputs, evidence.best_strategy, scorer, score.primary,
                                                               params))
    sweep = read_json(paths.sweep) if Path(paths.sweep).is_file() else None
    write_outputs(evidence, compare_metrics(evidence), paths, task, inputs, sweep)
    print(f"verdict: {evidence.verdict} - " + "; ".join(evidence.reasons))


if __name__ == "__main__":
    run_main(main)
