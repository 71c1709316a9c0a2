"""The study's Plotly figures, from ``optuna.visualization``, each with a plain reason when a study is too
small to draw it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

if TYPE_CHECKING:
    import plotly.graph_objects as go

from flagvision.studies import results


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
    importances, note = results.param_importances(study)
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
