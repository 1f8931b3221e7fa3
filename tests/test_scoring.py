"""The shared scorer: lenient extraction, per-example metrics, aggregates, params validation."""

from __future__ import annotations

import json

import pytest
from sklearn.metrics import f1_score

from tuneproof.io import TuneproofError
from tuneproof.scoring import (NO_LABEL, Scorer, ScoreParams, build_scorer, extract_json_object, extract_label,
                               metric_names, validate)

DEMO = ScoreParams(kind="json", primary="task_success", fields=["intent", "priority"],
                   style={"reply": r"Hi [A-Z][\w'-]*, .+\. - Acme Support"})
REF = json.dumps({"intent": "damaged_item", "priority": "high",
                  "reply": "Hi Anna, we will replace order #12 free of charge. - Acme Support"})
INTENTS = ("damaged_item", "billing_refund", "shipping_delay")


def demo_scorer(label_field: str | None = "intent") -> Scorer:
    return Scorer(DEMO, label_field, INTENTS)


# ------------------------------------------------------------------------------ json extraction

def test_extract_json_plain_fenced_and_in_prose():
    obj = {"a": 1, "b": "x}"}
    assert extract_json_object(json.dumps(obj)) == obj
    assert extract_json_object("```json\n" + json.dumps(obj) + "\n```") == obj
    assert extract_json_object("Sure! Here it is: " + json.dumps(obj) + " Hope that helps {") == obj


def test_extract_json_skips_broken_braces_and_takes_the_first_object():
    text = 'use {curly} braces: {"a": 1} and {"a": 2}'
    assert extract_json_object(text) == {"a": 1}


def test_extract_json_rejects_non_objects():
    assert extract_json_object("[1, 2]") is None
    assert extract_json_object('{"intent": "damaged_item", "priority": ') is None
    assert extract_json_object("no json here") is None


# ------------------------------------------------------------------------------- json scoring

def test_json_exact_answer_scores_everything():
    scores, label = demo_scorer().score(REF, REF)
    assert scores == {"exact": 1.0, "json_valid": 1.0, "intent_match": 1.0, "priority_match": 1.0,
                      "style_ok": 1.0, "task_success": 1.0}
    assert label == "damaged_item"


def test_json_in_code_fence_with_extra_whitespace_is_valid_but_not_exact():
    prediction = "```json\n  " + REF.replace(": ", ":   ") + "  \n```\n"
    scores, _ = demo_scorer().score(prediction, REF)
    assert scores["exact"] == 0.0
    assert scores["json_valid"] == scores["task_success"] == 1.0


def test_surrounding_whitespace_still_exact():
    assert demo_scorer().score("\n  " + REF + " \n", REF)[0]["exact"] == 1.0


def test_field_match_ignores_case_and_inner_whitespace():
    pred = json.loads(REF) | {"intent": " Damaged_Item ", "priority": "HIGH"}
    scores, label = demo_scorer().score(json.dumps(pred), REF)
    assert scores["intent_match"] == scores["priority_match"] == 1.0
    assert label == "damaged_item"


def test_invalid_json_fails_everything():
    scores, label = demo_scorer().score('{"intent": "damaged_item", "priority": "high"', REF)
    assert scores["json_valid"] == scores["intent_match"] == scores["task_success"] == 0.0
    assert label == NO_LABEL


def test_missing_field_fails_that_field_and_task_success():
    pred = json.loads(REF)
    del pred["priority"]
    scores, _ = demo_scorer().score(json.dumps(pred), REF)
    assert scores["json_valid"] == scores["intent_match"] == scores["style_ok"] == 1.0
    assert scores["priority_match"] == scores["task_success"] == 0.0


def test_house_style_violation_fails_task_success_only_through_style():
    pred = json.loads(REF) | {"reply": "Dear Anna, we will replace your order."}
    scores, _ = demo_scorer().score(json.dumps(pred), REF)
    assert scores["intent_match"] == scores["priority_match"] == 1.0
    assert scores["style_ok"] == scores["task_success"] == 0.0


def test_non_string_styled_field_is_not_ok():
    pred = json.loads(REF) | {"reply": 42}
    assert demo_scorer().score(json.dumps(pred), REF)[0]["style_ok"] == 0.0


def test_unknown_predicted_label_is_no_label():
    pred = json.loads(REF) | {"intent": "refund_request"}
    assert demo_scorer().score(json.dumps(pred), REF)[1] == NO_LABEL


def test_reference_must_be_json_with_the_fields():
    with pytest.raises(TuneproofError, match="L000007.*not a JSON object"):
        demo_scorer().score(REF, "plain text", record_id="L000007")
    with pytest.raises(TuneproofError, match="no field 'priority'"):
        demo_scorer().score(REF, json.dumps({"intent": "damaged_item"}))


# ------------------------------------------------------------------------------------- labels

@pytest.mark.parametrize("text, expected", [
    ("spam", "spam"),
    ("  SPAM.\n", "spam"),
    ("This message is spam!", "spam"),
    ("Answer: ham", "ham"),
    ("spam or ham, hard to say", None),   # two labels named: ambiguous, counts as wrong
    ("I cannot tell", None),
    ("spammy", None),                      # whole words only
])
def test_extract_label(text, expected):
    assert extract_label(text, ["ham", "spam"]) == expected


def test_extract_label_prefers_the_longer_contained_label():
    labels = ["card", "card payment", "transfer"]
    assert extract_label("It is about a card payment.", labels) == "card payment"
    assert extract_label("my card", labels) == "card"
    assert extract_label("card_payment", labels) == "card payment"


def test_label_scorer_rows_and_macro_f1_match_sklearn():
    records = [{"id": f"L{i}", "messages": [{"role": "user", "content": "x"}], "completion": c}
               for i, c in enumerate(["ham", "ham", "spam", "spam", "ham", "spam"])]
    predictions = ["ham", "It is spam", "spam", "no idea", "HAM", "spam or ham"]
    scorer = build_scorer(ScoreParams(kind="label", primary="accuracy", fields=[], style={}), "completion", records)
    assert scorer.labels == ("ham", "spam")
    rows = [scorer.row(r, p) for r, p in zip(records, predictions)]
    assert [r["predicted_label"] for r in rows] == ["ham", "spam", "spam", NO_LABEL, "ham", NO_LABEL]
    assert [r["scores"]["accuracy"] for r in rows] == [1, 0, 1, 0, 1, 0]
    agg = scorer.aggregate(rows)
    assert agg["accuracy"] == pytest.approx(0.5)
    assert agg["extracted"] == pytest.approx(4 / 6)
    expected = f1_score([r["label"] for r in rows], [r["predicted_label"] for r in rows],
                        labels=["ham", "spam"], average="macro", zero_division=0)
    assert agg["macro_f1"] == pytest.approx(expected)
    # Hand check: ham P=2/2 R=2/3 -> F1 0.8; spam P=1/2 R=1/3 -> F1 0.4; macro 0.6. An
    # unextracted answer is a miss for its class, never a class of its own.
    assert agg["macro_f1"] == pytest.approx(0.6)


def test_json_rows_carry_labels_and_aggregate_macro_f1():
    records = [{"id": "L1", "messages": [], "completion": REF},
               {"id": "L2", "messages": [], "completion": REF.replace("damaged_item", "billing_refund")}]
    scorer = build_scorer(DEMO, "intent", records)
    rows = [scorer.row(records[0], REF), scorer.row(records[1], "not json")]
    assert rows[0] | {"scores": None} == {"id": "L1", "prediction": REF, "reference": REF, "scores": None,
                                          "label": "damaged_item", "predicted_label": "damaged_item"}
    agg = scorer.aggregate(rows)
    assert agg["task_success"] == 0.5 and agg["json_valid"] == 0.5
    assert agg["macro_f1"] == pytest.approx(0.5)  # damaged_item F1 1, billing_refund F1 0
    assert set(agg) == set(metric_names(DEMO)) | {"macro_f1"}


def test_macro_f1_of_a_sample_averages_over_the_labels_it_holds_or_predicts():
    """A perfect 16-record train sample without a single spam is 1.0, not 0.5 (spam neither
    occurs nor is predicted); a label predicted but absent still counts, as a false positive."""
    records = [{"id": f"L{i}", "messages": [], "completion": c} for i, c in enumerate(["ham", "spam", "eggs"])]
    scorer = build_scorer(ScoreParams(kind="label", primary="macro_f1", fields=[], style={}), "completion", records)
    ham = [scorer.row({**records[0], "id": f"H{i}"}, "ham") for i in range(16)]
    assert scorer.aggregate(ham)["macro_f1"] == 1.0
    one_wrong = [*ham[:-1], scorer.row({**records[0], "id": "H15"}, "spam")]
    assert scorer.aggregate(one_wrong)["macro_f1"] == pytest.approx((2 * 15 / 31 + 0) / 2)


QA = Scorer(ScoreParams(kind="exact", primary="lenient", fields=[], style={}))


def qa(prediction: str, *answers: str) -> dict[str, float]:
    return QA.score(prediction, answers[0], "L000001", answers[1:])[0]


def test_exact_kind_normalises_like_squad():
    assert QA.score(" 42\n", "42") == ({"exact": 1.0, "lenient": 1.0, "token_f1": 1.0}, None)
    assert qa("42.", "42")["exact"] == 1.0                       # punctuation
    assert qa("the  Beatles", "Beatles")["exact"] == 1.0         # case, article, spacing
    assert qa("Beatles", "A Hard Day's Night")["exact"] == 0.0


def test_exact_kind_accepts_any_reference():
    answers = ("6 geese a-laying", "six geese a-laying")
    assert qa("Six geese a-laying", *answers) == {"exact": 1.0, "lenient": 1.0, "token_f1": 1.0}
    assert qa("seven swans a-swimming", *answers)["exact"] == 0.0
    # the record's references reach the scorer through row(), and the row shows them
    record = {"id": "L000007", "messages": [], "completion": answers[0], "references": list(answers)}
    row = QA.row(record, "six geese a-laying")
    assert row["scores"]["exact"] == 1.0 and row["references"] == list(answers)


@pytest.mark.parametrize("prediction,answers,lenient", [
    ("The capital of Australia is Canberra.", ("Canberra",), 1.0),
    ("It was six geese a-laying, I think", ("6 geese a-laying", "six geese a-laying"), 1.0),
    ("Ariel Winter played her", ("Winter", "Ariel Winter"), 1.0),  # "Winter" lies inside the longer match
    ("Canberras", ("Canberra",), 0.0),                              # whole words only
    ("Stephanie Pearson or Michelle Monaghan", ("Ariel Winter", "Stephanie Pearson", "Michelle Monaghan"), 0.0),
    ("I do not know", ("Canberra",), 0.0),
])
def test_lenient_counts_an_answer_naming_exactly_one_reference(prediction, answers, lenient):
    scores = qa(prediction, *answers)
    assert scores["lenient"] == lenient
    assert scores["exact"] == 0.0  # none of these is the bare answer: strict exact is reported beside


def test_token_f1_is_squads_best_over_references():
    # "The capital of Australia is Canberra." -> capital of australia is canberra: P 1/5, R 1/1
    assert qa("The capital of Australia is Canberra.", "Canberra")["token_f1"] == pytest.approx(2 * 0.2 / 1.2)
    # tokens [tim, robbins] vs [tim, curry]: P = R = 1/2; against [robbins]: P 1/2, R 1 -> 2/3, the best
    assert qa("Tim Robbins", "Tim Curry")["token_f1"] == pytest.approx(0.5)
    assert qa("Tim Robbins", "Tim Curry", "Robbins")["token_f1"] == pytest.approx(2 / 3)
    # repeated tokens count once per occurrence (bag of words): [new, new, york] vs [new, york]
    assert qa("New new York", "New York")["token_f1"] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert qa("the", "Canberra")["token_f1"] == 0.0  # nothing left after the article


def test_exact_kind_aggregates_every_metric():
    record = {"id": "L000001", "messages": [], "completion": "Canberra"}
    rows = [QA.row(record, "Canberra"), QA.row({**record, "id": "L000002"}, "It is Canberra")]
    assert QA.aggregate(rows) == pytest.approx({"exact": 0.5, "lenient": 1.0, "token_f1": (1 + 0.5) / 2})
    assert metric_names(QA.params) == ["exact", "lenient", "token_f1"]
    validate(ScoreParams(kind="exact", primary="token_f1", fields=[], style={}))


# --------------------------------------------------------------------------------- validation

def test_primary_must_be_a_per_example_metric_of_the_kind():
    with pytest.raises(TuneproofError, match="score.primary: 'accuracy'.*task_success"):
        validate(ScoreParams(kind="json", primary="accuracy", fields=["intent"], style={}))
    validate(ScoreParams(kind="label", primary="macro_f1", fields=[], style={}))  # the corpus metric: compare bootstraps it whole
    with pytest.raises(TuneproofError, match="score.primary: macro_f1 needs class labels"):
        build_scorer(ScoreParams(kind="exact", primary="macro_f1", fields=[], style={}), None, [])


def test_bad_style_regex_and_label_kind_mismatch_are_reported():
    with pytest.raises(TuneproofError, match="score.style.reply: invalid regex"):
        validate(ScoreParams(kind="json", primary="task_success", fields=[], style={"reply": "Hi ("}))
    with pytest.raises(TuneproofError, match="task.label_field: completion"):
        build_scorer(ScoreParams(kind="label", primary="accuracy", fields=[], style={}), "intent", [])
