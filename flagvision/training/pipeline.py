"""One training run end to end: resolved config → data → model → fit → best checkpoint → evaluation.

:func:`run_training` trains in a run folder and knows nothing of the store; the CLI, the background
worker and every study trial reach it through :func:`flagvision.training.run.execute_run`, which adds the
run's row, live metrics and end, and differ only in the callbacks they pass (printing, cancel flag...).

A run folder holds::

    config.json              the resolved RunConfig
    checkpoint/              model.safetensors + card.json of the best epoch; last.* to resume
    evaluation.json          accuracy, per-class accuracy, confusion matrix, misclassified files,
                             calibration (temperature, ECE and reliability bins before and after)

The best checkpoint's temperature (:func:`flagvision.training.calibration.fit_temperature`) is
fitted here, on the held-out split's logits, and stored in its card, so every run, trial and
worker run ends calibrated by the same code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flagvision.config import CONFIDENCE_THRESHOLD, RunConfig
from flagvision.data.dataset import DatasetBundle, load_dataset
from flagvision.runtime import seed_everything
from flagvision.training.calibration import calibration_report, fit_temperature
from flagvision.training.checkpoints import (
    load_checkpoint,
    load_last_state,
    make_card,
    save_checkpoint,
    save_last_state,
    write_json_atomic,
)
from flagvision.training.engine import (
    Callback,
    EpochMetrics,
    EvalResult,
    FitState,
    History,
    eval_from_logits,
    fit,
    predict_logits,
)
from flagvision.workspace import RunPaths


@dataclass
class RunResult:
    run_dir: Path
    history: History
    evaluation: EvalResult | None  # None when no epoch completed
    checkpoint_dir: Path


class CheckpointCallback(Callback):
    """Best epoch → checkpoint (weights + card); every epoch → resumable last state."""

    def __init__(self, checkpoint_dir: Path, class_names: list[str], fingerprint: str):
        self.dir, self.class_names, self.fingerprint = checkpoint_dir, class_names, fingerprint

    def on_epoch_end(self, state: FitState, metrics: EpochMetrics, improved: bool) -> None:
        if improved:
            card = make_card(
                state.model,
                state.cfg,
                self.class_names,
                self.fingerprint,
                epoch=metrics.epoch,
                metrics=metrics.to_dict(),
            )
            save_checkpoint(self.dir, state.model, card)
        save_last_state(self.dir, state.model, state.optimizer, state.history, metrics.epoch)


def write_run_config(run_dir: Path, cfg: RunConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RunPaths(run_dir).config, cfg.to_dict())


def read_run_config(run_dir: Path) -> RunConfig:
    return RunConfig.from_dict(json.loads(RunPaths(Path(run_dir)).config.read_text()))


def run_training(
    cfg: RunConfig,
    run_dir: str | os.PathLike[str],
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    data: DatasetBundle | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Train (or continue) the run in ``run_dir``; evaluate its best checkpoint at the end."""
    from flagvision.models.networks import get_model

    run_dir = Path(run_dir)
    paths = RunPaths(run_dir)
    ckpt_dir = paths.checkpoint
    write_run_config(run_dir, cfg)
    data = data or load_dataset(cfg.data, progress=progress)
    seed_everything(cfg.seed)
    model = get_model(cfg.model, data.num_classes, cfg)
    resume_state = load_last_state(ckpt_dir, model) if resume else None
    history = fit(
        model, data, cfg, [CheckpointCallback(ckpt_dir, data.class_names, data.fingerprint), *callbacks], resume_state
    )
    if not history.epochs:
        return RunResult(run_dir, history, None, ckpt_dir)
    best, card = load_checkpoint(ckpt_dir)
    logits = predict_logits(best, data.val.images)
    result = eval_from_logits(logits, data.val.labels, data.class_names)
    temperature = fit_temperature(logits, data.val.labels)
    calibration = calibration_report(logits, data.val.labels, temperature, CONFIDENCE_THRESHOLD)
    misclassified = [
        {"path": data.val.paths[i], "true": data.class_names[t], "predicted": data.class_names[p]}
        for i, (t, p) in enumerate(zip(data.val.labels.tolist(), result.predictions, strict=True))
        if t != p
    ]
    write_json_atomic(
        paths.evaluation,
        {
            **result.to_dict(),
            "split": data.eval_split_name or "held-out validation",
            "misclassified": misclassified[:500],
            "skipped_files": data.skipped,
            "stop_reason": history.stop_reason,
            "label": cfg.label,
            "calibration": calibration,
        },
    )
    card["evaluation"] = {
        "accuracy": result.accuracy,
        "loss": result.loss,
        "n_images": result.n_images,
        "ece_before": calibration["ece_before"],
        "ece_after": calibration["ece_after"],
    }
    card["temperature"] = temperature
    write_json_atomic(paths.card, card)
    return RunResult(run_dir, history, result, ckpt_dir)
