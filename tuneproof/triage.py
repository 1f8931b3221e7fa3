"""Triage signals beside the checks: does prompting suffice, is the gap knowledge (answers the
training data never held: USE RAG) or format (JSON validity up, field correctness not)?"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from tuneproof.compare_params import CompareParams
from tuneproof.paired import example_score
from tuneproof.records import accepted_answers, prompt_text
from tuneproof.scoring import FIELD_MATCH
from tuneproof.text import normalise
from tuneproof.verdict_advice import PASS

STOPWORDS = frozenset("""a an and are as at be but by for from has have he her his i in is it its
    of on or our she that the their them they this to was we were will with you your""".split())


def content_words(text: str) -> set[str]:
    return {w for w in normalise(text).split() if w not in STOPWORDS and (len(w) > 2 or w.isdigit())}


def answer_novelty(test: list[dict], train: list[dict]) -> dict[str, bool]:
    """Per test id: is the answer novel, i.e. for every accepted answer (the completion and any
    `references`), are most of its content words in neither the record's own prompt (copying from
    the input is not knowledge) nor any ONE training completion? Words count as known together, as
    the fact is: "Matthew Perry" is not in training because one train answer held "Matthew" and
    another "Perry". One familiar form makes the answer familiar: "6 geese a-laying" is not new
    knowledge when training held "six geese a-laying". Only train completions count as seen: a
    train record's other references were never trained on."""
    holders: dict[str, set[int]] = defaultdict(set)  # content word -> the train completions holding it
    for i, record in enumerate(train):
        for word in content_words(record["completion"]):
            holders[word].add(i)
    novel = {}
    for record in test:
        prompt = content_words(prompt_text(record))
        novel[record["id"]] = all(_novel_form(content_words(answer), prompt, holders)
                                  for answer in accepted_answers(record))
    return novel


def _novel_form(words: set[str], prompt: set[str], holders: dict[str, set[int]]) -> bool:
    """At least half of `words` are in neither `prompt` nor the one train completion holding most of them."""
    if not words:
        return False
    together = Counter(i for word in words - prompt for i in holders.get(word, ()))
    known = len(words & prompt) + max(together.values(), default=0)
    return len(words) - known >= 0.5 * len(words)


def novel_familiar_scores(rows: list[dict], novel: dict[str, bool], metric: str) -> tuple[float | None, float | None]:
    """A system's mean per-example `metric` on the novel and on the familiar test answers (None: no such answer)."""
    scores = {row["id"]: example_score(row, metric) for row in rows}
    parts = ([scores[i] for i in scores if novel.get(i)], [scores[i] for i in scores if not novel.get(i)])
    return tuple(float(np.mean(part)) if part else None for part in parts)


def triage(best: dict, sig: dict, strategies: dict, finetune: dict, finetune_rows: list[dict],
           novel: dict[str, bool], metric: str, params: CompareParams, prompted_rows: list[dict] | None = None) -> dict:
    """The triage signals; `prompted_rows` (the best prompted strategy's) adds its novel/familiar split."""
    novelty = float(np.mean(list(novel.values()))) if novel else 0.0
    ft_novel, ft_familiar = novel_familiar_scores(finetune_rows, novel, metric)
    prompted_novel, prompted_familiar = novel_familiar_scores(prompted_rows or [], novel, metric)
    n_novel = sum(bool(novel.get(row["id"])) for row in finetune_rows)
    retrieval = strategies.get("retrieval", {}).get(metric)
    retrieval_helps = retrieval is not None and retrieval >= finetune[metric]
    fails_on_novel = ft_novel is not None and ft_familiar is not None and ft_novel < ft_familiar - params.min_gain
    knowledge_gap = novelty >= params.knowledge.novelty_threshold and (retrieval_helps or fails_on_novel or not n_novel)
    format_not_content = None
    correctness = [k for k in finetune if k.endswith(FIELD_MATCH)]
    if "json_valid" in finetune and correctness:
        prompted = strategies[best["strategy"]]
        format_gain = finetune["json_valid"] - prompted.get("json_valid", 0.0)
        content_gain = np.mean([finetune[k] - prompted.get(k, 0.0) for k in correctness])
        format_not_content = bool(format_gain > params.min_gain and content_gain <= params.min_gain)
    return {
        "prompting_suffices": bool(best[metric] >= params.target or sig["status"] != PASS),
        "prompted_meets_target": bool(best[metric] >= params.target),
        "answer_novelty": novelty, "novel_answers": n_novel, "familiar_answers": len(finetune_rows) - n_novel,
        "finetune_on_novel": ft_novel, "finetune_on_familiar": ft_familiar,
        "prompted_on_novel": prompted_novel, "prompted_on_familiar": prompted_familiar,
        "retrieval_beats_finetune": bool(retrieval_helps), "knowledge_gap": bool(knowledge_gap),
        "format_not_content": format_not_content,
    }
