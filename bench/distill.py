"""Benchmark: what a distill teacher costs, per record, through tuneproof.distill (a fresh cache).

    .venv/bin/python bench/distill.py --prompts FILE --local MODEL_DIR          # a local HF model folder
    .venv/bin/python bench/distill.py --prompts FILE --endpoint URL --model NAME  # an OpenAI-compatible server

Asks the teacher for the first --n prompts of FILE (JSONL, completions optional) with --system as
the system prompt, then asks again (every answer must now come from the cache: zero teacher
calls), and prints the metrics distill writes: wall seconds, seconds per record as measured when
each answer was paid for, completion tokens per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuneproof.distill import AnswerCache, EndpointTeacher, LocalTeacher, distill_records  # noqa: E402
from tuneproof.generation import GenerateParams  # noqa: E402
from tuneproof.records import iter_records, parse_prompt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", required=True)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--system", default="Classify the SMS as spam or ham. Answer with one word.")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--local")
    parser.add_argument("--endpoint")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    records = list(iter_records(args.prompts, parse_prompt))[:args.n]
    gen = GenerateParams(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    teacher = (LocalTeacher(args.local, gen) if args.local
               else EndpointTeacher(args.endpoint, args.model, gen, concurrency=args.concurrency))
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = AnswerCache(Path(cache_dir))
        first = distill_records(records, teacher, args.system, cache)
        second = distill_records(records, teacher, args.system, cache)
    assert second.metrics["teacher_calls"] == 0, second.metrics
    print(json.dumps({"teacher": "local " + args.local if args.local else f"endpoint {args.endpoint} {args.model}",
                      **{k: first.metrics[k] for k in ("records_in", "failed", "teacher_calls", "seconds_this_run",
                                                       "teacher_seconds_per_record", "teacher_tokens_per_second",
                                                       "completion_tokens_this_run")},
                      "rerun_teacher_calls": second.metrics["teacher_calls"],
                      "rerun_seconds": second.metrics["seconds_this_run"],
                      "sample": [r["completion"] for r in first.records[:3]]}, indent=1))


if __name__ == "__main__":
    main()
