"""The one scorer: every system's predictions are scored here, with the same lenient rules.

params.yaml `score:` picks the kind:
  * `exact` - a short free-text answer (open-domain QA): the reference is the completion or any
              of the record's `references` (every accepted answer), compared after SQuAD
              normalisation (tuneproof.text.normalise_answer: case, punctuation, articles, spaces).
  * `label` - the reference is a class label; a label is extracted from free text (the one label
              that appears, case- and punctuation-insensitive), then accuracy and macro-F1.
  * `json`  - the reference is a JSON object; the first JSON object in the prediction is
              extracted (prose and code fences around it are ignored), then validity, each
              configured field, and house-style patterns on fields.

Per-example metrics (binary 0/1, so paired tests such as McNemar apply, except token_f1; the
aggregate of each is its mean under the same name):
  * label, json: `exact` (whole answer equals the reference, surrounding whitespace ignored);
  * exact: `exact` (the normalised answer equals a normalised accepted answer: strict),
    `lenient` (strict, or the answer names exactly one accepted answer as a whole phrase: "The
    capital of Australia is Canberra." for Canberra; the label kind's extraction rule) and
    `token_f1` (SQuAD token F1, the best over the accepted answers: partial credit, and the
    price of padding an answer with words);
  * label: `accuracy` (the extracted label is the reference), `extracted` (one label was found);
  * json: `json_valid`, `<field>_match` per configured field, `style_ok` (every style pattern
    matches) and `task_success` = valid JSON AND every field matches AND style ok: the answer
    could be sent as is. For the demo, fields intent/priority/reply make it the exact triage up
    to case, spacing and JSON formatting.
`macro_f1` is the only corpus-level metric. `score.primary` names the metric that decides the
best baseline and the fine-tune's verdict: a per-example one, or macro_f1 for tasks with a label
(compare then bootstraps macro-F1 itself; on an 88/12 task accuracy rewards the constant answer).
For kind `exact` the primary should be `lenient`: an instruction-tuned model answers in a
sentence, which strict `exact` scores 0 however right it is, so under `exact` the prompted bar is
a strawman that any fine-tune beats by learning the bare-answer format, not the task (a capitals
set: zero-shot "The capital of Australia is Canberra." scored 0). `exact` stays beside it, and
`token_f1` shows how much was padding.

Lenient extraction is applied identically to every system (baseline strategies and the
fine-tune alike); it must never be tuned to favour one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

from tuneproof.io import TuneproofError
from tuneproof.text import normalise, normalise_answer

def _bit(ok: bool) -> float:
    return 1.0 if ok else 0.0


NO_LABEL = "<none>"  # predicted label when no single label could be extracted


FIELD_MATCH = "_match"  # json: per-field metric suffix, e.g. intent_match
CORPUS_METRIC = "macro_f1"  # the one corpus-level metric (tasks with a label); compare bootstraps it whole


@dataclass(frozen=True)
class ScoreParams:
    """params.yaml `score` — how predictions are compared with references. Every key describes
    the dataset, so none has a default."""

    kind: Literal["exact", "label", "json"]
    primary: str
    fields: list[str]
    style: dict[str, str]


def metric_names(params: ScoreParams) -> list[str]:
    """Per-example metric names for a scorer configuration (each also aggregated as a mean)."""
    if params.kind == "exact":
        return ["exact", "lenient", "token_f1"]
    if params.kind == "label":
        return ["accuracy", "extracted", "exact"]
    names = ["json_valid", *(f + FIELD_MATCH for f in params.fields)]
    if params.style:
        names.append("style_ok")
    return [*names, "task_success", "exact"]


def validate(params: ScoreParams, where: str = "params.yaml: score") -> ScoreParams:
    """Reject a configuration whose primary metric the scorer would never produce."""
    names = [*metric_names(params), CORPUS_METRIC]
    if params.primary not in names:
        raise TuneproofError(f"{where}.primary: {params.primary!r} is not a per-example metric of kind "
                             f"{params.kind!r}; choose one of {', '.join(names)}")
    if params.kind != "json" and (params.fields or params.style):
        raise TuneproofError(f"{where}.fields/style: only used by kind 'json'; set them to [] and {{}}")
    for name, pattern in params.style.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise TuneproofError(f"{where}.style.{name}: invalid regex ({exc})") from None
    return params


# ---------------------------------------------------------------------------------------- labels

def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def single_phrase(norm: str, phrases: Iterable[str]) -> str | None:
    """The one of `phrases` (all normalised) that the normalised text `norm` names, or None.

    An exact match wins; otherwise each phrase is searched as a whole-word phrase, a phrase
    contained in a longer found one ("card" in "card payment") is dropped, and the text counts
    only if exactly one remains: an answer listing two candidates is wrong."""
    phrases = list(dict.fromkeys(phrases))
    if norm in phrases:
        return norm
    found = [p for p in phrases if p and _has_phrase(norm, p)]
    found = [p for p in found if not any(p != q and _has_phrase(q, p) for q in found)]
    return found[0] if len(found) == 1 else None


def extract_label(text: str, labels: Sequence[str]) -> str | None:
    """The label `text` names (see single_phrase), or None when it names none or several."""
    by_norm = {normalise(label): label for label in labels}
    found = single_phrase(normalise(text), by_norm)
    return None if found is None else by_norm[found]


# ----------------------------------------------------------------------------------- short answers

def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 of two answers over their normalise_answer tokens (bags of words)."""
    pred, ref = normalise_answer(prediction).split(), normalise_answer(reference).split()
    if not pred or not ref:
        return _bit(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def answer_scores(prediction: str, answers: Sequence[str]) -> dict[str, float]:
    """`exact`, `lenient` and `token_f1` of a short answer against every accepted answer."""
    norm, keys = normalise_answer(prediction), [normalise_answer(a) for a in answers]
    strict = norm in keys
    return {"exact": _bit(strict), "lenient": _bit(strict or single_phrase(norm, keys) is not None),
            "token_f1": max(token_f1(prediction, a) for a in answers)}


# ------------------------------------------------------------------------------------------ json

_DECODER = json.JSONDecoder()


def extract_json_object(text: str) -> dict | None:
    """The first JSON object in `text` (code fences and surrounding prose are ignored), or None."""
    for match in re.finditer(r"\{", text):
        try:
            value, _ = _DECODER.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _field_value(value: object) -> str:
    return " ".join(str(value).split()).casefold()


# --------------------------------------------------------------------------------------- scoring


def _label_value(value: object, labels: Sequence[str]) -> str:
    """The label a JSON field value names (same case/space leniency as field matching)."""
    wanted = _field_value(value)
    return next((label for label in labels if _field_value(label) == wanted), NO_LABEL)


@dataclass(frozen=True)
class Scorer:
    """A configured scorer: params, the task's label field and its label set."""

    params: ScoreParams
    label_field: str | None = None  # task.label_field: rows carry label/predicted_label when set
    labels: tuple[str, ...] = ()    # the label set (kind `label` extracts one of these)

    def score(self, prediction: str, reference: str, record_id: str = "?",
              references: Sequence[str] = ()) -> tuple[dict[str, float], str | None]:
        """(per-example metrics, predicted label or None when the task has no label). `references`:
        the record's other accepted answers (kind exact)."""
        params = self.params
        if params.kind == "exact":
            predicted = prediction.strip() if prediction.strip() in self.labels else NO_LABEL
            return answer_scores(prediction, [reference, *references]), predicted if self.label_field else None
        scores = {"exact": _bit(prediction.strip() == reference.strip())}
        if params.kind == "label":
            predicted = extract_label(prediction, self.labels)
            scores["extracted"] = _bit(predicted is not None)
            scores["accuracy"] = _bit(predicted == reference.strip())
            return scores, predicted if predicted is not None else NO_LABEL
        ref = extract_json_object(reference)
        if ref is None:
            raise TuneproofError(f"record {record_id}: the reference completion is not a JSON object, "
                                 "but score.kind is 'json'; fix the data or set score.kind")
        pred = extract_json_object(prediction)
        success = pred is not None
        scores["json_valid"] = _bit(success)
        pred = pred or {}
        for name in params.fields:
            if name not in ref:
                raise TuneproofError(f"record {record_id}: the reference has no field {name!r} "
                                     "(listed in score.fields); fix the data or score.fields")
            ok = name in pred and _field_value(pred[name]) == _field_value(ref[name])
            scores[name + FIELD_MATCH] = _bit(ok)
            success = success and ok
        if params.style:
            ok = all(isinstance(pred.get(name), str) and re.fullmatch(pattern, pred[name].strip()) is not None
                     for name, pattern in params.style.items())
            scores["style_ok"] = _bit(ok)
            success = success and ok
        scores["task_success"] = _bit(success)
        if self.label_field is None:
            return scores, None
        return scores, _label_value(pred[self.label_field], self.labels) if self.label_field in pred else NO_LABEL

    def row(self, record: dict, prediction: str, **extra) -> dict:
        """The per-example output row (the contract compare pairs by id)."""
        from tuneproof.records import label_of

        scores, predicted = self.score(prediction, record["completion"], record["id"], record.get("references", ()))
        row = {"id": record["id"], "prediction": prediction, "reference": record["completion"],
               **({"references": record["references"]} if "references" in record else {}), "scores": scores, **extra}
        if self.label_field is not None:
            row["label"] = label_of(record, self.label_field)
            row["predicted_label"] = predicted
        return row

    def aggregate(self, rows: Sequence[dict]) -> dict[str, float]:
        """Mean of every per-example metric, plus macro-F1 where rows carry labels. Macro-F1
        averages over the labels these rows hold or predict (sklearn's default): a label that
        neither occurs nor is predicted in a 16-record train sample would otherwise add a 0 and
        cap a perfect score at 0.5. A prediction naming no label counts as a miss for the true
        class, never as a class of its own."""
        from tuneproof.stats import macro_f1

        if not rows:
            return {}
        out = {name: sum(r["scores"][name] for r in rows) / len(rows) for name in metric_names(self.params)}
        if self.label_field is not None and self.labels:
            true, pred = [str(r["label"]) for r in rows], [str(r["predicted_label"]) for r in rows]
            present = sorted(set(true) | (set(pred) & set(self.labels)))
            out["macro_f1"] = macro_f1(true, pred, present)  # the one implementation, shared with compare's bootstrap
        return out


def build_scorer(params: ScoreParams, label_field: str | None, label_records: Sequence[dict]) -> Scorer:
    """A validated scorer whose label set is every label found in `label_records` (sorted).

    Pass the train and test records: the label set is the task's output space (not the test
    answers), and a test label missing from train must still be recognisable when predicted.
    """
    from tuneproof.records import label_of

    validate(params)
    if params.kind == "label" and label_field != "completion":
        raise TuneproofError("score.kind is 'label' (the whole completion is a class label) but "
                             f"task.label_field is {label_field!r}; set task.label_field: completion")
    if params.primary == CORPUS_METRIC and label_field is None:
        raise TuneproofError(f"score.primary: {CORPUS_METRIC} needs class labels; set task.label_field "
                             "or choose a per-example metric")
    labels = sorted({lab for r in label_records if (lab := label_of(r, label_field)) is not None}) if label_field else []
    return Scorer(params, label_field, tuple(labels))
