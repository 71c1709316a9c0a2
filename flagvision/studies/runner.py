"""Optuna studies: the search space, the objective, storage, and what a finished study says.

The search space is generated from ``config.HYPERPARAMS`` (the one place ranges live); a study may
narrow a parameter's range, restrict its choices, or fix it. A fixed parameter is *not* suggested,
so it never appears in ``trial.params`` and parameter importances are computed over the searched
parameters only (a one-value distribution would only add noise to them).

The objective is suggest → :func:`flagvision.training.run.execute_run` → report/prune → return the
best validation accuracy. Every trial is a normal run in the store (``study_name``,
``trial_number``, live per-epoch metrics through :class:`~flagvision.training.run.StoreCallback`), and the
trial's user attributes link back to the run id and checkpoint.

Storage: the workspace's SQLite file by default (Optuna's tables beside the ``fv_`` ones), any
PostgreSQL/MySQL URL, or a journal file (``journal:///path`` or a path ending ``.log``/``.journal``).
RDB storages get a heartbeat, so a trial whose worker died is failed after ``grace_period_s`` and
retried as a WAITING copy that the next worker picks up. Journal files have no heartbeat in Optuna:
a killed worker's trial stays RUNNING there.

``n_trials`` is the study's total (over resumes and over several worker processes on the same
storage), not a per-process count: before each new trial the worker checks how many trials are
finished, running or waiting.
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from flagvision.config import (
    CUSTOM_CNN,
    HYPERPARAMS,
    PARAM_SPECS,
    SEARCHABLE,
    ConfigError,
    HyperParams,
    ParamSpec,
    RunConfig,
    check_cnn_geometry,
    model_info,
)
from flagvision.studies.options import PRUNERS, PRUNING_TRADE, SAMPLERS  # noqa: F401 - re-exported for the app and the tests
from flagvision.training.callbacks import Callback
from flagvision.workspace import RunPaths

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from flagvision.data.dataset import DatasetBundle
    from flagvision.jobs.store import Store
    from flagvision.training.engine import EpochMetrics, FitState
    from flagvision.workspace import Workspace

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Trials that count towards n_trials: finished, being run, or queued to run (retries, presets).
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
CONFIG_ATTR = "flagvision_config"  # study user attribute: the StudyConfig that created the study
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:@+-]{0,127}$")

ReportFn = Callable[[float, str], None]


class StudyError(ConfigError):
    """A study option, storage URL or study name that cannot be used; the message names the fix.

    A ``ConfigError`` subclass, so the CLI reports it as a user error (exit 2).
    """


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamOverride:
    """How a study changes one parameter's search range (see ``config.HYPERPARAMS`` for the full one).

    Exactly one of: ``fixed`` (the parameter is not searched), ``low``/``high`` (a narrowed
    numeric range inside the full one, on its step grid), ``choices`` (a subset of a categorical).
    """

    name: str  # one of config.SEARCHABLE
    fixed: Any = None  # a single value; the parameter is then not suggested
    low: float | None = None  # narrowed lower bound (int/float parameters)
    high: float | None = None  # narrowed upper bound
    choices: tuple[str, ...] = ()  # subset of a categorical parameter's choices

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParamOverride:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise StudyError(
                f"unknown search-space field(s) {', '.join(unknown)}; valid: name, fixed, low, high, choices"
            )
        data = dict(data)
        data["choices"] = tuple(data.get("choices") or ())
        return cls(**data)


@dataclass(frozen=True)
class SearchSpace:
    """The resolved space: a (possibly narrowed) ParamSpec per searched parameter, fixed values."""

    dims: tuple[ParamSpec, ...]  # searched, in HYPERPARAMS order
    fixed: dict[str, Any]  # name → value, not suggested
    epochs: int  # constant per study

    @property
    def searched(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dims)


def resolve_space(overrides: tuple[ParamOverride, ...] | list[ParamOverride], epochs: int) -> SearchSpace:
    """Apply per-study overrides to the full space of ``config.HYPERPARAMS`` (validated)."""
    by_name: dict[str, ParamOverride] = {}
    for o in overrides:
        if o.name not in SEARCHABLE:
            raise StudyError(f"{o.name!r} is not a searchable parameter; valid: {', '.join(SEARCHABLE)}")
        if o.name in by_name:
            raise StudyError(f"{o.name} is overridden twice; give one --fix or --range per parameter")
        by_name[o.name] = o
    dims: list[ParamSpec] = []
    fixed: dict[str, Any] = {}
    for spec in HYPERPARAMS:
        if spec.name not in SEARCHABLE:
            continue
        override = by_name.get(spec.name)
        dim = spec if override is None else _narrow(spec, override)
        if isinstance(dim, ParamSpec):
            dims.append(dim)
        else:
            fixed[spec.name] = dim[0]
    return SearchSpace(tuple(dims), fixed, int(epochs))


def _narrow(spec: ParamSpec, o: ParamOverride) -> ParamSpec | tuple[Any]:
    """A narrowed copy of ``spec``, or a 1-tuple holding the fixed value."""
    try:
        return _narrow_checked(spec, o)
    except StudyError:
        raise
    except ConfigError as exc:  # a value outside the full range: same message, study error type
        raise StudyError(str(exc)) from None


def _narrow_checked(spec: ParamSpec, o: ParamOverride) -> ParamSpec | tuple[Any]:
    given = [o.fixed is not None, o.low is not None or o.high is not None, bool(o.choices)]
    if sum(given) != 1:
        raise StudyError(f"{spec.name}: give exactly one of a fixed value, a low:high range or a choice list")
    if o.fixed is not None:
        return (spec.check(o.fixed),)
    if o.choices:
        if spec.kind != "categorical":
            raise StudyError(f"{spec.name} is numeric; narrow it with a low:high range, not choices")
        choices = tuple(dict.fromkeys(spec.check(c) for c in o.choices))
        # One choice left is a fixed value: not searched (keeps importances about real choices).
        return (choices[0],) if len(choices) == 1 else replace(spec, choices=choices)
    if spec.kind == "categorical":
        raise StudyError(f"{spec.name} is categorical; restrict it with choices ({', '.join(spec.choices)})")
    low = spec.check(spec.low if o.low is None else o.low)
    high = spec.check(spec.high if o.high is None else o.high)
    if low > high:
        raise StudyError(f"{spec.name}: low {low:g} is above high {high:g}")
    if low == high:
        return (low,)
    return replace(spec, low=low, high=high)


@dataclass(frozen=True)
class StudyConfig:
    """Everything an Optuna study needs; stored on the study (user attribute) and as a job payload."""

    name: str = "flagvision-study"  # study name in the storage; an existing one is resumed
    n_trials: int = 20  # total trials of the study (finished = complete + pruned), 1–10000
    timeout_s: float = 0.0  # stop starting new trials after this many seconds (0 = no limit)
    epochs_per_trial: int = 5  # constant per study (the reference study used 5), 1–100
    sampler: str = "tpe"  # one of SAMPLERS; seeded with `seed`
    # Pruning (see make_pruner): defaults chosen by measuring the bench's study (BENCHMARKS.md):
    # from epoch 1, a trial goes on while in the best quarter of the complete trials at that epoch.
    pruner: str = "percentile"  # one of PRUNERS
    pruner_startup_trials: int = 2  # median/percentile: complete trials before any pruning, 0–10000
    pruner_warmup_epochs: int = 0  # median/percentile: first epochs of each trial never pruned, 0–100
    pruner_percentile: float = 25.0  # percentile: a trial goes on while it is in this top % of the
    #                                  complete trials at the same epoch, 1–100 (50 = the median pruner)
    seed: int = 0  # seeds the sampler (and, through `base`, every trial's weights init)
    storage: str = ""  # Optuna storage URL or journal file; "" = the workspace's SQLite file
    space: tuple[ParamOverride, ...] = ()  # per-parameter narrowing or fixing
    base: RunConfig = field(default_factory=RunConfig)  # data path, image size, device...; hparams ignored
    enqueue_preset: bool = True  # run the reference study's best preset as the first trial, as a baseline
    heartbeat_interval_s: int = 10  # RDB storages: a running trial's heartbeat period (≥ 1)
    grace_period_s: int = 60  # RDB storages: no heartbeat for this long → trial FAIL, then retried
    max_retries: int = 2  # how often a trial whose worker died is retried (0 = never)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise StudyError(
                f"study name {self.name!r} must be 1–128 characters: letters, digits, space and ._:@+- "
                "(starting with a letter or digit)"
            )
        _check_int("n_trials", self.n_trials, 1, 10_000)
        _check_int("epochs_per_trial", self.epochs_per_trial, 1, 100)
        _check_int("pruner_startup_trials", self.pruner_startup_trials, 0, 10_000)
        _check_int("pruner_warmup_epochs", self.pruner_warmup_epochs, 0, 100)
        if (
            isinstance(self.pruner_percentile, bool)
            or not isinstance(self.pruner_percentile, (int, float))
            or not 1 <= self.pruner_percentile <= 100
        ):
            raise StudyError(f"pruner_percentile={self.pruner_percentile!r} must be a number in 1–100 (50 = median)")
        _check_int("heartbeat_interval_s", self.heartbeat_interval_s, 1, 3600)
        _check_int("grace_period_s", self.grace_period_s, 1, 86_400)
        _check_int("max_retries", self.max_retries, 0, 100)
        if not isinstance(self.timeout_s, (int, float)) or not math.isfinite(self.timeout_s) or self.timeout_s < 0:
            raise StudyError(f"timeout_s={self.timeout_s!r} must be ≥ 0 seconds (0 = no limit)")
        if self.grace_period_s <= self.heartbeat_interval_s:
            raise StudyError(
                f"grace_period_s={self.grace_period_s} must exceed heartbeat_interval_s={self.heartbeat_interval_s}, "
                "or live trials would be failed"
            )
        if self.sampler not in SAMPLERS:
            raise StudyError(f"sampler {self.sampler!r} is not one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise StudyError(f"pruner {self.pruner!r} is not one of {', '.join(PRUNERS)}")
        if not isinstance(self.base, RunConfig):
            raise StudyError("base must be a RunConfig")
        if not model_info(self.base.model).searchable:
            raise StudyError(
                f"studies search the custom CNN's hyperparameters; base model {self.base.model!r} is not {CUSTOM_CNN}"
            )
        if self.storage:
            storage_kind(self.storage)  # raises on an unusable URL
        space = self.search_space()  # validates the overrides
        _check_space_geometry(space, self.base.data.image_size)

    def search_space(self) -> SearchSpace:
        return resolve_space(self.space, self.epochs_per_trial)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["space"] = [{k: v for k, v in asdict(o).items() if v not in (None, ())} for o in self.space]
        for o in d["space"]:
            if "choices" in o:
                o["choices"] = list(o["choices"])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise StudyError(
                f"unknown StudyConfig field(s) {', '.join(unknown)}; valid: {', '.join(f.name for f in fields(cls))}"
            )
        data = dict(data)
        if "space" in data:
            data["space"] = tuple(
                o if isinstance(o, ParamOverride) else ParamOverride.from_dict(o) for o in data["space"]
            )
        if isinstance(data.get("base"), dict):
            data["base"] = RunConfig.from_dict(data["base"])
        return cls(**data)

    def with_changes(self, **changes: Any) -> StudyConfig:
        return StudyConfig.from_dict({**self.to_dict(), **changes})

    def search_definition(self) -> dict[str, Any]:
        """What makes trials comparable: a resumed study must keep these unchanged."""
        d = self.to_dict()
        base = dict(d["base"])
        base.pop("hparams")  # the searched/fixed values come from the space
        base.pop("threads", None)  # how many cores a worker uses does not change results' meaning
        return {
            "space": sorted(d["space"], key=lambda o: o["name"]),
            "epochs_per_trial": d["epochs_per_trial"],
            "base": base,
        }


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise StudyError(f"{name}={value!r} must be a whole number in {low}–{high}")


def _check_space_geometry(space: SearchSpace, image_size: int) -> None:
    """Refuse a space with any configuration the CNN cannot build, so no trial fails for it.

    Feature-map size falls with kernel size and fc1's weight count rises with filters, units and
    map size, so the two extreme corners of the space cover every point.
    """

    def corner(pick: Callable[[ParamSpec], Any]) -> HyperParams:
        values = dict(space.fixed)
        for d in space.dims:
            values[d.name] = pick(d)
        return HyperParams(**values, epochs=space.epochs)

    big_kernels = corner(
        lambda d: d.high if d.name.startswith("kernel") else (d.low if d.kind != "categorical" else d.choices[0])
    )
    small_kernels = corner(
        lambda d: d.low if d.name.startswith("kernel") else (d.high if d.kind != "categorical" else d.choices[0])
    )
    for hp in (big_kernels, small_kernels):
        try:
            check_cnn_geometry(hp, image_size)
        except ConfigError as exc:
            raise StudyError(
                f"the search space includes an impossible network at image_size {image_size}: {exc}"
            ) from None


# --- search space → HyperParams -----------------------------------------------------------------


def suggest(trial: optuna.trial.BaseTrial, space: SearchSpace) -> HyperParams:
    """The one search-space function: suggest every searched parameter, add fixed ones and epochs."""
    values: dict[str, Any] = dict(space.fixed)
    for d in space.dims:
        if d.kind == "int":
            low, high = d.bounds()
            values[d.name] = trial.suggest_int(d.name, int(low), int(high), step=int(d.step or 1))
        elif d.kind == "float":
            low, high = d.bounds()
            values[d.name] = trial.suggest_float(d.name, float(low), float(high), log=d.log)
        else:
            values[d.name] = trial.suggest_categorical(d.name, list(d.choices))
    return HyperParams(**values, epochs=space.epochs)


def preset_params(space: SearchSpace) -> dict[str, Any]:
    """The reference study's best preset restricted to the searched parameters it fits into (for enqueueing)."""
    out: dict[str, Any] = {}
    for d in space.dims:
        value = PARAM_SPECS[d.name].default
        try:
            d.check(value)
        except ConfigError:
            continue  # outside the narrowed range: let the sampler choose
        out[d.name] = value
    return out


# --- storage ------------------------------------------------------------------------------------


def storage_kind(url: str) -> str:
    """``"journal"``, ``"sqlite"``, ``"postgresql"`` or ``"mysql"``; StudyError for anything else."""
    if _journal_path(url) is not None:
        return "journal"
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme in ("sqlite", "mysql"):
        return scheme
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise StudyError(
        f"storage {url!r} is not understood; use sqlite:///path.db, postgresql://user@host/db, "
        "journal:///path/to/file.log, or a file path ending .log or .journal"
    )


def _journal_path(url: str) -> Path | None:
    if url.startswith("journal://"):
        path = url[len("journal://") :]
        if not path.startswith("/"):
            raise StudyError(f"journal URL {url!r} needs an absolute path: journal:///path/to/file.log")
        return Path(path)
    if "://" not in url and url.endswith((".log", ".journal")):
        return Path(url).resolve()
    return None


def redact_url(url: str) -> str:
    """The URL without its password, for display."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


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

        path = _journal_path(url)
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
                "best_value": max((_value(t) for t in complete), default=None),
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
        # The reference study's preset is the baseline every trial is compared with: never pruned.
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


def _value(t: FrozenTrial) -> float:
    """The objective value of a finished trial (Optuna types it optional; a COMPLETE trial always has one)."""
    if t.value is None:
        raise StudyError(f"trial {t.number} ({t.state.name}) has no value")
    return t.value


def _best(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


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
            store.update_run(
                int(run_id),
                status="failed",
                finished_at=time.time(),
                error="its worker stopped sending heartbeats (killed?); the trial is retried",
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
        study.enqueue_trial(
            preset_params(space), user_attrs={"preset": "the reference study's best preset"}, skip_if_exists=True
        )

    if data is None:
        data = load_dataset(cfg.base.data)
    planned = cfg.n_trials
    trials_run = 0
    stopped = ""
    progress: dict[str, Any] = {"done": 0, "best": None}  # done: int, best: (trial number, value) or None

    def refresh() -> None:
        c = _counts(study)
        progress["done"] = c[TrialState.COMPLETE] + c[TrialState.PRUNED]
        best = _best(study)
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
    best = _best(study)
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
        best_params=_full_params(best, cfg) if best else {},
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


def _full_params(trial: FrozenTrial, cfg: StudyConfig | None) -> dict[str, Any]:
    """The trial's complete HyperParams (searched + fixed + epochs) as a dict."""
    if "hparams" in trial.user_attrs:
        return dict(trial.user_attrs["hparams"])
    values = dict(cfg.search_space().fixed) if cfg else {}
    values.update(trial.params)
    if cfg:
        values["epochs"] = cfg.epochs_per_trial
    return values


def param_importances(study: optuna.Study) -> tuple[dict[str, float], str]:
    """``(importances, note)``: importances of the searched parameters, or ``({}, why not)``."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"{len(complete)} complete trial(s); importances need at least 2"
    varying = [p for p in {k for t in complete for k in t.params} if len({repr(t.params.get(p)) for t in complete}) > 1]
    if not varying:
        return {}, "no searched parameter varied across the complete trials"
    if len({t.value for t in complete}) < 2:
        return {}, "every complete trial reached the same accuracy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA warns about small studies; the note says so
        try:
            imp = optuna.importance.get_param_importances(study, params=sorted(varying))
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            return {}, f"importances could not be computed yet ({exc})"
    note = "" if len(complete) >= 10 else f"only {len(complete)} complete trials: treat importances as a rough hint"
    return dict(sorted(imp.items(), key=lambda kv: -kv[1])), note


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2g}" if abs(v) < 0.01 else f"{v:.3g}"
    return str(v)


def what_mattered(study: optuna.Study) -> str:
    """A few sentences: which parameters mattered most, what the top trials share, vs the reference study's preset."""
    complete = sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: (-_value(t), t.number)
    )
    if len(complete) < 2:
        return (
            f"Only {len(complete)} trial(s) completed so far; at least 2 are needed to say which parameters mattered."
        )
    best = complete[0]
    sentences = [f"The best trial (#{best.number}) reached {best.value:.1%} validation accuracy."]
    preset = next((t for t in complete if t.user_attrs.get("preset")), None)
    if preset is not None and preset.number != best.number:
        sentences.append(
            f"The reference study's best preset (trial #{preset.number}) reached {preset.value:.1%}, "
            f"{(_value(best) - _value(preset)) * 100:+.1f} points from the best."
        )
    elif preset is not None:
        sentences.append("That best trial is the reference study's own preset: nothing found beat it yet.")
    importances, note = param_importances(study)
    if not importances:
        sentences.append(f"No parameter stands out yet ({note}).")
        return " ".join(sentences)
    top_k = max(3, len(complete) // 5)
    top = complete[:top_k]
    ranked = [(p, v) for p, v in importances.items() if v > 0][:3]
    # Keep the clearly important ones (and at least the first): a long tail reads as noise.
    ranked = [ranked[0]] + [(p, v) for p, v in ranked[1:] if v >= 0.1]
    names = ", ".join(f"{p} ({v:.0%})" for p, v in ranked)
    sentences.append(f"What mattered most: {names} of the explained variation.")
    for p, _ in ranked:
        values = [t.params[p] for t in top if p in t.params]
        if not values:
            continue
        default = PARAM_SPECS[p].default
        if isinstance(values[0], str):
            value, n = Counter(values).most_common(1)[0]
            share = f"{n} of the top {len(values)} trials use {value}"
            cmp = (
                "the reference study's preset too"
                if value == default
                else f"the reference study's preset uses {default}"
            )
            sentences.append(f"{p}: {share} ({cmp}).")
        else:
            lo, hi = min(values), max(values)
            where = "inside" if lo <= default <= hi else ("below" if default < lo else "above")
            span = f"{_fmt_value(lo)}" if lo == hi else f"{_fmt_value(lo)}–{_fmt_value(hi)}"
            sentences.append(
                f"{p}: the top {len(values)} trials use {span}; "
                f"the reference study's preset ({_fmt_value(default)}) is {where} that range."
            )
    if note:
        sentences.append(f"Note: {note}.")
    return " ".join(sentences)


def _trial_row(t: FrozenTrial, cfg: StudyConfig | None) -> dict[str, Any]:
    duration = (
        (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
    )
    last_epoch = max(t.intermediate_values) if t.intermediate_values else None
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "epochs": last_epoch,
        "duration_s": duration,
        "run_id": t.user_attrs.get("run_id"),
        "checkpoint_path": t.user_attrs.get("checkpoint_path"),
        "preset": bool(t.user_attrs.get("preset")),
        "params": _full_params(t, cfg),
    }


def study_results(storage_url: str, name: str, top: int = 10) -> dict[str, Any]:
    """Everything the Study page and ``study show`` display, as plain JSON-able data."""
    study = load_study(storage_url, name)
    cfg = stored_config(study)
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    ranked = sorted(
        (t for t in trials if t.state in FINISHED and t.value is not None),
        key=lambda t: (t.state != TrialState.COMPLETE, -_value(t), t.number),
    )
    best = _best(study)
    importances, note = param_importances(study)
    return {
        "name": name,
        "storage": redact_url(storage_url),
        "planned": cfg.n_trials if cfg else None,
        "trials": len(trials),
        "states": dict(counts),
        "best": None
        if best is None
        else {
            "number": best.number,
            "value": best.value,
            "params": _full_params(best, cfg),
            "run_id": best.user_attrs.get("run_id"),
            "checkpoint_path": best.user_attrs.get("checkpoint_path"),
        },
        "top_trials": [_trial_row(t, cfg) for t in ranked[:top]],
        "importances": importances,
        "importance_note": note,
        "what_mattered": what_mattered(study),
        "searched": list(cfg.search_space().searched) if cfg else sorted({k for t in trials for k in t.params}),
        "config": cfg.to_dict() if cfg else None,
    }


def final_training_config(study: optuna.Study, epochs: int = 10) -> RunConfig:
    """The best trial's full configuration with ``epochs`` epochs, for "Train the final model"."""
    best = _best(study)
    if best is None:
        raise StudyError(f"study {study.study_name!r} has no complete trial yet")
    cfg = stored_config(study)
    base = cfg.base if cfg else RunConfig()
    params = {**_full_params(best, cfg), "epochs": int(epochs)}
    return replace(base, hparams=HyperParams.from_dict(params))


def submit_final_training(ws: Workspace, storage_url: str, name: str, epochs: int = 10) -> tuple[int, int]:
    """Queue a normal training run of the best parameters; returns ``(job_id, run_id)``."""
    from flagvision.jobs.queue import submit_training

    study = load_study(storage_url, name)
    cfg = final_training_config(study, epochs)
    best = _best(study)
    return submit_training(ws, cfg, name=f"{name}: best trial #{best.number if best else '?'}, {epochs} epochs")


# --- figures ------------------------------------------------------------------------------------


@dataclass
class StudyFigure:
    """A Plotly figure, or ``None`` with the reason (too few trials...) to show instead."""

    figure: go.Figure | None
    message: str = ""


def _need(study: optuna.Study, n: int, what: str) -> str:
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return "" if done >= n else f"{what} needs at least {n} complete trial(s); this study has {done}"


def _figure(study: optuna.Study, min_complete: int, what: str, build: Callable[[], go.Figure]) -> StudyFigure:
    message = _need(study, min_complete, what)
    if message:
        return StudyFigure(None, message)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API and small-sample warnings
        try:
            return StudyFigure(build())
        except (ValueError, RuntimeError) as exc:
            return StudyFigure(None, f"{what} is not available yet: {exc}")


def plot_history(study: optuna.Study) -> StudyFigure:
    return _figure(study, 1, "The optimization history", lambda: optuna.visualization.plot_optimization_history(study))


def plot_importances(study: optuna.Study) -> StudyFigure:
    importances, note = param_importances(study)
    if not importances:
        return StudyFigure(None, f"Parameter importances are not available: {note}")
    return _figure(
        study,
        2,
        "The importance plot",
        lambda: optuna.visualization.plot_param_importances(study, params=list(importances)),
    )


def plot_parallel(study: optuna.Study) -> StudyFigure:
    return _figure(
        study, 2, "The parallel-coordinate plot", lambda: optuna.visualization.plot_parallel_coordinate(study)
    )


def plot_slice(study: optuna.Study) -> StudyFigure:
    return _figure(study, 1, "The slice plot", lambda: optuna.visualization.plot_slice(study))


def plot_intermediate(study: optuna.Study) -> StudyFigure:
    if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        return StudyFigure(None, "No trial has reported a per-epoch accuracy yet")
    return _figure(study, 0, "The learning-curve plot", lambda: optuna.visualization.plot_intermediate_values(study))
