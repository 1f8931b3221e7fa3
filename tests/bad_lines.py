"""Raw JSONL lines for the input-validation tests: good lines of both formats and every kind of
bad line, with the line number and message the loader must give (tests/test_records.py, the dedup
stage's tests and the bad-input corpus)."""

from __future__ import annotations

import json
from pathlib import Path

GOOD_PC = json.dumps({"prompt": "Where is my parcel?", "completion": "shipping_delay"})
GOOD_CHAT = json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Where is my parcel?"},
                                     {"role": "assistant", "content": "shipping_delay"}]})


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((l if isinstance(l, bytes) else l.encode("utf-8")) + b"\n" for l in lines))
    return path


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
