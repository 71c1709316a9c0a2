"""The study loop: the objective, the sampler and pruner, and a study run as a background job.

The objective is suggest → :func:`flagvision.training.run.execute_run` → report/prune → return the
best validation accuracy. Every trial is a normal run in the store (``study_name``,
``trial_number``, live per-epoch metrics through :class:`~flagvision.training.run.StoreCallback`), and the
trial's user attributes link back to the run id and checkpoint.

``n_trials`` is the study's total (over resumes and over several worker processes on the same
storage), not a per-process count: before each new trial the worker checks how many trials are
finished, running or waiting. Where studies are stored: :mod:`flagvision.studies.storage`.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from flagvision.training.callbacks import Callback
from flagvision.workspace import RunPaths

if TYPE_CHECKING:
    from flagvision.data.dataset import DatasetBundle
    from flagvision.jobs.store import Store
    from flagvision.training.engine import EpochMetrics, FitState
    from flagvision.workspace import Workspace
from flagvision.studies.config import CONFIG_ATTR, StudyConfig, StudyError, preset_params, redact_url, suggest
from flagvision.studies.storage import best_trial, open_storage, trial_params

# Trials that count towards n_trials: finished, being run, or queued to run (retries, presets).
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
ReportFn = Callable[[float, str], None]


@dataclass
class StudySummary:
    """What one ``run_study`` call did, and where the study stands."""

    name: str
    storage: str  # redacted URL
    planned: int  # n_trials of the study
    finished: int  # complete + pruned, over all workers and resumes
    complete: int
    pruned: int
    failed: int
    trials_run: int  # trials this call ran (any final state)
    best_trial: int | None
    best_value: float | None  # best validation accuracy, 0–1
    best_params: dict[str, Any]  # full HyperParams of the best trial
    best_run_id: int | None
    stopped: str  # "" | "cancelled" | "timeout"
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _SurplusTrial(Exception):
    """Another worker started the study's last planned trial at the same moment as this one."""


class _TrialCancelled(Exception):
    """should_stop() turned true during the trial: it is marked FAIL (not counted) and the study stops."""


class _TrialReporter(Callback):
    """Reports val accuracy per epoch to the trial, prunes, and checks the cancel flag per epoch."""

    def __init__(self, trial: optuna.Trial, should_stop: Callable[[], bool], on_epoch: Callable[[EpochMetrics], None]):
        self.trial, self.should_stop, self.on_epoch = trial, should_stop, on_epoch
        self.pruned_at: int | None = None
        self.cancelled = False
        # The default preset is the baseline every trial is compared with: never pruned.
        self.is_preset = bool(trial.user_attrs.get("preset"))

    def on_epoch_end(self, state: FitState, metrics: EpochMetrics, improved: bool) -> None:
        self.trial.report(metrics.val_acc, metrics.epoch)
        self.on_epoch(metrics)
        if self.should_stop():
            state.stop, state.stop_reason, self.cancelled = True, "cancelled", True
        elif metrics.epoch < state.cfg.hparams.epochs and not self.is_preset and self.trial.should_prune():
            # Stopping here (not raising) lets fit end cleanly: checkpoint, store, evaluation.
            state.stop, state.stop_reason, self.pruned_at = True, "pruned", metrics.epoch


def make_sampler(cfg: StudyConfig, seed: int) -> optuna.samplers.BaseSampler:
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    """The study's pruner. Epochs are reported as steps 1..E, so "never prune the first W epochs"
    is Optuna's ``n_warmup_steps = W + 1`` (its earliest check is at ``step == n_warmup_steps``)."""
    warmup_steps = cfg.pruner_warmup_epochs + 1
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials, n_warmup_steps=warmup_steps)
    if cfg.pruner == "percentile":
        return optuna.pruners.PercentilePruner(
            float(cfg.pruner_percentile), n_startup_trials=cfg.pruner_startup_trials, n_warmup_steps=warmup_steps
        )
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cfg.epochs_per_trial, reduction_factor=3)
    return optuna.pruners.NopPruner()


def describe_pruner(cfg: StudyConfig) -> str:
    """The study's pruning rule in a few plain words (reports, the bench)."""
    first = cfg.pruner_warmup_epochs + 1
    if cfg.pruner == "percentile":
        return (
            f"from epoch {first}, a trial goes on while it is in the top {cfg.pruner_percentile:g} % of the "
            f"complete trials at the same epoch; none pruned before {cfg.pruner_startup_trials} trials completed"
        )
    if cfg.pruner == "median":
        return (
            f"from epoch {first}, a trial goes on while it is above the median of the complete trials at the "
            f"same epoch; none pruned before {cfg.pruner_startup_trials} trials completed"
        )
    if cfg.pruner == "hyperband":
        return f"Hyperband: brackets of successive halving from 1 to {cfg.epochs_per_trial} epochs, reduction factor 3"
    return "no pruning"


def _counts(study: optuna.Study) -> Counter:
    return Counter(t.state for t in study.get_trials(deepcopy=False))


def _needs_work(study: optuna.Study, planned: int) -> bool:
    c = _counts(study)
    return c[TrialState.WAITING] > 0 or sum(c[s] for s in _COUNTED) < planned


def _open_or_create(cfg: StudyConfig, storage: optuna.storages.BaseStorage, seed: int) -> optuna.Study:
    study = optuna.create_study(
        study_name=cfg.name,
        storage=storage,
        direction="maximize",
        sampler=make_sampler(cfg, seed),
        pruner=make_pruner(cfg),
        load_if_exists=True,
    )
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, cfg.to_dict())
    else:
        old = StudyConfig.from_dict(stored).search_definition()
        new = cfg.search_definition()
        if old != new:
            changed = sorted(k for k in new if new[k] != old[k])
            raise StudyError(
                f"study {cfg.name!r} already exists with a different {' and '.join(changed)}; resume it with "
                f"`python -m flagvision tune --resume {cfg.name}` or choose a new --name"
            )
    return study


def run_study(
    cfg: StudyConfig,
    ws: Workspace,
    should_stop: Callable[[], bool] | None = None,
    report: ReportFn | None = None,
    data: DatasetBundle | None = None,
    *,
    store: Store | None = None,
    job_id: int | None = None,
    worker: int = 0,
) -> StudySummary:
    """Run (or resume) the study until it has ``cfg.n_trials`` trials, a timeout, or a cancel.

    ``data`` is loaded once here when not given and shared by every trial. ``worker`` distinguishes
    processes working on one study, so that their seeded samplers do not propose the same points.
    """
    from flagvision.data.dataset import load_dataset
    from flagvision.jobs.store import Store
    from flagvision.training.run import execute_run

    t0 = time.monotonic()
    should_stop = should_stop or (lambda: False)
    report = report or (lambda fraction, text: None)
    store = store or Store(ws.db_path)
    url = cfg.storage or ws.storage_url
    space = cfg.search_space()

    def mark_dead_run(trial: FrozenTrial) -> None:
        run_id = trial.user_attrs.get("run_id")
        if run_id is not None and trial.user_attrs.get("workspace") == str(ws.root):
            store.end_run(
                int(run_id), "failed", "its worker stopped sending heartbeats (killed?); the trial is retried"
            )

    storage = open_storage(
        url,
        heartbeat_interval_s=cfg.heartbeat_interval_s,
        grace_period_s=cfg.grace_period_s,
        max_retries=cfg.max_retries,
        on_stale=mark_dead_run,
    )
    study = _open_or_create(cfg, storage, cfg.seed)
    # Distinct, reproducible sampler seeds per worker and per resume (a resumed RandomSampler with
    # the original seed would propose the first trials again).
    existing = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(cfg, cfg.seed + 7919 * worker + existing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial is retried before anything new
    if existing == 0 and cfg.enqueue_preset:
        study.enqueue_trial(preset_params(space), user_attrs={"preset": "the default preset"}, skip_if_exists=True)

    if data is None:
        data = load_dataset(cfg.base.data)
    planned = cfg.n_trials
    trials_run = 0
    stopped = ""
    progress: dict[str, Any] = {"done": 0, "best": None}  # done: int, best: (trial number, value) or None

    def refresh() -> None:
        c = _counts(study)
        progress["done"] = c[TrialState.COMPLETE] + c[TrialState.PRUNED]
        best = best_trial(study)
        progress["best"] = (best.number, best.value) if best else None

    def text(extra: str = "") -> str:
        best = progress["best"]
        best_text = f"best {best[1]:.1%} (trial {best[0]})" if best else "no finished trial yet"
        return f"{progress['done']}/{planned} trials · {best_text}" + (f" · {extra}" if extra else "")

    def objective(trial: optuna.Trial) -> float:
        ahead = sum(1 for t in study.get_trials(deepcopy=False, states=_COUNTED) if t.number < trial.number)
        if ahead >= planned:
            raise _SurplusTrial(f"the study already has its {planned} trials")
        hp = suggest(trial, space)
        run_cfg = replace(cfg.base, hparams=hp)

        def remember_run(run_id: int, run_dir: Path) -> None:  # read back by mark_dead_run and the results
            for key, value in {
                "run_id": run_id,
                "run_dir": str(run_dir),
                "checkpoint_path": str(RunPaths(run_dir).checkpoint),
                "workspace": str(ws.root),
                "hparams": hp.to_dict(),
            }.items():
                trial.set_user_attr(key, value)

        def on_epoch(m: EpochMetrics) -> None:
            fraction = (progress["done"] + m.epoch / hp.epochs) / planned
            report(min(fraction, 1.0), text(f"trial {trial.number} epoch {m.epoch}/{hp.epochs} val {m.val_acc:.1%}"))

        reporter = _TrialReporter(trial, should_stop, on_epoch)
        outcome = execute_run(
            ws,
            store,
            run_cfg,
            name=f"{cfg.name} #{trial.number}",
            row={"study_name": cfg.name, "trial_number": trial.number, "job_id": job_id},
            callbacks=[reporter],
            data=data,
            on_start=remember_run,
            cancel_note="the study was cancelled",
        )
        if reporter.cancelled:
            trial.set_user_attr("stop_reason", "cancelled")
            raise _TrialCancelled("cancelled after the current epoch")
        result = outcome.result
        best_acc = result.history.best_val_acc
        trial.set_user_attr("test_acc", result.evaluation.accuracy if result.evaluation else None)
        if reporter.pruned_at is not None:
            store.update_run(
                outcome.run_id, notes=f"pruned by the {cfg.pruner} pruner after epoch {reporter.pruned_at}"
            )
            raise optuna.TrialPruned(f"val accuracy {best_acc:.1%} after epoch {reporter.pruned_at}")
        return best_acc

    def after_trial(study_: optuna.Study, frozen: FrozenTrial) -> None:
        nonlocal trials_run, stopped
        trials_run += 1
        refresh()
        report(min(progress["done"] / planned, 1.0), text(f"trial {frozen.number} {frozen.state.name.lower()}"))
        if should_stop():
            stopped = "cancelled"
            study_.stop()
        elif not _needs_work(study_, planned):
            study_.stop()

    refresh()
    report(min(progress["done"] / planned, 1.0), text("starting"))
    if _needs_work(study, planned) and not should_stop():
        import torch

        study.optimize(
            objective,
            timeout=cfg.timeout_s or None,
            # A cancelled or surplus trial is recorded as FAIL and the loop goes on to its check;
            # a GPU out-of-memory in one configuration should not end the whole study.
            catch=(_TrialCancelled, _SurplusTrial, torch.cuda.OutOfMemoryError),
            callbacks=[after_trial],
        )
        if not stopped and cfg.timeout_s and _needs_work(study, planned) and time.monotonic() - t0 >= cfg.timeout_s:
            stopped = "timeout"
    elif should_stop():
        stopped = "cancelled"
    refresh()
    return _summary(study, cfg, url, trials_run, stopped, time.monotonic() - t0)


def _summary(
    study: optuna.Study, cfg: StudyConfig, url: str, trials_run: int, stopped: str, seconds: float
) -> StudySummary:
    c = _counts(study)
    best = best_trial(study)
    return StudySummary(
        name=cfg.name,
        storage=redact_url(url),
        planned=cfg.n_trials,
        finished=c[TrialState.COMPLETE] + c[TrialState.PRUNED],
        complete=c[TrialState.COMPLETE],
        pruned=c[TrialState.PRUNED],
        failed=c[TrialState.FAIL],
        trials_run=trials_run,
        best_trial=best.number if best else None,
        best_value=best.value if best else None,
        best_params=trial_params(best, cfg) if best else {},
        best_run_id=best.user_attrs.get("run_id") if best else None,
        stopped=stopped,
        seconds=seconds,
    )


def run_study_job(
    ws: Workspace, store: Store, job: dict[str, Any], should_stop: Callable[[], bool], report: ReportFn
) -> dict[str, Any]:
    """Entry point of the background worker for jobs of kind ``"study"`` (payload: StudyConfig dict)."""
    payload = job.get("payload")
    if payload is None:
        payload = json.loads(job.get("payload_json") or "{}")
    cfg = StudyConfig.from_dict(payload.get("config", payload))
    if job.get("id") is not None:
        store.update_job(int(job["id"]), study_name=cfg.name)
    summary = run_study(cfg, ws, should_stop=should_stop, report=report, store=store, job_id=job.get("id"))
    return summary.to_dict()


# --- results ------------------------------------------------------------------------------------
