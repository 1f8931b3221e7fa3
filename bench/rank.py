"""Benchmark: rank classification over the labels' token trie vs a prompt-cache copy per label (issue 17).

    .venv/bin/python bench/rank.py                      # models/base if materialised, else a tiny config model
    .venv/bin/python bench/rank.py --base /work/runs/sms/models/base --records 8 --labels 150

Builds an intent task whose system prompt lists every intent (150 intents: ~600 tokens per
prompt) and scores the same records two ways in one run, on the same model:
  1. the old path (tests/test_generation.py's reference copy): each prompt's key/value cache
     copied for every label, all labels right-padded to the longest;
  2. label_log_likelihoods: one prefill per prompt, then the labels' token trie on that one
     cache (shared leading tokens run once, no copy of the prompt per label).
Prints wall and CPU seconds per record, peak RSS growth, the speed ratios, the largest score
difference and whether the picks are identical. Other processes sharing the cores inflate the wall
time of the compute-bound new path far more than its CPU time (this process's user + system time,
which also counts the old path's page faults), so the load average is printed with each path. Peak RSS is the kernel's own high-water mark (VmHWM in
/proc/self/status), reset through /proc/self/clear_refs before each path (Linux, glibc).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_generation import reference_label_log_likelihoods  # noqa: E402
from tuneproof.generation import GenerateParams, _label_trie, _tokenize, label_log_likelihoods  # noqa: E402
from tuneproof.modeling import load_model, load_tokenizer  # noqa: E402
from tuneproof.params import load_section  # noqa: E402
from tuneproof.prompting import completion_target, format_prompt  # noqa: E402

TOPICS = ["card", "payment", "transfer", "top up", "cash", "exchange", "account", "pin", "refund", "direct debit",
          "wallet", "statement", "passcode", "payee", "loan"]
ISSUES = ["fee", "pending", "failed", "limit", "reverted", "declined", "delayed", "wrong amount", "charged twice",
          "cancel", "help", "verify", "blocked", "lost", "not recognised"]
MESSAGES = ["My card payment was declined at the supermarket.", "hi",
            "I topped up 50 pounds yesterday and it still shows as pending, what is going on?",
            "Why was I charged twice for the same transfer?", "I forgot my passcode",
            "The exchange rate on my cash withdrawal abroad looks wrong, I got far less than I expected "
            "and the receipt does not match the amount on my statement.",
            "Can I cancel a direct debit?", "Someone stole my wallet with the card in it, please block it now"]


def intent_task(n_labels: int) -> tuple[list[str], str]:
    """`n_labels` intents drawn from topic x issue (shared leading words, as real intent sets have)
    and a system prompt listing them all."""
    labels = random.Random(0).sample([f"{t} {i}" for t in TOPICS for i in ISSUES], n_labels)
    system = ("You sort online-banking messages by intent. Answer with exactly one of these intents "
              "and nothing else:\n" + "\n".join(labels))
    return labels, system


def peak_rss_growth(run):
    """(run(), peak resident memory above the level before it, in GiB)."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back first, so the other path's leftovers hide nothing
    status = lambda key: next(int(line.split()[1]) for line in open("/proc/self/status")  # noqa: E731
                              if line.startswith(key + ":"))
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current VmRSS
    before = status("VmRSS")
    result = run()
    return result, (status("VmHWM") - before) / 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="models/base",
                        help="model directory (default: models/base); a tiny config model if it has no weights")
    parser.add_argument("--params", default="params.yaml", help="params file for generate.batch_size")
    parser.add_argument("--records", type=int, default=8, help="number of records (prompts)")
    parser.add_argument("--labels", type=int, default=150, help="number of intents (at most 225)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: generate.batch_size")
    args = parser.parse_args()

    batch_size = args.batch_size or load_section(GenerateParams, "generate", args.params).batch_size
    base = Path(args.base)
    if not (base / "model.safetensors").is_file():
        from tests.tiny_model import build_tiny_model_dir

        print(f"{base} has no weights: using a tiny config-built llama")
        base = build_tiny_model_dir(Path(tempfile.mkdtemp()) / "tiny")
    tokenizer, model = load_tokenizer(base), load_model(base)
    labels, system = intent_task(args.labels)
    prompts = [format_prompt(tokenizer, {"messages": [{"role": "user", "content": m}]}, system)
               for m in (MESSAGES * args.records)[:args.records]]
    targets = [completion_target(tokenizer, {"completion": label}) for label in labels]
    lengths = [len(t) for t in _tokenize(tokenizer, prompts)]
    target_lists = _tokenize(tokenizer, targets)
    trie = _label_trie(target_lists, len(target_lists), model.device)
    print(f"{base}: {args.records} records of {min(lengths)}-{max(lengths)} tokens, {len(labels)} labels of "
          f"{min(map(len, target_lists))}-{max(map(len, target_lists))} tokens with end-of-turn; the old path runs "
          f"{len(labels)} x {max(map(len, target_lists))} padded label tokens per prompt, the trie "
          f"{len(trie.inner_tokens)}; batch_size={batch_size}; device={model.device}")

    label_log_likelihoods(model, tokenizer, prompts[:2], targets[:4], batch_size)  # warm-up (first-call allocations)
    reference_label_log_likelihoods(model, tokenizer, prompts[:2], targets[:4], batch_size)
    results = {}
    for name, path in [("old: cache copy per label", reference_label_log_likelihoods),
                       ("new: token trie", label_log_likelihoods)]:
        load = os.getloadavg()[0]
        start, cpu_start = time.perf_counter(), time.process_time()
        scores, peak = peak_rss_growth(lambda: path(model, tokenizer, prompts, targets, batch_size))
        results[name] = (time.perf_counter() - start, time.process_time() - cpu_start, peak, scores, load)
    (old_s, old_cpu, _, old, _), (new_s, new_cpu, _, new, _) = results.values()
    for name, (seconds, cpu, peak, _, load) in results.items():
        print(f"{name:>26}: {seconds / len(prompts):6.2f} s/record ({cpu / len(prompts):5.2f} CPU s)  "
              f"peak RSS +{peak:.2f} GiB  (load average {load:.1f} at its start)")
    picks = lambda scores: [labels[max(range(len(row)), key=lambda k: (row[k], -k))] for row in scores]  # noqa: E731
    worst = max(abs(a - b) for ra, rb in zip(old, new) for a, b in zip(ra, rb))
    print(f"speedup x{old_s / new_s:.1f} (CPU time x{old_cpu / new_cpu:.1f}); largest score difference {worst:.2e}; "
          f"picks identical: {picks(old) == picks(new)}")


if __name__ == "__main__":
    main()
