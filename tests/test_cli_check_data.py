"""`tuneproof check-data`: validation errors, summary stats and over-long records (tiny model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuneproof import data_check
from tuneproof.cli import main
from tuneproof.modeling import load_tokenizer
from tuneproof.records import load_records
from tuneproof.train_config import TrainParams
from tuneproof.train_data import tokenize_record

TICKETS = [
    ("my card was declined, order 12345", "payment_failed", "high"),
    ("where is my parcel? order 555", "shipping_delay", "medium"),
    ("I want a refund for order 777", "billing_refund", "low"),
    ("card declined again today", "payment_failed", "high"),
    ("how do I reset my password", "account_access", "medium"),
]


def _completion(intent: str, priority: str) -> str:
    return json.dumps({"intent": intent, "priority": priority, "reply": "Hi Anna, we are on it. - Acme Support"})


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _params(path: Path, model_dir: Path, label_field: str | None = "intent", system: str | None = None,
            train_max_length: int | None = None) -> Path:
    lines = [f"paths:\n  base_model: {model_dir}\n", f"task:\n  label_field: {json.dumps(label_field)}\n",
             f"prompt:\n  system: {json.dumps(system)}\n"]
    if train_max_length is not None:
        lines.append(f"train:\n  max_length: {train_max_length}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def tickets(tmp_path) -> Path:
    return _write_jsonl(tmp_path / "tickets.jsonl",
                        [{"prompt": p, "completion": _completion(i, pr)} for p, i, pr in TICKETS])


def test_good_file_prints_counts_labels_and_token_stats(tmp_path, tickets, tiny_model_dir, capsys):
    params = _params(tmp_path / "params.yaml", tiny_model_dir, system="Answer in JSON.")
    assert main(["check-data", str(tickets), "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert f"{tickets}: 5 records, format prompt_completion" in out
    assert "labels (task.label_field = intent): 4 classes" in out
    assert "payment_failed       2   40.0%" in out
    assert "shipping_delay       1   20.0%" in out
    assert "context limit: 1024 tokens (config max_position_embeddings 1024)" in out  # tokenizer's 1e30 ignored
    assert "over-long: none" in out

    # The stats are those of the train stage's own tokenization of each record.
    tokenizer = load_tokenizer(tiny_model_dir)
    totals = [tokenize_record(tokenizer, r, "Answer in JSON.", 10**6)["length"] for r in load_records(tickets)]
    row = next(line for line in out.splitlines() if line.strip().startswith("total"))
    assert row.split()[1:] == [f"{v:g}" for v in (min(totals), sorted(totals)[2], _p95(totals), max(totals))]


def _p95(values: list[int]) -> float:
    """numpy's default (linear) 95th percentile, by hand: rank 0.95 * (n - 1)."""
    s, rank = sorted(values), 0.95 * (len(values) - 1)
    lo = int(rank)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (rank - lo)


def test_system_prompt_is_counted_in_prompt_tokens(tiny_model_dir, tickets):
    tokenizer = load_tokenizer(tiny_model_dir)
    records = load_records(tickets)
    default = data_check.token_lengths(tokenizer, records, None)
    system = "Reply with one JSON object, never prose. " * 3
    custom = data_check.token_lengths(tokenizer, records, system)
    assert all(c.prompt > d.prompt for c, d in zip(custom, default))
    assert [c.completion for c in custom] == [d.completion for d in default]
    assert all(x.total == x.prompt + x.completion for x in custom)
    for record, x in zip(records, custom):  # the split the train stage's completion_mask makes
        mask = tokenize_record(tokenizer, record, system, 10**6)["completion_mask"]
        assert (x.prompt, x.completion) == (mask.count(0), mask.count(1))
    assert [x.id for x in custom] == ["L000001", "L000002", "L000003", "L000004", "L000005"]


def test_chat_format_and_no_label_field(tmp_path, tiny_model_dir, capsys):
    chat = _write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "user", "content": "bye"}, {"role": "assistant", "content": "goodbye"}]},
    ])
    params = _params(tmp_path / "params.yaml", tiny_model_dir, label_field=None)
    assert main(["check-data", str(chat), "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert "2 records, format chat" in out
    assert "labels" not in out


def test_label_field_matching_nothing_warns(tmp_path, tickets, tiny_model_dir, capsys):
    params = _params(tmp_path / "params.yaml", tiny_model_dir, label_field="category")
    assert main(["check-data", str(tickets), "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert "(no label)       5  100.0%" in out
    assert "warning: no record has a 'category' label" in out


@pytest.mark.parametrize("lines, message", [
    (['{"prompt": "a", "completion": "b"}', '{"prompt": "c", "completion": "d"}', '{"prompt": "e",'],
     ":3: invalid JSON"),
    (['{"prompt": "a", "completion": "b"}', '{"prompt": "c"}'], ":2: missing field 'completion'"),
    (['{"prompt": "a", "completion": "b"}', '{"messages": [{"role": "user", "content": "x"}, '
      '{"role": "assistant", "content": "y"}]}'], ":2: uses the chat format but line 1 uses prompt_completion"),
    (['{"prompt": "a", "completion": "  "}'], ":1: 'completion' is empty"),
])
def test_bad_file_exits_2_with_line_number(tmp_path, tiny_model_dir, capsys, lines, message):
    bad = _write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(SystemExit) as exc:
        main(["check-data", str(bad), "--model", str(tiny_model_dir)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}{message}")


def test_console_script_reports_bad_line(tmp_path):
    bad = _write_jsonl(tmp_path / "bad.jsonl", ['{"prompt": "a", "completion": "b"}', "not json"])
    proc = subprocess.run([str(Path(sys.executable).with_name("tuneproof")), "check-data", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}:2: invalid JSON (Expecting value at column 1)"


def test_over_long_record_is_reported_and_fails(tmp_path, tiny_model_dir, capsys):
    rows = [{"prompt": p, "completion": _completion(i, pr)} for p, i, pr in TICKETS]
    rows.insert(1, {"prompt": "please help " * 400, "completion": _completion("product_question", "low")})
    data = _write_jsonl(tmp_path / "long.jsonl", rows)
    params = _params(tmp_path / "params.yaml", tiny_model_dir)

    assert main(["check-data", str(data), "--params", str(params)]) == 1
    captured = capsys.readouterr()
    assert "over-long: 1 records exceed 1024 tokens" in captured.out
    assert "line 2 (L000002): " in captured.out
    assert f"error: {data}: 1 records exceed 1024 tokens" in captured.err

    assert main(["check-data", str(data), "--params", str(params), "--allow-long"]) == 0
    assert "line 2 (L000002): " in capsys.readouterr().out


def test_train_max_length_tightens_the_limit(tmp_path, tickets, tiny_model_dir, capsys):
    tokenizer = load_tokenizer(tiny_model_dir)
    totals = [x.total for x in data_check.token_lengths(tokenizer, load_records(tickets), None)]
    limit = sorted(totals)[2]  # the two longest records exceed it
    params = _params(tmp_path / "params.yaml", tiny_model_dir, train_max_length=limit)
    assert main(["check-data", str(tickets), "--params", str(params)]) == 1
    out = capsys.readouterr().out
    assert f"context limit: {limit} tokens (config max_position_embeddings 1024, train.max_length {limit})" in out
    reported = [line for line in out.splitlines() if line.startswith("  line ")]
    expected = [i + 1 for i, t in enumerate(totals) if t > limit]
    assert [int(line.split()[1]) for line in reported] == expected


def test_train_section_without_max_length_uses_the_train_default(tmp_path, tickets, tiny_model_dir, capsys):
    params = _params(tmp_path / "params.yaml", tiny_model_dir)
    params.write_text(params.read_text() + "train:\n  seed: 1\n")
    assert main(["check-data", str(tickets), "--params", str(params)]) == 0
    assert f"train.max_length {TrainParams().max_length})" in capsys.readouterr().out


def test_bare_file_with_a_bom_and_no_params_file(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: defaults (no label, template's system prompt)
    data = tmp_path / "bom.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": "hi", "completion": "yo"}).encode() + b"\n")
    assert main(["check-data", str(data), "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "1 records, format prompt_completion" in out
    assert "with its default system prompt" in out


def test_model_flag_overrides_params_and_missing_model_is_an_error(tmp_path, tickets, tiny_model_dir, capsys):
    params = _params(tmp_path / "params.yaml", tmp_path / "no_model_here")
    with pytest.raises(SystemExit) as exc:
        main(["check-data", str(tickets), "--params", str(params)])
    assert exc.value.code == 2
    assert "no_model_here: not a model directory" in capsys.readouterr().err
    assert main(["check-data", str(tickets), "--params", str(params), "--model", str(tiny_model_dir)]) == 0


def test_context_limit_takes_the_tightest_known_bound():
    assert data_check.context_limit(8192, int(1e30), None).tokens == 8192
    limit = data_check.context_limit(8192, 4096, 512)
    assert limit.tokens == 512
    assert limit.bounds == (("config max_position_embeddings", 8192), ("tokenizer model_max_length", 4096),
                            ("train.max_length", 512))
    assert data_check.context_limit(None, int(1e30), None).tokens is None


def test_length_stats_and_label_counts():
    assert data_check.length_stats([1, 2, 3, 4, 100]) == pytest.approx({"min": 1, "median": 3, "p95": 80.8, "max": 100})
    records = [{"completion": _completion(i, "low")} for i in ("b", "a", "b")] + [{"completion": "not json"}]
    assert data_check.label_counts(records, "intent") == [("b", 2), ("(no label)", 1), ("a", 1)]
