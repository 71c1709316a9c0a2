"""Runs: the table of all runs, overlaid curves, one run's evaluation, export and delete, two runs' disagreements."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import app_ui as ui
from app_ui.answers import calibration_summary
from app_ui.logic import SORT_KEYS, model_label, runs_table
from flagvision.config import model_names
from flagvision.jobs.schema import ACTIVE_STATES, RUN_STATUSES
from flagvision.workspace import CARD_FILE, RunPaths

GALLERY_MAX = 24
VIEWS = [
    "Per-class accuracy",
    "Confusion matrix",
    "Misclassified",
    "Calibration",
    "Config and log",
    "Export",
    "Delete",
]


def _table(runs: list[dict]) -> list[dict]:
    c1, c2, c3 = st.columns(3)
    models = c1.multiselect(
        "Model", model_names(), format_func=model_label, key="runs_filter_model", placeholder="all models"
    )
    statuses = c2.multiselect("Status", list(RUN_STATUSES), key="runs_filter_status", placeholder="all statuses")
    sort = c3.selectbox("Sort by", list(SORT_KEYS), key="runs_sort")
    rows = runs_table(runs, models=models, statuses=statuses, sort=sort)
    st.dataframe(
        rows,
        hide_index=True,
        key="runs_table",
        column_order=[
            "id",
            "name",
            "model",
            "status",
            "dataset",
            "epochs",
            "best_epoch",
            "val_acc_%",
            "test_acc_%",
            "duration",
            "study",
            "trial",
            "created",
        ],
        column_config={
            "val_acc_%": st.column_config.NumberColumn("best val acc", format="%.1f%%"),
            "test_acc_%": st.column_config.NumberColumn("test acc", format="%.1f%%"),
        },
    )
    return rows


def _compare(store, rows: list[dict]) -> None:
    st.subheader("Compare curves")
    labels = {r["id"]: f"#{r['id']} {r['name']}" for r in rows}
    chosen = st.multiselect(
        "Runs to overlay", list(labels), default=list(labels)[:3], format_func=labels.get, key="runs_compare"
    )
    if not chosen:
        st.caption("Pick runs to overlay their curves.")
        return
    metrics = store.get_metrics_many(chosen)
    series = {labels[i]: metrics[i] for i in chosen}
    c_loss, c_acc = st.columns(2)
    with c_loss:
        ui.figure("training_curves", series, metric="loss", key="runs_compare_loss")
    with c_acc:
        ui.figure("training_curves", series, metric="acc", key="runs_compare_acc")


def _evaluation_of(run: dict) -> dict | None:
    run_dir = Path(run.get("run_dir") or "")
    return RunPaths(run_dir).read_evaluation() if run_dir.is_dir() else None


def _per_class(run: dict, evaluation: dict) -> None:
    ui.figure("per_class_bars", evaluation["per_class"], title="Per-class accuracy", key=f"runs_per_class_{run['id']}")


def _confusion(run: dict, evaluation: dict) -> None:
    # The heatmap keeps square cells at a fixed size (24 legible rows): give it the full width.
    ui.figure(
        "confusion_heatmap", evaluation["confusion"], evaluation["class_names"], key=f"runs_confusion_{run['id']}"
    )


def _misclassified(run: dict, evaluation: dict) -> None:
    wrong = evaluation.get("misclassified") or []
    st.markdown(f"**Misclassified images** ({len(wrong)})")
    if not wrong:
        st.caption("None: every evaluation image was classified correctly.")
    shown = [w for w in wrong if Path(w["path"]).is_file()][:GALLERY_MAX]
    if shown:  # one element for the gallery: two dozen separate ones cost the browser far more
        st.image(
            [item["path"] for item in shown], caption=[f"true {w['true']} → {w['predicted']}" for w in shown], width=110
        )
    if len(wrong) > len(shown):
        st.caption(f"{len(wrong) - len(shown)} more not shown.")


def _calibration(run: dict, evaluation: dict) -> None:
    calibration = evaluation.get("calibration")
    if not calibration:
        st.caption("This run was evaluated before calibration existed: train it again for a reliability diagram.")
        return
    st.markdown(calibration_summary(calibration))
    ui.figure(
        "reliability_diagram",
        calibration["reliability_before"],
        calibration["reliability_after"],
        key=f"runs_reliability_{run['id']}",
    )


def _config_and_log(run: dict) -> None:
    st.json(run["config"], expanded=False)
    if run.get("error"):
        st.error(run["error"])
    log = RunPaths(Path(run.get("run_dir") or "")).log
    if log.is_file():
        from flagvision.jobs.queue import read_log_tail

        st.code(read_log_tail(log, 40) or "(empty)", language=None)


def _export(run: dict) -> None:
    from flagvision.inference.export import available_formats, export_checkpoint, export_filename

    ckpt = Path(run.get("checkpoint_path") or "")
    if not (ckpt / CARD_FILE).is_file():
        st.caption("No checkpoint to export yet.")
        return
    c1, c2 = st.columns([1, 2])
    fmt = c1.selectbox(
        "Export format",
        available_formats(),
        key=f"runs_export_fmt_{run['id']}",
        help="ONNX runs in onnxruntime (and most other runtimes); torch_export is a torch.export program for PyTorch",
    )
    if c2.button("Prepare export", key=f"runs_export_{run['id']}", icon=":material/build:"):
        with st.spinner("Exporting the model…"):
            st.session_state["runs_export"] = {
                "run": run["id"],
                "fmt": fmt,
                "data": export_checkpoint(ckpt, fmt),
                "name": export_filename(ckpt, fmt, stem=f"run{run['id']}"),
            }
    prepared = st.session_state.get("runs_export")
    if prepared and prepared["run"] == run["id"] and prepared["fmt"] == fmt:
        st.download_button(
            f"Download {prepared['name']} ({len(prepared['data']) / 2**20:.1f} MB)",
            prepared["data"],
            file_name=prepared["name"],
            mime="application/octet-stream",
            key=f"runs_download_{run['id']}",
            icon=":material/download:",
        )


def _delete(ws, store, run: dict) -> None:
    from flagvision.training.run import delete_run

    if run["status"] in ACTIVE_STATES:
        st.caption("A run that is queued or running cannot be deleted; cancel it on the Train page first.")
        return
    confirm = st.checkbox(
        f"Yes, delete run #{run['id']} with its checkpoint and metrics", key=f"runs_delete_confirm_{run['id']}"
    )
    if st.button("Delete run", key=f"runs_delete_{run['id']}", disabled=not confirm, icon=":material/delete:"):
        delete_run(ws, store, run["id"])
        st.session_state.pop("runs_selected", None)
        st.toast(f"Run #{run['id']} deleted.")
        st.rerun()


def _disagreements(ws, runs: list[dict]) -> None:
    """Two runs on the workspace's check set: the images where their answers differ, computed on
    request (both models read every check image) and kept per (run, run, finder, check set)."""
    from app_ui.compare import card_classes, comparable_runs, default_pair, disagreement_rows, gallery, run_name
    from flagvision.inference.compare import classes_differ, disagreement_summary, load_comparison
    from flagvision.jobs.defaults import finder_card_path

    st.subheader("Disagreements")
    choices = comparable_runs(runs)
    if len(choices) < 2:
        st.caption("Two finished runs with a checkpoint are needed: their answers on the check set are compared here.")
        return
    st.caption(
        "Both runs read the same check images (drawn by a second route, not the training data's generator), "
        "through the flag finder when the workspace has one; listed: the images where their answers differ."
    )
    by_id = {r["id"]: r for r in choices}
    ids = list(by_id)
    pair = default_pair(choices)
    c1, c2 = st.columns(2)
    a = c1.selectbox("First run", ids, index=ids.index(pair[0]), format_func=lambda i: run_name(by_id[i]),
                     key="runs_dis_a")  # fmt: skip
    b = c2.selectbox("Second run", ids, index=ids.index(pair[1]), format_func=lambda i: run_name(by_id[i]),
                     key="runs_dis_b")  # fmt: skip
    if a == b:
        st.caption("Pick two different runs.")
        return
    names = (run_name(by_id[a]), run_name(by_id[b]))
    ckpt_a, ckpt_b = by_id[a]["checkpoint_path"], by_id[b]["checkpoint_path"]
    problem = classes_differ(names, card_classes(ckpt_a), card_classes(ckpt_b))
    if problem:
        st.warning(problem, icon=":material/block:")
        return
    with_finder = finder_card_path(ws).is_file()
    report = load_comparison(ws, ckpt_a, ckpt_b, with_finder)
    if report is None:
        _compare_job(ws, ckpt_a, ckpt_b, with_finder)
        return
    st.markdown(disagreement_summary(report, names))
    if report["rows"]:
        st.dataframe(disagreement_rows(report, names), hide_index=True, key="runs_dis_table")
        shown = gallery(report)
        if shown:  # one element for the gallery, as for the misclassified images
            st.image([p for p, _ in shown], caption=[c for _, c in shown], width=110)
        if len(report["rows"]) > len(shown):
            st.caption(f"{len(report['rows']) - len(shown)} more not shown.")


def _compare_job(ws, ckpt_a: str, ckpt_b: str, with_finder: bool) -> None:
    """No kept comparison of the pair yet: its job's progress (polled; its end redraws the page), its
    error, or the button that queues it."""
    from flagvision.jobs.comparisons import latest_compare_job, submit_compare

    job = latest_compare_job(ws, ckpt_a, ckpt_b, with_finder)
    if job is not None and job["state"] in ACTIVE_STATES:

        @st.fragment(run_every=ui.JOBS_POLL_S)
        @ui.guarded
        def progress() -> None:
            now = ui.store(ws).get_job(job["id"]) or job
            if now["state"] not in ACTIVE_STATES:
                st.rerun()  # done (or failed): redraw the page around it
            st.progress(float(now.get("progress") or 0.0), text=now.get("progress_text") or now["state"])

        progress()
        return
    if job is not None and job["state"] == "failed":
        st.error(f"The last comparison of these runs failed: {job.get('error')}", icon=":material/error:")
    if st.button("Compare on the check set", key="runs_dis_go", icon=":material/compare:"):
        submit_compare(ws, ckpt_a, ckpt_b, with_finder)
        st.rerun()
    st.caption("Both models read every check image, in the background (the sidebar shows the job): seconds to "
               "a few minutes, the check set drawn first if the workspace has none yet. Computed once per pair "
               "of runs, then kept.")  # fmt: skip


@ui.guarded
def main() -> None:
    ws = ui.workspace()
    store = ui.store(ws)
    st.title("Runs")
    runs = store.list_runs()
    if not runs:
        st.info("No runs yet: start one on the Train page or run a study.")
        ui.page_link("train", "Go to the Train page")
        return
    rows = _table(runs)
    _compare(store, rows)

    st.subheader("One run")
    by_id = {r["id"]: r for r in runs}
    ids = [r["id"] for r in rows] or list(by_id)
    if st.session_state.get("runs_selected") not in ids:
        st.session_state["runs_selected"] = ids[0]
    run_id = st.selectbox(
        "Run",
        ids,
        key="runs_selected",
        format_func=lambda i: f"#{i} {by_id[i].get('name') or ''} ({by_id[i]['status']})",
    )
    run = by_id[run_id]
    evaluation = _evaluation_of(run)
    if evaluation:
        st.markdown(
            f"**{evaluation['accuracy']:.1%}** accuracy on {evaluation['n_images']} images "
            f"({evaluation.get('split', 'validation')}), loss {evaluation['loss']:.3f}"
        )
    else:
        st.caption("No evaluation yet: it is written when a run finishes at least one epoch.")
    # Only the open tab is drawn: one chart of this run (not two charts, a gallery, the config
    # viewer, the log and the export widgets) competes with the table and curves for the first paint.
    *evaluation_tabs, tab_config, tab_export, tab_delete = ui.lazy_tabs(VIEWS, key="runs_view")
    for tab, show in zip(evaluation_tabs, (_per_class, _confusion, _misclassified, _calibration), strict=True):
        if tab.open:
            with tab:
                if evaluation:
                    show(run, evaluation)
                else:
                    st.caption("Nothing to show before the evaluation.")
    if tab_config.open:
        with tab_config:
            _config_and_log(run)
    if tab_export.open:
        with tab_export:
            _export(run)
    if tab_delete.open:
        with tab_delete:
            _delete(ws, store, run)
    _disagreements(ws, runs)


ui.run_page(main, "runs")
