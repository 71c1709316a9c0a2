"""The VGG-16 ImageNet weights panel of the Train and Predict pages: their status, a Download job with
its progress, the import of a file from this machine, the last failure in one line.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_ui import WEIGHTS_POLL_S, guarded, show_error
from app_ui.logic import (
    weights_headline,
    weights_job_state,
)
from flagvision.jobs import queue as jobs
from flagvision.workspace import Workspace


def weights_panel(ws: Workspace, key: str) -> bool:
    """The VGG-16 ImageNet weights: found or missing (path, size); when missing, a Download button
    (a "weights" job whose progress is shown while it runs, and its error when it failed) and an
    Import form (a path on this machine, hash-checked, nothing installed from a wrong file).
    ``key`` prefixes the widget keys (the page's name). Returns whether the weights are found.

    Drawn in a fragment that polls only while a download runs; the download's end reruns the whole
    page, so that what depends on the weights (Train's random-init choice) follows.
    """
    from flagvision.models.weights import weights_status

    available = bool(weights_status()["available"])
    active = weights_job_state(jobs.latest_weights_job(ws)) == "active"

    @st.fragment(run_every=WEIGHTS_POLL_S if active else None)
    @guarded
    def panel() -> None:
        status = weights_status()
        job = jobs.latest_weights_job(ws)
        state = weights_job_state(job)
        with st.expander(weights_headline(status), expanded=not status["available"], icon=":material/download:"):
            if status["available"]:
                st.success(f"Found at `{status['path']}`.", icon=":material/check_circle:")
            else:
                st.warning(
                    f"VGG-16 transfer starts from ImageNet weights, which are not on this machine yet "
                    f"(expected at `{status['path']}`). Download them (about {status['size_mb']} MB) or "
                    "import a copy of the file; without them VGG-16 can only start from random "
                    "initialisation, labelled “random init, not pretrained”.",
                    icon=":material/warning:",
                )
                if job is not None and state == "active":
                    text = job.get("progress_text") or job["state"]
                    st.progress(float(job.get("progress") or 0.0), text=f"Download: {text}")
                    if st.button("Cancel the download", key=f"{key}_weights_cancel", icon=":material/stop:"):
                        jobs.cancel(ws, job["id"])
                        st.rerun()
                else:
                    if job is not None and state == "failed":
                        st.error(f"The last download failed: {job.get('error')}", icon=":material/error:")
                    if st.button(
                        f"Download ({status['size_mb']} MB)", key=f"{key}_weights_download", icon=":material/download:"
                    ):
                        jobs.submit_weights_download(ws)
                        st.rerun()
                    _weights_import_form(key)
        if active != (state == "active") or available != status["available"]:
            st.rerun()  # a download started or ended, or a file appeared: redraw the page around it

    panel()
    return available


def _weights_import_form(key: str) -> None:
    from flagvision.models.weights import WEIGHTS_FILENAME, import_weights

    path = st.text_input(
        "Import a file from this machine",
        key=f"{key}_weights_path",
        placeholder=f"/path/to/{WEIGHTS_FILENAME}",
        help=f"The path of a copy of {WEIGHTS_FILENAME} on this machine (nothing is uploaded); its hash "
        "is checked against the published one before it is installed.",
    )
    if st.button("Import", key=f"{key}_weights_import", icon=":material/file_open:"):
        if not path.strip():
            st.error(f"Type the path of a copy of {WEIGHTS_FILENAME} first.", icon=":material/error:")
            return
        try:
            with st.spinner("Checking the file…"):
                import_weights(Path(path.strip()).expanduser())
        except Exception as exc:  # noqa: BLE001 - a wrong file is one line; a bug keeps its traceback in the log
            show_error(exc, "Import failed")
            return
        st.rerun()


# -- the frame around every page ------------------------------------------------------------------
