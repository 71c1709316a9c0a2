"""FlagVision app: ``streamlit run streamlit_app.py``.

Navigation over ``app_pages/`` and the shared sidebar (workspace, live jobs). The sidebar's fragment
polls the store every 2 s and calls ``jobs.tick`` (reap dead workers, start queued jobs), so the
queue moves on while the app is open. Training and studies run in worker processes, never here.
After the first page is drawn, the pages' heavy imports (torch, Optuna, Plotly) are warmed in the
background, so that the first visit of each page does not pay them.
"""

from __future__ import annotations

import time

import streamlit as st

from app_pages import _common as ui
from flagvision import jobs
from flagvision.ui_logic import format_duration, job_eta, job_title

st.set_page_config(page_title="FlagVision", page_icon=":material/flag:", layout="wide")

pages = [
    st.Page(path, title=title, icon=icon, default=(name == "home"), url_path=name if name != "home" else None)
    for name, (path, title, icon) in ui.PAGES.items()
]
navigation = st.navigation(pages)


@st.fragment(run_every=2)
@ui.guarded
def _jobs_panel() -> None:
    ws = ui.workspace()
    jobs.tick(ws)
    store = ui.store(ws)
    active = store.list_jobs(("queued", "running"))
    if not active:
        st.caption("No job running.")
    runs_by_id = {r["id"]: r for r in store.list_runs(limit=100)}
    now = time.time()
    for job in active:
        title = job_title(job, runs_by_id)
        eta = job_eta(job, now)
        text = job.get("progress_text") or job["state"]
        if eta is not None:
            text += f" · ETA {format_duration(eta)}"
        st.markdown(f"**{title}** {ui.state_badge(job['state'])}")
        st.progress(float(job.get("progress") or 0.0), text=text)
    recent = [j for j in store.list_jobs(("succeeded", "failed", "cancelled"), limit=3)]
    if recent:
        st.caption("Recently finished")
        for job in recent:
            st.markdown(f"{job_title(job, runs_by_id)} {ui.state_badge(job['state'])}")


with st.sidebar:
    st.markdown("### :material/flag: FlagVision")
    ws = ui.workspace()
    st.caption(f"Workspace: `{ws.root}`")
    st.markdown("**Jobs**")
    _jobs_panel()

navigation.run()
ui.warm_up()  # after the page: the imports must not delay its first paint
