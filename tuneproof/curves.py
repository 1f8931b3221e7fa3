"""The train stage's loss curves: dvclive files that `dvc plots show` draws against the optimizer step.

Not transformers' DVCLiveCallback: that one numbers points by log call (train and eval points
interleave), logs timing values and every TrainingArguments field, and cannot replay the history
of a resumed run. LossCurves redraws the restored log history on resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from transformers import TrainerCallback

CURVES_DIR = "train_curves"  # dvclive dir under <paths.metrics> (dvc.yaml's train plots: same name)
CURVES = {  # Trainer log key -> dvclive metric name (plotted against the optimizer step)
    "loss": "train/loss",
    "mean_token_accuracy": "train/mean_token_accuracy",
    "eval_loss": "eval/loss",
    "eval_mean_token_accuracy": "eval/mean_token_accuracy",
}


def curve_points(logs: dict, extra: Sequence[str] = ()) -> dict[str, float]:
    """The curve points in one Trainer log entry: CURVES, plus `extra` eval keys (eval_x -> eval/x)."""
    names = {**CURVES, **{key: key.replace("eval_", "eval/", 1) for key in extra}}
    return {names[key]: value for key, value in logs.items() if key in names}


class LossCurves(TrainerCallback):
    """Writes the CURVES (and `extra` eval metrics, e.g. eval_accuracy) to dvclive in `curves_dir`,
    indexed by the optimizer step; only the main process writes."""

    def __init__(self, curves_dir: str | Path, extra: Sequence[str] = ()):
        self.curves_dir, self.extra, self.live = str(curves_dir), tuple(extra), None

    def on_train_begin(self, args, state, control, **kwargs):
        from dvclive import Live

        if not state.is_world_process_zero:  # one writer: the other processes log the same points
            return
        # dvcyaml=None: dvc.yaml declares these plots; save_dvc_exp=False: `dvc exp run` saves experiments
        self.live = Live(self.curves_dir, save_dvc_exp=False, dvcyaml=None)
        for entry in state.log_history:  # non-empty only when resuming
            self._log(entry["step"], entry)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._log(state.global_step, logs or {})

    def _log(self, step: int, logs: dict) -> None:
        points = curve_points(logs, self.extra)
        if points and self.live is not None:
            self.live.step = step
            for name, value in points.items():
                self.live.log_metric(name, value)

    def on_train_end(self, args, state, control, **kwargs):
        if self.live is None:
            return
        self.live.end()
        # dvclive always writes its own summary; metrics/train.json is the stage's one metrics file
        Path(self.live.metrics_file).unlink(missing_ok=True)
