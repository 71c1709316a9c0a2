"""A run as the store sees it: its row and folder, live per-epoch metrics, and its end.

:func:`execute_run` is the one way to run a training: the CLI (foreground), the worker (background
jobs) and every Optuna trial call it, so each run, however started, gets the same row, folder,
live metrics, and the same rule for how it ends (:func:`run_status`). The row itself is made by
:func:`create_run` (by ``execute_run``, or at submission for a queued background job) and closed
by :func:`finish_run` (by ``execute_run``; by the job queue and the reapers only for runs whose
process never trained or died).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flagvision.config import RunConfig
from flagvision.data.dataset import DatasetBundle
from flagvision.errors import describe
from flagvision.jobs.owners import mark_owner
from flagvision.jobs.store import Store
from flagvision.training.engine import Callback, EpochMetrics, FitState
from flagvision.training.pipeline import RunResult, run_training, write_run_config
from flagvision.workspace import RunPaths, Workspace


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
    store.update_run(run_id, run_dir=str(run_dir), checkpoint_path=str(RunPaths(run_dir).checkpoint))
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
    fields = {"test_acc": result.evaluation.accuracy} if result is not None and result.evaluation else {}
    store.end_run(run_id, status, error, **fields)


@dataclass(frozen=True)
class RunOutcome:
    """How :func:`execute_run` ended: ``status`` is "succeeded" or "cancelled" (a failure raises)."""

    run_id: int
    status: str
    result: RunResult


def run_status(result: RunResult) -> str:
    """A training that returned: "cancelled" if it was asked to stop, else "succeeded" (an early
    stop or a pruned trial is a success: its best checkpoint is kept and evaluated)."""
    return "cancelled" if result.history.stop_reason == "cancelled" else "succeeded"


def execute_run(
    ws: Workspace,
    store: Store,
    cfg: RunConfig,
    *,
    run_id: int | None = None,
    name: str = "",
    row: dict | None = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    data: DatasetBundle | None = None,
    on_start: Callable[[int, Path], None] | None = None,
    cancel_note: str | None = None,
) -> RunOutcome:
    """Run one training end to end and record it: the one place a run is trained and ended.

    ``run_id`` names a row made earlier (a queued background job); otherwise a row named ``name``
    (with extra ``row`` fields, e.g. a study's trial number) is created. ``on_start(run_id,
    run_dir)`` is called before training. The store gets every epoch live (:class:`StoreCallback`,
    before ``callbacks``) and the end: "succeeded" or "cancelled" (with ``cancel_note``) when
    training returns; "failed" with the error's one line when it raises an ``Exception``;
    "cancelled" when it is interrupted (Ctrl-C, or a signal before training started: a
    ``BaseException``). The exception is then raised again for the caller to report.
    """
    if run_id is None:
        run_id, run_dir = create_run(ws, store, cfg, name=name, **(row or {}))
    else:
        run_dir = ws.run_dir(run_id)
    if on_start is not None:
        on_start(run_id, run_dir)
    try:
        result = run_training(cfg, run_dir, [StoreCallback(store, run_id), *callbacks], resume=resume, data=data)
    except Exception as exc:
        finish_run(store, run_id, None, "failed", describe(exc))
        raise
    except BaseException as exc:  # KeyboardInterrupt, or a worker's cancel before training began
        why = "interrupted from the keyboard" if isinstance(exc, KeyboardInterrupt) else str(exc) or "interrupted"
        finish_run(store, run_id, None, "cancelled", why)
        raise
    status = run_status(result)
    finish_run(store, run_id, result, status, cancel_note if status == "cancelled" else None)
    return RunOutcome(run_id, status, result)
