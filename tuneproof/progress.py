"""Progress a log can show (issue 17): tqdm on a terminal, plain timed lines anywhere else.

tqdm redraws its bar with carriage returns, which a log (`dvc repro > run.log 2>&1`) never
shows, so a long stage reads as hung. When stderr is not a terminal, `progress` prints one plain
line every TUNEPROOF_PROGRESS_SECONDS seconds (default 30) and one when the loop ends:

    baseline retrieval: 120/177 (2.1 batch/s, ETA 27 s)
    baseline retrieval: done 177/177 in 84 s (2.1 batch/s)

The train stage gives the Trainer `trainer_progress()` instead of its tqdm bar in that case:

    train: step 40/192 (1.3 s/step, ETA 3.2 min), loss 0.41
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

from tuneproof.io import TuneproofError

ENV_SECONDS = "TUNEPROOF_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0  # seconds between two progress lines in a log

T = TypeVar("T")


def line_interval() -> float:
    """Seconds between two progress lines: $TUNEPROOF_PROGRESS_SECONDS, else DEFAULT_SECONDS."""
    raw = os.environ.get(ENV_SECONDS, "").strip()
    if not raw:
        return DEFAULT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:  # NaN fails this too
        raise TuneproofError(f"{ENV_SECONDS}={raw!r}: not a number of seconds; set 0 or more (e.g. 30), or unset it")
    return seconds


def to_log() -> bool:
    """Whether stderr goes to a log rather than a terminal (progress is then plain lines)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return not (isatty is not None and isatty())


def format_duration(seconds: float) -> str:
    """'0.4 s', '27 s', '3.2 min', '1.5 h'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_rate(done: float, elapsed: float, unit: str) -> str:
    """'2.1 batch/s'; slower than one a second, the time each takes: '1.3 s/step'."""
    if done <= 0 or elapsed <= 0:
        return f"? {unit}/s"
    rate = done / elapsed
    per_second = rate >= 1
    value = rate if per_second else 1 / rate
    text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
    return f"{text} {unit}/s" if per_second else f"{text} s/{unit}"


def _eta(remaining: float, done: float, elapsed: float) -> str:
    """Time left for `remaining` more at the mean pace of the `done` so far."""
    return format_duration(elapsed / done * remaining) if done > 0 else "?"


def progress_line(desc: str, done: int, total: int | None, elapsed: float, unit: str) -> str:
    """A line while running: 'desc: 120/177 (2.1 batch/s, ETA 27 s)'; without a total,
    'desc: 120 (2.1 batch/s)'."""
    rate = format_rate(done, elapsed, unit)
    if total is None:
        return f"{desc}: {done} ({rate})"
    return f"{desc}: {done}/{total} ({rate}, ETA {_eta(total - done, done, elapsed)})"


def done_line(desc: str, done: int, total: int | None, elapsed: float, unit: str) -> str:
    """The line at the end: 'desc: done 177/177 in 84 s (2.1 batch/s)'."""
    count = f"{done}/{total}" if total is not None else f"{done}"
    return f"{desc}: done {count} in {format_duration(elapsed)} ({format_rate(done, elapsed, unit)})"


def _print(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # sys.stderr looked up now: tests swap it


class LogProgress:
    """tqdm's update()/close() for a log: a progress_line every `every` seconds (default
    line_interval()), a done_line at close()."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", every: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.desc, self.total, self.unit, self.clock = desc, total, unit, clock
        self.every = line_interval() if every is None else every
        self.done = 0
        self.start = self.last = clock()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every and (self.total is None or self.done < self.total):
            self.last = now  # the last item is left to close()'s line
            _print(progress_line(self.desc, self.done, self.total, now - self.start, self.unit))

    def close(self) -> None:
        _print(done_line(self.desc, self.done, self.total, self.clock() - self.start, self.unit))


def _logged(iterable: Iterable[T], bar: LogProgress) -> Iterator[T]:
    for item in iterable:
        yield item
        bar.update()  # counted when the caller asks for the next one: its work on this one is done
    bar.close()


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
             disable: bool = False) -> Iterable[T]:
    """`iterable`, reporting progress: a tqdm bar on a terminal (cleared at the end), plain
    lines in a log (module docstring). `total` defaults to len(iterable) where it has one."""
    if disable or not to_log():
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, disable=disable)
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return _logged(iterable, LogProgress(desc, total, unit))


@contextlib.contextmanager
def progress_bar(desc: str, total: int, unit: str = "it", disable: bool = False) -> Iterator:
    """A bar advanced by hand (`bar.update(n)`), shown like `progress`; the done line is printed
    only when the block finishes without an error."""
    if disable or not to_log():
        with tqdm(total=total, desc=desc, unit=unit, leave=False, disable=disable) as bar:
            yield bar
        return
    bar = LogProgress(desc, total, unit)
    yield bar
    bar.close()


def train_line(step: int, max_steps: int, steps_run: int, elapsed: float, loss: float | None,
               final: bool = False) -> str:
    """'train: step 40/192 (1.3 s/step, ETA 3.2 min), loss 0.41'; at the end 'train: done step
    192/192 in 4.1 min (1.3 s/step), loss 0.38'. The rate counts this run's steps (`steps_run`),
    not those restored from a checkpoint."""
    rate = format_rate(steps_run, elapsed, "step")
    if final:
        text = f"train: done step {step}/{max_steps} in {format_duration(elapsed)} ({rate})"
    else:
        text = f"train: step {step}/{max_steps} ({rate}, ETA {_eta(max_steps - step, steps_run, elapsed)})"
    return text if loss is None else f"{text}, loss {loss:.3g}"


def trainer_progress(every: float | None = None, clock: Callable[[], float] = time.monotonic):
    """A transformers TrainerCallback printing train_line every `every` seconds (default
    line_interval()) and at the end, on the main process; for logs, with the Trainer's own
    tqdm bar off (TrainingArguments.disable_tqdm). The loss is the last one logged (the Trainer
    logs after a step ends, every train.logging_steps)."""
    from transformers import TrainerCallback

    every = line_interval() if every is None else every

    class TrainProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = self.last = clock()
            self.first_step = state.global_step  # > 0 when resumed from a checkpoint

        def _line(self, state, now: float, final: bool = False) -> str:
            loss = next((e["loss"] for e in reversed(state.log_history) if "loss" in e), None)
            return train_line(state.global_step, state.max_steps, state.global_step - self.first_step,
                              now - self.start, loss, final)

        def on_step_end(self, args, state, control, **kwargs):
            now = clock()
            if state.is_world_process_zero and now - self.last >= every and state.global_step < state.max_steps:
                self.last = now
                _print(self._line(state, now))

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                _print(self._line(state, clock(), final=True))

    return TrainProgress()
