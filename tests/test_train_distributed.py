"""Stage `train` on 2 CPU processes (gloo) under `accelerate launch`: the command line, the refusals,
and a real 2-process run whose outputs match a single-process run with the same effective batch."""

import dataclasses
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from accelerate.commands.launch import launch_command_parser

from stages import train as stage
from tuneproof import distributed
from tuneproof.checkpoints import FINGERPRINT
from tuneproof.config import ADAPTER_INFO
from tuneproof.curves import CURVES_DIR
from tuneproof.distributed import check_distributed
from tuneproof.io import TuneproofError, read_json

import test_train as single  # its tiny split data and tiny train params
from conftest import ROOT, git_init
from params_file import set_params

split_dir = single.split_dir  # the same 32 train / 8 val tiny records as tests/test_train.py


def parsed(cmd: list[str]):
    """`cmd` read back by accelerate's own parser: every flag must exist in the pinned accelerate."""
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    return launch_command_parser().parse_args(cmd[3:])


# ----------------------------------------------------------------------------- command line, refusals


def test_launch_command_runs_the_module_on_n_processes():
    args = parsed(distributed.launch_command("stages.train", ["params.yaml"], 4, "ddp"))
    assert args.num_processes == 4 and args.num_machines == 1 and args.multi_gpu and not args.use_fsdp
    assert args.module and args.training_script == "stages.train" and args.training_script_args == ["params.yaml"]
    assert args.mixed_precision == "no"  # precision stays the Trainer's choice, as in one process
    assert args.main_process_port == 0  # a free port: two runs on one machine do not collide


def test_launch_command_fsdp_flags():
    args = parsed(distributed.launch_command("stages.train", ["params.yaml"], 8, "fsdp"))
    assert args.use_fsdp and not args.multi_gpu and args.num_processes == 8
    assert args.fsdp_sharding_strategy == "FULL_SHARD"
    assert args.fsdp_auto_wrap_policy == "TRANSFORMER_BASED_WRAP"
    assert args.fsdp_state_dict_type == "FULL_STATE_DICT"  # the saved model is whole, as in one process
    assert args.training_script == "stages.train"


def test_multi_process_settings_that_cannot_run_are_refused(tmp_path):
    params = lambda **kw: single.tiny_params(tmp_path, num_processes=2, **kw)  # noqa: E731
    with pytest.raises(TuneproofError, match="train.distributed: fsdp cannot shard a 4-bit .qlora"):
        check_distributed(params(method="qlora", distributed="fsdp"), gpus=2)
    with pytest.raises(TuneproofError, match="train.distributed: fsdp needs CUDA GPUs"):
        check_distributed(params(method="full", distributed="fsdp"), gpus=0)
    with pytest.raises(TuneproofError, match="train.num_processes: 2 processes but 1 GPU"):
        check_distributed(params(), gpus=1)
    with pytest.raises(TuneproofError, match="train.num_processes: 0 is not a process count"):
        check_distributed(single.tiny_params(tmp_path, num_processes=0), gpus=0)
    check_distributed(params(method="qlora"), gpus=0)  # ddp on CPU processes
    check_distributed(params(method="full", distributed="fsdp"), gpus=2)


def test_main_refuses_fsdp_qlora_before_launching(project_dir, monkeypatch):
    set_params(project_dir, train={"num_processes": 2, "distributed": "fsdp", "method": "qlora"})
    monkeypatch.setattr(stage, "run_launched", lambda cmd: pytest.fail(f"launched {cmd}"))
    monkeypatch.delenv(distributed.LAUNCHED_ENV, raising=False)
    with pytest.raises(TuneproofError, match="train.distributed: fsdp cannot shard"):
        stage.main("params.yaml")


# ----------------------------------------------------------------------------- a real 2-process run


def run_stage(project, tiny_model_dir, split_dir, **train):
    """`python -m stages.train` in `project` (a git repo with the project's params.yaml) on the tiny
    model, CPU only; returns the finished process."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["paths"].update(base_model=str(tiny_model_dir), split=str(split_dir))
    params["prompt"]["system"] = single.SYSTEM  # short: the tiny byte-level tokenizer makes long prompts
    params["train"] = dataclasses.asdict(single.tiny_params(project, **train))
    params["score"].update(fields=["intent", "reply"], style={})  # the tiny split's answers carry these two
    params["generate"]["max_new_tokens"] = 4
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    env.pop(distributed.LAUNCHED_ENV, None)
    return subprocess.run([sys.executable, "-m", "stages.train"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


def files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.parts and ".dvc" not in p.parts)


def test_two_processes_write_one_adapter_equal_to_a_single_process_run(project_dir, tiny_model_dir, split_dir,
                                                                      tmp_path_factory):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    # 2 processes x 2 sequences = 1 process x 4: accelerate hands each process alternate batches of the
    # same sampler order and the loss is normalised by the tokens of all processes, so the optimizer
    # steps match; only the float summation order differs.
    common = dict(max_steps=4, eval_steps=2, val_records=4)
    one = tmp_path_factory.mktemp("one")  # the single-process project, beside project_dir
    shutil.copy(ROOT / "params.yaml", one / "params.yaml")
    git_init(one)
    for project, train in ((one, dict(batch_size=4)), (project_dir, dict(batch_size=2, num_processes=2))):
        result = run_stage(project, tiny_model_dir, split_dir, **common, **train)
        assert result.returncode == 0, result.stderr[-4000:]

    adapter = project_dir / "models" / "adapter"
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    assert reloaded.active_adapter == "default"
    two_w, one_w = (load_file(d / "models" / "adapter" / "adapter_model.safetensors") for d in (project_dir, one))
    assert {k: v.shape for k, v in two_w.items()} == {k: v.shape for k, v in one_w.items()}
    for key in one_w:
        torch.testing.assert_close(two_w[key], one_w[key], atol=1e-6, rtol=1e-4)

    info, one_info = read_json(adapter / ADAPTER_INFO), read_json(one / "models" / "adapter" / ADAPTER_INFO)
    assert info["num_processes"] == 2 and info["params"]["num_processes"] == 2 and one_info["num_processes"] == 1
    assert info["steps"] == 4 and info["best_val_loss"] == pytest.approx(one_info["best_val_loss"], abs=1e-5)
    metrics = read_json(project_dir / "metrics" / "train.json")
    assert metrics["num_processes"] == 2 and metrics["trainable_params"] == read_json(
        one / "metrics" / "train.json")["trainable_params"]

    # One set of outputs, written by the main process only: the same files as the single-process run,
    # no leftover temporary dirs, one curve point per step (a second writer would add rows or files).
    assert files(project_dir) == files(one)
    assert [p.name for p in (project_dir / "checkpoints").iterdir()] == [FINGERPRINT]
    rows = (project_dir / "metrics" / CURVES_DIR / "plots" / "metrics" / "train" / "loss.tsv").read_text()
    assert [line.split()[0] for line in rows.splitlines()[1:]] == ["1", "2", "3", "4"]


def test_a_failing_process_fails_the_stage(project_dir, tiny_model_dir, tmp_path):
    result = run_stage(project_dir, tiny_model_dir, tmp_path / "nosplit", max_steps=2, num_processes=2)
    assert result.returncode != 0
    assert "train.jsonl: not found; run the split stage" in result.stderr
    assert not (project_dir / "models" / "adapter").exists()
