"""The Study page's form and trial tables, without Streamlit: what a range widget starts at, how a
narrowed range becomes a search-space override (and is described back), and a study's trials as rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from app_ui.logic import format_duration, format_value, log_grid
from flagvision.config import (
    ConfigError,
    ParamSpec,
)


def range_widget_default(spec: ParamSpec) -> Any:
    """The full range of a parameter as a range widget's value: (low, high) or all choices."""
    if spec.kind == "categorical":
        return list(spec.choices)
    if spec.log:
        grid = log_grid(spec)
        return (grid[0], grid[-1])
    return (spec.low, spec.high)


def space_override(spec: ParamSpec, value: Any) -> dict[str, Any] | None:
    """What a range widget's value means for the study (a ``study.ParamOverride`` as a dict).

    The full range → None (searched as defined); low == high → fixed; a narrower range → low/high;
    a subset of choices → choices (one choice → fixed). An empty choice list is refused.
    """
    if spec.kind == "categorical":
        chosen = [c for c in spec.choices if c in set(value)]
        if not chosen:
            raise ConfigError(f"{spec.name}: choose at least one of {', '.join(spec.choices)}")
        if len(chosen) == len(spec.choices):
            return None
        if len(chosen) == 1:
            return {"name": spec.name, "fixed": chosen[0]}
        return {"name": spec.name, "choices": chosen}
    low, high = (float(v) for v in value)
    if spec.kind == "int":
        low, high = int(low), int(high)
    if low == high:
        return {"name": spec.name, "fixed": low}
    full = range_widget_default(spec)
    if math.isclose(low, full[0]) and math.isclose(high, full[1]):
        return None
    # A log grid's ends are rounded to 3 digits: keep them inside the spec's own range.
    spec_low, spec_high = spec.bounds()
    return {"name": spec.name, "low": max(low, spec_low), "high": min(high, spec_high)}


def describe_override(spec: ParamSpec, override: dict[str, Any] | None) -> str:
    if override is None:
        return f"{spec.describe_range()} (full range)"
    if "fixed" in override:
        return f"fixed at {format_value(spec.name, override['fixed'])}"
    if "choices" in override:
        return "one of " + ", ".join(override["choices"])
    return f"{format_value(spec.name, override['low'])}–{format_value(spec.name, override['high'])}"


def trial_rows(trials: Sequence[dict[str, Any]], searched: Sequence[str]) -> list[dict[str, Any]]:
    """Trials table rows (from ``study.study_results``' trial dicts): value in %, searched params."""
    rows = []
    for t in trials:
        row = {
            "trial": t["number"],
            "state": t["state"],
            "val_acc_%": None if t.get("value") is None else round(100 * t["value"], 1),
            "epochs": t.get("epochs"),
            "duration": format_duration(t.get("duration_s")),
            "run": t.get("run_id"),
            "preset": "yes" if t.get("preset") else "",
        }
        params = t.get("params") or {}
        for name in searched:
            if name in params:
                row[name] = format_value(name, params[name])
        rows.append(row)
    return rows


def trial_dict(trial: Any) -> dict[str, Any]:
    """An Optuna FrozenTrial as the plain dict :func:`trial_rows` reads (any state, running too)."""
    start, end = trial.datetime_start, trial.datetime_complete
    duration = (end - start).total_seconds() if start and end else None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value if trial.state.name == "COMPLETE" or trial.value is not None else None,
        "epochs": max(trial.intermediate_values) if trial.intermediate_values else None,
        "duration_s": duration,
        "run_id": trial.user_attrs.get("run_id"),
        "preset": bool(trial.user_attrs.get("preset")),
        "params": dict(trial.params),
    }


# -- prediction of uploaded photos --------------------------------------------------------------
