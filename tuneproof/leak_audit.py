"""The split's contamination audit: do val/test records nearly copy a train record?

Independent of the leak grouping (`tuneproof.splitting`): exact Jaccard of character n-grams,
all pairs (`tuneproof.contamination`). For every val/test record, the most similar train prompt
and train completion. A prompt at or above `split.audit_threshold` is a leak; completions are
checked against `split.audit_completion_threshold` only when the task has no label (label tasks
repeat answers by design; null reports only). Any leak fails the split stage and nothing is
written. At the default 0.8 the audit flags copies with case/punctuation edits at any length
and a one-word edit from about 14 words up; shorter near-paraphrases ("My card payment is
still pending." / "My card payment still pending": 0.71) pass and are listed in audit.json.
With `split.group_measure: tfidf` it also lists, report only (`prompt_near`), val/test prompts
whose TF-IDF cosine with a train prompt reaches `split.group_threshold`: short near-copies the
Jaccard misses, left apart only where `split.group_max_size` cut a link.
"""

from __future__ import annotations

from functools import partial

from tuneproof.contamination import char_ngrams, max_jaccard
from tuneproof.io import TuneproofError
from tuneproof.neardup import jaccard
from tuneproof.records import leak_text
from tuneproof.similar import max_similarity
from tuneproof.text import excerpt, normalise

EXCERPT_CHARS = 80  # characters of each text shown in the audit and its error
TELLING_ANSWER_WORDS = 6      # a shared answer this long (in words) is a leak whatever the prompts
TELLING_PROMPT_JACCARD = 0.5  # a shorter shared answer is one only when the prompts are this alike too


def _excerpt(text: str) -> str:
    return excerpt(text, EXCERPT_CHARS)


def telling_answer(record: dict, match: dict, ngram: int) -> bool:
    """Is a shared completion evidence of a leak? Different questions share short answers ("1960",
    "United States") by chance; a shared answer counts when it is long enough to be telling or
    the two prompts are alike too."""
    if len(normalise(record["completion"]).split()) >= TELLING_ANSWER_WORDS:
        return True
    a, b = (set(char_ngrams(leak_text(r), ngram)) for r in (record, match))
    return jaccard(a, b) >= TELLING_PROMPT_JACCARD  # neither set is empty: char_ngrams never returns []


def _side_audit(queries: list[tuple[str, dict]], train: list[dict], field: str, texts,
                scorer, threshold: float | None, top: int, telling=None) -> tuple[dict, list[dict]]:
    """Audit one side (prompt or completion): summary and one row per val/test record;
    `scorer(query texts, train texts)` gives each query's best score and train index (as
    `max_jaccard`); `threshold` None reports without checking; `telling(record, match)` excuses
    matches that are no evidence of a leak (counted as `excused`)."""
    scores, best = scorer([texts(r) for _, r in queries], [texts(r) for r in train])
    rows = []
    for (split, record), score, j in zip(queries, scores.tolist(), best.tolist()):
        match = train[j]
        rows.append({"id": record["id"], "split": split, "train_id": match["id"], "score": round(score, 4),
                     "text": _excerpt(texts(record)), "train_text": _excerpt(texts(match)),
                     "telling": telling is None or telling(record, match)})
    worst = sorted(rows, key=lambda r: (-r["score"], r["split"], r["id"]))
    matches = [r for r in worst if threshold is not None and r["score"] >= threshold]
    leaks = [r for r in matches if r["telling"]]
    summary = {"field": field, "checked": threshold is not None, "threshold": threshold,
               "max": max((r["score"] for r in rows), default=0.0), "leaks": len(leaks),
               "excused": len(matches) - len(leaks), "worst": worst[:top]}
    return summary, rows


def audit_split(splits: dict[str, list[dict]], ngram: int, prompt_threshold: float,
                completion_threshold: float | None, top: int, near_threshold: float | None = None) -> dict:
    """Contamination audit: for each val/test record the highest character `ngram` Jaccard with
    any train record, for prompts and completions separately. `report["pass"]` is False when a
    prompt or a completion reaches its threshold (completions: only if `completion_threshold`
    is not None). With `near_threshold`, `report["prompt_near"]` also lists the val/test prompts
    whose TF-IDF cosine with a train prompt reaches it: short near-copies the Jaccard misses
    (one changed word in a 6-word question), which grouping keeps together unless
    `split.group_max_size` cut the link. Reported, not checked."""
    queries = [(s, r) for s in ("val", "test") for r in splits[s]]
    jaccard = partial(max_jaccard, n=ngram)
    prompt, prompt_rows = _side_audit(queries, splits["train"], "prompt", leak_text, jaccard,
                                      prompt_threshold, top)
    completion, completion_rows = _side_audit(queries, splits["train"], "completion", lambda r: r["completion"],
                                              jaccard, completion_threshold, top,
                                              lambda record, match: telling_answer(record, match, ngram))
    near = {}
    if near_threshold is not None:
        summary, _ = _side_audit(queries, splits["train"], "prompt", leak_text, max_similarity, near_threshold, top)
        near = {"prompt_near": {**summary, "measure": "TF-IDF cosine (split.group_measure tfidf), report only",
                                "checked": False, "near_copies": summary.pop("leaks")}}
    records = [{"id": p["id"], "split": p["split"],
                "prompt": {"score": p["score"], "train_id": p["train_id"]},
                "completion": {"score": c["score"], "train_id": c["train_id"]}}
               for p, c in zip(prompt_rows, completion_rows)]
    return {
        "measure": f"exact Jaccard of character {ngram}-gram sets of normalised text, "
                   "each val/test record against every train record",
        "ngram": ngram,  # compare audits a production sample against train with the same measure
        "pass": prompt["leaks"] == 0 and completion["leaks"] == 0,
        "prompt": prompt, "completion": completion, **near, "records": records,
    }


def audit_error(report: dict) -> TuneproofError:
    """The failure message of an audit that did not pass: every offending pair (up to top-N)."""
    lines = []
    for side in ("prompt", "completion"):
        part = report[side]
        offending = [r for r in part["worst"] if part["checked"] and r["score"] >= part["threshold"] and r["telling"]]
        for r in offending:
            lines.append(f"  {side} {r['split']} {r['id']} ~ train {r['train_id']}: jaccard {r['score']:.3f} "
                         f"(>= {part['threshold']})\n      {r['split']}: {r['text']!r}\n      train: {r['train_text']!r}")
        if part["leaks"] > len(offending):
            lines.append(f"  ... and {part['leaks'] - len(offending)} more {side} pairs (raise split.audit_top to list them)")
    return TuneproofError(
        "split: contamination audit failed, val/test records nearly copy train records "
        f"({report['measure']}):\n" + "\n".join(lines) + "\nNothing was written. Fix the data (remove or "
        "merge these near-copies)" + "".join(advice for side, advice in (
            ("prompt", ", or lower split.group_threshold so near-copy prompts are grouped into one split, or, if "
                       "they are genuinely distinct, raise split.audit_threshold (up to 1.0)"),
            ("completion", ", or, if these answers are genuinely shared by different questions, set "
                           "split.audit_completion_threshold: null (completions reported, not checked)"))
            if report[side]["leaks"]) + ".")
