"""A study's configuration and search space: which hyperparameters are searched, over which ranges.

The search space is generated from ``config.HYPERPARAMS`` (the one place ranges live); a study may
narrow a parameter's range, restrict its choices, or fix it. A fixed parameter is *not* suggested,
so it never appears in ``trial.params`` and parameter importances are computed over the searched
parameters only (a one-value distribution would only add noise to them).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

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
    check_fields,
    model_info,
)
from flagvision.studies.options import PRUNERS, SAMPLERS

if TYPE_CHECKING:
    pass


CONFIG_ATTR = "flagvision_config"  # study user attribute: the StudyConfig that created the study
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:@+-]{0,127}$")


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
        check_fields(cls, data, "search-space", StudyError)
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
    enqueue_preset: bool = True  # run the default preset as the first trial, as a baseline
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
        check_fields(cls, data, "study", StudyError)
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
    """The default preset restricted to the searched parameters it fits into (for enqueueing)."""
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
    if journal_path(url) is not None:
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


def journal_path(url: str) -> Path | None:
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
