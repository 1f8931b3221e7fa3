"""Stage `probe`: general-ability (catastrophic forgetting) probe of the fine-tune vs its base.

    python -m stages.probe      # reads params.yaml: probe, generate, paths

Two measurements on sets written for the project (eval/README.md), never the task's data:
  * text: mean per-token loss of base and fine-tune on general passages, and the mean
    KL(base || fine-tune) of their next-token distributions (how far the tuned model moved);
  * instructions: rule-verifiable general instructions answered by both models through the
    same generation path as the task, scored by rules.
The thresholds that turn these into PASS/FAIL live in `compare.forgetting`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from tuneproof.cli_util import run_main
from tuneproof.config import Paths, ProbeParams
from tuneproof.generation import GenerateParams, generate
from tuneproof.io import TuneproofError, read_jsonl, write_json
from tuneproof.modeling import load_model, load_tokenizer
from tuneproof.params import load_section
from tuneproof.predict import build_prompts, write_predictions
from tuneproof.progress import progress
from tuneproof.scoring import extract_json_object


def read_passages(path: str | Path) -> list[str]:
    passages = [p.strip() for p in Path(path).read_text(encoding="utf-8").split("\n\n")]
    passages = [p for p in passages if p]
    if not passages:
        raise TuneproofError(f"{path}: no passages; separate general-text passages with blank lines")
    return passages


@contextlib.contextmanager
def base_view(base, tuned):
    """The base model: `base` itself, or (base None) `tuned` with its adapter switched off inside
    the block, which avoids holding two copies of a large base model."""
    if base is not None:
        yield base
    else:
        with tuned.disable_adapter():
            yield tuned


@torch.inference_mode()
def text_loss_and_kl(base, tuned, tokenizer, passages: list[str], max_length: int) -> dict:
    """Mean per-token loss of both models and mean KL(base || tuned) over all predicted tokens.

    `base` None: the base is `tuned` with its adapter disabled (see base_view)."""
    totals = {"base_loss": 0.0, "finetune_loss": 0.0, "kl": 0.0}
    n_tokens = 0
    device = next(tuned.parameters()).device
    for passage in progress(passages, desc="probe text", unit="passage"):
        ids = tokenizer(passage, add_special_tokens=False, truncation=True, max_length=max_length,
                        return_tensors="pt")["input_ids"].to(device)
        if ids.shape[1] < 2:
            continue
        tuned_logits = tuned(input_ids=ids).logits[0, :-1].float()
        with base_view(base, tuned) as model:
            base_logits = model(input_ids=ids).logits[0, :-1].float()
        targets = ids[0, 1:]
        base_logp, tuned_logp = base_logits.log_softmax(-1), tuned_logits.log_softmax(-1)
        totals["base_loss"] += F.nll_loss(base_logp, targets, reduction="sum").item()
        totals["finetune_loss"] += F.nll_loss(tuned_logp, targets, reduction="sum").item()
        totals["kl"] += F.kl_div(tuned_logp, base_logp, log_target=True, reduction="sum").item()
        n_tokens += len(targets)
    if n_tokens == 0:
        raise TuneproofError("probe text: no passage has two tokens or more")
    return {key: value / n_tokens for key, value in totals.items()} | {"tokens": n_tokens}


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


def check_instruction(answer: str, check: dict) -> bool:
    """Score one answer by its rule (types documented in eval/README.md)."""
    kind, value = check["type"], check.get("value")
    stripped = answer.strip()
    if kind == "number":
        found = re.search(r"-?\d+(?:\.\d+)?", stripped)
        return found is not None and float(found.group()) == float(value)
    if kind == "contains":
        return value in stripped if check.get("case_sensitive") else value.casefold() in stripped.casefold()
    if kind == "word_count":
        return len(_words(stripped)) == value
    if kind == "json_keys":
        obj = extract_json_object(stripped)
        return isinstance(obj, dict) and all(key in obj for key in value)
    if kind == "starts_with":
        return re.sub(r"[^a-z0-9 ]", "", stripped.casefold()).strip().startswith(value.casefold())
    raise TuneproofError(f"unknown instruction check type {kind!r}; see eval/README.md")


def load_instructions(path: str | Path) -> list[dict]:
    rows = read_jsonl(path)
    for line_no, row in enumerate(rows, start=1):
        if not {"id", "prompt", "check"} <= set(row):
            raise TuneproofError(f"{path}:{line_no}: needs 'id', 'prompt' and 'check'")
    return rows


def answer_instructions(model, tokenizer, instructions: list[dict], system: str | None,
                        gen: GenerateParams, desc: str) -> list[dict]:
    """Per-instruction rows {id, prediction, passed} through the shared formatter and generator."""
    records = [{"messages": [{"role": "user", "content": row["prompt"]}]} for row in instructions]
    prompts = build_prompts(tokenizer, records, system)
    answers = generate(model, tokenizer, prompts, gen.max_new_tokens, gen.batch_size, gen.prefix_cache, desc=desc)
    return [{"id": row["id"], "prediction": answer, "passed": int(check_instruction(answer, row["check"]))}
            for row, answer in zip(instructions, answers)]


def main(params_file: str = "params.yaml") -> None:
    params = load_section(ProbeParams, "probe", params_file)
    params_gen = load_section(GenerateParams, "generate", params_file)
    if params.max_new_tokens < 1:
        raise TuneproofError(f"{params_file}: probe.max_new_tokens is {params.max_new_tokens}; use 1 or more")
    # A label task decodes ~8 tokens; general answers ("17 + 25 = 42") need their own budget.
    gen = dataclasses.replace(params_gen, max_new_tokens=params.max_new_tokens)
    paths = load_section(Paths, "paths", params_file)
    torch.manual_seed(0)
    tokenizer = load_tokenizer(paths.base_model)
    tuned = load_model(paths.base_model, paths.adapter)
    # A peft adapter can be switched off to get the base model; a full fine-tune needs its base loaded.
    base = None if hasattr(tuned, "disable_adapter") else load_model(paths.base_model)
    text = text_loss_and_kl(base, tuned, tokenizer, read_passages(params.text), params.max_length)
    instructions = load_instructions(params.instructions)
    rows = {}
    with base_view(base, tuned) as model:
        rows["base"] = answer_instructions(model, tokenizer, instructions, params.system, gen, desc="probe base")
    rows["finetune"] = answer_instructions(tuned, tokenizer, instructions, params.system, gen, desc="probe finetune")
    write_predictions({f"instructions_{name}": name_rows for name, name_rows in rows.items()}, paths.output("probe"))
    pass_rate = {name: sum(r["passed"] for r in name_rows) / len(name_rows) for name, name_rows in rows.items()}
    metrics = {
        "base": {"text_loss": text["base_loss"], "instruction_pass": pass_rate["base"]},
        "finetune": {"text_loss": text["finetune_loss"], "instruction_pass": pass_rate["finetune"]},
        "kl_base_finetune": text["kl"],
        "text_tokens": text["tokens"],
        "instructions": len(instructions),
    }
    write_json(paths.metrics_file("probe"), metrics)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    run_main(main)
