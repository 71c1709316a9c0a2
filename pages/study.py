"""Study: configure and start an Optuna study of the custom CNN, watch its trials live, act on it."""

from __future__ import annotations

import time

import streamlit as st

import app_ui as ui
from app_ui.logic import IMAGE_SIZES, dataset_choices, dataset_title, format_value, log_grid
from app_ui.study_form import describe_override, range_widget_default, space_override, trial_dict, trial_rows
from flagvision.config import (
    CNN_IMAGE_SIZE,
    CUSTOM_CNN,
    HYPERPARAMS,
    PARAM_SPECS,
    SEARCHABLE,
    ConfigError,
    DataConfig,
    RunConfig,
)
from flagvision.jobs import queue as jobs

VIEWS = ["History", "Importances", "Parallel coordinates", "Learning curves", "Trial curves"]


def _range_widget(spec, key: str):
    """A range widget for one searchable parameter; return its value."""
    help_text = f"{spec.help}. Full range {spec.describe_range()}. Pull both ends together to fix the value."
    default = range_widget_default(spec)
    if spec.kind == "categorical":
        return st.multiselect(
            spec.name,
            list(spec.choices),
            default=default,
            key=key,
            persist_state="page",
            help=f"{spec.help}. Keep one choice to fix it.",
        )
    if spec.kind == "int":
        return st.slider(
            spec.name,
            int(spec.low),
            int(spec.high),
            (int(default[0]), int(default[1])),
            int(spec.step or 1),
            key=key,
            help=help_text,
            persist_state="page",
        )
    if spec.log:
        return st.select_slider(
            spec.name,
            options=log_grid(spec),
            value=default,
            key=key,
            help=help_text,
            format_func=lambda v: format_value(spec.name, v),
            persist_state="page",
        )
    return st.slider(
        spec.name,
        float(spec.low),
        float(spec.high),
        (float(default[0]), float(default[1])),
        0.01,
        key=key,
        help=help_text,
        persist_state="page",
    )


def _range_check(spec):
    """What :func:`_range_widget` of ``spec`` can hold, for :func:`_reset_invalid_values`."""
    if spec.kind == "categorical":
        return ui.each_of(spec.name, ui.one_of(spec.name, spec.choices))
    if not spec.log:
        return ui.pair_of(spec.name, ui.value_check(spec))
    grid, in_range = log_grid(spec), ui.value_check(spec)

    def on_grid(value):
        if in_range(value) not in grid:
            raise ConfigError(f"{spec.name}={value!r} is not a step of its slider")
        return value

    return ui.pair_of(spec.name, on_grid)


def _reset_invalid_values(ws) -> bool:
    """Values no widget could hold (a tampered or stale session) are reset, and said so, before
    any widget is drawn: the widgets would otherwise fail, or quietly fall back to a default."""
    from flagvision.studies.options import PRUNERS, SAMPLERS

    checks = {f"study_range_{spec.name}": _range_check(spec) for spec in HYPERPARAMS if spec.name in SEARCHABLE}
    checks.update(
        {
            "study_new_name": ui.is_text("study name"),
            "study_dataset": ui.one_of("dataset", dataset_choices(ws)),
            "study_image_size": ui.one_of("image size", IMAGE_SIZES),
            "study_n_trials": ui.in_range("trials", 1, 100, integer=True),
            "study_epochs": ui.in_range("epochs per trial", int(PARAM_SPECS["epochs"].low), 30, integer=True),
            "study_sampler": ui.one_of("sampler", SAMPLERS),
            "study_pruner": ui.one_of("pruner", PRUNERS),
            "study_final_epochs": ui.in_range("epochs for the final training", 1, 100, integer=True),
        }
    )
    return ui.reset_invalid_state(checks)


def _new_study(ws, blocked: bool = False, expanded: bool = True) -> None:
    # Folded, the form is not drawn at all: its twenty widgets cost the first paint of a page whose
    # main content is the study below. Its widgets keep their values while it is folded
    # (persist_state="page"), and lose them on leaving the page, as any widget does.
    form = st.expander("New study", expanded=expanded, icon=":material/add:", key="study_new_open", on_change="rerun")
    if form.open:
        with form:
            _study_form(ws, blocked)


def _study_form(ws, blocked: bool) -> None:
    from flagvision.studies.config import StudyConfig
    from flagvision.studies.options import PRUNERS, PRUNING_TRADE, SAMPLER_HELP, SAMPLERS

    c1, c2, c3 = st.columns(3)
    if "study_new_name" not in st.session_state:
        st.session_state["study_new_name"] = f"study-{time.strftime('%Y%m%d-%H%M')}"
    name = c1.text_input("Study name", key="study_new_name", persist_state="page")
    dataset = c2.selectbox(
        "Dataset", dataset_choices(ws), format_func=dataset_title, key="study_dataset", persist_state="page"
    )
    image_size = c3.select_slider(
        "Image size",
        IMAGE_SIZES,
        CNN_IMAGE_SIZE,
        key="study_image_size",
        persist_state="page",
        help="Square network input of every trial (8–256 px)",
    )
    c1, c2, c3, c4 = st.columns(4)
    n_trials = c1.slider(
        "Trials",
        1,
        100,
        20,
        1,
        key="study_n_trials",
        persist_state="page",
        help="Total trials of the study (1–100 here)",
    )
    epochs_spec = PARAM_SPECS["epochs"]
    epochs = c2.slider(
        "Epochs per trial",
        int(epochs_spec.low),
        30,
        5,
        1,
        key="study_epochs",
        persist_state="page",
        help="Passes over the training set per trial, the same for every trial: more makes each trial's score "
        "closer to a full training but the study slower. Range: 1–30; the reference study used 5",
    )
    sampler = c3.selectbox(
        "Sampler",
        SAMPLERS,
        index=SAMPLERS.index("tpe"),
        key="study_sampler",
        persist_state="page",
        help=SAMPLER_HELP,
    )
    pruner = c4.selectbox(
        "Pruner",
        PRUNERS,
        index=PRUNERS.index(StudyConfig().pruner),
        key="study_pruner",
        persist_state="page",
        help=PRUNING_TRADE,
    )
    st.markdown("**Search space** — narrow a range, or pull both ends together to fix a parameter.")
    overrides, lines = [], []
    cols = st.columns(2)
    for i, spec in enumerate(s for s in HYPERPARAMS if s.name in SEARCHABLE):
        with cols[i % 2]:
            value = _range_widget(spec, key=f"study_range_{spec.name}")
            try:
                override = space_override(spec, value)
            except ConfigError as exc:
                st.error(str(exc))
                override = {"invalid": True}
            if override and not override.get("invalid"):
                overrides.append(override)
                st.caption(f"→ {describe_override(spec, override)}")
            elif override:
                lines.append(spec.name)
    try:
        if lines:
            raise ConfigError(f"fix the search space of {', '.join(lines)} first")
        base = RunConfig(
            model=CUSTOM_CNN, data=DataConfig(path=str(ws.dataset_dir(dataset)), image_size=int(image_size))
        )
        cfg = StudyConfig.from_dict(
            {
                "name": name.strip(),
                "n_trials": int(n_trials),
                "epochs_per_trial": int(epochs),
                "sampler": sampler,
                "pruner": pruner,
                "space": overrides,
                "base": base.to_dict(),
            }
        )
    except ConfigError as exc:
        st.error(f"This study cannot start: {exc}", icon=":material/error:")
        st.button("Start study", key="study_start", type="primary", disabled=True)
        return
    if blocked:  # values were just reset: a click in this run must not start a study of the defaults
        st.button("Start study", key="study_start", type="primary", disabled=True)
        return
    if st.button("Start study", key="study_start", type="primary", icon=":material/play_arrow:"):
        if dataset == "builtin" and not (ws.dataset_dir(dataset) / "manifest.json").is_file():
            from flagvision.synthetic.builtin import ensure_builtin

            bar = st.progress(0.0, text="Rendering flag scenes…")
            ensure_builtin(ws, progress=ui.progress_callback(bar, "Rendering flag scenes…"))
        job_id = jobs.submit_study(ws, {"config": cfg.to_dict()}, study_name=cfg.name)
        st.session_state["study_pending_choice"] = cfg.name  # not the select box's key: see _watch
        st.session_state.pop("study_new_open", None)  # fold the form: the new study is below
        st.toast(f"Study {cfg.name} queued as job {job_id}.", icon=":material/rocket_launch:")
        st.rerun()


def _study_job(store, name: str) -> dict | None:
    for job in store.list_jobs(limit=200):
        if job["kind"] == "study" and job.get("study_name") == name:
            return job
    return None


# The importance figure and the "what mattered" text rest on parameter importances over the
# complete trials only, so they change only when a trial completes: ``n_complete`` is in their cache
# keys for that, and the live panel's 2 s polls between two completions cost nothing. Two caches, so
# that the figure is built only once its tab is opened.


@st.cache_data(max_entries=32, show_spinner=False)
def _importance_figure(url: str, name: str, n_complete: int):
    """The parameter importance figure of a study (a StudyFigure)."""
    from flagvision.studies import figures

    return figures.plot_importances(ui.load_study(url, name))


@st.cache_data(max_entries=32, show_spinner=False)
def _what_mattered(url: str, name: str, n_complete: int) -> str:
    """The "what mattered" sentences of a study."""
    from flagvision.studies import results

    return results.what_mattered(ui.load_study(url, name))


def _show(fig_result, key: str) -> None:
    if fig_result.figure is None:
        st.caption(fig_result.message)
    else:
        st.plotly_chart(fig_result.figure, key=key, width="stretch")


def _study_names(ws, store) -> list[str]:
    """The studies of the storage, then those only queued (not created in storage yet)."""
    names = ui.study_names(ws.storage_url)
    queued = [
        j["study_name"] for j in store.list_jobs(jobs.ACTIVE_STATES) if j["kind"] == "study" and j.get("study_name")
    ]
    return names + [n for n in queued if n not in names]


def _trial_curves(store, trials: list[dict]) -> None:
    with_runs = [t for t in trials if t.get("run_id") is not None]
    if not with_runs:
        st.caption("No trial has started training yet.")
        return
    by_number = {t["number"]: t for t in with_runs}
    number = st.selectbox(
        "Trial",
        list(by_number),
        key="study_trial_curve",
        format_func=lambda n: f"#{n} · {by_number[n]['state'].lower()} · run {by_number[n]['run_id']}",
    )
    metrics = store.get_metrics(int(by_number[number]["run_id"]))
    c_loss, c_acc = st.columns(2)
    with c_loss:
        ui.figure("training_curves", metrics, metric="loss", key="study_trial_loss")
    with c_acc:
        ui.figure("training_curves", metrics, metric="acc", key="study_trial_acc")


def _watch(ws, names: list[str], blocked: bool = False) -> None:
    from flagvision.studies import figures, storage

    store = ui.store(ws)
    url = ws.storage_url
    if not names:
        st.caption("No study yet: configure one above and press Start study.")
        return
    # Set on the select box's key before st.rerun(), a new study's name was lost when that rerun
    # merged with a poll of a fragment (whose request carries the browser's older widget values).
    pending = st.session_state.pop("study_pending_choice", None)
    if pending in names:
        st.session_state["study_selected"] = pending
    if st.session_state.get("study_selected") not in names:
        st.session_state["study_selected"] = names[0]
    name = st.selectbox("Study", names, key="study_selected")
    job = _study_job(store, name)
    active = bool(job and job["state"] in jobs.ACTIVE_STATES)

    @st.fragment(run_every=2 if active else None)
    @ui.guarded
    def live() -> None:
        job_now = _study_job(store, name)
        if job_now and job_now["state"] in jobs.ACTIVE_STATES:
            st.progress(float(job_now.get("progress") or 0.0), text=job_now.get("progress_text") or job_now["state"])
            if st.button("Cancel study", key="study_cancel", icon=":material/stop:"):
                jobs.cancel(ws, job_now["id"])
                st.rerun()
        elif job_now and job_now.get("error"):
            st.error(f"Study job {job_now['state']}: {job_now['error'].splitlines()[0]}")
        if name not in ui.study_names(url):
            st.info("The study is queued; its trials appear once the worker starts it.")
            return
        study = ui.load_study(url, name)
        cfg = storage.stored_config(study)
        trials = [trial_dict(t) for t in study.get_trials(deepcopy=False)]
        searched = list(cfg.search_space().searched) if cfg else sorted({k for t in trials for k in t["params"]})
        done = sum(t["state"] in ("COMPLETE", "PRUNED") for t in trials)
        n_complete = sum(t["state"] == "COMPLETE" for t in trials)
        st.markdown(
            f"**{done} of {cfg.n_trials if cfg else '?'} trials finished**, "
            f"{sum(t['state'] == 'RUNNING' for t in trials)} running"
        )
        st.dataframe(trial_rows(trials, searched), hide_index=True, key="study_trials")

        # Only the open tab is drawn (one chart instead of six): the table and the history paint
        # first, and a poll redraws one figure.
        history, importances, parallel, intermediate, curves = ui.lazy_tabs(VIEWS, key="study_view")
        if history.open:
            with history:
                _show(figures.plot_history(study), "study_fig_history")
        if importances.open:
            with importances:
                _show(_importance_figure(url, name, n_complete), "study_fig_importances")
        if parallel.open:
            with parallel:
                _show(figures.plot_parallel(study), "study_fig_parallel")
        if intermediate.open:
            with intermediate:
                _show(figures.plot_intermediate(study), "study_fig_intermediate")
        if curves.open:
            with curves:
                _trial_curves(store, trials)
        st.markdown("**What mattered**")
        st.info(_what_mattered(url, name, n_complete), icon=":material/lightbulb:")
        if active and not (job_now and job_now["state"] in jobs.ACTIVE_STATES):
            st.rerun()  # the job ended: stop polling

    live()
    _actions(ws, name, blocked)


def _actions(ws, name: str, blocked: bool = False) -> None:
    from flagvision.studies import results

    st.subheader("Next steps")
    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**optuna-dashboard**")
        handle = st.session_state.get("study_dashboard")
        if handle is not None and handle.running:
            st.link_button("Open optuna-dashboard", handle.url, icon=":material/open_in_new:")
            st.caption(f"Running at {handle.url}")
            if st.button("Stop the dashboard", key="study_dashboard_stop"):
                handle.stop()
                del st.session_state["study_dashboard"]
                st.rerun()
        elif st.button("Start optuna-dashboard", key="study_dashboard_start", icon=":material/monitoring:"):
            from flagvision.studies.dashboard import start_dashboard

            with st.spinner("Starting optuna-dashboard…"):
                st.session_state["study_dashboard"] = start_dashboard(ws.storage_url)
            st.rerun()
    with c2:
        st.markdown("**Final model**")
        epochs = st.slider(
            "Epochs for the final training",
            1,
            100,
            10,
            1,
            key="study_final_epochs",
            help="The reference study trained its final model for 10 epochs",
        )
        if st.button("Train final model with best parameters", key="study_final", type="primary", disabled=blocked):
            job_id, run_id = results.submit_final_training(ws, ws.storage_url, name, epochs=int(epochs))
            st.session_state["train_watch_next"] = run_id
            st.success(f"Run #{run_id} queued as job {job_id}; watch it on the Train page.")
            ui.page_link("train", "Watch it on the Train page")


@ui.guarded
def main() -> None:
    ws = ui.workspace()
    st.title("Study")
    st.caption("An Optuna search over the custom CNN's hyperparameters; every trial is a run with live curves.")
    blocked = _reset_invalid_values(ws)
    names = _study_names(ws, ui.store(ws))
    _new_study(ws, blocked, expanded=not names)  # folded away once there are studies to watch
    st.divider()
    _watch(ws, names, blocked)


ui.run_page(main, "study")
