"""Progress a log can show (issue 17): plain timed lines when stderr is not a terminal."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from tqdm.auto import tqdm

from tuneproof import progress as prog
from demo.support_tickets import benchmark_records
from tuneproof.io import TuneproofError, write_jsonl

from params_file import set_params


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_line_format():
    assert prog.progress_line("baseline retrieval", 120, 177, 57.0, "batch") == \
        "baseline retrieval: 120/177 (2.1 batch/s, ETA 27 s)"
    assert prog.progress_line("shingle", 500, None, 2.0, "text") == "shingle: 500 (250 text/s)"
    assert prog.progress_line("probe text", 3, 10, 6.0, "passage") == "probe text: 3/10 (2.0 s/passage, ETA 14 s)"
    assert prog.progress_line("x", 0, 10, 0.0, "it") == "x: 0/10 (? it/s, ETA ?)"
    assert prog.done_line("baseline retrieval", 177, 177, 84.0, "batch") == \
        "baseline retrieval: done 177/177 in 84 s (2.1 batch/s)"
    assert [prog.format_duration(s) for s in (0.42, 27.4, 192, 3 * 3600)] == ["0.4 s", "27 s", "3.2 min", "3.0 h"]
    assert prog.train_line(40, 192, 40, 52.0, 0.4123) == "train: step 40/192 (1.3 s/step, ETA 3.3 min), loss 0.412"
    assert prog.train_line(40, 192, 10, 13.0, None) == "train: step 40/192 (1.3 s/step, ETA 3.3 min)"  # resumed at 30
    assert prog.train_line(192, 192, 192, 250.0, 0.38, final=True) == \
        "train: done step 192/192 in 4.2 min (1.3 s/step), loss 0.38"


def test_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(prog.ENV_SECONDS, raising=False)
    assert prog.line_interval() == prog.DEFAULT_SECONDS == 30
    monkeypatch.setenv(prog.ENV_SECONDS, "0.5")
    assert prog.line_interval() == 0.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(prog.ENV_SECONDS, bad)
        with pytest.raises(TuneproofError, match=f"{prog.ENV_SECONDS}='{bad}': not a number of seconds"):
            prog.line_interval()


def test_log_lines_every_interval_and_one_at_the_end(capsys):
    clock = FakeClock()
    bar = prog.LogProgress("baseline zero_shot", total=5, unit="batch", every=30, clock=clock)
    for step in range(5):
        clock.now += 20  # a line once 30 s have passed since the last one
        bar.update()
    bar.close()
    assert err_lines(capsys) == ["baseline zero_shot: 2/5 (20 s/batch, ETA 60 s)",
                                 "baseline zero_shot: 4/5 (20 s/batch, ETA 20 s)",  # 5/5 is left to the done line
                                 "baseline zero_shot: done 5/5 in 1.7 min (20 s/batch)"]


def test_progress_in_a_log_is_plain_lines(monkeypatch, capsys):
    monkeypatch.setenv(prog.ENV_SECONDS, "0")
    assert list(prog.progress(iter("abc"), desc="letters", total=3, unit="letter")) == ["a", "b", "c"]
    lines = err_lines(capsys)
    assert [line.split(" (")[0] for line in lines] == ["letters: 1/3", "letters: 2/3", "letters: done 3/3 in 0.0 s"]
    assert list(prog.progress([1, 2], desc="none", disable=True)) == [1, 2]  # disabled: silent
    with pytest.raises(ValueError), prog.progress_bar("minhash", 4, unit="text") as bar:
        bar.update(2)
        raise ValueError("stop")
    assert [line.split(" (")[0] for line in err_lines(capsys)] == ["minhash: 2/4"]  # no done line after an error


def test_progress_on_a_terminal_is_tqdm(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not prog.to_log()
    bar = prog.progress([1, 2, 3], desc="generate", unit="batch")
    assert isinstance(bar, tqdm) and bar.leave is False and list(bar) == [1, 2, 3]


def test_trainer_progress_prints_steps_loss_and_the_end(capsys):
    clock = FakeClock()
    callback = prog.trainer_progress(every=30, clock=clock)
    state = SimpleNamespace(global_step=30, max_steps=192, log_history=[], is_world_process_zero=True)
    callback.on_train_begin(None, state, None)  # resumed at step 30
    for step in range(31, 71):
        clock.now += 2.0
        state.global_step = step
        state.log_history.append({"loss": 0.4123, "step": step})
        callback.on_step_end(None, state, None)
    callback.on_train_end(None, state, None)
    lines = err_lines(capsys)
    assert lines == ["train: step 45/192 (2.0 s/step, ETA 4.9 min), loss 0.412",  # rate of this run's steps
                     "train: step 60/192 (2.0 s/step, ETA 4.4 min), loss 0.412",
                     "train: done step 70/192 in 80 s (2.0 s/step), loss 0.412"]  # stopped early at 70


def test_build_trainer_in_a_log_prints_lines_instead_of_the_bar(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from transformers.trainer_callback import ProgressCallback

    from tuneproof.train_config import LoraParams, TrainParams
    from tuneproof.trainer import build_trainer

    monkeypatch.setenv(prog.ENV_SECONDS, "0")
    records = [{"id": f"L{i:06d}", "messages": [{"role": "user", "content": f"order {i} is late"}],
                "completion": '{"intent": "shipping"}'} for i in range(1, 9)]
    params = TrainParams(max_steps=2, eval_steps=2, logging_steps=1, batch_size=4, learning_rate=5e-3,
                         val_records=None, num_epochs=1.0, max_examples=None, balance="none", preset="data",
                         group_by_length=True, checkpoints=str(tmp_path / "ckpt"), lora=LoraParams(r=2, alpha=4, target_modules="all-linear"))
    trainer = build_trainer(params, None, tiny_model_dir, records, records[:2], tmp_path / "ckpt", tmp_path / "curves")
    assert trainer.args.disable_tqdm
    assert not any(isinstance(c, ProgressCallback) for c in trainer.callback_handler.callbacks)
    trainer.train()
    err = capsys.readouterr().err  # (the libraries' own bars, e.g. "Loading weights", still use tqdm)
    assert re.search(r"^tokenize train: done 8/8 in \S+ s \(\d+ record/s\)$", err, re.M)
    assert re.search(r"^train: step 1/2 \(\S+ (s/step|step/s), ETA \S+ s\)$", err, re.M)  # no loss logged yet at step 1
    assert re.search(r"^train: done step 2/2 in \S+ s \(\S+ (s/step|step/s)\), loss \d+\.\d+$", err, re.M)


def test_a_piped_stage_shows_progress_lines_while_it_runs(project_dir):
    """`python -m stages.dedup 2>&1 | tee log`: lines arrive while it runs, not only at exit."""
    records, _ = benchmark_records(25_000, duplicate_share=0.02)  # above neardup's bar threshold after exact dedup
    write_jsonl(project_dir / "data" / "raw" / "support_tickets.jsonl", records)
    set_params(project_dir, dedup={"truth": None})
    env = {**os.environ, prog.ENV_SECONDS: "0.05"}
    proc = subprocess.Popen([sys.executable, "-m", "stages.dedup"], cwd=project_dir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen_running, raw = [], b""
    for line in proc.stderr:  # binary: a "\r" would stay visible
        raw += line
        if re.match(rb"shingle: \d+/\d+ \(", line):
            seen_running.append(proc.poll() is None)
    assert proc.wait(timeout=120) == 0, raw.decode()[-2000:]
    assert b"\r" not in raw
    assert seen_running and seen_running[0], "no progress line arrived before the stage exited"
    assert re.search(rb"^minhash: done \d+/\d+ in ", raw, re.M)
