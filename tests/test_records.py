"""tuneproof.records: both input formats load; every kind of bad line is rejected with its line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tuneproof.io import TuneproofError
from tuneproof.records import accepted_answers, label_of, load_records, prompt_text

from bad_lines import BAD_INPUTS, GOOD_CHAT, GOOD_PC, write_lines

def test_prompt_completion_format(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [GOOD_PC, "", "  ", json.dumps({"prompt": "b", "completion": "c", "x": 1})])
    records = load_records(path)
    assert records == [
        {"id": "L000001", "messages": [{"role": "user", "content": "Where is my parcel?"}], "completion": "shipping_delay"},
        {"id": "L000004", "messages": [{"role": "user", "content": "b"}], "completion": "c"},
    ]


def test_chat_format_and_prompt_text(tmp_path):
    records = load_records(write_lines(tmp_path / "d.jsonl", ["", GOOD_CHAT]))
    assert records[0]["id"] == "L000002"
    assert records[0]["messages"] == [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "Where is my parcel?"}]
    assert records[0]["completion"] == "shipping_delay"
    assert prompt_text(records[0]) == "Be brief.\nWhere is my parcel?"


def test_references_are_kept_beside_the_completion_through_dedup_and_split(tmp_path):
    from tuneproof.deduplicate import DedupParams, dedup_records
    from tuneproof.splitting import SplitParams, split_records

    refs = ["6 geese a-laying", "six geese a-laying"]
    lines = [json.dumps({"prompt": f"question number {i} about item {i * 7}", "completion": refs[0], "references": refs})
             for i in range(20)]
    lines.append(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                             "references": ["a", "A."]}))
    records = load_records(write_lines(tmp_path / "pc.jsonl", lines[:20]))
    assert records[0]["references"] == refs and accepted_answers(records[0]) == refs
    assert load_records(write_lines(tmp_path / "chat.jsonl", lines[20:]))[0]["references"] == ["a", "A."]
    kept = dedup_records(records, DedupParams(truth=None)).records
    splits = split_records(kept, SplitParams(), None).splits
    assert sorted((r for part in splits.values() for r in part), key=lambda r: r["id"]) == kept
    assert all(r["references"] == refs for r in kept) and len(kept) == 20
    assert accepted_answers({"completion": "x", "references": ["y", "x"]}) == ["x", "y"]
    assert "references" not in load_records(write_lines(tmp_path / "plain.jsonl", [GOOD_PC]))[0]


def test_readme_joins_accepted_answers_from_a_meta_file(tmp_path):
    """The README's one-line join of a line-aligned meta file (efficientqa's shape) into references."""
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    command = next(line.strip() for line in readme.splitlines() if line.strip().startswith("python -c") and "references" in line)
    command = command.replace("python -c", f"{sys.executable} -c", 1)
    write_lines(tmp_path / "data.jsonl", [json.dumps({"prompt": "q1", "completion": "Tim Curry"}),
                                          json.dumps({"prompt": "q2", "completion": "6 geese"})])
    meta = [json.dumps({"file": "x", "line": 1, "answers": ["Tim Curry"]}),
            json.dumps({"file": "x", "line": 2, "answers": ["6 geese", "six geese"]})]
    write_lines(tmp_path / "meta.jsonl", meta)
    (tmp_path / "data" / "raw").mkdir(parents=True)
    subprocess.run(command, shell=True, cwd=tmp_path, check=True)
    records = load_records(tmp_path / "data" / "raw" / "mine.jsonl")
    assert [r["references"] for r in records] == [["Tim Curry"], ["6 geese", "six geese"]]
    write_lines(tmp_path / "meta.jsonl", meta[:1])  # misaligned files: the command fails, never pairs wrongly
    assert subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True).returncode != 0


def test_utf8_bom_on_first_line_is_accepted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_PC.encode() + b"\n")
    assert load_records(path)[0]["completion"] == "shipping_delay"


def test_label_of():
    record = {"completion": json.dumps({"intent": "billing_refund", "priority": "low"})}
    assert label_of(record, "intent") == "billing_refund"
    assert label_of(record, None) is None
    assert label_of({"completion": " spam "}, "completion") == "spam"
    assert label_of({"completion": "not json"}, "intent") is None


@pytest.mark.parametrize("name,lines,line_no,message", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_names_file_and_line(tmp_path, name, lines, line_no, message):
    path = write_lines(tmp_path / f"{name}.jsonl", lines)
    with pytest.raises(TuneproofError) as info:
        load_records(path)
    text = str(info.value)
    assert text.startswith(f"{path}:{line_no}: "), text
    assert re.search(message, text), text


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"], ids=["empty", "blank_lines"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    with pytest.raises(TuneproofError, match=r"no records \(the file is empty\)"):
        load_records(path)


def test_missing_file_names_the_params_key(tmp_path):
    with pytest.raises(TuneproofError, match=r"not found; set paths.raw"):
        load_records(tmp_path / "nope.jsonl")
