"""Stage `train`: fine-tune the base model on the train split (LoRA, QLoRA or full) with TRL.

    python -m stages.train     # reads params.yaml: train, prompt.system, paths.{base_model,split,adapter,metrics}

One training path for every method (`train.method` is a parameter, not a copy of the recipe):
  * `lora`  - peft LoRA adapter on the fp32 (CPU) / bf16 (CUDA) base.
  * `qlora` - the same adapter on a 4-bit NF4 base (bitsandbytes) prepared with
              peft.prepare_model_for_kbit_training; refused where bitsandbytes cannot quantize.
  * `full`  - every weight trained; the output is a complete model directory.

How a run goes (`train` below; the work is in the library):
  1. the recipe fills every `auto` knob from the data (tuneproof.recipe), oversamples minority
     labels and mixes in replayed general answers (train.replay);
  2. each record becomes the prompt baseline/evaluate serve plus its completion, with the loss on
     completion tokens only (tuneproof.train_data);
  3. the base model, LoRA config and TRL trainer are assembled (tuneproof.modeling, .trainer, .sft);
     at each validation the val records are decoded and scored, which picks the checkpoint;
  4. an interrupted run with the same fingerprint resumes its checkpoints (tuneproof.checkpoints);
  5. the adapter, its provenance file and the metrics are written; the checkpoints go.

Outputs:
  <paths.adapter>/              adapter (or full model) as safetensors, the tokenizer, and
                                config.ADAPTER_INFO (resolved params, base model, data hashes,
                                best step, stopped early?), written atomically.
  <paths.metrics>/train.json    final metrics (the one metrics file of this stage).
  <paths.metrics>/train_curves/ dvclive loss curves (tuneproof.curves): `dvc plots show` draws
                                train/loss and eval/loss (and token accuracy) against the step.
  <train.checkpoints>/          Trainer checkpoints, kept between runs (dvc.yaml: persist, no cache)
                                so an interrupted `dvc repro` resumes; emptied after a successful run.

Many GPUs: with `train.num_processes` > 1 the stage re-runs itself under `accelerate launch`
(tuneproof.distributed): DDP, or FSDP (`train.distributed: fsdp`) for full fine-tunes of models
that do not fit one GPU. The outputs are the same files; only the main process writes them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from tuneproof import recipe
from tuneproof.checkpoints import clear_checkpoints, data_info, resumable_checkpoint, run_provenance
from tuneproof.cli_util import run_main
from tuneproof.config import Paths, Prompt, Task
from tuneproof.curves import CURVES_DIR
from tuneproof.distributed import (check_distributed, in_launched_process, launch_command, process_state,
                                   run_launched)
from tuneproof.generation import GenerateParams
from tuneproof.io import check_output_path, write_json
from tuneproof.modeling import select_device
from tuneproof.params import load_section
from tuneproof.records import label_of, read_split
from tuneproof.scoring import ScoreParams, build_scorer
from tuneproof.train_config import TrainParams
from tuneproof.trainer import adapter_info, build_trainer, run_metrics, save_result, validation_sample


def train(params: TrainParams, system: str | None, base_dir: str | Path, split_dir: str | Path,
          adapter_dir: str | Path, metrics_file: str | Path, curves_dir: str | Path,
          callbacks: Sequence = (), label_field: str | None = None, scoring=None, demo_data: bool = False):
    """Resolve the recipe, then train, resuming an interrupted run with the same fingerprint; write
    the adapter dir, the metrics file and the curves. Returns (trainer, info) where info is
    config.ADAPTER_INFO. Under accelerate launch every process runs it; the main one writes."""
    import torch

    train_records, all_val = read_split(split_dir, "train"), read_split(split_dir, "val")
    labels = [label_of(r, label_field) for r in train_records]
    params, chosen = recipe.resolve_params(params, labels, select_device().type == "cpu",
                                           recipe.model_width(base_dir), demo_data)
    data = data_info(split_dir, {"train": train_records, "val": all_val})
    train_records = recipe.balanced(train_records, labels, chosen["balance_repeats"])
    general = recipe.replay_for(params, base_dir, len(train_records), scoring[1].batch_size if scoring else 16)
    if general is not None:
        train_records, chosen["replay_examples"] = [*train_records, *general], len(general)
    val_records = validation_sample(all_val, params.val_records, params.seed)
    run = run_provenance(params, system, base_dir, data)
    check_distributed(params, torch.cuda.device_count())
    processes = process_state(select_device())  # one process unless started by accelerate launch (main)
    with processes.main_process_first():  # the main process clears stale checkpoints before the others look
        resume_from = resumable_checkpoint(params.checkpoints, run["fingerprint"], reset=processes.is_main_process)
    if resume_from and processes.is_main_process:
        print(f"train: resuming the interrupted run from {resume_from}")
    if processes.is_main_process:
        print(recipe.describe(params, chosen, len(val_records)))
    trainer = build_trainer(params, system, base_dir, train_records, val_records, params.checkpoints,
                            curves_dir, callbacks, scoring)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)  # before FSDP shards them
    trainer.train(resume_from_checkpoint=resume_from)
    metrics = run_metrics(trainer, params, chosen, trainable)
    info = adapter_info(run, metrics, chosen, trainer, resume_from, len(val_records))
    save_result(trainer, adapter_dir, info)
    trainer.accelerator.wait_for_everyone()  # no process still reads or writes a checkpoint
    if trainer.is_world_process_zero():
        write_json(metrics_file, metrics)
        clear_checkpoints(params.checkpoints)
    return trainer, info


def main(params_file: str = "params.yaml") -> None:
    params = load_section(TrainParams, "train", params_file)
    paths = load_section(Paths, "paths", params_file)
    prompt = load_section(Prompt, "prompt", params_file)
    if params.num_processes > 1 and not in_launched_process():
        import torch

        check_distributed(params, torch.cuda.device_count())
        run_launched(launch_command("stages.train", [params_file], params.num_processes, params.distributed))
        return
    check_output_path(params.checkpoints, "train.checkpoints")
    label_field = load_section(Task, "task", params_file).label_field
    records = [*read_split(paths.split, "train"), *read_split(paths.split, "val")]
    scorer = build_scorer(load_section(ScoreParams, "score", params_file), label_field, records)
    scoring = (scorer, load_section(GenerateParams, "generate", params_file))
    trainer, info = train(params, prompt.system, paths.base_model, paths.split, paths.output("adapter"),
                          paths.metrics_file("train"), Path(paths.metrics) / CURVES_DIR,
                          label_field=label_field, scoring=scoring, demo_data=recipe.is_demo_data(paths.raw))
    if trainer.is_world_process_zero():
        print(f"train: {params.method} -> {paths.adapter} (best step {info['best_step']} of {info['steps']} by "
              f"{info['selected_by']} {info['best_val_score']:.4f}{', stopped early' if info['stopped_early'] else ''})")


if __name__ == "__main__":
    run_main(lambda: main(*sys.argv[1:2]))  # optional params file: accelerate launch passes it to each process
