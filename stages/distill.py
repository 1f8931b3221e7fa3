"""Stage `distill` (optional, off by default): a teacher writes the training set's completions.

    python -m stages.distill   # reads params.yaml: distill, generate, prompt.system, paths.{distill,metrics}

Reads `distill.prompts` (JSONL: `{"prompt"}` or `{"messages"}` lines; a completion or references,
when present, become the line's given answers, which compare scores the teacher against), asks
the teacher (tuneproof.distill: a local model folder or an OpenAI-compatible endpoint) for every
prompt with the task's system prompt, and writes `<paths.distill>/records.jsonl`
(raw-format lines the rest of the pipeline reads unchanged once `paths.raw` names it),
`<paths.distill>/failures.json` and `<paths.metrics>/distill.json` (teacher calls, cache hits,
failures, the teacher's measured cost).

Off by default: with `distill.run: []` dvc.yaml's `foreach` builds no distill stage at all, so
`dvc repro` never needs a teacher. `distill.run: [local]` or `[openai]` builds `distill@local`
(or `@openai`); point `paths.raw` at `<paths.distill>/records.jsonl` and DVC runs it before dedup.
A record whose request still fails after the retries is listed in failures.json and the metrics;
`distill.on_failure: stop` then fails the stage (no records written), `skip` writes the others.
"""

from __future__ import annotations

from tuneproof.cli_util import run_main
from tuneproof.config import Paths, Prompt
from tuneproof.distill import AnswerCache, DistillParams, EndpointTeacher, LocalTeacher, as_training_lines, distill_records
from tuneproof.generation import GenerateParams
from tuneproof.io import TuneproofError, atomic_files, remove_outputs, write_json, write_jsonl
from tuneproof.params import load_section, require
from tuneproof.records import iter_records, parse_prompt

RECORDS_FILE = "records.jsonl"
FAILURES_FILE = "failures.json"


def validate(params: DistillParams, params_file: str = "params.yaml") -> str:
    """The teacher kind, after checking what that kind needs."""
    require(len(params.run) == 1, "distill.run", params.run,
            "[local] or [openai] to distil (distill is off while it is [], and dvc.yaml builds no distill stage)",
            params_file)
    require(params.prompts is not None, "distill.prompts", params.prompts, "the JSONL file of prompts to distil",
            params_file)
    require(bool(params.model), "distill.model", params.model,
            "the teacher: a model folder (local) or the model name the endpoint serves (openai)", params_file)
    kind = params.run[0]
    if kind == "openai":
        require(bool(params.base_url) and params.base_url.startswith(("http://", "https://")), "distill.base_url",
                params.base_url, "the endpoint's URL, e.g. http://127.0.0.1:8080/v1", params_file)
        require(params.concurrency >= 1, "distill.concurrency", params.concurrency, "1 or more", params_file)
        require(params.retries >= 0, "distill.retries", params.retries, "0 or more", params_file)
        require(params.backoff_s >= 0, "distill.backoff_s", params.backoff_s, "0 or more seconds", params_file)
        require(params.timeout_s > 0, "distill.timeout_s", params.timeout_s, "a positive number of seconds", params_file)
    return kind


def build_teacher(params: DistillParams, kind: str, gen: GenerateParams):
    if kind == "local":
        return LocalTeacher(params.model, gen)
    return EndpointTeacher(params.base_url, params.model, gen, params.api_key_env, params.concurrency,
                           params.retries, params.backoff_s, params.timeout_s)


def main(params_file: str = "params.yaml", cache: AnswerCache = AnswerCache()) -> None:
    params = load_section(DistillParams, "distill", params_file)
    kind = validate(params, params_file)
    gen = load_section(GenerateParams, "generate", params_file)
    system = load_section(Prompt, "prompt", params_file).system
    paths = load_section(Paths, "paths", params_file)
    records = list(iter_records(params.prompts, parse_prompt, "distill.prompts"))
    out_dir, metrics_file = paths.output("distill"), paths.metrics_file("distill")
    remove_outputs([metrics_file])
    result = distill_records(records, build_teacher(params, kind, gen), system, cache)
    metrics = {**result.metrics, "failures": result.failures}
    if result.failures and params.on_failure == "stop":
        write_json(metrics_file, metrics)
        shown = "; ".join(f"{f['id']}: {f['error']}" for f in result.failures[:3])
        raise TuneproofError(f"distill: {len(result.failures)} record(s) got no answer ({shown}); all are listed in "
                             f"{metrics_file}. Re-run to retry them (answers so far are cached), or set "
                             "distill.on_failure: skip to train without them")
    if not result.records:
        raise TuneproofError(f"distill: no record got an answer ({result.failures[0]['error']}); nothing was written")
    with atomic_files(out_dir, [RECORDS_FILE, FAILURES_FILE]) as tmp:
        write_jsonl(tmp / RECORDS_FILE, as_training_lines(result.records))
        write_json(tmp / FAILURES_FILE, result.failures)
    write_json(metrics_file, metrics)
    print(f"distill: {metrics['records_out']}/{metrics['records_in']} records from the {kind} teacher "
          f"({metrics['teacher_calls']} teacher calls, {metrics['cache_hits']} cache hits, {metrics['failed']} failed); "
          f"wrote {out_dir / RECORDS_FILE}")
    if metrics["given_records"]:
        print(f"distill: the teacher said what the input gave on {metrics['agreement_with_given']:.1%} of the "
              f"{metrics['given_records']} records that gave an answer (normalised text); read a few lines of "
              f"{out_dir / RECORDS_FILE} before training on the teacher's answers")


if __name__ == "__main__":
    run_main(main)
