"""Benchmark: batched generation (the pipeline's path) vs one prompt at a time, side by side.

    .venv/bin/python bench/generate.py                  # 32 demo tickets, models/base, params.yaml
    .venv/bin/python bench/generate.py --n 16 --max-new-tokens 24

Serves the same zero-shot demo prompts (params.yaml's system prompt + a generated ticket) to
the real base model three ways, in one run on the same machine:
  1. one at a time            (batch 1, no shared-prefix cache: the naive loop),
  2. batched                  (generate.batch_size, length-sorted, no prefix cache),
  3. batched + prefix cache   (the pipeline's default: the system prompt is encoded once, and
                               each decode step attends to one copy of it for the whole batch),
asserts the three give identical greedy outputs, and prints wall times and speedups over (1).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuneproof.config import Prompt  # noqa: E402
from demo.support_tickets import make_ticket  # noqa: E402
from tuneproof.generation import GenerateParams, generate  # noqa: E402
from tuneproof.modeling import load_model, load_tokenizer  # noqa: E402
from tuneproof.params import load_section  # noqa: E402
from tuneproof.prompting import format_prompt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/base", help="model directory (default: models/base)")
    parser.add_argument("--params", default="params.yaml", help="params file for prompt.system and generate")
    parser.add_argument("--n", type=int, default=32, help="number of demo prompts")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: generate.max_new_tokens")
    parser.add_argument("--batch-size", type=int, default=None, help="default: generate.batch_size")
    args = parser.parse_args()

    gen = load_section(GenerateParams, "generate", args.params)
    system = load_section(Prompt, "prompt", args.params).system
    max_new = args.max_new_tokens or gen.max_new_tokens
    batch_size = args.batch_size or gen.batch_size
    rng = random.Random(0)
    records = [{"messages": [{"role": "user", "content": make_ticket(rng)["prompt"]}]} for _ in range(args.n)]
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model)
    prompts = [format_prompt(tokenizer, r, system) for r in records]
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    print(f"{args.n} prompts, {min(lengths)}-{max(lengths)} tokens; max_new_tokens={max_new}; "
          f"batch_size={batch_size}; device={next(model.parameters()).device}")

    generate(model, tokenizer, prompts[:2], 2, 2)  # warm-up (first-call allocations)
    runs = [("one at a time", 1, False), ("batched", batch_size, False), ("batched + prefix cache", batch_size, True)]
    results = {}
    for name, size, cache in runs:
        start = time.perf_counter()
        outputs = generate(model, tokenizer, prompts, max_new, size, prefix_cache=cache, desc=name)
        results[name] = (time.perf_counter() - start, outputs)
    reference_time, reference = results["one at a time"]
    for name, (seconds, outputs) in results.items():
        mismatches = [i for i, (a, b) in enumerate(zip(outputs, reference)) if a != b]
        assert not mismatches, f"{name}: outputs differ from one-at-a-time on prompts {mismatches}"
        print(f"{name:>24}: {seconds:7.1f} s  speedup x{reference_time / seconds:.1f}")
    print("outputs identical across all three")


if __name__ == "__main__":
    main()
