"""Stage `dedup`: exact / conflict / near duplicates, truth scoring, the stage on demo data, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.dedup import main
from tuneproof.config import DEDUP_CLUSTERS, DEDUP_RECORDS
from tuneproof.deduplicate import DedupParams, dedup_records, score_against_truth
from demo.support_tickets import write_demo
from tuneproof.io import TuneproofError, write_jsonl
from tuneproof.records import load_records

from params_file import set_params
from bad_lines import BAD_INPUTS, write_lines

LONG = ("my parcel for order 48213 still has not arrived and the tracking page shows nothing since "
        "monday could you tell me where it is please")


def rec(line: int, prompt: str, completion: str = "a") -> dict:
    return {"id": f"L{line:06d}", "messages": [{"role": "user", "content": prompt}], "completion": completion}


def test_exact_conflict_and_near_duplicates():
    records = [
        rec(1, LONG),
        rec(2, "Please cancel my subscription, I do not use it any more.", "cancel"),
        rec(3, LONG.upper() + "!!", "a"),                          # exact after normalising (same completion)
        rec(4, "Is the kettle dishwasher safe?", "q1"),
        rec(5, "is the KETTLE dishwasher-safe", "q2"),             # same prompt, other completion: conflict
        rec(6, LONG.replace("monday", "tuesday"), "a"),           # near duplicate of 1
        rec(7, "Please cancel my subscription, I do not use it any more.", "cancel  "),  # exact (whitespace)
        rec(8, "Completely different: my card was declined at checkout twice today.", "pay"),
    ]
    params = DedupParams(truth=None, threshold=0.7, shingle_size=3, num_perm=128)
    result = dedup_records(records, params)
    assert [r["id"] for r in result.records] == ["L000001", "L000002", "L000008"]
    assert result.clusters == [
        {"reason": "exact", "kept": "L000001", "dropped": ["L000003"], "similarity": {"L000003": 1.0}},
        {"reason": "near", "kept": "L000001", "dropped": ["L000006"], "similarity": {"L000006": round(20 / 26, 4)},  # 3 of 23 trigrams changed
         "completions": 1},
        {"reason": "exact", "kept": "L000002", "dropped": ["L000007"], "similarity": {"L000007": 1.0}},
        {"reason": "conflict", "kept": None, "dropped": ["L000004", "L000005"],
         "similarity": {"L000004": 1.0, "L000005": 1.0}, "completions": 2},
    ]
    assert result.metrics["exact_dropped"] == 2 and result.metrics["near_dropped"] == 1
    assert result.metrics["conflict_groups"] == 1 and result.metrics["conflict_dropped"] == 2
    assert result.metrics["records_in"] == 8 and result.metrics["records_out"] == 3

    keep_first = dedup_records(records, DedupParams(truth=None, conflicts="keep_first"))
    assert [r["id"] for r in keep_first.records] == ["L000001", "L000002", "L000004", "L000008"]
    conflict = [c for c in keep_first.clusters if c["reason"] == "conflict"]
    assert conflict[0]["kept"] == "L000004" and conflict[0]["dropped"] == ["L000005"]


def test_near_copies_with_different_answers_are_kept_and_listed_as_conflicts():
    """Issue 13: dedup dropped "... of Guinea-Bissau?" (Bissau) as a copy of "... of Guinea?" (Conakry)."""
    records = [rec(1, "totally unrelated short text about refunds for shoes"),
               rec(2, LONG.replace("monday", "friday"), "x"), rec(3, LONG, "y"),
               rec(4, LONG.replace("monday", "sunday"), "x"),  # a copy of line 2, same answer
               rec(5, "What is the capital city of the country Guinea-Bissau?", "Bissau"),
               rec(6, "What is the capital city of the country Guinea?", "Conakry")]
    result = dedup_records(records, DedupParams(truth=None))
    assert [r["id"] for r in result.records] == ["L000001", "L000002", "L000003", "L000005", "L000006"]
    near = [c for c in result.clusters if c["reason"] == "near"]
    assert [(c["kept"], c["dropped"]) for c in near] == [("L000002", ["L000004"])]
    conflicts = [c for c in result.clusters if c["reason"] == "near_conflict"]
    assert [(c["kept"], c["conflicting"], c["dropped"], c["completions"]) for c in conflicts] == [
        ("L000002", ["L000003"], [], 2), ("L000005", ["L000006"], [], 2)]
    assert result.metrics["near_conflicts"] == 2 and result.metrics["near_conflict_records"] == 4
    assert result.metrics["near_dropped"] == 1


def test_bad_params_are_rejected():
    with pytest.raises(TuneproofError, match="dedup.threshold"):
        dedup_records([rec(1, "a")], DedupParams(truth=None, threshold=0.0))


def test_score_against_truth_counts_true_and_false_drops():
    truth = {"groups": [
        {"kind": "exact", "original": 1, "duplicates": [5]},
        {"kind": "near", "original": 2, "duplicates": [6, 7]},
        {"kind": "conflict", "original": 3, "duplicates": [8]},
    ]}
    clusters = [
        {"reason": "exact", "kept": "L000001", "dropped": ["L000005"]},          # true
        {"reason": "exact", "kept": "L000006", "dropped": ["L000007"]},          # true via 7 -> 6 -> 2
        {"reason": "near", "kept": "L000002", "dropped": ["L000006", "L000004"]},  # 6 true, 4 false
        {"reason": "conflict", "kept": None, "dropped": ["L000003", "L000008"]},
    ]
    score = score_against_truth(clusters, truth)
    assert score["should_drop"] == 3 and score["dropped"] == 4 and score["true_drops"] == 3
    assert score["recall"] == 1.0 and score["precision"] == 0.75
    assert score["recall_exact"] == 1.0 and score["recall_near"] == 1.0
    assert score["conflicts_planted"] == 1 and score["conflicts_flagged"] == 1
    missed = score_against_truth(clusters[:1], truth)
    assert missed["recall"] == round(1 / 3, 4) and missed["recall_near"] == 0.0 and missed["precision"] == 1.0
    assert missed["conflicts_flagged"] == 0


def outputs(project_dir: Path) -> list[Path]:
    return [project_dir / "data" / "dedup" / DEDUP_RECORDS, project_dir / "data" / "dedup" / DEDUP_CLUSTERS,
            project_dir / "metrics" / "dedup.json"]


def test_stage_on_demo_data_finds_planted_duplicates_deterministically(project_dir, capsys):
    write_demo(project_dir / "data" / "raw")
    main()
    metrics = json.loads((project_dir / "metrics" / "dedup.json").read_text())
    truth = metrics["truth"]
    assert truth["recall"] >= 0.95 and truth["precision"] >= 0.95, truth
    assert truth["conflicts_flagged"] == truth["conflicts_planted"] > 0
    kept = load_records(project_dir / "data" / "raw" / "support_tickets.jsonl")
    out = [json.loads(l) for l in (project_dir / "data" / "dedup" / DEDUP_RECORDS).read_text().splitlines()]
    assert len(out) == metrics["records_out"] < metrics["records_in"] == len(kept)
    assert [r["id"] for r in out] == sorted(r["id"] for r in out)
    assert "recall" in capsys.readouterr().out
    first = [p.read_bytes() for p in outputs(project_dir)]
    main()
    assert [p.read_bytes() for p in outputs(project_dir)] == first


def test_both_input_formats_give_the_same_result(project_dir):
    records = [{"prompt": LONG, "completion": "a"}, {"prompt": "Is the kettle dishwasher safe?", "completion": "q"},
               {"prompt": LONG.replace("monday", "tuesday"), "completion": "a"}]
    results = {}
    for fmt in ("pc", "chat"):
        rows = records if fmt == "pc" else [
            {"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
            for r in records]
        write_jsonl(project_dir / f"{fmt}.jsonl", rows)
        set_params(project_dir, paths={"raw": f"{fmt}.jsonl"}, dedup={"truth": None})
        main()
        results[fmt] = [p.read_bytes() for p in outputs(project_dir)]
    assert results["pc"] == results["chat"]
    assert json.loads(results["pc"][2])["near_dropped"] == 1


def test_truth_for_another_file_is_skipped(project_dir, capsys):
    write_demo(project_dir / "data" / "raw")
    write_jsonl(project_dir / "mine.jsonl", [{"prompt": "a b c", "completion": "x"}])
    set_params(project_dir, paths={"raw": "mine.jsonl"})
    main()
    assert "truth" not in json.loads((project_dir / "metrics" / "dedup.json").read_text())
    assert "describes a different file" in capsys.readouterr().out


@pytest.mark.parametrize("name,lines,line_no,message", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_stops_the_stage_before_writing(project_dir, name, lines, line_no, message):
    write_lines(project_dir / "bad.jsonl", lines)
    set_params(project_dir, paths={"raw": "bad.jsonl"}, dedup={"truth": None})
    with pytest.raises(TuneproofError, match=rf"bad.jsonl:{line_no}: "):
        main()
    assert [p for p in outputs(project_dir) if p.exists()] == []
    assert not (project_dir / "data").exists()


def test_failed_run_leaves_previous_outputs_untouched(project_dir):
    write_jsonl(project_dir / "good.jsonl", [{"prompt": LONG, "completion": "a"}, {"prompt": LONG, "completion": "a"}])
    set_params(project_dir, paths={"raw": "good.jsonl"}, dedup={"truth": None})
    main()
    before = [p.read_bytes() for p in outputs(project_dir)]
    write_lines(project_dir / "good.jsonl", [json.dumps({"prompt": LONG, "completion": "a"}), "{oops"])
    with pytest.raises(TuneproofError, match=r"good.jsonl:2: invalid JSON"):
        main()
    assert [p.read_bytes() for p in outputs(project_dir)] == before
    assert sorted(p.name for p in (project_dir / "data" / "dedup").iterdir()) == [DEDUP_CLUSTERS, DEDUP_RECORDS]


@pytest.mark.parametrize("key,value,message", [
    ("threshold", 1.5, r"dedup.threshold is 1.5; use a Jaccard similarity in \(0, 1\]"),
    ("shingle_size", 0, "dedup.shingle_size is 0"),
    ("num_perm", 1, "dedup.num_perm is 1"),
    ("seed", -1, "dedup.seed is -1"),
])
def test_dedup_params_are_checked_with_their_key(project_dir, key, value, message):
    write_jsonl(project_dir / "mine.jsonl", [{"prompt": LONG, "completion": "a"}])
    set_params(project_dir, paths={"raw": "mine.jsonl"}, dedup={"truth": None, key: value})
    with pytest.raises(TuneproofError, match=message):
        main()
    assert not (project_dir / "data").exists()


def test_dedup_threshold_one_runs(project_dir):
    write_jsonl(project_dir / "mine.jsonl", [{"prompt": LONG, "completion": "a"}, {"prompt": LONG + "!", "completion": "a"},
                                             {"prompt": LONG + " today", "completion": "a"}])
    set_params(project_dir, paths={"raw": "mine.jsonl"}, dedup={"truth": None, "threshold": 1.0})
    main()
    assert json.loads((project_dir / "metrics" / "dedup.json").read_text())["records_out"] == 2


def test_console_says_how_many_near_copies_merged_and_conflicts_kept(project_dir, capsys):
    set_params(project_dir, paths={"raw": "qa.jsonl"}, dedup={"truth": None})
    write_jsonl(project_dir / "qa.jsonl", [
        {"prompt": "What is the capital city of the country Guinea-Bissau?", "completion": "Bissau"},
        {"prompt": "What is the capital city of the country Guinea?", "completion": "Conakry"},
        {"prompt": LONG, "completion": "a"}, {"prompt": LONG.replace("monday", "friday"), "completion": "a"}])
    main()
    out = capsys.readouterr().out
    assert "near-copies merged 1" in out
    assert "kept 2 records in 1 near-copy conflict (alike prompts, different answers" in out
    assert "'What is the capital city of the country Guinea-Bissau?' -> 'Bissau'  vs  L000002" in out
    clusters = json.loads((project_dir / "data" / "dedup" / DEDUP_CLUSTERS).read_text())
    assert [c["reason"] for c in clusters] == ["near_conflict", "near"]


def test_labels_differing_only_in_case_are_warned_about(project_dir, capsys):
    write_jsonl(project_dir / "mine.jsonl", [{"prompt": "win a prize now", "completion": "Spam"},
                                             {"prompt": "see you at six", "completion": "ham"},
                                             {"prompt": "free entry to a cup final", "completion": "spam"}])
    set_params(project_dir, paths={"raw": "mine.jsonl"}, dedup={"truth": None}, task={"label_field": "completion"})
    main()
    assert "dedup: WARNING: labels 'Spam' / 'spam' differ only in case" in capsys.readouterr().err
