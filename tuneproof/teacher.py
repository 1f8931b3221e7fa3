"""The distill teacher as a reference line: the ceiling the student was distilled towards (compare).

When `paths.raw` is the distill stage's output, each of its lines carries TEACHER_KEY: what the
teacher's answer cost when it was paid for (`seconds`, `tokens`) and, when the input line had any,
the answers it `given` (completion first, then references). compare reads them back by record id
(the raw line number) and sets the teacher beside the other systems, all scored by the one scorer:

  * on the test references: these ARE the teacher's answers, so the teacher's line is its own
    answers scored against themselves (1.0 by construction: the line says so) and the student's
    score there is its agreement with the teacher;
  * on the given answers, for the test records that had any: teacher, fine-tune and the best
    prompted strategy against the answers the input gave. Only this says whether the teacher is
    right and how much of its skill the student kept: student/teacher ratio, and a paired
    bootstrap of student - teacher;
  * cost: the teacher's seconds per answer as measured at distill time, where it ran (its share of
    the wall time: a local batch's time over its size, an endpoint request's over the requests in
    flight) against the fine-tune's in evaluate (a batch's share on this machine). Different
    machines and batching: a ratio of what each costs as run, not of model sizes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from tuneproof.compare_params import CompareParams
from tuneproof.config import TEACHER_KEY
from tuneproof.contract import CompareInputs
from tuneproof.cost import answer_rates
from tuneproof.io import TuneproofError
from tuneproof.paired import label_score, label_set, paired_gain
from tuneproof.records import label_of
from tuneproof.scoring import CORPUS_METRIC, Scorer
from tuneproof.text import normalise


def _given_records(test: Sequence[dict], details: dict[str, dict]) -> list[dict]:
    """Test records whose references are the answers their input line gave (the teacher's are gone)."""
    out = []
    for record in test:
        given = (details.get(record["id"]) or {}).get("given")
        if given:
            base = {k: v for k, v in record.items() if k != "references"}
            out.append({**base, "completion": given[0], **({"references": given[1:]} if len(given) > 1 else {})})
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _cost(test: Sequence[dict], details: dict[str, dict], student: dict | None) -> dict:
    teacher, teacher_rate = answer_rates([details[r["id"]] for r in test if r["id"] in details])
    student_seconds = (student or {}).get("seconds_per_answer")
    return {"teacher_seconds_per_answer": teacher, "teacher_tokens_per_second": teacher_rate,
            "student_seconds_per_answer": student_seconds,
            "student_tokens_per_second": (student or {}).get("tokens_per_second"),
            "student_device": (student or {}).get("device"),
            "teacher_over_student": _ratio(teacher, student_seconds)}


def _given_comparison(inputs: CompareInputs, given: list[dict], best_strategy: str, scorer: Scorer, primary: str,
                      params: CompareParams) -> dict:
    """Teacher, fine-tune and the best prompted strategy scored against the answers the input gave,
    on one label set, with the paired bootstrap of fine-tune - teacher."""
    if scorer.label_field == "completion":  # the answer is a label: a given "Spam" is the label "spam"
        canonical = {normalise(label): label for label in scorer.labels}
        given = [{**r, "completion": canonical.get(normalise(r["completion"]), r["completion"])} for r in given]
    # a label only the given answers use (one the teacher never says) must still be recognised
    extra = {label_of(r, scorer.label_field) for r in given} if scorer.label_field else set()
    scorer = replace(scorer, labels=tuple(sorted(set(scorer.labels) | (extra - {None}))))
    teacher_answer = {r["id"]: r["completion"] for r in inputs.test}
    systems = (("fine-tune", inputs.finetune_rows), (best_strategy, inputs.baseline_rows[best_strategy]))
    predictions = {name: {row["id"]: row["prediction"] for row in rows} for name, rows in systems}
    try:
        rows = {"teacher": [scorer.row(r, teacher_answer[r["id"]]) for r in given],
                **{name: [scorer.row(r, by_id[r["id"]]) for r in given] for name, by_id in predictions.items()}}
    except TuneproofError as exc:  # the scorer blames "the reference": here that is the given answer
        raise TuneproofError(f"{exc} (that reference is the answer the input line gave: `{TEACHER_KEY}.given` "
                             "on that line of paths.raw, not the teacher's completion)") from None
    # macro_f1: one label set for all three systems, so the table, the ratio and the gain agree
    labels = label_set(*rows.values()) if primary == CORPUS_METRIC else None
    boot, student_score, teacher_score = paired_gain(rows["fine-tune"], rows["teacher"], primary,
                                                     params.bootstrap_resamples, params.seed, params.confidence,
                                                     ("fine-tune", "teacher"), labels)
    scores = {name: (scorer.aggregate(r).get(primary) if labels is None else
                     label_score([str(x["label"]) for x in r], [str(x["predicted_label"]) for x in r], primary,
                                 labels))
              for name, r in rows.items()}
    return {"n": len(given), "scores": scores, "student_over_teacher": _ratio(student_score, teacher_score),
            "gain": boot.mean_diff, "ci_low": boot.ci_low, "ci_high": boot.ci_high}


def teacher_reference(inputs: CompareInputs, best_strategy: str, scorer: Scorer, primary: str,
                      params: CompareParams) -> dict:
    """The teacher's line on test (every metric), the student/teacher score ratio on the test
    references and on the given answers (when there are any), and the cost ratio."""
    details = inputs.teacher or {}
    # only a distilled line's reference is the teacher's answer (a raw file may mix in human lines)
    taught = [r for r in inputs.test if r["id"] in details]
    teacher_metrics = scorer.aggregate([scorer.row(r, r["completion"]) for r in taught])  # its answers vs themselves
    answered = {row["id"]: row["prediction"] for row in inputs.finetune_rows}
    student = scorer.aggregate([scorer.row(r, answered[r["id"]]) for r in taught]).get(primary)
    out = {"n_test": len(inputs.test), "n_teacher": len(taught), "teacher": teacher_metrics, "student": student,
           "student_over_teacher": _ratio(student, teacher_metrics.get(primary)),
           "given": None, "cost": _cost(inputs.test, details, inputs.evaluate.cost)}
    given = _given_records(inputs.test, details)
    if given:
        out["given"] = _given_comparison(inputs, given, best_strategy, scorer, primary, params)
    return out


def given_reading(given: dict, best_strategy: str) -> str:
    """What the given-answer comparison says, in words: the student against its teacher (by the CI),
    and whether the teacher is worth distilling at all next to the best prompted strategy."""
    if given["ci_high"] < 0:
        words = ["The student falls short of its teacher on these answers."]
    elif given["ci_low"] > 0:
        words = ["The student beats its teacher on these answers."]
    else:
        words = ["The student is level with its teacher on these answers, within the CI."]
    teacher, prompted = given["scores"]["teacher"], given["scores"].get(best_strategy)
    if teacher is not None and prompted is not None and prompted >= teacher:
        words.append(f"The best prompted strategy does at least as well as the teacher here ({prompted:.3f} vs "
                     f"{teacher:.3f}): this teacher cannot lift a student above the prompt on your own answers, so "
                     "a better teacher (or the prompt itself) comes first.")
    return " ".join(words)


def teacher_columns(reference: dict, primary: str) -> dict:
    """compare.json's `teacher` columns for `dvc exp show`."""
    given = reference["given"] or {}
    return {"score": reference["teacher"].get(primary), "student_over_teacher": reference["student_over_teacher"],
            "given_n": given.get("n"), "given_student_over_teacher": given.get("student_over_teacher"),
            "cost_teacher_over_student": reference["cost"]["teacher_over_student"]}
