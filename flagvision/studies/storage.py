"""Where studies live: the workspace's SQLite file by default (Optuna's tables beside the ``fv_`` ones),
any PostgreSQL/MySQL URL, or a journal file (``journal:///path`` or a path ending ``.log``/``.journal``).

RDB storages get a heartbeat, so a trial whose worker died is failed after ``grace_period_s`` and
retried as a WAITING copy that the next worker picks up. Journal files have no heartbeat in Optuna:
a killed worker's trial stays RUNNING there.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    pass
from flagvision.studies.config import CONFIG_ATTR, StudyConfig, StudyError, journal_path, redact_url, storage_kind

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def open_storage(
    url: str,
    *,
    heartbeat_interval_s: int | None = None,
    grace_period_s: int | None = None,
    max_retries: int = 2,
    on_stale: Callable[[FrozenTrial], None] | None = None,
) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; with ``heartbeat_interval_s``, dead workers' trials are retried.

    ``on_stale`` is called for each trial failed by the heartbeat check (e.g. to mark its run).
    """
    kind = storage_kind(url)
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        path = journal_path(url)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if kind == "sqlite":
        # Many processes share the file (workers, the app, the dashboard): wait for locks instead
        # of failing after pysqlite's default 5 s.
        engine_kwargs["connect_args"] = {"timeout": 60}
        db = url.split(":///", 1)[-1]
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
    else:
        engine_kwargs["pool_pre_ping"] = True  # survive a server restart between trials
    heartbeat: dict[str, Any] = {}
    if heartbeat_interval_s:
        heartbeat = {
            "heartbeat_interval": int(heartbeat_interval_s),
            "grace_period": int(grace_period_s or 2 * heartbeat_interval_s),
            "heartbeat_stale_trial_callback": _RetryStaleTrial(max_retries, on_stale),
        }
    import sqlalchemy.exc

    for attempt in range(5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
            except ImportError as exc:
                raise StudyError(f"storage {redact_url(url)}: database driver missing ({exc})") from None
            except sqlalchemy.exc.SQLAlchemyError as exc:
                # Processes starting together on a fresh database race in Optuna's CREATE TABLEs
                # (duplicate key on PostgreSQL, "already exists"/"locked" on SQLite); once one has
                # won, the tables exist and a retry is a no-op. Anything else (unreachable server,
                # bad login, bad path) fails the same way five times, then is reported.
                if attempt == 4:
                    raise StudyError(f"cannot open storage {redact_url(url)}: {str(exc).splitlines()[0]}") from None
                time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


class _RetryStaleTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry (a WAITING copy of the dead trial), plus our own bookkeeping hook."""

    def __init__(self, max_retries: int, on_stale: Callable[[FrozenTrial], None] | None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(max_retry=max_retries)
        self.on_stale = on_stale

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.on_stale is not None:
            self.on_stale(trial)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__call__(study, trial)


def load_study(storage_url: str, name: str) -> optuna.Study:
    """An existing study (read side: results, figures, the dashboard); StudyError lists the names."""
    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise StudyError(
            f"no study named {name!r} in {redact_url(storage_url)}; "
            + (f"existing: {', '.join(names)}" if names else "it holds no studies yet")
        ) from None


def list_studies(storage_url: str) -> list[dict[str, Any]]:
    """Name, trial counts and best value of every study in the storage."""
    out = []
    storage = open_storage(storage_url)
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = Counter(t.state.name for t in trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        out.append(
            {
                "name": name,
                "trials": len(trials),
                "states": dict(counts),
                "best_value": max((trial_value(t) for t in complete), default=None),
                "planned": (study.user_attrs.get(CONFIG_ATTR) or {}).get("n_trials"),
            }
        )
    return out


def stored_config(study: optuna.Study) -> StudyConfig | None:
    """The StudyConfig the study was created with (None for a study made outside FlagVision)."""
    data = study.user_attrs.get(CONFIG_ATTR)
    return StudyConfig.from_dict(data) if data else None


def resume_config(storage_url: str, name: str, **changes: Any) -> StudyConfig:
    """The stored config of an existing study, with e.g. ``n_trials``/``timeout_s`` changed."""
    cfg = stored_config(load_study(storage_url, name))
    if cfg is None:
        raise StudyError(f"study {name!r} was not created by FlagVision (no stored configuration)")
    return cfg.with_changes(storage=storage_url, **changes)


# --- running a study ----------------------------------------------------------------------------


def trial_value(t: FrozenTrial) -> float:
    """The objective value of a finished trial (Optuna types it optional; a COMPLETE trial always has one)."""
    if t.value is None:
        raise StudyError(f"trial {t.number} ({t.state.name}) has no value")
    return t.value


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def trial_params(trial: FrozenTrial, cfg: StudyConfig | None) -> dict[str, Any]:
    """The trial's complete HyperParams (searched + fixed + epochs) as a dict."""
    if "hparams" in trial.user_attrs:
        return dict(trial.user_attrs["hparams"])
    values = dict(cfg.search_space().fixed) if cfg else {}
    values.update(trial.params)
    if cfg:
        values["epochs"] = cfg.epochs_per_trial
    return values
