"""The app's shared frame and the helpers its pages use (with the pages, the only code that imports
Streamlit): :func:`run_page` draws the frame (page config, the sidebar's navigation and live jobs)
around a page; the workspace and store, the error guard, hyperparameter widgets generated from the
config specs, cached predictors and study storage, lazy tabs, figure display, the import warm-up.

The pages are Streamlit's own multipage layout: ``streamlit_app.py`` is Home and every file in
``pages/`` a page, so a deep link (``/train``) on a freshly started server runs that page's file,
which draws the whole frame itself. Streamlit's automatic page list is hidden
(``client.showSidebarNavigation = false``) in favour of :data:`PAGES`, with titles and icons.

Session-state keys are page-prefixed (``train_*``, ``study_*``...); widget keys too.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from app_ui.logic import (
    WidgetSpec,
    format_duration,
    format_value,
    job_eta,
    job_title,
    nearest,
    widget_for,
)
from app_ui.state import (  # re-exported: the pages call them as ui.one_of(...) and so on
    drop_invalid_state,
    each_of,
    in_range,
    is_text,
    one_of,
    pair_of,
    reset_invalid_state,
    value_check,
)
from flagvision.config import ConfigError, ParamSpec
from flagvision.errors import is_user_error, user_message
from flagvision.jobs import queue as jobs
from flagvision.jobs.schema import ACTIVE_STATES, FINISHED_STATES
from flagvision.jobs.store import Store
from flagvision.workspace import CARD_FILE, WEIGHTS_FILE, Workspace

# name → (script, title, icon), in the order of the sidebar; the name is the page's URL path.
PAGES = {
    "home": ("streamlit_app.py", "Home", ":material/home:"),
    "dataset": ("pages/dataset.py", "Dataset", ":material/photo_library:"),
    "train": ("pages/train.py", "Train", ":material/model_training:"),
    "study": ("pages/study.py", "Study", ":material/science:"),
    "runs": ("pages/runs.py", "Runs", ":material/table_chart:"),
    "predict": ("pages/predict.py", "Predict", ":material/center_focus_strong:"),
}
JOBS_POLL_S = 2  # how often the sidebar's jobs panel reads the store and moves the queue on


def workspace() -> Workspace:
    """The workspace of this app: ``$FLAGVISION_HOME`` or ``./workspace`` (created if missing)."""
    return Workspace.open()


def store(ws: Workspace | None = None) -> Store:
    """The process-wide store of the workspace (one SQLite connection shared by script threads)."""
    return jobs.open_store(ws or workspace())


# -- first paint --------------------------------------------------------------------------------

# What the pages import on their first visit: torch and torchvision (Dataset, Train, Runs,
# Predict), Optuna with SQLAlchemy (Study), Plotly (every chart), pandas and pyarrow (every data
# frame). Seconds of CPU in all, paid once per server process: better while the reader looks at
# the first page than on the next click (measured: a cold first Study visit paid 6 s of imports,
# SQLAlchemy's set-up 1.3 s and the first data frame 0.6 s more).
WARM_MODULES = (
    "flagvision.plots",
    "flagvision.data.dataset",
    "flagvision.models.networks",
    "flagvision.training.pipeline",
    "flagvision.studies.runner",
    "optuna.visualization",
    "flagvision.inference.predict",
)


@st.cache_resource(show_spinner=False)
def warm_up(delay_s: float = 1.0) -> threading.Thread:
    """Import :data:`WARM_MODULES` and run Plotly's and Optuna's first-use set-up (on scratch data)
    in a daemon thread, once per server process. Call it after a page has been drawn: the imports
    would otherwise compete with that first script run."""

    def run() -> None:
        time.sleep(delay_s)
        for name in WARM_MODULES:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - the page importing it will report it properly
                print(f"flagvision app: warm-up import of {name} failed: {exc}", file=sys.stderr)
        try:  # Plotly imports its figure classes, validators and JSON engine on first use
            import plotly.io

            from flagvision import plots

            plotly.io.to_json(plots.training_curves([]), validate=False)
            plotly.io.to_json(plots.class_counts_bars({"a": 1}), validate=False)
        except Exception:  # noqa: BLE001 - a warm-up only
            pass
        try:  # the first st.dataframe imports pandas and pyarrow's pandas layer (a second here)
            import pandas as pd
            import pyarrow as pa

            pa.Table.from_pandas(pd.DataFrame([{"a": 1, "b": "x"}]))
        except Exception:  # noqa: BLE001 - a warm-up only
            pass
        try:  # SQLAlchemy sets up Optuna's tables and queries on first use (over a second)
            import optuna

            from flagvision.studies.storage import open_storage

            scratch = open_storage("sqlite:///:memory:")
            optuna.get_all_study_names(scratch)
            scratch.get_all_trials(0, deepcopy=False)
        except Exception:  # noqa: BLE001 - no study 0 in an empty storage; the queries are warm
            pass

    thread = threading.Thread(target=run, name="flagvision-warm-up", daemon=True)
    thread.start()
    return thread


def lazy_tabs(labels: list[str], key: str) -> list[Any]:
    """``st.tabs`` whose hidden tabs cost nothing: only the open one's content is drawn (check
    ``tab.open``), and choosing another tab reruns the page. The open tab's label is in
    ``st.session_state[key]``."""
    if st.session_state.get(key) not in labels:
        st.session_state.pop(key, None)  # a stale or tampered label: back to the first tab
    return list(st.tabs(labels, key=key, on_change="rerun"))


# -- errors -------------------------------------------------------------------------------------


def show_error(exc: BaseException, what: str = "") -> None:
    """A user error (:func:`flagvision.errors.is_user_error`: any FlagVisionError, or an OS error
    about a path; the CLI and the worker read the same definition) is shown as is; an unexpected
    one gets a short message here and its traceback on stderr."""
    prefix = f"{what}: " if what else ""
    if is_user_error(exc):
        st.error(f"{prefix}{user_message(exc)}", icon=":material/error:")
    else:
        traceback.print_exception(exc, file=sys.stderr)
        st.error(
            f"{prefix}unexpected error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "The details are in the server log.",
            icon=":material/bug_report:",
        )


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a page body (or a fragment) so that any exception becomes an ``st.error``.

    Streamlit's own control flow (``st.rerun``, ``st.stop``) derives from BaseException, not
    Exception, so it passes through untouched.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the guard's whole purpose
            show_error(exc)
            return None

    return wrapper


# -- hyperparameter widgets ---------------------------------------------------------------------


def param_widget(spec: ParamSpec, key: str, value: Any = None, disabled: bool = False) -> Any:
    """Draw the widget :func:`app_ui.logic.widget_for` chooses for ``spec``, starting at ``value`` (the
    spec's default when None); return its value. Once ``key`` has a state (the widget's own, or a preset's
    set by a callback), that state is the value and no starting value is passed: Streamlit would warn of
    a widget given both."""
    w: WidgetSpec = widget_for(spec)
    value = w.default if value is None else value
    has_state = key in st.session_state
    common: dict[str, Any] = {"key": key, "help": w.help, "disabled": disabled}
    if w.widget == "selectbox":
        options = list(w.options)
        index = 0 if has_state or value not in options else options.index(value)
        return st.selectbox(w.label, options, index=index, **common)
    if w.widget == "select_slider":
        options = list(w.options)
        start = None if has_state else nearest(options, float(value))
        return st.select_slider(
            w.label, options=options, value=start, format_func=lambda v: format_value(spec.name, v), **common
        )
    if w.low is None or w.high is None or w.step is None:
        raise ValueError(f"{spec.name}: a slider needs a range and a step")
    if spec.kind == "int":
        start_int = None if has_state else int(value)
        return st.slider(w.label, int(w.low), int(w.high), start_int, int(w.step), **common)
    start_float = None if has_state else float(value)
    return st.slider(w.label, float(w.low), float(w.high), start_float, float(w.step), **common)


def figure(builder: str, *args: Any, key: str, **kwargs: Any) -> None:
    """``st.plotly_chart(flagvision.plots.<builder>(...))``; says so if that builder is missing."""
    try:
        from flagvision import plots

        build = getattr(plots, builder)
    except (ImportError, AttributeError):
        st.info(f"Chart unavailable: flagvision.plots.{builder} is not installed.")
        return
    st.plotly_chart(build(*args, **kwargs), key=key, width="stretch")


# -- predictors ---------------------------------------------------------------------------------


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def _predictor(path: str, mtime: float):
    from flagvision.inference.predict import Predictor

    return Predictor.from_checkpoint(path)


def predictor(checkpoint_path: str | os.PathLike[str]):
    """A cached :class:`~flagvision.inference.predict.Predictor`, keyed by checkpoint path and card mtime
    (a retrained checkpoint at the same path is reloaded)."""
    path = Path(checkpoint_path)
    card = path / CARD_FILE if path.is_dir() else path
    mtime = card.stat().st_mtime if card.exists() else 0.0
    weights = path / WEIGHTS_FILE
    if weights.exists():
        mtime = max(mtime, weights.stat().st_mtime)
    return _predictor(str(path), mtime)


@st.cache_resource(max_entries=2, show_spinner="Loading the flag finder…")
def _finder(folder: str, mtime: float):
    from flagvision.models.finder import Finder

    return Finder.from_dir(folder)


def finder(ws: Workspace):
    """The workspace's cached flag finder (reloaded when rebuilt), or None when it has none."""
    from flagvision.jobs.defaults import finder_card_path

    card = finder_card_path(ws)
    if not card.is_file():
        return None
    return _finder(str(card.parent), card.stat().st_mtime)


# -- the default models -----------------------------------------------------------------------------

DEFAULT_PARTS = {"data": "Built-in data", "cnn": "Custom CNN", "finder": "Flag finder", "vgg": "VGG-16 transfer"}


def default_models_button(ws: Workspace, key: str) -> None:
    """ "Train the default models": the custom CNN on the built-in data, the flag finder if missing,
    VGG-16 transfer when its ImageNet weights are here, queued as jobs (the sidebar shows their
    progress and ETA); without the built-in data, its job first, which queues the models when it
    ends. Shows each part's state; the button only while something can be queued. It only queues:
    nothing is rendered or trained in the page. ``key`` prefixes the widget keys (the page's name)."""
    from app_ui.logic import default_part_text
    from flagvision.jobs.defaults import default_models_status, submit_default_models

    status = default_models_status(ws)
    st.markdown(
        "  \n".join(f"**{title}**: {default_part_text(part, status[part])}" for part, title in DEFAULT_PARTS.items())
    )
    if not any(s["state"] == "missing" for s in status.values()):
        return
    if st.button("Train the default models", key=f"{key}_default_models", type="primary", icon=":material/bolt:"):
        queued = submit_default_models(ws)
        if queued:
            st.toast(f"Queued: {', '.join(DEFAULT_PARTS[p] for p in queued)}.", icon=":material/rocket_launch:")
        else:  # the data's job was already under way: it now queues the models when it ends
            st.toast("The default models follow the built-in data.", icon=":material/rocket_launch:")
        st.rerun()


# -- studies ------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=8)
def study_storage(url: str):
    """One read-side Optuna storage per storage URL for the whole app. Opening one checks the
    database schema (a tenth of a second or more), too slow for every rerun and every 2 s poll;
    an open one still reads what the workers commit."""
    from flagvision.studies.storage import open_storage

    return open_storage(url)


def study_names(url: str) -> list[str]:
    """Names of the studies in the storage at ``url``, oldest first."""
    import optuna

    return optuna.get_all_study_names(study_storage(url))


def load_study(url: str, name: str):
    """The study ``name`` through the shared storage (StudyError naming the existing ones if absent)."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=study_storage(url))
    except KeyError:
        from flagvision.studies.storage import load_study as load_reporting_names

        return load_reporting_names(url, name)


# -- small UI pieces ----------------------------------------------------------------------------


def progress_callback(bar: Any, text: str) -> Callable[[int, int], None]:
    """An ``(done, total)`` callback that drives an ``st.progress`` bar."""

    def update(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{text} {done}/{total}")

    return update


def state_badge(state: str) -> str:
    colours = {"queued": "gray", "running": "blue", "succeeded": "green", "failed": "red", "cancelled": "orange"}
    return f":{colours.get(state, 'gray')}-badge[{state}]"


def page_link(name: str, label: str | None = None) -> None:
    path, title, icon = PAGES[name]
    st.page_link(path, label=label or title, icon=icon)


# -- VGG-16 weights -----------------------------------------------------------------------------

WEIGHTS_POLL_S = 1  # how often the weights panel re-reads a running download


@st.fragment(run_every=JOBS_POLL_S)
@guarded
def _jobs_panel() -> None:
    """Live jobs, polled every :data:`JOBS_POLL_S` s; ``jobs.tick`` reaps dead workers and starts
    queued jobs, so the queue moves on while the app is open."""
    ws = workspace()
    jobs.tick(ws)
    active = store(ws).list_jobs(ACTIVE_STATES)
    if not active:
        st.caption("No job running.")
    runs_by_id = {r["id"]: r for r in store(ws).list_runs(limit=100)}
    now = time.time()
    for job in active:
        text = job.get("progress_text") or job["state"]
        eta = job_eta(job, now)
        if eta is not None:
            text += f" · ETA {format_duration(eta)}"
        st.markdown(f"**{job_title(job, runs_by_id)}** {state_badge(job['state'])}")
        st.progress(float(job.get("progress") or 0.0), text=text)
    recent = store(ws).list_jobs(FINISHED_STATES, limit=3)
    if recent:
        st.caption("Recently finished")
        for job in recent:
            st.markdown(f"{job_title(job, runs_by_id)} {state_badge(job['state'])}")


@guarded
def _workspace_caption() -> None:
    st.caption(f"Workspace: `{workspace().root}`")


def run_page(main: Callable[[], None], name: str) -> None:
    """Draw page ``name`` of :data:`PAGES`: the frame (tab title, sidebar with navigation, workspace
    and live jobs), then ``main``, then the background warm-up of the other pages' imports (after
    the page, so that they do not delay its first paint)."""
    _, title, icon = PAGES[name]
    st.set_page_config(
        page_title=f"{title} · FlagVision" if name != "home" else "FlagVision",
        page_icon=":material/flag:",
        layout="wide",
    )
    with st.sidebar:
        st.markdown("### :material/flag: FlagVision")
        for page in PAGES:
            page_link(page)
        st.divider()
        _workspace_caption()
        st.markdown("**Jobs**")
        _jobs_panel()
    main()
    warm_up()


__all__ = [
    "ConfigError",
    "PAGES",
    "WARM_MODULES",
    "default_models_button",
    "drop_invalid_state",
    "each_of",
    "figure",
    "finder",
    "guarded",
    "in_range",
    "is_text",
    "lazy_tabs",
    "load_study",
    "one_of",
    "page_link",
    "pair_of",
    "param_widget",
    "predictor",
    "progress_callback",
    "reset_invalid_state",
    "run_page",
    "show_error",
    "state_badge",
    "store",
    "study_names",
    "study_storage",
    "value_check",
    "warm_up",
    "workspace",
]
