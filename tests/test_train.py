"""Stage `train` on a tiny config-built llama: masking, the three methods, reload, resume, provenance."""

import dataclasses
import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainerCallback

from stages import train as stage
from tuneproof import modeling
from tuneproof.checkpoints import FINGERPRINT
from tuneproof.config import ADAPTER_INFO
from tuneproof.curves import CURVES_DIR
from tuneproof.io import TuneproofError, read_json, sha256_file, write_jsonl
from tuneproof.modeling import check_liger, check_method, load_base_model, lora_config
from tuneproof.prompting import completion_target, format_prompt
from tuneproof.recipe import resolve_params
from tiny_model import build_tiny_model_dir, build_tiny_tokenizer
from tuneproof.train_config import LoraParams, TrainParams
from tuneproof.train_data import build_dataset, tokenize_record
from tuneproof.trainer import build_trainer, sft_config

SYSTEM = "Answer with one JSON object."
INTENTS = ["billing_refund", "shipping_delay", "account_access"]
NAMES = ["Anna", "Bob", "Chen", "Dana"]


def make_record(i: int, rng: random.Random) -> dict:
    intent, name, order = rng.choice(INTENTS), rng.choice(NAMES), rng.randint(10000, 99999)
    return {
        "id": f"L{i:06d}",
        "messages": [{"role": "user", "content": f"hello, order {order} {intent.replace('_', ' ')} please - {name}"}],
        "completion": json.dumps({"intent": intent, "reply": f"Hi {name}, we are on it. - Acme Support"}),
    }


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    rng = random.Random(0)
    out = tmp_path_factory.mktemp("split")
    write_jsonl(out / "train.jsonl", [make_record(i, rng) for i in range(1, 33)])
    write_jsonl(out / "val.jsonl", [make_record(i, rng) for i in range(33, 41)])
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread; on a shared CPU a spinning one slows them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_params(tmp_path, **overrides) -> TrainParams:
    base = dict(max_steps=6, eval_steps=2, logging_steps=1, batch_size=4, learning_rate=5e-3, val_records=None,
                num_epochs=1.0, max_examples=None, balance="none", preset="data", group_by_length=True,
                checkpoints=str(tmp_path / "checkpoints"), lora=LoraParams(r=4, alpha=8, target_modules="all-linear"))
    return TrainParams(**{**base, **overrides})


def run(params, tiny_model_dir, split_dir, tmp_path, callbacks=()):
    return stage.train(params, SYSTEM, tiny_model_dir, split_dir, tmp_path / "adapter",
                       tmp_path / "metrics" / "train.json", tmp_path / "metrics" / CURVES_DIR, callbacks)


def probe_ids(tiny_model_dir) -> torch.Tensor:
    tok = build_tiny_tokenizer()
    record = make_record(0, random.Random(1))
    return torch.tensor([tok(format_prompt(tok, record, SYSTEM), add_special_tokens=False)["input_ids"]])


def logits(model, ids) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


# ----------------------------------------------------------------------------- the training example


def test_tokenized_example_is_served_prompt_then_masked_completion():
    tok = build_tiny_tokenizer()
    record = make_record(1, random.Random(0))
    row = tokenize_record(tok, record, SYSTEM, max_length=1024)
    served = tok(format_prompt(tok, record, SYSTEM), add_special_tokens=False)["input_ids"]
    n = len(served)
    assert row["input_ids"][:n] == served  # no extra BOS, no merge across the boundary
    assert row["completion_mask"] == [0] * n + [1] * (len(row["input_ids"]) - n)
    assert tok.decode(row["input_ids"][n:]) == completion_target(tok, record)
    assert row["input_ids"].count(tok.eos_token_id) == served.count(tok.eos_token_id) + 1  # one EOS added
    assert row["input_ids"][-1] == tok.eos_token_id


def test_truncation_keeps_the_prompt():
    tok = build_tiny_tokenizer()
    record = make_record(1, random.Random(0))
    full = tokenize_record(tok, record, SYSTEM, max_length=1024)
    cut = tokenize_record(tok, record, SYSTEM, max_length=full["length"] - 5)
    assert cut["input_ids"] == full["input_ids"][:-5] and len(cut["completion_mask"]) == len(cut["input_ids"])


def test_examples_without_completion_tokens_are_dropped_or_refused():
    tok = build_tiny_tokenizer()
    short, long = make_record(1, random.Random(0)), make_record(2, random.Random(0))
    long = {**long, "messages": [{"role": "user", "content": "word " * 200}]}
    ds = build_dataset(tok, [short, long], SYSTEM, max_length=150, name="train")
    assert len(ds) == 1 and sum(ds[0]["completion_mask"]) > 0
    with pytest.raises(TuneproofError, match="train.max_length: 20 tokens do not reach the completion"):
        build_dataset(tok, [short, long], SYSTEM, max_length=20, name="train")


def test_trainer_labels_mask_the_prompt(tiny_model_dir, split_dir, tmp_path):
    """After TRL's own preparation and collation, prompt positions carry label -100 and the
    prompt ids are exactly the served ones."""
    from tuneproof.io import read_jsonl

    records = read_jsonl(split_dir / "train.jsonl")
    trainer = build_trainer(tiny_params(tmp_path), SYSTEM, tiny_model_dir, records, records[:4],
                                  tmp_path / "ckpt", tmp_path / "curves")
    tok = trainer.processing_class
    for record, example in zip(records, trainer.train_dataset):
        served = tok(format_prompt(tok, record, SYSTEM), add_special_tokens=False)["input_ids"]
        n = len(served)
        assert example["input_ids"][:n] == served
        assert set(example["labels"][:n]) == {-100}
        assert example["labels"][n:] == example["input_ids"][n:]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    real = batch["attention_mask"].bool()
    assert (batch["labels"][~real] == -100).all()  # padding never counts
    assert (batch["labels"][real] != -100).sum() < real.sum()  # prompt tokens do not count


def test_shared_prefix_gives_the_same_loss_and_gradients(tiny_model_dir, split_dir, tmp_path):
    from tuneproof.io import read_jsonl

    records = read_jsonl(split_dir / "train.jsonl")
    results = []
    for share in (True, False):
        trainer = build_trainer(tiny_params(tmp_path, method="full", share_prefix=share), SYSTEM,
                                      tiny_model_dir, records, records[:4], tmp_path / "ckpt", tmp_path / "curves")
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        loss = trainer.compute_loss(trainer.model, dict(batch))
        loss.backward()
        grads = {n: p.grad for n, p in trainer.model.named_parameters()}
        results.append((len(trainer.shared_prefix), loss.detach(), grads))
    (shared, loss_a, grads_a), (plain, loss_b, grads_b) = results
    prompt = build_tiny_tokenizer()(format_prompt(build_tiny_tokenizer(), records[0], SYSTEM))["input_ids"]
    assert plain == 0 and 8 <= shared < len(prompt)  # system prompt + template, not the user turn
    torch.testing.assert_close(loss_a, loss_b)
    for name in grads_b:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-4)


# ----------------------------------------------------------------------------- methods, reload, provenance


def test_cpu_never_bf16(tmp_path):
    config = sft_config(tiny_params(tmp_path), tmp_path / "out", torch.device("cpu"))
    assert config.bf16 is False and config.fp16 is False
    assert config.completion_only_loss is True and config.load_best_model_at_end is True


def test_lora_adapter_reloads_with_same_logits_and_provenance(tiny_model_dir, split_dir, tmp_path):
    from peft import PeftModel

    params = tiny_params(tmp_path)
    trainer, info = run(params, tiny_model_dir, split_dir, tmp_path)
    adapter = tmp_path / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
            ADAPTER_INFO} <= {p.name for p in adapter.iterdir()}
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    ids = probe_ids(tiny_model_dir)
    torch.testing.assert_close(logits(reloaded, ids), logits(trainer.model, ids))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not torch.allclose(logits(base, ids), logits(reloaded, ids))  # the adapter learned something

    saved = read_json(adapter / ADAPTER_INFO)
    assert saved == info
    assert saved["params"] == dataclasses.asdict(params) and saved["method"] == "lora" and saved["seed"] == 0
    assert saved["prompt_system"] == SYSTEM
    assert saved["data"]["train"] == {"sha256": sha256_file(split_dir / "train.jsonl"), "records": 32}
    assert saved["data"]["val"]["sha256"] == sha256_file(split_dir / "val.jsonl")
    assert saved["base_model"]["weights_sha256"]["model.safetensors"] == sha256_file(tiny_model_dir / "model.safetensors")
    assert saved["steps"] == 6 and saved["best_step"] in (2, 4, 6) and saved["resumed_from_step"] is None

    metrics = read_json(tmp_path / "metrics" / "train.json")
    assert metrics["best_val_loss"] == pytest.approx(min(
        e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e))
    curves = tmp_path / "metrics" / CURVES_DIR / "plots" / "metrics"
    eval_rows = (curves / "eval" / "loss.tsv").read_text().split()
    assert eval_rows[:2] == ["step", "loss"] and eval_rows[2::2] == ["2", "4", "6"]
    assert len((curves / "train" / "loss.tsv").read_text().splitlines()) == 1 + 6
    assert not (tmp_path / "metrics" / CURVES_DIR / "metrics.json").exists()  # one metrics file
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [FINGERPRINT]  # cleared after success


def test_full_finetune_is_a_complete_model_dir(tiny_model_dir, split_dir, tmp_path):
    from tuneproof.modeling import load_model

    trainer, info = run(tiny_params(tmp_path, method="full", learning_rate=1e-3), tiny_model_dir, split_dir, tmp_path)
    adapter = tmp_path / "adapter"
    assert (adapter / "model.safetensors").is_file() and not (adapter / "adapter_config.json").exists()
    ids = probe_ids(tiny_model_dir)
    reloaded = load_model(tiny_model_dir, adapter, torch.device("cpu"))
    torch.testing.assert_close(logits(reloaded, ids), logits(trainer.model, ids))
    assert info["method"] == "full"


def test_qlora_trains_on_cpu_and_reloads(split_dir, tmp_path):
    """bitsandbytes 0.50 quantizes NF4 on CPU (a slow pure-torch path), so QLoRA is allowed here.
    Its CPU inference kernel needs layers at least one quantization block (64) wide."""
    from peft import PeftModel, get_peft_model_state_dict

    tiny_model_dir = build_tiny_model_dir(tmp_path / "tiny64", hidden_size=64)
    trainer, info = run(tiny_params(tmp_path, method="qlora"), tiny_model_dir, split_dir, tmp_path)
    assert trainer.model.get_base_model().is_loaded_in_4bit
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters() if p.requires_grad)
    saved = adapter_weights(tmp_path)
    in_memory = get_peft_model_state_dict(trainer.model)
    assert saved.keys() == in_memory.keys()
    for key in saved:
        torch.testing.assert_close(saved[key], in_memory[key], atol=0, rtol=0)
    base = load_base_model(tiny_model_dir, "qlora", torch.device("cpu"), gradient_checkpointing=False)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    ids = probe_ids(tiny_model_dir)
    # bitsandbytes' CPU eval kernel round-trips the in-memory base's scales through bf16, so the
    # trained model's base drifts by bf16 rounding from a freshly quantized one; the adapter is exact.
    torch.testing.assert_close(logits(reloaded, ids), logits(trainer.model, ids), atol=5e-3, rtol=0)


def test_qlora_is_refused_where_bitsandbytes_cannot_quantize(monkeypatch, tmp_path):
    import bitsandbytes.functional

    def broken(*args, **kwargs):
        raise RuntimeError("no 4-bit backend for this device")

    monkeypatch.setattr(bitsandbytes.functional, "quantize_4bit", broken)
    with pytest.raises(TuneproofError, match="train.method: 'qlora'.*use train.method: lora"):
        check_method("qlora", torch.device("cpu"))
    check_method("lora", torch.device("cpu"))  # other methods need no probe


def test_gpu_path_knobs_reach_the_model_and_trainer(monkeypatch, tiny_model_dir, tmp_path):
    model = load_base_model(tiny_model_dir, "lora", torch.device("cpu"), False, attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    args = sft_config(tiny_params(tmp_path, use_liger=True), tmp_path / "out", torch.device("cpu"))
    assert args.use_liger_kernel and not args.bf16  # CPU: fp32 even when the GPU knobs are set
    monkeypatch.setattr(modeling.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TuneproofError, match="train.use_liger: true needs the liger-kernel package"):
        check_liger(True)
    check_liger(False)


def test_lora_plus_gives_the_b_matrices_a_larger_step(tiny_model_dir, split_dir, tmp_path):
    from tuneproof.records import read_split

    params = tiny_params(tmp_path, lora=LoraParams(r=4, alpha=8, plus_lr_ratio=16, target_modules="all-linear"))
    trainer = build_trainer(params, SYSTEM, tiny_model_dir, read_split(split_dir, "train"),
                                  read_split(split_dir, "val"), params.checkpoints, tmp_path / "curves")
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    lr_of = {names[id(p)]: group["lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    assert {lr for n, lr in lr_of.items() if "lora_A" in n} == {params.learning_rate}
    assert {lr for n, lr in lr_of.items() if "lora_B" in n} == {16 * params.learning_rate}
    trainer.train()  # the Trainer trains with this optimizer: its scheduler started from both rates
    assert {group["initial_lr"] for group in trainer.optimizer.param_groups} >= {params.learning_rate,
                                                                               16 * params.learning_rate}


def test_last_layers_adapts_only_the_top_layers(tiny_model_dir, tmp_path):
    from peft import get_peft_model

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = lora_config(tiny_params(tmp_path, lora=LoraParams(r=4, last_layers=1, target_modules="all-linear")), model)
    trainable = {n for n, p in get_peft_model(model, config).named_parameters() if p.requires_grad}
    assert trainable and all(".layers.1." in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} >= {"q_proj", "down_proj"}  # still every linear kind
    with pytest.raises(TuneproofError, match="train.lora.last_layers: 3 is not between 1 and the model's 2"):
        lora_config(tiny_params(tmp_path, lora=LoraParams(last_layers=3, target_modules="all-linear")), model)


def test_missing_split_is_a_clear_error(tiny_model_dir, tmp_path):
    with pytest.raises(TuneproofError, match="train.jsonl: not found; run the split stage"):
        run(tiny_params(tmp_path), tiny_model_dir, tmp_path / "nosplit", tmp_path)
    assert not (tmp_path / "adapter").exists()


# ----------------------------------------------------------------------------- early stopping, resume


class Interrupt(TrainerCallback):
    """Simulates a killed run: raises after `at` optimizer steps."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt(f"interrupted at step {self.at}")


def adapter_weights(path):
    from safetensors.torch import load_file

    return load_file(path / "adapter" / "adapter_model.safetensors")


def test_interrupted_run_resumes_and_matches_uninterrupted(tiny_model_dir, split_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _, straight_info = run(tiny_params(straight, max_steps=8), tiny_model_dir, split_dir, straight)

    params = tiny_params(resumed, max_steps=8)
    with pytest.raises(KeyboardInterrupt):
        run(params, tiny_model_dir, split_dir, resumed, callbacks=[Interrupt(at=5)])
    assert not (resumed / "adapter").exists()  # nothing half-written
    assert (resumed / "checkpoints" / "checkpoint-4").is_dir()
    trainer, info = run(params, tiny_model_dir, split_dir, resumed)

    assert info["resumed_from_step"] == 4 and info["steps"] == 8
    assert [e["step"] for e in trainer.state.log_history if "loss" in e] == list(range(1, 9))
    assert info["best_val_loss"] == pytest.approx(straight_info["best_val_loss"], abs=1e-4)
    a, b = adapter_weights(straight), adapter_weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    rows = (resumed / "metrics" / CURVES_DIR / "plots" / "metrics" / "train" / "loss.tsv").read_text()
    assert [line.split()[0] for line in rows.splitlines()[1:]] == [str(s) for s in range(1, 9)]


def test_checkpoints_of_other_params_are_not_resumed(tiny_model_dir, split_dir, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(tiny_params(tmp_path, max_steps=8), tiny_model_dir, split_dir, tmp_path, callbacks=[Interrupt(at=3)])
    _, info = run(tiny_params(tmp_path, max_steps=4, learning_rate=1e-3), tiny_model_dir, split_dir, tmp_path)
    assert info["resumed_from_step"] is None and info["steps"] == 4


def test_early_stopping_keeps_the_best_checkpoint(tiny_model_dir, split_dir, tmp_path):
    # No floating-point trajectory is assumed (another CPU takes another path): an improvement
    # threshold no loss change can meet makes every validation after the first "no better", so the
    # run stops after exactly 1 + patience validations, whichever way the loss moves.
    params = tiny_params(tmp_path, method="full", learning_rate=0.05, max_steps=20, eval_steps=1,
                         early_stopping_patience=2, early_stopping_threshold=1e9, lr_scheduler="constant")
    trainer, info = run(params, tiny_model_dir, split_dir, tmp_path)
    evals = [(e["step"], e["eval_loss"]) for e in trainer.state.log_history if "eval_loss" in e]
    assert info["stopped_early"] and info["steps"] == 3 and len(evals) == 3
    best_step, best_loss = min(evals, key=lambda e: e[1])
    assert info["best_step"] == best_step and info["best_val_loss"] == pytest.approx(best_loss)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(best_loss, rel=1e-5)  # the best weights were kept


def test_main_reads_params_yaml(project_dir, tiny_model_dir, split_dir):
    """The project's params.yaml `train` section loads; main() writes every declared output."""
    import yaml

    from params_file import set_params

    # the tiny byte-level tokenizer needs ~3x the demo's tokens for the same system prompt; the tiny
    # split's answers carry only intent and reply
    set_params(project_dir, paths={"base_model": str(tiny_model_dir), "split": str(split_dir)},
               train={"max_steps": 2, "eval_steps": 1, "batch_size": 4, "val_records": 4, "max_length": 4096},
               score={"fields": ["intent", "reply"], "style": {}}, generate={"max_new_tokens": 4})
    params = yaml.safe_load((project_dir / "params.yaml").read_text())
    stage.main("params.yaml")
    info = read_json(project_dir / params["paths"]["adapter"] / ADAPTER_INFO)
    assert info["recipe"]["preset"] == "data" and info["selected_by"] == "eval_task_success"
    assert info["params"]["lora"]["target_modules"] == "all-linear" and info["params"]["balance"] == "sqrt"
    assert info["params"]["lora"]["r"] == params["train"]["lora"]["r"] and info["steps"] == 2
    assert info["prompt_system"] == params["prompt"]["system"] and info["shared_prefix_tokens"] > 0
    assert (project_dir / params["paths"]["metrics"] / "train.json").is_file()
    assert (project_dir / params["paths"]["metrics"] / CURVES_DIR / "plots" / "metrics" / "eval" / "loss.tsv").is_file()
    assert (project_dir / params["train"]["checkpoints"] / FINGERPRINT).is_file()


def test_replay_mixes_the_base_models_own_general_answers_into_training(tiny_model_dir, split_dir, tmp_path):
    from tuneproof.modeling import load_model, load_tokenizer
    from tuneproof.recipe import replay_records, template_default_system

    tokenizer = load_tokenizer(tiny_model_dir)
    assert template_default_system(tokenizer) == "You are a helpful AI assistant."  # tiny_model's template
    prompts = tmp_path / "replay.jsonl"
    prompts.write_text('{"prompt": "Name a colour."}\n{"prompt": "Say hello."}\n')
    general = replay_records(load_model(tiny_model_dir), tokenizer, prompts, 5, 0, 4)
    assert len(general) == 5 and all(isinstance(r["completion"], str) for r in general)
    # The template's default system prompt rides on each record, so training never puts the task's on it.
    assert {r["messages"][0]["content"] for r in general} == {"You are a helpful AI assistant."}
    assert {r["messages"][1]["content"] for r in general} == {"Name a colour.", "Say hello."}  # cycled
    # Sampled, not greedy: the three asks of one prompt do not all get one identical answer.
    assert len({r["completion"] for r in general if r["messages"][1]["content"] == general[0]["messages"][1]["content"]}) > 1
    trainer, info = run(tiny_params(tmp_path, replay=0.25, replay_prompts=str(prompts)), tiny_model_dir, split_dir, tmp_path)
    assert info["recipe"]["replay_examples"] == 8  # a quarter of the 32 train records
    assert len(trainer.train_dataset) == 40
    with pytest.raises(TuneproofError, match="train.replay: 1.5 is not a share"):
        run(tiny_params(tmp_path, replay=1.5), tiny_model_dir, split_dir, tmp_path)


def test_resolve_params_sizes_the_data_preset_and_keeps_the_demo_preset_for_the_demo():
    labels = ["ham"] * 880 + ["spam"] * 120
    data, chosen = resolve_params(TrainParams(), labels, True, 576, demo_data=False)
    assert chosen["preset"] == "data" and chosen["why"] == "your data"
    assert data.learning_rate == pytest.approx(5.3e-4) and data.lora.target_modules == "all-linear"
    assert chosen["balance_repeats"] == {"ham": 1, "spam": 3} and chosen["train_examples"] == 880 + 360
    assert data.max_steps == 768 // 4 and data.eval_steps == 32 and data.group_by_length is False  # CPU cap
    on_gpu, _ = resolve_params(TrainParams(), labels, False, 576, demo_data=False)
    assert on_gpu.max_steps == 3 * 1240 // 4  # 3 passes over 1k records, no cap on CUDA
    demo, chosen = resolve_params(TrainParams(), labels, True, 576, demo_data=True)
    assert chosen["preset"] == "demo" and (demo.learning_rate, demo.max_steps, demo.balance) == (3e-3, 64, "none")
    many = [f"intent_{i % 77}" for i in range(2500)]
    intents, _ = resolve_params(TrainParams(), many, True, 576, demo_data=False)
    assert intents.max_examples == 24 * 77 and intents.max_steps == 24 * 77 // 4  # ~24 examples per label on CPU
    mine, _ = resolve_params(TrainParams(learning_rate=1e-4, max_steps=10), labels, True, 576, False)
    assert (mine.learning_rate, mine.max_steps, mine.eval_steps) == (1e-4, 10, 1)  # explicit values win
