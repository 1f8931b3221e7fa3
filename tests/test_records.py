"""tuneproof.records: both input formats load; every kind of bad line is rejected with its line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tuneproof.io import TuneproofError
from tuneproof.records import accepted_answers, label_of, load_records, prompt_text

GOOD_PC = json.dumps({"prompt": "Where is my parcel?", "completion": "shipping_delay"})
GOOD_CHAT = json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Where is my parcel?"},
                                     {"role": "assistant", "content": "shipping_delay"}]})


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((l if isinstance(l, bytes) else l.encode("utf-8")) + b"\n" for l in lines))
    return path


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


# (name, lines, line number the error must name, a regex the message must match)
BAD_INPUTS = [
    ("bad_json", [GOOD_PC, '{"prompt": "a", "completion": '], 2, r"invalid JSON"),
    ("not_an_object", [GOOD_PC, GOOD_PC, '["prompt", "completion"]'], 3, r"expected a JSON object, got list"),
    ("null_line", ["null"], 1, r"expected a JSON object, got NoneType"),
    ("missing_completion", [json.dumps({"prompt": "a"})], 1, r"missing field 'completion'"),
    ("no_known_keys", [json.dumps({"text": "a", "label": "b"})], 1, r"found keys label, text"),
    ("prompt_not_string", [json.dumps({"prompt": 5, "completion": "a"})], 1, r"'prompt' must be a string, got int"),
    ("completion_not_string", [json.dumps({"prompt": "a", "completion": ["x"]})], 1, r"'completion' must be a string, got list"),
    ("empty_prompt", [GOOD_PC, json.dumps({"prompt": "  \n", "completion": "a"})], 2, r"'prompt' is empty"),
    ("empty_completion", [json.dumps({"prompt": "a", "completion": ""})], 1, r"'completion' is empty"),
    ("references_not_list", [GOOD_PC, json.dumps({"prompt": "a", "completion": "b", "references": "b"})], 2,
     r"'references' must be a non-empty list of accepted answers"),
    ("references_empty", [json.dumps({"prompt": "a", "completion": "b", "references": []})], 1,
     r"'references' must be a non-empty list"),
    ("reference_not_string", [json.dumps({"prompt": "a", "completion": "b", "references": ["b", 1960]})], 1,
     r"references\[1\] must be a string, got int"),
    ("reference_empty", [json.dumps({"prompt": "a", "completion": "b", "references": ["b", " "]})], 1,
     r"references\[1\] is empty"),
    ("both_formats_one_line", [json.dumps({"prompt": "a", "completion": "b", "messages": []})], 1, r"use one format"),
    ("mixed_formats", [GOOD_PC, GOOD_PC, GOOD_CHAT], 3, r"chat format but line 1 uses prompt_completion"),
    ("non_utf8", [GOOD_PC, b'{"prompt": "caf\xe9", "completion": "a"}'], 2, r"not valid UTF-8"),
    ("lone_surrogate", [r'{"prompt": "bad \ud800 text", "completion": "a"}'], 1, r"lone surrogate"),
    ("messages_not_list", [json.dumps({"messages": "hello"})], 1, r"'messages' must be a list"),
    ("messages_too_short", [json.dumps({"messages": [{"role": "user", "content": "a"}]})], 1, r"at least a user and an assistant"),
    ("message_not_object", [json.dumps({"messages": ["a", "b"]})], 1, r"messages\[0\] must be an object"),
    ("message_missing_content", [json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]})], 1,
     r"messages\[0\] is missing 'content'"),
    ("bad_role", [json.dumps({"messages": [{"role": "human", "content": "a"}, {"role": "assistant", "content": "b"}]})], 1,
     r"messages\[0\]\.role is 'human'"),
    ("last_not_assistant", [json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})], 1,
     r"last message must be the assistant"),
    ("no_user_message", [json.dumps({"messages": [{"role": "system", "content": "a"}, {"role": "assistant", "content": "b"}]})], 1,
     r"no user message"),
    ("content_not_string", [json.dumps({"messages": [{"role": "user", "content": [{"type": "text"}]},
                                                     {"role": "assistant", "content": "b"}]})], 1,
     r"messages\[0\]\.content must be a string"),
]


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
