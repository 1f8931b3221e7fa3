"""Running a stage on several processes (GPUs) with an existing engine: `accelerate launch`.

A stage whose params ask for N > 1 processes re-runs itself under `accelerate launch` (torchrun
underneath); each worker then finds the process group in its environment (Trainer sets up DDP or
FSDP from it). Only the main process writes outputs; the others wait where they must.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Literal, Sequence

import torch

from tuneproof.io import TuneproofError
from tuneproof.train_config import TrainParams

LAUNCHED_ENV = "LOCAL_RANK"  # set by torchrun in every worker: we are one of the launched processes

# FSDP for models that do not fit one GPU: each decoder layer is a shard unit (accelerate finds the
# layer class from the model's _no_split_modules); the saved model is gathered whole on the main process.
FSDP_FLAGS = ("--use_fsdp", "--fsdp_version", "1", "--fsdp_sharding_strategy", "FULL_SHARD",
              "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "--fsdp_state_dict_type", "FULL_STATE_DICT",
              "--fsdp_use_orig_params", "true")  # orig params: frozen and trained weights may share a unit (LoRA)


def in_launched_process() -> bool:
    """True inside a worker started by accelerate launch / torchrun."""
    return LAUNCHED_ENV in os.environ


def check_distributed(params: TrainParams, gpus: int) -> None:
    """Fail fast on multi-process settings that cannot run on this machine with `gpus` CUDA devices
    (0: CPU processes), before any process is launched."""
    if params.num_processes < 1:
        raise TuneproofError(f"train.num_processes: {params.num_processes} is not a process count; use 1 or more")
    if params.num_processes == 1:
        return
    if gpus and params.num_processes > gpus:
        raise TuneproofError(f"train.num_processes: {params.num_processes} processes but {gpus} GPU(s) visible; "
                             "use at most one process per GPU")
    if params.distributed == "fsdp" and params.method == "qlora":
        raise TuneproofError("train.distributed: fsdp cannot shard a 4-bit (qlora) base here; use "
                             "train.distributed: ddp with qlora, or fsdp with method lora or full")
    if params.distributed == "fsdp" and not gpus:
        raise TuneproofError("train.distributed: fsdp needs CUDA GPUs (accelerate runs FSDP only on accelerators); "
                             "use train.distributed: ddp on CPU")


def launch_command(module: str, module_args: Sequence[str], num_processes: int,
                   strategy: Literal["ddp", "fsdp"]) -> list[str]:
    """The `accelerate launch` command running `python -m module *module_args` on `num_processes`
    processes. The settings that shape the run are explicit (a user's `accelerate config` default
    fills in only the rest). Precision is left to the Trainer (bf16 on CUDA that supports it), as
    in a single process.
    accelerate's `--cpu` launcher starts several processes only through mpirun, so CPU runs use the
    torchrun launcher too (`--multi_gpu`); their workers pick the gloo backend."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "0"]  # 0: a free port, so concurrent runs on one machine do not collide
    cmd += list(FSDP_FLAGS) if strategy == "fsdp" else ["--multi_gpu"]
    return [*cmd, "-m", module, *module_args]


def run_launched(cmd: Sequence[str]) -> None:
    """Run `cmd` (from launch_command); a failed worker ends this process with its launcher's
    non-zero exit status (the worker's own error is printed above it)."""
    code = subprocess.run(list(cmd), check=False).returncode
    if code:
        print(f"error: accelerate launch exited with status {code}: {' '.join(cmd)}", file=sys.stderr)
        sys.exit(code)


def process_state(device: torch.device):
    """accelerate's PartialState for this process: is_main_process, num_processes,
    wait_for_everyone(), main_process_first(). The same state the Trainer later sets up; a single
    process is the main one and its barriers do nothing."""
    from accelerate import PartialState

    return PartialState(cpu=device.type == "cpu")
