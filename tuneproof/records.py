"""Loading and validating the user's JSONL into canonical records.

Accepted input, one JSON object per line, one format per file:
  * `{"prompt": str, "completion": str}`                    (prompt becomes one user message)
  * `{"messages": [{"role": ..., "content": ...}, ...]}`    (OpenAI chat fine-tuning style;
                                                             the last message is the assistant's answer)
Either format may also carry `"references": [str, ...]`: every accepted answer (open-domain QA
accepts "6 geese a-laying" and "six geese a-laying"). The completion is the one trained on; the
scorer accepts the completion or any reference. Other keys are ignored. Blank lines are skipped.

Canonical record (what every stage after `dedup` reads):
  `{"id": "L000012", "messages": [<system/user/assistant turns before the answer>], "completion": str}`
(+ `"references"` when the line has them), where the id is the 1-based line number in the raw
file, so every report points back at the source.
`load_prompts` reads prompt-only files (compare's production sample) the same way, no answer needed.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Iterator, Sequence

from tuneproof.config import DEDUP_RECORDS, split_file
from tuneproof.io import TuneproofError, read_jsonl

ROLES = ("system", "user", "assistant")


def record_id(line_no: int) -> str:
    return f"L{line_no:06d}"


def _fail(path: Path, line_no: int, message: str) -> TuneproofError:
    return TuneproofError(f"{path}:{line_no}: {message}")


def _text(value: object, what: str, path: Path, line_no: int) -> str:
    if not isinstance(value, str):
        raise _fail(path, line_no, f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _fail(path, line_no, f"{what} is empty; remove the line or fill it in")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # json.loads accepts a lone "\ud800" escape, but no UTF-8 file can hold it.
        raise _fail(path, line_no, f"{what} contains an invalid \\u escape (a lone surrogate); "
                    "fix the text's encoding") from None
    return value


def _references(obj: dict, path: Path, line_no: int) -> dict:
    """{"references": [...]} when the line carries them (validated), else {}."""
    if "references" not in obj:
        return {}
    refs = obj["references"]
    if not isinstance(refs, list) or not refs:
        raise _fail(path, line_no, "'references' must be a non-empty list of accepted answers (strings); "
                    "drop the key when there is only the completion")
    return {"references": [_text(ref, f"references[{i}]", path, line_no) for i, ref in enumerate(refs)]}


def parse_record(obj: object, path: Path, line_no: int) -> tuple[str, dict]:
    """Validate one decoded JSON line; return (format name, canonical record)."""
    if not isinstance(obj, dict):
        raise _fail(path, line_no, f"expected a JSON object, got {type(obj).__name__}")
    fmt, record = _parse_answer(obj, path, line_no)
    return fmt, {**record, **_references(obj, path, line_no)}


def _parse_answer(obj: dict, path: Path, line_no: int) -> tuple[str, dict]:
    has_chat = "messages" in obj
    has_pc = "prompt" in obj or "completion" in obj
    if has_chat and has_pc:
        raise _fail(path, line_no, "has both 'messages' and 'prompt'/'completion'; use one format")
    if has_chat:
        messages = obj["messages"]
        if not isinstance(messages, list) or len(messages) < 2:
            raise _fail(path, line_no, "'messages' must be a list of at least a user and an assistant message")
        turns = []
        for i, msg in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(msg, dict):
                raise _fail(path, line_no, f"{where} must be an object with 'role' and 'content'")
            for key in ("role", "content"):
                if key not in msg:
                    raise _fail(path, line_no, f"{where} is missing '{key}'")
            if msg["role"] not in ROLES:
                raise _fail(path, line_no, f"{where}.role is {msg['role']!r}; expected one of {', '.join(ROLES)}")
            turns.append({"role": msg["role"], "content": _text(msg["content"], f"{where}.content", path, line_no)})
        if turns[-1]["role"] != "assistant":
            raise _fail(path, line_no, "the last message must be the assistant's answer (role 'assistant')")
        if not any(t["role"] == "user" for t in turns[:-1]):
            raise _fail(path, line_no, "'messages' has no user message before the answer")
        return "chat", {"id": record_id(line_no), "messages": turns[:-1], "completion": turns[-1]["content"]}
    if has_pc:
        for key in ("prompt", "completion"):
            if key not in obj:
                raise _fail(path, line_no, f"missing field '{key}' (expected 'prompt' and 'completion')")
        prompt = _text(obj["prompt"], "'prompt'", path, line_no)
        completion = _text(obj["completion"], "'completion'", path, line_no)
        return "prompt_completion", {
            "id": record_id(line_no),
            "messages": [{"role": "user", "content": prompt}],
            "completion": completion,
        }
    raise _fail(path, line_no, "expected 'prompt' and 'completion', or 'messages'; found keys "
                + (", ".join(sorted(obj)) or "none"))


ANSWER_PENDING = "\0pending"  # stands in for the answer of a prompt-only line while it is validated


def parse_prompt(obj: object, path: Path, line_no: int) -> tuple[str, dict]:
    """Like parse_record, but the answer is optional (a `prompt` without `completion`, or `messages`
    ending with a user turn): distill asks a teacher for it. A missing answer comes back as None."""
    if isinstance(obj, dict) and "prompt" in obj and "completion" not in obj:
        obj = {**obj, "completion": ANSWER_PENDING}
    elif (isinstance(obj, dict) and isinstance(obj.get("messages"), list) and obj["messages"]
          and isinstance(obj["messages"][-1], dict) and obj["messages"][-1].get("role") != "assistant"):
        obj = {**obj, "messages": [*obj["messages"], {"role": "assistant", "content": ANSWER_PENDING}]}
    fmt, record = parse_record(obj, path, line_no)
    return fmt, {**record, "completion": None if record["completion"] == ANSWER_PENDING else record["completion"]}


def line_values(path: str | Path, key: str) -> dict[str, object]:
    """{record id: the line's `key`} for every line of a raw file that has that key (a key the
    canonical records drop: compare reads distill's per-line teacher details back this way)."""
    return {record_id(line_no): obj[key] for line_no, obj in _json_lines(Path(path), "check paths.raw")
            if isinstance(obj, dict) and key in obj}


def _json_lines(path: Path, missing: str) -> Iterator[tuple[int, object]]:
    """(line number, decoded JSON) of each non-blank line; `missing` says what to set when the file is absent."""
    if not path.is_file():
        raise TuneproofError(f"{path}: file not found; {missing}")
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                # utf-8-sig on the first line: editors on Windows often start the file with a BOM.
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise _fail(path, line_no, f"not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise _fail(path, line_no, f"invalid JSON ({exc.msg} at column {exc.colno})") from None


def iter_records(path: str | Path, parse=parse_record, key: str = "paths.raw") -> Iterator[dict]:
    """Yield canonical records from a JSONL file, raising TuneproofError at the first bad line.
    `parse` validates one line (parse_prompt: answers optional); `key` is the params key that names the file."""
    path = Path(path)
    first_format: tuple[str, int] | None = None
    for line_no, obj in _json_lines(path, f"set {key} in params.yaml to your JSONL file"):
        fmt, record = parse(obj, path, line_no)
        if first_format is None:
            first_format = (fmt, line_no)
        elif fmt != first_format[0]:
            raise _fail(path, line_no, f"uses the {fmt} format but line {first_format[1]} uses "
                        f"{first_format[0]}; one file must use one format")
        yield record
    if first_format is None:
        raise TuneproofError(f"{path}: no records (the file is empty); add JSONL lines")


def load_prompts(path: str | Path, missing: str) -> list[dict]:
    """Prompt-only records of a JSONL file (e.g. a sample of production inputs): `{"prompt": str}`
    or `{"messages": [...]}` with a user turn; a completion or a final answer may be there and is
    ignored. Each record is `{"id": "<path>:<line>", "messages": [...]}`, so a report points at the line."""
    path = Path(path)
    records = []
    for line_no, obj in _json_lines(path, missing):
        if not isinstance(obj, dict) or ("prompt" not in obj and "messages" not in obj):
            raise _fail(path, line_no, "expected {\"prompt\": ...} or {\"messages\": [...]}, found "
                        + (f"keys {', '.join(sorted(obj)) or 'none'}" if isinstance(obj, dict) else type(obj).__name__))
        if "prompt" in obj:
            messages = [{"role": "user", "content": _text(obj["prompt"], "'prompt'", path, line_no)}]
        else:
            chat = obj["messages"]
            if isinstance(chat, list) and chat and isinstance(chat[-1], dict) and chat[-1].get("role") != "assistant":
                chat = [*chat, {"role": "assistant", "content": "-"}]  # no answer: validated as a record with one
            messages = parse_record({"messages": chat}, path, line_no)[1]["messages"]
        records.append({"id": f"{path}:{line_no}", "messages": messages})
    if not records:
        raise TuneproofError(f"{path}: no prompts (the file is empty); add JSONL lines or remove the file")
    return records


def load_records(path: str | Path) -> list[dict]:
    """All canonical records of a JSONL file (validated; see module docstring)."""
    return list(iter_records(path))


def prompt_text(record: dict) -> str:
    """The prompt side of a record as plain text (all turns before the answer)."""
    return "\n".join(m["content"] for m in record["messages"])


def accepted_answers(record: dict) -> list[str]:
    """Every answer the scorer accepts for a record: its completion, then its references (in order,
    without repeats)."""
    return list(dict.fromkeys([record["completion"], *record.get("references", ())]))


def leak_text(record: dict) -> str:
    """The input compared for leaks and drift: the prompt's non-system turns. A system prompt is
    usually the same instruction on every record; including it would make every pair look alike."""
    return "\n".join(m["content"] for m in record["messages"] if m["role"] != "system")


def label_of(record: dict, label_field: str | None) -> str | None:
    """The record's class label: None when the task has none, the whole completion when
    `label_field` is "completion", else that key of the completion parsed as a JSON object."""
    if label_field is None:
        return None
    if label_field == "completion":
        return record["completion"].strip()
    try:
        value = json.loads(record["completion"])
    except json.JSONDecodeError:
        return None
    return str(value.get(label_field)) if isinstance(value, dict) and label_field in value else None


def read_canonical(path: str | Path) -> list[dict]:
    """Canonical records from a stage-written JSONL file (dedup's records, a split file), checked:
    a damaged or hand-edited file stops with file:line, never a KeyError further on."""
    records = read_jsonl(path)
    first_line: dict[str, int] = {}
    for line_no, record in enumerate(records, 1):  # stage files have no blank lines
        problem = _canonical_problem(record)
        if problem:
            raise TuneproofError(f"{path}:{line_no}: {problem}; re-run the stage that wrote it")
        if record["id"] in first_line:
            raise TuneproofError(f"{path}:{line_no}: id {record['id']!r} repeats line {first_line[record['id']]}; "
                                 "every record needs its own id (re-run the stage that wrote it)")
        first_line[record["id"]] = line_no
    return records


def _canonical_problem(record: object) -> str | None:
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    if not isinstance(record.get("id"), str):
        return "'id' must be a string"
    if not isinstance(record.get("completion"), str):
        return "'completion' must be a string"
    messages = record.get("messages")
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages):
        return "'messages' must be a list of {role, content} objects"
    return None


def read_split(split_dir: str | Path, name: str) -> list[dict]:
    """Canonical records of one split file (`train`, `val` or `test`) written by the split stage."""
    return _read_stage_output(Path(split_dir) / split_file(name), "split",
                              "check split.test_ratio/val_ratio and the input data")


def read_deduplicated(dedup_dir: str | Path) -> list[dict]:
    """The canonical records the dedup stage kept."""
    return _read_stage_output(Path(dedup_dir) / DEDUP_RECORDS, "dedup",
                              "check paths.raw and re-run the dedup stage (dvc repro dedup)")


def _read_stage_output(path: Path, stage: str, empty_fix: str) -> list[dict]:
    """Canonical records `stage` wrote to `path`; an error when it is missing or empty."""
    if not path.is_file():
        raise TuneproofError(f"{path}: not found; run the {stage} stage first (dvc repro {stage})")
    records = read_canonical(path)
    if not records:
        raise TuneproofError(f"{path}: no records; {empty_fix}")
    return records


def sample_records(records: Sequence[dict], n: int, seed: int) -> list[dict]:
    """A seeded sample of n records (all when n >= len), in id order so outputs are stable."""
    ordered = sorted(records, key=lambda r: r["id"])
    chosen = random.Random(seed).sample(ordered, min(n, len(ordered)))
    return sorted(chosen, key=lambda r: r["id"])


def label_variants(records: Sequence[dict], label_field: str | None) -> list[list[str]]:
    """Groups of labels that differ only in case, spacing or punctuation ("Spam" / "spam"): each
    becomes a class of its own, which is rarely what the data meant."""
    from tuneproof.text import normalise

    groups: dict[str, set[str]] = {}
    for record in records:
        label = label_of(record, label_field)
        if label is not None:
            groups.setdefault(normalise(label), set()).add(label)
    return [sorted(g) for _, g in sorted(groups.items()) if len(g) > 1]


def warn_label_variants(records: Sequence[dict], label_field: str | None, where: str) -> None:
    for variants in label_variants(records, label_field):
        print(f"{where}: WARNING: labels {' / '.join(map(repr, variants))} differ only in case or punctuation and "
              "count as separate classes; make them one label in the data", file=sys.stderr)
