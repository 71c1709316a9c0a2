"""Runs as the store sees them: create a run row + folder, and mirror a fit into the store.

Used by the CLI (foreground training), the worker (background jobs) and Optuna trials, so every
training, however started, has the same row, folder and live per-epoch metrics.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .config import RunConfig
from .engine import Callback, EpochMetrics, FitState
from .owners import mark_owner
from .store import Store
from .training import RunResult, write_run_config
from .workspace import Workspace


def dataset_label(ws: Workspace, path: str) -> str:
    """Short name of a dataset: its folder name inside the workspace, else the path as given."""
    p = Path(path).resolve()
    return p.name if ws.datasets_dir in p.parents else str(path)


def create_run(ws: Workspace, store: Store, cfg: RunConfig, name: str = "", **fields) -> tuple[int, Path]:
    """Insert a run row, create ``runs/<id>/`` with its config; return ``(run_id, run_dir)``."""
    run_id = store.create_run(
        name=name or cfg.label,
        model=cfg.model,
        dataset=dataset_label(ws, cfg.data.path),
        config=cfg.to_dict(),
        label=cfg.label,
        **fields,
    )
    run_dir = ws.run_dir(run_id)
    write_run_config(run_dir, cfg)
    store.update_run(run_id, run_dir=str(run_dir), checkpoint_path=str(run_dir / "checkpoint"))
    return run_id, run_dir


def delete_run(ws: Workspace, store: Store, run_id: int) -> None:
    """Remove the run's row, metrics and folder."""
    store.delete_run(run_id)
    shutil.rmtree(ws.run_dir(run_id), ignore_errors=True)


class StoreCallback(Callback):
    """Writes each epoch's metrics and the best-so-far into the store, live."""

    def __init__(self, store: Store, run_id: int):
        self.store, self.run_id = store, run_id

    def on_fit_start(self, state: FitState) -> None:
        # A resumed run continues after its last checkpointed epoch; later logged epochs are void.
        done = state.history.epochs[-1].epoch if state.history.epochs else 0
        self.store.delete_metrics_after(self.run_id, done)
        # A process killed between saving the checkpoint and logging the epoch left that epoch in
        # the checkpoint's history only; log it now so the curve has no gap.
        logged = {m["epoch"] for m in self.store.get_metrics(self.run_id)} if done else set()
        for m in state.history.epochs:
            if m.epoch not in logged:
                self.store.log_epoch(self.run_id, **m.to_dict())
        self.store.update_run(self.run_id, status="running", started_at=time.time(), error=None)
        run = self.store.get_run(self.run_id)
        if run and run.get("run_dir"):
            mark_owner(Path(run["run_dir"]))

    def on_epoch_end(self, state: FitState, metrics: EpochMetrics, improved: bool) -> None:
        self.store.log_epoch(self.run_id, **metrics.to_dict())
        if improved:
            self.store.update_run(
                self.run_id, best_epoch=metrics.epoch, best_val_acc=metrics.val_acc, best_val_loss=metrics.val_loss
            )


def finish_run(store: Store, run_id: int, result: RunResult | None, status: str, error: str | None = None) -> None:
    fields: dict = {"status": status, "finished_at": time.time(), "error": error}
    if result is not None and result.evaluation is not None:
        fields["test_acc"] = result.evaluation.accuracy
    store.update_run(run_id, **fields)

