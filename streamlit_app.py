"""FlagVision app: ``streamlit run streamlit_app.py``. This script is the Home page: what FlagVision
does, the built-in dataset, jobs, best models, links to every page. The other pages are the files in
``pages/`` (Streamlit's multipage layout); each draws the shared frame (``app_ui.run_page``: sidebar
navigation and live jobs). Training and studies run in worker processes, never here.
"""

import streamlit as st

import app_ui as ui
from app_ui.logic import best_runs_per_model, job_row, markdown_table
from flagvision.jobs import queue as jobs
from flagvision.jobs.schema import ACTIVE_STATES, FINISHED_STATES
from flagvision.synthetic.builtin import builtin_path, builtin_ready
from flagvision.synthetic.scenes import read_manifest


def _job_cells(job: dict) -> dict:
    row = job_row(job)
    return {**row, "progress": f"{row['progress']}%"}


def _default_models(ws) -> None:
    """One click to trained models: the reference study's CNN, the flag finder, VGG-16 transfer.
    Polls while a part is under way; a part's change reruns the page (its best models too)."""
    from flagvision.jobs.defaults import default_models_status

    def states() -> dict[str, str]:
        return {part: s["state"] for part, s in default_models_status(ws).items()}

    started = states()
    under_way = any(s in (*ACTIVE_STATES, "waiting for data") for s in started.values())

    @st.fragment(run_every=ui.JOBS_POLL_S if under_way else None)
    @ui.guarded
    def box() -> None:
        if states() != started:
            st.rerun()  # a job started or ended: redraw the page around it
        with st.container(border=True):
            st.markdown("**Default models** (the reference study's custom CNN on the built-in data, the flag "
                        "finder, VGG-16 transfer when its ImageNet weights are here)")  # fmt: skip
            ui.default_models_button(ws, "home")

    box()


def _builtin_offer(ws) -> None:
    """No built-in data: the button that queues its job, or that job's progress (polled; its end
    reruns the page). Rendered by a worker, never in this script."""
    job = jobs.open_store(ws).latest_job("builtin")
    if job is None or job["state"] not in ACTIVE_STATES:
        if job is not None and job["state"] == "failed":
            st.error(f"Building the built-in dataset failed: {job['error']}", icon=":material/error:")
        st.info("The built-in flag dataset has not been generated yet (about a minute on two cores).")
        if st.button("Generate the built-in dataset", key="home_build", type="primary"):
            jobs.submit_builtin(ws)
            st.rerun()
        return

    @st.fragment(run_every=ui.JOBS_POLL_S)
    @ui.guarded
    def progress() -> None:
        now = jobs.open_store(ws).get_job(job["id"]) or job
        if now["state"] not in ACTIVE_STATES:
            st.rerun()  # done (or failed): redraw the page around the result
        text = now.get("progress_text") or now["state"]
        st.progress(float(now.get("progress") or 0.0), text=f"Building the built-in dataset: {text}")

    progress()


@ui.guarded
def main() -> None:
    ws = ui.workspace()
    store = ui.store(ws)
    st.title("FlagVision")
    st.markdown(
        "Train and compare image classifiers of **24 European flags**: the reference study's custom CNN against "
        "a VGG-16 transfer model.  \n"
        "Tune the CNN's hyperparameters with Optuna; every run's curves, checkpoints and evaluation stay "
        "in one workspace.  \n"
        "Drop photos on **Predict** to see both models' top-5 answers and where they looked (Grad-CAM)."
    )

    st.subheader("Built-in dataset")
    if builtin_ready(ws):
        manifest = read_manifest(builtin_path(ws)) or {}
        counts = manifest.get("counts", {})
        per_split = ", ".join(f"{sum(c.values())} {split}" for split, c in counts.items())
        st.success(
            f"Ready: {len(manifest.get('class_names', []))} classes, {manifest.get('num_images', '?')} images "
            f"({per_split}) at {builtin_path(ws)}",
            icon=":material/check_circle:",
        )
    else:
        _builtin_offer(ws)

    st.subheader("Jobs")
    active = store.list_jobs(ACTIVE_STATES)
    recent = store.list_jobs(FINISHED_STATES, limit=5)
    # Markdown tables, not data frames: a few rows do not need the megabyte of JavaScript a data
    # frame costs the first paint of this page.
    if active:
        st.markdown(markdown_table([_job_cells(j) for j in active]))
    else:
        st.caption("Nothing running.")
    if recent:
        st.caption("Recently finished")
        st.markdown(markdown_table([_job_cells(j) for j in recent]))

    st.subheader("Best models")
    best = best_runs_per_model(store.list_runs(status="succeeded"))
    if not best:
        st.caption("No finished run yet: train the default models here, or start your own on the Train page.")
    _default_models(ws)
    cols = st.columns(len(best)) if best else []  # no run yet: no columns (zip below is strict)
    for col, run in zip(cols, best, strict=True):
        acc = run.get("test_acc")
        col.metric(
            run.get("label") or run.get("model"),
            f"{acc:.1%}" if acc is not None else "–",
            help=f"Run #{run['id']} {run.get('name') or ''}: test accuracy on {run.get('dataset')}",
        )
        col.caption(f"run #{run['id']} · {run.get('dataset')}")

    st.subheader("Pages")
    cols = st.columns(3)
    descriptions = {
        "dataset": "Browse, import and preview datasets",
        "train": "Train one model in the background, live curves",
        "study": "Optuna search over the CNN's hyperparameters",
        "runs": "Compare runs, confusion matrices, export",
        "predict": "Classify your photos with both models",
    }
    for i, (name, text) in enumerate(descriptions.items()):
        with cols[i % 3]:
            ui.page_link(name)
            st.caption(text)


ui.run_page(main, "home")
