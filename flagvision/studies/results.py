"""What a study says: its best trials, the parameters that mattered, and the final training of the best."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from flagvision.config import (
    PARAM_SPECS,
    HyperParams,
    RunConfig,
)

if TYPE_CHECKING:
    from flagvision.workspace import Workspace
from flagvision.studies.config import StudyConfig, StudyError, redact_url
from flagvision.studies.storage import FINISHED, best_trial, load_study, stored_config, trial_params, trial_value


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
    """A few sentences: which parameters mattered most, what the top trials share, vs the default preset."""
    complete = sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: (-trial_value(t), t.number)
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
            f"The default preset (trial #{preset.number}) reached {preset.value:.1%}, "
            f"{(trial_value(best) - trial_value(preset)) * 100:+.1f} points from the best."
        )
    elif preset is not None:
        sentences.append("That best trial is the default preset: nothing found beat it yet.")
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
            cmp = "the default preset too" if value == default else f"the default preset uses {default}"
            sentences.append(f"{p}: {share} ({cmp}).")
        else:
            lo, hi = min(values), max(values)
            where = "inside" if lo <= default <= hi else ("below" if default < lo else "above")
            span = f"{_fmt_value(lo)}" if lo == hi else f"{_fmt_value(lo)}–{_fmt_value(hi)}"
            sentences.append(
                f"{p}: the top {len(values)} trials use {span}; "
                f"the default preset ({_fmt_value(default)}) is {where} that range."
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
        "params": trial_params(t, cfg),
    }


def study_results(storage_url: str, name: str, top: int = 10) -> dict[str, Any]:
    """Everything the Study page and ``study show`` display, as plain JSON-able data."""
    study = load_study(storage_url, name)
    cfg = stored_config(study)
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    ranked = sorted(
        (t for t in trials if t.state in FINISHED and t.value is not None),
        key=lambda t: (t.state != TrialState.COMPLETE, -trial_value(t), t.number),
    )
    best = best_trial(study)
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
            "params": trial_params(best, cfg),
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
    best = best_trial(study)
    if best is None:
        raise StudyError(f"study {study.study_name!r} has no complete trial yet")
    cfg = stored_config(study)
    base = cfg.base if cfg else RunConfig()
    params = {**trial_params(best, cfg), "epochs": int(epochs)}
    return replace(base, hparams=HyperParams.from_dict(params))


def submit_final_training(ws: Workspace, storage_url: str, name: str, epochs: int = 10) -> tuple[int, int]:
    """Queue a normal training run of the best parameters; returns ``(job_id, run_id)``."""
    from flagvision.jobs.queue import submit_training

    study = load_study(storage_url, name)
    cfg = final_training_config(study, epochs)
    best = best_trial(study)
    return submit_training(ws, cfg, name=f"{name}: best trial #{best.number if best else '?'}, {epochs} epochs")


# --- figures ------------------------------------------------------------------------------------
