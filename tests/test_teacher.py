"""The distill teacher as a reference line: compare run for real on a distilled raw file whose lines
carry the teacher's details, with a teacher planted wrong on known records and a student planted
right on known records, so every number the report gives is known in advance."""

from __future__ import annotations

import json
import random

import pytest

from cheap_project import RAW, write_compare_inputs
from params_file import set_params
from stages import compare, dedup, split
from split_data import family_records
from tuneproof.config import TEACHER_KEY
from tuneproof.io import TuneproofError, read_json, read_jsonl, write_json, write_jsonl
from tuneproof.scoring import ScoreParams, build_scorer

STUDENT_COST = {"seconds_per_answer": 0.05, "tokens_per_second": 400.0, "device": "cpu", "batch_size": 8}


def wrong_intent(completion: str) -> str:
    answer = json.loads(completion)
    answer["intent"] = "a_different_intent"
    return json.dumps(answer)


def distilled_raw(root, teacher_wrong: set[int], given_lines: set[int]) -> None:
    """Raw lines as the distill stage writes them: the teacher's answer as the completion, its cost,
    and on `given_lines` the answer the input gave, which differs from the teacher's on `teacher_wrong`."""
    lines = []
    for n, r in enumerate(family_records(families=12, singles=100, seed=3), start=1):
        details = {"seconds": 0.5 + (n % 3) * 0.25, "tokens": 20}
        if n in given_lines:
            details["given"] = [wrong_intent(r["completion"]) if n in teacher_wrong else r["completion"]]
        lines.append({"prompt": r["messages"][-1]["content"], "completion": r["completion"], TEACHER_KEY: details})
    write_jsonl(root / RAW, lines)


@pytest.fixture
def distilled_project(project_dir):
    set_params(project_dir, paths={"raw": RAW}, dedup={"truth": None}, split={"val_ratio": 0.15, "test_ratio": 0.25},
               compare={"bootstrap_resamples": 1000}, score={"fields": ["intent"], "style": {}})
    (project_dir / "data/production").mkdir(parents=True)
    return project_dir


def test_the_teacher_line_agreement_given_answers_and_cost(distilled_project):
    root = distilled_project
    rng = random.Random(7)
    given_lines = set(rng.sample(range(1, 137), 90))
    teacher_wrong = set(rng.sample(sorted(given_lines), 30))
    distilled_raw(root, teacher_wrong, given_lines)
    dedup.main()
    split.main()
    write_compare_inputs(root, seed=0)
    evaluate = read_json(root / "metrics/evaluate.json")
    write_json(root / "metrics/evaluate.json", {**evaluate, "cost": STUDENT_COST})
    compare.main()

    test = read_jsonl(root / "data/split/test.jsonl")
    student = {r["id"]: r["prediction"] for r in read_jsonl(root / "outputs/evaluate/test.jsonl")}
    prompted = {r["id"]: r["prediction"] for r in read_jsonl(root / "outputs/baseline/retrieval.jsonl")}
    line = {r["id"]: int(r["id"][1:]) for r in test}
    given = [r for r in test if line[r["id"]] in given_lines]
    right = [r for r in given if line[r["id"]] not in teacher_wrong]  # the teacher's answer is the given one
    assert 10 <= len(right) < len(given)  # the planted teacher errors reached the test split

    ref = read_json(root / "reports/evidence.json")["teacher"]
    assert ref["teacher"]["task_success"] == 1.0  # its own answers are the references
    agreement = sum(student[r["id"]] == r["completion"] for r in test) / len(test)
    assert ref["student"] == pytest.approx(agreement) and ref["student_over_teacher"] == pytest.approx(agreement, abs=1e-4)

    # on the given answers: a system is right where it said the teacher's answer and the teacher was right
    expect = {"teacher": len(right) / len(given),
              "fine-tune": sum(student[r["id"]] == r["completion"] for r in right) / len(given),
              "retrieval": sum(prompted[r["id"]] == r["completion"] for r in right) / len(given)}
    assert ref["given"]["n"] == len(given)
    assert ref["given"]["scores"] == pytest.approx(expect)
    assert ref["given"]["student_over_teacher"] == pytest.approx(expect["fine-tune"] / expect["teacher"], abs=1e-4)
    assert ref["given"]["gain"] == pytest.approx(expect["fine-tune"] - expect["teacher"])
    assert ref["given"]["ci_low"] <= ref["given"]["gain"] <= ref["given"]["ci_high"]

    seconds = [0.5 + (line[r["id"]] % 3) * 0.25 for r in test]  # the test records' own teacher costs
    cost = ref["cost"]
    assert cost["teacher_seconds_per_answer"] == pytest.approx(sum(seconds) / len(seconds), abs=1e-4)
    assert cost["teacher_tokens_per_second"] == pytest.approx(20 * len(seconds) / sum(seconds), abs=0.01)
    assert cost["teacher_over_student"] == pytest.approx(sum(seconds) / len(seconds) / 0.05, abs=0.01)

    bars = read_json(root / "reports/plots/before_after/task_success.json")
    assert bars[-1] == {"system": "teacher", "value": 1.0}
    columns = read_json(root / "metrics/compare.json")["teacher"]
    assert columns["given_n"] == len(given) and columns["cost_teacher_over_student"] == cost["teacher_over_student"]
    report = (root / "reports/report.md").read_text()
    assert "| teacher (distilled from: its answers are the test references) | " in report
    assert f"On the {len(given)} test records whose input line gave answers of its own" in report
    assert f"| teacher | {expect['teacher']:.3f} |" in report
    assert "The student is level with its teacher on these answers, within the CI." in report  # CI covers 0
    assert "The best prompted strategy does at least as well" not in report  # retrieval < teacher here


def test_without_given_answers_the_report_says_the_teacher_is_unmeasured(distilled_project):
    root = distilled_project
    distilled_raw(root, set(), set())
    dedup.main()
    split.main()
    write_compare_inputs(root, seed=0)
    compare.main()  # no cost in evaluate.json (an older run): the ratio is n/a, not a crash
    ref = read_json(root / "reports/evidence.json")["teacher"]
    assert ref["given"] is None and ref["cost"]["teacher_over_student"] is None
    assert "nothing here says whether the teacher is right" in (root / "reports/report.md").read_text()


def test_data_that_was_not_distilled_has_no_teacher_line(project_dir):
    from cheap_project import build

    build(project_dir)
    assert read_json(project_dir / "reports/evidence.json")["teacher"] is None
    assert "teacher" not in read_json(project_dir / "metrics/compare.json")
    assert "The student against its teacher" not in (project_dir / "reports/report.md").read_text()


def test_a_label_only_the_given_answers_use_is_still_recognised():
    """A teacher that always says "ham": the label set of its data lacks "spam", yet a student that
    answers "spam" where the human said spam is right on the given answers."""
    from tuneproof.compare_params import CompareParams
    from tuneproof.contract import CompareInputs, EvaluateMetrics
    from tuneproof.scoring import ScoreParams, build_scorer
    from tuneproof.teacher import teacher_reference

    test = [{"id": f"L{n:06d}", "messages": [{"role": "user", "content": f"sms {n}"}], "completion": "ham"}
            for n in range(1, 9)]
    human = ["spam"] * 4 + ["ham"] * 4
    student = ["spam", "spam", "ham", "ham", "ham", "ham", "ham", "spam"]
    scorer = build_scorer(ScoreParams("label", "accuracy", [], {}), "completion", test)
    assert scorer.labels == ("ham",)
    rows = [scorer.row(r, p) for r, p in zip(test, student)]
    inputs = CompareInputs(baseline_rows={"zero_shot": rows}, baseline=None, finetune_rows=rows,
                           evaluate=EvaluateMetrics({"accuracy": 0.625}, None), test=test, train=[],
                           train_sha256="", audit={},
                           teacher={r["id"]: {"seconds": 1.0, "tokens": 1, "given": [h]} for r, h in zip(test, human)})
    ref = teacher_reference(inputs, "zero_shot", scorer, "accuracy", CompareParams(bootstrap_resamples=200))
    assert ref["given"]["scores"]["teacher"] == 0.5  # right on the four hams
    assert ref["given"]["scores"]["fine-tune"] == 5 / 8  # two spams and three hams


def test_the_given_answers_read_in_words():
    from tuneproof.teacher import given_reading

    given = {"scores": {"teacher": 0.6, "fine-tune": 0.4, "zero_shot": 0.7}, "ci_low": -0.3, "ci_high": -0.1}
    words = given_reading(given, "zero_shot")
    assert words.startswith("The student falls short of its teacher")
    assert "(0.700 vs 0.600): this teacher cannot lift a student above the prompt" in words
    words = given_reading({**given, "ci_low": 0.05, "ci_high": 0.2, "scores": {"teacher": 0.6, "zero_shot": 0.5}},
                          "zero_shot")
    assert words == "The student beats its teacher on these answers."


def test_a_teacher_field_of_the_users_own_is_not_a_distill_teacher(distilled_project):
    """Raw lines may carry other keys, "teacher" among them (who wrote the answer): only distill's
    details (an object with the answer's measured seconds) make the teacher line; a string is no crash."""
    from cheap_project import write_raw

    root = distilled_project
    write_raw(root, seed=3)
    lines = read_jsonl(root / RAW)
    write_jsonl(root / RAW, [{**line, TEACHER_KEY: "Ms Okafor" if n % 2 else {"name": "Mr Lee"}}
                             for n, line in enumerate(lines)])
    dedup.main()
    split.main()
    write_compare_inputs(root, seed=0)
    compare.main()
    assert read_json(root / "reports/evidence.json")["teacher"] is None
    assert "teacher" not in read_json(root / "metrics/compare.json")


def test_a_partly_distilled_file_measures_agreement_on_the_teachers_records_only(distilled_project):
    """Distilled lines concatenated with human-written ones: only the former's references are the
    teacher's answers, so only they measure the student's agreement with the teacher."""
    root = distilled_project
    distilled_raw(root, set(), set())
    write_jsonl(root / RAW, [line if n % 2 else {k: v for k, v in line.items() if k != TEACHER_KEY}
                             for n, line in enumerate(read_jsonl(root / RAW), start=1)])
    dedup.main()
    split.main()
    write_compare_inputs(root, seed=0)
    compare.main()
    test = read_jsonl(root / "data/split/test.jsonl")
    taught = [r for r in test if int(r["id"][1:]) % 2]
    assert 0 < len(taught) < len(test)
    student = {r["id"]: r["prediction"] for r in read_jsonl(root / "outputs/evaluate/test.jsonl")}
    ref = read_json(root / "reports/evidence.json")["teacher"]
    assert ref["n_teacher"] == len(taught)
    assert ref["student"] == pytest.approx(sum(student[r["id"]] == r["completion"] for r in taught) / len(taught))
    assert (f"On the {len(taught)} of {len(test)} test records whose reference is the teacher's own answer"
            in (root / "reports/report.md").read_text())


def records(teacher_answers: list[str]) -> list[dict]:
    """Test records whose completions are the teacher's answers."""
    return [{"id": f"L{n:06d}", "messages": [{"role": "user", "content": f"q{n}"}], "completion": answer}
            for n, answer in enumerate(teacher_answers, start=1)]


def reference_on(test: list[dict], scorer, answers: list[str], given: list[str], primary: str) -> dict:
    """teacher_reference on made-up inputs: `answers` are the student's (and the best prompt's),
    `given` each record's answer from its input line."""
    from tuneproof.compare_params import CompareParams
    from tuneproof.contract import CompareInputs, EvaluateMetrics
    from tuneproof.teacher import teacher_reference

    rows = [scorer.row(r, answer) for r, answer in zip(test, answers)]
    inputs = CompareInputs(baseline_rows={"zero_shot": rows}, baseline=None, finetune_rows=rows,
                           evaluate=EvaluateMetrics(scorer.aggregate(rows), None), test=test, train=[],
                           train_sha256="", audit={},
                           teacher={r["id"]: {"seconds": 1.0, "tokens": 1, "given": [g]} for r, g in zip(test, given)})
    return teacher_reference(inputs, "zero_shot", scorer, primary, CompareParams(bootstrap_resamples=200))


def test_macro_f1_on_the_given_answers_is_one_number_per_system():
    """Primary macro_f1: the table, the ratio and the gain must come from one label set. The teacher
    says a label ("c") the humans never gave and the student never says; scored over different label
    sets the table showed the student ahead (0.750 vs 0.571) while the gain said it was behind (-0.071)
    and the ratio 0.875."""
    test = records(["a", "b", "c", "c", "a", "b", "a", "b"])
    scorer = build_scorer(ScoreParams("label", "macro_f1", [], {}), "completion", test)
    given = reference_on(test, scorer, ["a", "b", "a", "a", "a", "b", "b", "b"],
                         ["a", "b", "a", "b", "a", "b", "a", "b"], "macro_f1")["given"]
    scores = given["scores"]
    assert given["gain"] == pytest.approx(scores["fine-tune"] - scores["teacher"])
    assert given["student_over_teacher"] == pytest.approx(scores["fine-tune"] / scores["teacher"], abs=1e-4)


def test_a_given_label_written_in_another_case_is_the_same_label():
    """The teacher says "spam"/"ham", the humans wrote "Spam"/"Ham": distill's agreement (normalised)
    calls that full agreement, and compare must too, not score the teacher 0 on every record."""
    teacher = ["spam", "ham", "spam", "ham", "ham", "ham"]
    test = records(teacher)
    scorer = build_scorer(ScoreParams("label", "accuracy", [], {}), "completion", test)
    ref = reference_on(test, scorer, teacher, [t.capitalize() for t in teacher], "accuracy")
    assert ref["given"]["scores"] == {"teacher": 1.0, "fine-tune": 1.0, "zero_shot": 1.0}


def test_a_given_answer_the_scorer_cannot_read_names_where_it_is():
    """kind json: the teacher's answers are JSON, a given one is not. The error must point at the
    given answer in paths.raw, not at the record's completion (the teacher's, which is fine)."""
    answer = json.dumps({"intent": "refund"})
    test = records([answer, answer])
    scorer = build_scorer(ScoreParams("json", "task_success", ["intent"], {}), None, test)
    with pytest.raises(TuneproofError, match=r"L000002.*teacher\.given.*paths\.raw"):
        reference_on(test, scorer, [answer, answer], [answer, "refund please"], "task_success")
