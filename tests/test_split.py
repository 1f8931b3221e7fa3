"""stages.split and tuneproof.splitting: leak groups never straddle, stratification, determinism, small classes, the
contamination audit (leak found and named, distinct pairs pass) and the stage's outputs."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace

import pytest

from stages import split as split_stage
from tuneproof import splitting
from tuneproof.config import SPLITS
from tuneproof.leak_audit import audit_error, audit_split
from tuneproof.splitting import SplitParams, assign_splits, leak_groups, size_warnings, split_records, split_targets
from tuneproof.io import TuneproofError, read_json, sha256_file
from tuneproof.similar import capped_groups, max_similarity, similar_pairs

from params_file import set_params
from split_data import INTENTS, edited_copy, family_records, outputs, random_text, record, write_dedup_records

# A ticket-length text (26 words). The audit at its default 0.8 flags a one-word edit of texts
# from about 14 words up; shorter texts are flagged when copied with case/punctuation edits only.
TICKET = ("Hello, my order 48213 arrived yesterday but the blender jar was cracked and leaking "
          "everywhere. Could you send a replacement or refund me? Thanks, Maria")


def split_of(result) -> dict[str, str]:
    return {r["id"]: name for name, records in result.splits.items() for r in records}


# ---------------------------------------------------------------- grouping and assignment


def test_leak_groups_merge_near_duplicates_and_identical_normalised_prompts():
    rng = random.Random(1)
    base, other = random_text(rng, 16), random_text(rng, 16)
    texts = [base, other, edited_copy(base), "Hello, World!", "hello   world", "Hello there world friend"]
    groups = leak_groups(texts, threshold=0.4, shingle_size=3, num_perm=128, measure="shingles")
    assert groups[0] == groups[2]                       # one word changed, re-cased, punctuation
    assert groups[3] == groups[4]                       # identical once normalised
    assert len({groups[0], groups[1], groups[3], groups[5]}) == 4
    first_seen = list(dict.fromkeys(groups))
    assert first_seen == list(range(len(first_seen)))  # ids numbered in first-seen order


def test_groups_never_straddle_splits():
    records = family_records(families=40, per_family=4, singles=200)
    result = split_records(records, SplitParams(test_ratio=0.1), "intent")
    where = split_of(result)
    for f in range(40):
        ids = [records[f * 4 + k]["id"] for k in range(4)]
        assert len({where[i] for i in ids}) == 1, f"family {f} straddles splits"
    assert {where[r["id"]] for r in records[:160]} == set(SPLITS)  # families do reach val and test
    by_group: dict[int, set[str]] = {}
    for r, g in zip(records, result.groups):
        by_group.setdefault(g, set()).add(where[r["id"]])
    assert all(len(s) == 1 for s in by_group.values())


def test_stratification_keeps_label_proportions():
    rng = random.Random(2)
    sizes = {"a": 500, "b": 300, "c": 150, "d": 50}
    labels = [label for label, n in sizes.items() for _ in range(n)]
    rng.shuffle(labels)
    names = assign_splits(labels, list(range(len(labels))), 0.1, 0.1, seed=0)
    counts = Counter(zip(labels, names))
    assert Counter(names) == {"train": 800, "val": 100, "test": 100}
    for label, n in sizes.items():
        for split, share in (("val", 0.1), ("test", 0.1)):
            assert abs(counts[label, split] - n * share) <= 1, (label, split, counts)


def test_stratification_with_groups_stays_close():
    records = family_records(families=60, per_family=3, singles=600, seed=3)
    result = split_records(records, SplitParams(test_ratio=0.1), "intent")
    total = Counter(result.labels)
    for split, share in (("val", 0.1), ("test", 0.1)):
        got = Counter(json.loads(r["completion"])["intent"] for r in result.splits[split])
        for label in INTENTS:
            assert abs(got[label] - total[label] * share) <= 4, (split, label, got, total)


@pytest.mark.parametrize("n, expected", [
    (1, (1, 0, 0)), (2, (2, 0, 0)), (3, (3, 0, 0)), (4, (3, 0, 1)), (5, (4, 0, 1)), (6, (5, 0, 1)),
    (7, (5, 1, 1)), (10, (8, 1, 1)), (39, (31, 4, 4)),
])
def test_split_targets_small_classes(n, expected):
    assert tuple(split_targets(n, 0.1, 0.1)[s] for s in SPLITS) == expected


def test_small_classes_do_not_crash_and_stay_in_train():
    rng = random.Random(4)
    records = [record(i, random_text(rng), "big") for i in range(1, 201)]
    small = {"one": 1, "two": 2, "three": 3, "five": 5}
    for label, n in small.items():
        records += [record(len(records) + 1, random_text(rng), label) for _ in range(n)]
    result = split_records(records, SplitParams(test_ratio=0.1), "intent")
    per_split = {s: Counter(json.loads(r["completion"])["intent"] for r in rs) for s, rs in result.splits.items()}
    for label in ("one", "two", "three"):
        assert per_split["train"][label] == small[label]
    assert (per_split["train"]["five"], per_split["val"]["five"], per_split["test"]["five"]) == (4, 0, 1)


def test_records_without_label_form_their_own_stratum():
    rng = random.Random(5)
    records = [record(i, random_text(rng), "billing_refund" if i % 2 else None) for i in range(1, 101)]
    result = split_records(records, SplitParams(test_ratio=0.1), "intent")
    assert result.labels.count(None) == 50
    for split, n in (("val", 5), ("test", 5)):
        assert sum(1 for r in result.splits[split] if r["completion"] == "no json here") == n


def test_split_is_deterministic_and_seeded():
    records = family_records(seed=6)
    first = split_records(records, SplitParams(test_ratio=0.1), "intent")
    again = split_records(list(records), SplitParams(test_ratio=0.1), "intent")
    other = split_records(records, replace(SplitParams(test_ratio=0.1), seed=1), "intent")
    assert first.splits == again.splits
    assert split_of(first) != split_of(other)


def test_shared_system_prompt_does_not_group_everything():
    rng = random.Random(7)
    system = "You are a support agent. Answer with one JSON object with keys intent, priority and reply."
    records = [record(i, random_text(rng), INTENTS[i % 3], system=system) for i in range(1, 101)]
    result = split_records(records, SplitParams(test_ratio=0.1), "intent")
    assert len(set(result.groups)) == 100


def test_too_few_records_is_a_clear_error():
    rng = random.Random(8)
    records = [record(i, random_text(rng)) for i in range(1, 5)]
    with pytest.raises(TuneproofError, match="leave val empty"):
        split_records(records, SplitParams(test_ratio=0.1), "intent")


@pytest.mark.parametrize("change, key", [
    ({"val_ratio": 0.0}, "split.val_ratio"),
    ({"val_ratio": 0.5, "test_ratio": 0.5}, "split.val_ratio \\+ split.test_ratio"),
    ({"audit_threshold": 1.5}, "split.audit_threshold"),
    ({"audit_ngram": 0}, "split.audit_ngram"),
    ({"group_max_size": 1}, "split.group_max_size"),
])
def test_invalid_params_name_the_key(change, key):
    with pytest.raises(TuneproofError, match=key):
        split_records([record(1, "x")], replace(SplitParams(), **change), "intent")


# ---------------------------------------------------------------- contamination audit


def audit(splits: dict, check_completions: bool = False) -> dict:
    p = SplitParams()
    return audit_split(splits, p.audit_ngram, p.audit_threshold,
                       p.audit_completion_threshold if check_completions else None, p.audit_top)


def test_audit_fails_on_a_planted_leak_and_names_the_pair():
    rng = random.Random(9)
    train = [record(i, random_text(rng)) for i in range(1, 41)]
    val = [record(i, random_text(rng)) for i in range(41, 46)]
    test = [record(i, random_text(rng)) for i in range(46, 51)]
    leaked = test[2] = record(48, TICKET)
    copy = record(99, edited_copy(TICKET))  # changed word, re-cased, punctuation
    report = audit({"train": train + [copy], "val": val, "test": test})
    assert not report["pass"]
    assert report["prompt"]["leaks"] == 1
    worst = report["prompt"]["worst"][0]
    assert (worst["id"], worst["split"], worst["train_id"]) == (leaked["id"], "test", "L000099")
    assert worst["score"] >= 0.8
    message = str(audit_error(report))
    assert "test L000048 ~ train L000099" in message
    assert leaked["messages"][0]["content"][:30] in message and copy["messages"][0]["content"][:30] in message


def test_audit_catches_a_short_sms_copy():
    train = [record(1, "Ok lor. See you at 6!"), record(2, "Call me when you reach home")]
    test = [record(3, "ok lor see you at 6"), record(4, "Did you get the tickets for friday?")]
    report = audit({"train": train, "val": [], "test": test})
    assert not report["pass"]
    assert [(r["id"], r["train_id"]) for r in report["prompt"]["worst"] if r["score"] >= 0.8] == [("L000003", "L000001")]


def test_audit_passes_on_distinct_pairs_on_the_same_topic():
    train = [record(1, "My parcel for order 4411 has not arrived yet, where is it? - Anna"),
             record(2, "I was charged twice for my subscription this month, please refund one charge.")]
    test = [record(3, "Hi, the tracking for my order 9087 has not moved in a week. Thanks, Tom"),
            record(4, "Please cancel my subscription at the end of this billing period.")]
    report = audit({"train": train, "val": [], "test": test})
    assert report["pass"]
    assert 0 < report["prompt"]["max"] < 0.8


def test_shared_completion_is_legitimate_for_label_tasks_only():
    rng = random.Random(10)
    answer = "Hi there, we have refunded your order in full. - Acme Support"
    train = [dict(record(1, random_text(rng)), completion=answer)]
    test = [dict(record(2, random_text(rng)), completion=answer)]
    labelled = audit({"train": train, "val": [], "test": test}, check_completions=False)
    assert labelled["pass"] and labelled["completion"]["max"] == 1.0
    generative = audit({"train": train, "val": [], "test": test}, check_completions=True)
    assert not generative["pass"] and generative["completion"]["leaks"] == 1
    assert "completion test L000002 ~ train L000001" in str(audit_error(generative))


# ---------------------------------------------------------------- the stage


def test_main_writes_all_outputs_deterministically(project_dir):
    # the ratios this test counts on, not the demo's own test_ratio
    set_params(project_dir, split={"val_ratio": 0.1, "test_ratio": 0.1})
    records = family_records(seed=11)
    write_dedup_records(project_dir, records)
    split_stage.main()
    first = outputs(project_dir)
    assert len(first) == 5
    metrics = read_json(project_dir / "metrics" / "split.json")
    assert metrics["records"] == {"train": 192, "val": 24, "test": 24, "total": 240}
    for s in SPLITS:
        path = project_dir / "data" / "split" / f"{s}.jsonl"
        assert metrics["sha256"][s] == sha256_file(path)
        assert sum(metrics["labels"][s].values()) == metrics["records"][s]
    assert metrics["audit"]["pass"] is True and metrics["audit"]["prompt_max"] < 0.8
    # the 30 families, plus two random singles that share 7 of their ~12 words (TF-IDF cosine 0.58)
    assert metrics["groups"]["multi_record"] == 31
    assert [w.split(" has")[0] for w in metrics["warnings"]] == ["val", "test"]  # 24 < 30 records each
    audit_json = read_json(project_dir / "data" / "split" / "audit.json")
    assert len(audit_json["records"]) == 48 and audit_json["prompt"]["threshold"] == 0.8
    split_ids = sorted(json.loads(line)["id"] for s in SPLITS
                       for line in (project_dir / "data" / "split" / f"{s}.jsonl").read_text().splitlines())
    assert split_ids == sorted(r["id"] for r in records)
    split_stage.main()
    assert outputs(project_dir) == first


def test_main_writes_nothing_when_the_audit_fails(project_dir, monkeypatch):
    rng = random.Random(12)
    records = [record(1, TICKET)] + [record(i, random_text(rng)) for i in range(2, 101)]
    records.append(record(101, edited_copy(TICKET)))
    write_dedup_records(project_dir, records)
    # Grouping would keep the pair together; force it apart to simulate a leak grouping missed.
    monkeypatch.setattr(splitting, "leak_groups", lambda texts, *args: list(range(len(texts))))
    monkeypatch.setattr(splitting, "assign_splits",
                        lambda labels, *args, **kwargs: ["test"] + ["val"] * 10 + ["train"] * (len(labels) - 11))
    with pytest.raises(TuneproofError, match="contamination audit failed") as err:
        split_stage.main()
    assert "test L000001 ~ train L000101" in str(err.value)
    assert outputs(project_dir) == {}


def test_main_without_dedup_output_says_what_to_run(project_dir):
    with pytest.raises(TuneproofError, match="run the dedup stage first"):
        split_stage.main()


def test_main_checks_completions_only_for_tasks_without_label(project_dir):
    rng = random.Random(13)
    boilerplate = "Thank you for your message, a member of our team will get back to you within two days."
    records = [dict(record(i, random_text(rng)), completion=random_text(rng, 10)) for i in range(1, 101)]
    for r in records[:30]:  # 30 of 100 share one answer: some land in val/test, most in train
        r["completion"] = boilerplate
    write_dedup_records(project_dir, records)
    set_params(project_dir, task={"label_field": None})
    with pytest.raises(TuneproofError, match=r"completion (val|test) L0000[0-2]\d ~ train L0000[0-2]\d: jaccard 1.000"):
        split_stage.main()
    assert outputs(project_dir) == {}
    set_params(project_dir, split={"audit_completion_threshold": None})
    split_stage.main()
    assert read_json(project_dir / "data" / "split" / "audit.json")["completion"]["max"] == 1.0


def test_split_warns_on_a_tiny_test_set_and_a_giant_leak_group():
    """A real 243-record capitals set once split 238/2/1 in silence: one template group swallowed it."""
    metrics = {"records": {"train": 238, "val": 2, "test": 1, "total": 241},
               "groups": {"largest": 237}}
    warnings = size_warnings(metrics)
    assert len(warnings) == 3
    assert warnings[0].startswith("val has only 2 records") and "test has only 1 records" in warnings[1]
    assert "no verdict can be earned" in warnings[1] and "one leak group holds 237 of 241" in warnings[2]
    fine = {"records": {"train": 800, "val": 100, "test": 100, "total": 1000}, "groups": {"largest": 3}}
    assert size_warnings(fine) == []


def test_different_questions_sharing_a_short_answer_are_no_leak():
    """Open QA: "1960" or "United States" answers many questions; that is no leak. A long shared
    answer, or a short one to a near-identical question, still is."""
    def rec(i, prompt, completion):
        return {"id": f"L{i:06d}", "messages": [{"role": "user", "content": prompt}], "completion": completion}

    train = [rec(1, "when did the first weather satellite launch", "1960"),
             rec(2, "which country has the most nobel prizes", "United States"),
             rec(3, "who wrote the novel about a white whale", "Herman Melville wrote it in the year 1851 in New York")]
    test = [rec(10, "in what year was the laser first demonstrated", "1960"),
            rec(11, "where is the headquarters of the un located", "United States")]
    report = audit_split({"train": train, "val": [], "test": test}, 5, 0.8, 0.9, 20)
    assert report["pass"] and report["completion"]["excused"] == 2 and report["completion"]["leaks"] == 0
    copied = [rec(12, "name the book with captain ahab", "Herman Melville wrote it in the year 1851 in New York"),
              rec(13, "when did the first weather satellite launch?", "1960")]
    report = audit_split({"train": train, "val": [], "test": copied}, 5, 0.99, 0.9, 20)
    assert not report["pass"] and report["completion"]["leaks"] == 2
    message = str(audit_error(report))
    assert "split.audit_completion_threshold: null" in message


def test_tfidf_grouping_keeps_short_near_copies_together_and_template_questions_apart():
    """The capitals failure: word shingles put 243 'What is the capital of X?' in one group."""
    capitals = [f"What is the capital of {name}?" for name in
                ("Zorvath", "Kelmoria", "Tundrafel", "Osquin", "Barlixne", "Ustrgal", "Rinthovek", "Saldunmir")]
    edits = ["Who was the lawyer for Randy Steven Craft?", "Who was Randy Steven Craft's lawyer?",
             "Who wrote the novel Dubliners?", "Who penned the novel Dubliners?"]
    texts = capitals + edits
    tfidf = leak_groups(texts, 0.55, 3, 128, "tfidf")
    assert len(set(tfidf[:8])) == 8  # template-sharing questions stay apart
    assert tfidf[8] == tfidf[9] and tfidf[10] == tfidf[11] and tfidf[8] != tfidf[10]
    shingles = leak_groups(texts, 0.4, 3, 128, "shingles")
    assert len(set(shingles[:8])) == 1  # the old measure's failure, kept as the contrast


def made_up_names(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    syllables = ["zor", "vath", "kel", "mor", "ia", "tun", "dra", "phel", "os", "quin", "bar", "lix", "ne"]
    return list(dict.fromkeys("".join(rng.choice(syllables) for _ in range(4)).title() for _ in range(n)))


def test_default_grouping_splits_template_questions_near_the_ratios():
    """Issue 13: word shingles put 243 'What is the capital of X?' into one leak group (238/2/1)."""
    records = [record(i + 1, f"What is the capital of {name}?", None)
               for i, name in enumerate(made_up_names(243, seed=5))]
    result = split_records(records, SplitParams(test_ratio=0.1), None)
    sizes = {s: len(result.splits[s]) for s in SPLITS}
    n = len(records)
    assert abs(sizes["val"] - 0.1 * n) <= 2 and abs(sizes["test"] - 0.1 * n) <= 2, sizes


def test_default_grouping_bounds_chains_and_keeps_the_strongest_links():
    """Single linkage chains: 8-word windows sliding over made-up words are each a near-copy of the
    next, so plain transitive merging makes one group of all of them (banking77: 1,419 queries)."""
    words = made_up_names(300, seed=6)
    texts = [" ".join(words[k:k + 8]) + "?" for k in range(160)]
    assert len(set(leak_groups(texts, 0.55, 3, 128, "tfidf", None))) == 1
    groups = leak_groups(texts, 0.55, 3, 128, "tfidf", SplitParams().group_max_size)
    assert max(Counter(groups).values()) <= SplitParams().group_max_size
    together = sum(groups[k] == groups[k + 1] for k in range(len(texts) - 1))
    assert together >= 0.95 * (len(texts) - 1)  # only the links at the caps are cut


def test_audit_lists_short_near_copies_its_jaccard_misses():
    names = made_up_names(21, seed=7)
    train = [record(1, "Who wrote the novel Dubliners?", None)] + [  # IDF needs a template that repeats
        record(i + 2, f"What is the capital of {name}?", None) for i, name in enumerate(names[:20])]
    test = [record(30, "Who penned the novel Dubliners?", None), record(31, f"What is the capital of {names[20]}?", None)]
    report = audit_split({"train": train, "val": [], "test": test}, 5, 0.8, None, 20, near_threshold=0.55)
    assert report["pass"] and report["prompt"]["max"] < 0.8  # one changed word: the Jaccard misses it
    near = report["prompt_near"]
    assert near["near_copies"] == 1 and not near["checked"]
    assert (near["worst"][0]["id"], near["worst"][0]["train_id"]) == ("L000030", "L000001")
    assert near["worst"][1]["score"] < 0.55  # same template, another country: no near-copy


def test_max_similarity_matches_the_pair_measure():
    texts = ["Who wrote the novel Dubliners?", "Who penned the novel Dubliners?", "When was Osquin born?",
             "In what year was Osquin born?", "What is the capital of Osquin?"]
    scores, best = max_similarity(texts[:2], texts[2:])
    pairs = {(i, j): sim for i, j, sim in similar_pairs(texts, 1e-9)}
    for q in range(2):
        expected = max(range(2, 5), key=lambda c: (pairs.get((q, c), 0.0), -c))
        assert best[q] + 2 == expected and scores[q] == pytest.approx(pairs.get((q, expected), 0.0), abs=1e-6)
    assert max_similarity(texts, [])[1].tolist() == [-1] * 5


def test_capped_groups_join_strongest_links_first_and_never_split_identical_texts():
    links = [(0, 1, 0.6), (1, 2, 0.9), (2, 3, 0.8), (3, 4, 0.7)]
    assert capped_groups([1] * 5, links, 3) == [0, 1, 1, 1, 4]  # 1-2, 2-3, then 3-4 and 0-1 exceed 3
    assert capped_groups([1] * 5, links, None) == [0] * 5
    texts = ["Is it open today?"] * 4 + ["is it OPEN today"]  # five identical prompts, cap 2
    assert len(set(leak_groups(texts, 0.55, 3, 128, "tfidf", 2))) == 1


def test_a_label_field_no_record_has_is_an_error_naming_the_key(project_dir):
    set_params(project_dir, task={"label_field": "topic"})
    write_dedup_records(project_dir, family_records(seed=3))  # completions carry an intent, no topic
    with pytest.raises(TuneproofError, match="task.label_field: 'topic' is in no record's completion"):
        split_stage.main()
    assert outputs(project_dir) == {}
