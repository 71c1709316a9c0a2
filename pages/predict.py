"""Predict: drop photos (or use the camera); both models' top-5, agreement, Grad-CAM, batch table."""

from __future__ import annotations

import streamlit as st

import app_ui as ui
from app_ui.logic import agreement_badge, answer_markdown, batch_summary_row, checkpoint_choices, checkpoint_label
from flagvision.config import CONFIDENCE_THRESHOLD, CUSTOM_CNN, VGG16_TRANSFER, model_info
from flagvision.data.images import IMAGE_SUFFIXES, ImageError
from flagvision.inference.photos import analyse_photo


def _slot(model: str) -> tuple[str, str, str]:
    """(registry name, title, how to get one) of a model column."""
    label = model_info(model).label
    return model, label, f"Train a {label} model on the Train page (model: {label})."


SLOTS = {"cnn": _slot(CUSTOM_CNN), "vgg": _slot(VGG16_TRANSFER)}


def _choose_models(store) -> dict[str, str]:
    """Checkpoint path per model slot (only slots with a succeeded run)."""
    runs = store.list_runs(status="succeeded")
    chosen: dict[str, str] = {}
    cols = st.columns(2)
    for col, (slot, (model, title, how)) in zip(cols, SLOTS.items(), strict=True):
        with col:
            options = checkpoint_choices(runs, model)
            if not options:
                st.info(f"**{title}**: no trained model yet. {how}", icon=":material/info:")
                ui.page_link("train", "Open the Train page")
                continue
            by_id = {r["id"]: r for r in options}
            run_id = st.selectbox(
                f"{title} checkpoint",
                list(by_id),
                format_func=lambda i, runs=by_id: checkpoint_label(runs[i]),
                key=f"predict_ckpt_{slot}",
            )
            chosen[slot] = by_id[run_id]["checkpoint_path"]
    return chosen


def _photos() -> list[tuple[str, bytes]]:
    files = st.file_uploader(
        "Photos of flags",
        accept_multiple_files=True,
        key="predict_files",
        type=[s.lstrip(".") for s in IMAGE_SUFFIXES],
        help="Drag and drop one or many photos; each is classified by both models.",
    )
    photos = [(f.name, f.getvalue()) for f in files or []]
    if st.toggle("Use the camera", key="predict_camera_on"):
        shot = st.camera_input("Take a photo", key="predict_camera")
        if shot is not None:
            photos.append(("camera photo", shot.getvalue()))
    return photos


def _show_result(index: int, result, labels: dict[str, str], threshold: float) -> None:
    with st.container(border=True):
        head = f"**{result.name}**"
        if result.agreement:
            head += f" · {agreement_badge(result.agreement)}"
        st.markdown(head)
        cols = st.columns([1, 2, 2])
        cols[0].image(result.image, caption="photo", width="stretch")
        for col, slot in zip(cols[1:], SLOTS, strict=True):
            with col:
                if slot not in result.predictions:
                    st.caption(f"{SLOTS[slot][1]}: {SLOTS[slot][2]}")
                    continue
                pred = result.predictions[slot]
                # The model's name above the chart, not as its Plotly title: a title does not wrap, and
                # "VGG-16 transfer (random init)" was cut off in the narrow column.
                st.markdown(f"**{labels[slot]}**")
                st.markdown(answer_markdown(pred, threshold))
                inner = st.columns([3, 2])
                with inner[0]:
                    ui.figure("topk_bars", pred.top, key=f"predict_topk_{slot}_{index}")
                with inner[1]:
                    if slot in result.overlays:
                        where = " (the crop that answered)" if pred.box else ""
                        st.image(result.overlays[slot], caption=f"Grad-CAM: {pred.label}{where}", width="stretch")


@ui.guarded
def main() -> None:
    ws = ui.workspace()
    store = ui.store(ws)
    st.title("Predict")
    st.caption(
        "Each photo gets the checkpoint's own evaluation preprocessing; with the crop search on, an unsure "
        "model also reads 13 crops and the surest view answers. Confidences are calibrated on each run's "
        "held-out images; below the threshold a model says 'not sure'. Grad-CAM shows where the model looked."
    )
    checkpoints = _choose_models(store)
    ui.weights_panel(ws, "predict")
    photos = _photos()
    if not checkpoints:
        st.warning("No trained model yet: train one on the Train page first.")
        return
    if not photos:
        st.caption("Drop photos above to classify them.")
        return
    predictors = {slot: ui.predictor(path) for slot, path in checkpoints.items()}
    labels = {slot: p.label for slot, p in predictors.items()}
    gradcam = st.toggle("Grad-CAM overlays", True, key="predict_gradcam")
    search = st.toggle(
        "Look for a small flag in 13 crops",
        False,
        key="predict_search",
        help="When a model is unsure of the whole photo, it also reads 13 overlapping crops and the "
        "surest one answers: a flag far away becomes readable. Up to 14x the work (slow with VGG-16).",
    )
    threshold = (
        st.number_input(
            "Not sure below (% confidence)",
            min_value=0,
            max_value=100,
            value=round(100 * CONFIDENCE_THRESHOLD),
            step=5,
            key="predict_threshold",
            help="Below this calibrated confidence a model says 'not sure' and names its two closest classes.",
        )
        / 100
    )
    bar = st.progress(0.0, text="Classifying…") if len(photos) > 1 else None
    summary = []
    for i, (name, data) in enumerate(photos, 1):
        try:
            result = analyse_photo(name, data, predictors, k=5, gradcam=gradcam, search=search)
        except ImageError as exc:
            st.error(str(exc), icon=":material/broken_image:")
            summary.append({"photo": name, "error": "unreadable image"})
            continue
        finally:
            if bar is not None:
                bar.progress(i / len(photos), text=f"Classified {i}/{len(photos)}")
        _show_result(i, result, labels, threshold)
        answers = {labels[s]: p for s, p in result.predictions.items()}
        summary.append(batch_summary_row(name, answers, result.agreement, threshold))
    if bar is not None:
        bar.empty()
    if len(photos) > 1:
        st.subheader("Summary")
        st.dataframe(summary, hide_index=True, key="predict_summary")


ui.run_page(main, "predict")
