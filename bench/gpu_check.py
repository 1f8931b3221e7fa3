"""Device check for a lent GPU: the train stage's LoRA recipe, batched generation and QLoRA on a
config-only ~1.1B llama (no download), with tokens/s, peak memory and MFU printed last.

    bench/gpu_check.sh                 # CUDA: ~1.1B llama (TinyLlama-1.1B shape), bf16; ~2 min on one H100
    bench/gpu_check.sh --tiny          # CPU smoke run of the same code on a 2-layer toy (tests/test_gpu_check.py)
    bench/gpu_check.sh --steps 30 --batch-size 16 --seq-len 2048 --out gpu_check.json

What runs is the pipeline's own code, not a stand-in: tuneproof.trainer.build_trainer (TRL SFTTrainer,
completion-only loss, length-grouped batches, bf16 on CUDA, SDPA attention, Liger kernels when
installed) and tuneproof.generation.generate (left-padded batched greedy decoding).

MFU = achieved model FLOP/s / the card's dense bf16 peak. Model FLOPs per trained token:
  LoRA/QLoRA: 4 x (frozen matmul weights: forward + input gradients; no weight gradients)
              + 6 x (adapter weights) + 3 x causal attention (2 x layers x seq x hidden forward);
  full:       6 x (matmul weights) + 3 x causal attention.
Activation recomputation is not counted (the check runs without it). The first optimizer step
(allocations, kernel selection) is not timed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), matched against torch's device name.
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.1,
                    "L4": 121.0, "A10G": 70.0, "RTX 4090": 165.2}
# TinyLlama-1.1B's shape: a realistic small model, built from its config with random weights.
SHAPE_1B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                num_key_value_heads=4, vocab_size=32000, max_position_embeddings=4096)
SHAPE_TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=1024)
WORDS = ("ticket order refund parcel account password card payment address delivery invoice "
         "urgent today please thanks broken late cancel subscription help question").split()


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((peak for name, peak in PEAK_BF16_TFLOPS.items() if name in device_name), None)


def build_model_dir(out: Path, shape: dict, device, dtype) -> Path:
    """A randomly initialised llama of `shape` (built on `device`: seconds, not minutes, for 1B),
    saved as safetensors with the tiny test tokenizer: token ids, not words, drive the cost."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny_model import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    vocab = max(shape.get("vocab_size", 0), len(tokenizer))
    config = LlamaConfig(**{**shape, "vocab_size": vocab}, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    print(f"gpu_check: llama with {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters "
          f"({config.num_hidden_layers} layers, hidden {config.hidden_size})", flush=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def synthetic_records(tokenizer, n: int, seq_len: int, seed: int = 0) -> list[dict]:
    """`n` prompt/completion records of about `seq_len` tokens each (prompt filled to fit)."""
    from tuneproof.prompting import completion_target, format_prompt

    rng = random.Random(seed)
    empty = {"messages": [{"role": "user", "content": ""}], "completion": ""}
    markup = len(tokenizer(format_prompt(tokenizer, empty, None) + completion_target(tokenizer, empty))["input_ids"])
    records = []
    for i in range(n):
        completion = json.dumps({"intent": rng.choice(WORDS), "reply": " ".join(rng.choices(WORDS, k=4))})
        budget = max(8, seq_len - len(tokenizer(completion)["input_ids"]) - markup)
        words: list[str] = []
        while len(tokenizer(" ".join(words))["input_ids"]) < budget:
            words.extend(rng.choices(WORDS, k=max(1, (budget - len(words)) // 4)))
        prompt = " ".join(words)
        while len(tokenizer(prompt)["input_ids"]) > budget and " " in prompt:
            prompt = prompt.rsplit(" ", 1)[0]
        records.append({"id": f"S{i:05d}", "messages": [{"role": "user", "content": prompt}], "completion": completion})
    return records


def flops_per_token(model, seq_len: float, method: str) -> float:
    """Model FLOPs per trained token (see the module docstring)."""
    import torch

    matmul = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lora_" not in name:
            matmul += module.weight.numel()
        elif type(module).__name__ == "Linear4bit" and "lora_" not in name:
            matmul += module.in_features * module.out_features
    trainable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n)
    config = model.config
    attention = 3 * 2 * config.num_hidden_layers * seq_len * config.hidden_size
    return (6 * matmul if method == "full" else 4 * matmul + 6 * trainable) + attention


def peak_memory_gib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process high-water mark (KiB)


def reset_peak_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def step_profiler(active_steps: int, out: Path | None):
    """A TrainerCallback profiling `active_steps` optimizer steps (after 2 untimed ones) with
    torch.profiler and printing the ops that took the most device time: where an MFU gap comes from."""
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule
    from transformers import TrainerCallback

    class StepProfiler(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
            self.prof = profile(activities=activities, schedule=schedule(wait=1, warmup=1, active=active_steps))
            self.prof.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            self.prof.step()

        def on_train_end(self, args, state, control, **kwargs):
            self.prof.__exit__(None, None, None)
            key = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
            table = self.prof.key_averages().table(sort_by=key, row_limit=25)
            print(f"\n=== profile of {active_steps} steps, by {key} ===\n{table}", flush=True)
            if out:
                out.write_text(table)

    return StepProfiler()


def train_check(method: str, model_dir: Path, records, val, args, device, work: Path, peak: float | None) -> dict:
    """`args.steps` optimizer steps of the train stage's recipe; tokens/s from the second step on."""
    from bench.train import step_timer
    from tuneproof.curves import LossCurves
    from tuneproof.train_config import LoraParams, TrainParams
    from tuneproof.trainer import build_trainer

    steps = args.steps if method == "lora" else max(2, args.steps // 2)
    params = TrainParams(
        method=method, preset="data", learning_rate=1e-5 if method == "full" else 2e-4, num_epochs=1.0,
        max_examples=None, balance="none", group_by_length=True, max_steps=steps, batch_size=args.batch_size, eval_batch_size=args.batch_size,
        eval_steps=steps, logging_steps=1, max_length=args.seq_len + 64, val_records=None,
        share_prefix=False,  # every token is computed, so the FLOP count is exact
        early_stopping_patience=None, use_liger=args.liger, checkpoints=str(work / f"{method}-checkpoints"),
        lora=LoraParams(r=16, alpha=32, target_modules="all-linear"))
    reset_peak_memory(device)
    timer = step_timer()
    callbacks = [timer]
    if args.profile and method == "lora":
        callbacks.append(step_profiler(args.profile, Path(args.out).with_suffix(".profile.txt") if args.out else None))
    trainer = build_trainer(params, None, model_dir, records, val, params.checkpoints, work / "curves", callbacks)
    for callback in list(trainer.callback_handler.callbacks):
        if isinstance(callback, LossCurves):  # dvclive files are of no use here
            trainer.remove_callback(callback)
    trainer.args.disable_tqdm = True
    trainer.train()
    tokens_per_s = timer.tokens_per_second()
    mean_len = sum(len(row["input_ids"]) for row in trainer.train_dataset) / len(trainer.train_dataset)
    model_flops = flops_per_token(trainer.model, mean_len, method) * tokens_per_s
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    result = {"check": f"train {method}", "steps": steps, "batch": args.batch_size, "seq_len": round(mean_len),
              "tokens_per_s": tokens_per_s, "tflops": model_flops / 1e12,
              "mfu": model_flops / (peak * 1e12) if peak else None, "peak_mem_gib": peak_memory_gib(device),
              "first_loss": losses[0], "last_loss": losses[-1], "liger": args.liger}
    del trainer
    return result


def generation_check(model_dir: Path, records, args, device) -> dict:
    """Batched greedy generation through the pipeline's path, and a one-at-a-time run on a few of
    the same prompts for the speedup."""
    import torch

    from tuneproof.generation import generate
    from tuneproof.modeling import load_model, load_tokenizer
    from tuneproof.prompting import format_prompt

    tokenizer, model = load_tokenizer(model_dir), load_model(model_dir, device=device)
    prompts = [format_prompt(tokenizer, record, None) for record in records[:args.gen_prompts]]
    generate(model, tokenizer, prompts[:2], 4, 2)  # warm-up
    reset_peak_memory(device)

    def timed(batch: list[str], batch_size: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        generate(model, tokenizer, batch, args.gen_tokens, batch_size, desc=f"generate x{batch_size}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    batched = timed(prompts, args.gen_prompts)
    single_prompts = prompts[:max(1, args.gen_prompts // 16)]
    single = timed(single_prompts, 1)
    # A random model almost never emits end-of-turn, so every row decodes gen_tokens tokens.
    tokens_batched, tokens_single = len(prompts) * args.gen_tokens, len(single_prompts) * args.gen_tokens
    result = {"check": "generate", "prompts": len(prompts), "new_tokens": args.gen_tokens,
              "tokens_per_s": tokens_batched / batched, "one_at_a_time_tokens_per_s": tokens_single / single,
              "speedup": (tokens_batched / batched) / (tokens_single / single), "peak_mem_gib": peak_memory_gib(device)}
    del model
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    import torch
    import transformers

    from tuneproof.modeling import liger_installed, load_tokenizer, select_device, select_dtype

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="2-layer toy on whatever device is here (CPU smoke test)")
    parser.add_argument("--steps", type=int, help="LoRA optimizer steps (QLoRA runs half); default 30, tiny 3")
    parser.add_argument("--batch-size", type=int, help="sequences per step; default 16, tiny 2")
    parser.add_argument("--seq-len", type=int, help="tokens per training sequence; default 1024, tiny 128")
    parser.add_argument("--gen-prompts", type=int, help="prompts generated in one batch; default 64, tiny 4")
    parser.add_argument("--gen-tokens", type=int, help="new tokens per prompt; default 128, tiny 4")
    parser.add_argument("--no-qlora", action="store_true", help="skip the QLoRA check")
    parser.add_argument("--no-liger", action="store_true", help="train without Liger kernels even where installed")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="profile this many LoRA steps and print the ops by device time (the timing then includes the profiler)")
    parser.add_argument("--no-cudnn-attention", action="store_true",
                        help="disable PyTorch's cuDNN SDPA backend (flash/memory-efficient kernels instead)")
    parser.add_argument("--no-generate", action="store_true", help="skip the generation check")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak for MFU (default: known cards)")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    defaults = dict(steps=3, batch_size=2, seq_len=128, gen_prompts=4, gen_tokens=4) if args.tiny else \
        dict(steps=30, batch_size=16, seq_len=1024, gen_prompts=64, gen_tokens=128)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    device = select_device()
    if args.no_cudnn_attention:
        torch.backends.cuda.enable_cudnn_sdp(False)
    if device.type != "cuda" and not args.tiny:
        sys.exit("gpu_check: no CUDA device here; run with --tiny for the CPU smoke run")
    args.liger = device.type == "cuda" and not args.no_liger and liger_installed()
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = peak_tflops(name, args.peak_tflops)
    print(f"gpu_check: {name}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"dtype {select_dtype(device)}, liger {'on' if args.liger else 'off'}", flush=True)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        model_dir = build_model_dir(work / "model", SHAPE_TINY if args.tiny else SHAPE_1B, device, select_dtype(device))
        tokenizer = load_tokenizer(model_dir)
        n_train = args.steps * args.batch_size
        records = synthetic_records(tokenizer, n_train + args.batch_size, args.seq_len)
        train, val = records[:n_train], records[n_train:]
        print(f"gpu_check: model and {len(records)} records ready in {time.perf_counter() - start:.0f} s", flush=True)
        results.append(train_check("lora", model_dir, train, val, args, device, work, peak))
        if not args.no_generate:
            results.append(generation_check(model_dir, records, args, device))
        if not args.no_qlora:
            from tuneproof.io import TuneproofError
            from tuneproof.modeling import check_method

            try:
                check_method("qlora", device)
                results.append(train_check("qlora", model_dir, train, val, args, device, work, peak))
            except TuneproofError as exc:
                results.append({"check": "train qlora", "skipped": str(exc)})

    print(f"\n=== gpu_check figures: {name}, dense bf16 peak {peak or 'unknown'} TFLOP/s ===")
    print(f"{'check':12s} {'tokens/s':>10s} {'TFLOP/s':>8s} {'MFU':>6s} {'peak GiB':>9s}  notes")
    for r in results:
        if "skipped" in r:
            print(f"{r['check']:12s} skipped: {r['skipped']}")
            continue
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "n/a"
        tflops = f"{r['tflops']:.1f}" if "tflops" in r else "-"
        notes = (f"{r['steps']} steps x {r['batch']} seqs of ~{r['seq_len']} tokens, loss {r['first_loss']:.3f} -> "
                 f"{r['last_loss']:.3f}, liger {'on' if r['liger'] else 'off'}" if "steps" in r else
                 f"{r['prompts']} prompts x {r['new_tokens']} new tokens; one at a time "
                 f"{r['one_at_a_time_tokens_per_s']:.0f} tokens/s: batched x{r['speedup']:.1f}")
        print(f"{r['check']:12s} {r['tokens_per_s']:10.0f} {tflops:>8s} {mfu:>6s} {r['peak_mem_gib']:9.2f}  {notes}")
    if args.out:
        Path(args.out).write_text(json.dumps({"device": name, "peak_tflops": peak, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
