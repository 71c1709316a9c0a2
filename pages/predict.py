"""Predict: drop photos (or use the camera); both models' top-5, which is surer, Grad-CAM, batch table."""

from __future__ import annotations

import streamlit as st

import app_ui as ui
from app_ui.answers import answer_markdown, batch_summary_row, comparison_markdown
from app_ui.logic import checkpoint_choices, checkpoint_label
from app_ui.weights import weights_panel
from flagvision.config import CONFIDENCE_THRESHOLD, CUSTOM_CNN, VGG16_TRANSFER, model_info
from flagvision.data.images import IMAGE_SUFFIXES, ImageError
from flagvision.inference.photos import PhotoCache, analyse_photo, draw_boxes, finder_off_by, whole_photo_text
from flagvision.jobs.schema import ACTIVE_STATES


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
                _missing_model(slot, title, how)
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


def _answer(slot: str, predictions: dict, labels: dict[str, str], threshold: float):
    """A model's name and its answer (or "not sure") above its chart; the prediction, or None (said)
    when this model did not answer. The name is markdown, not the Plotly title: a title does not
    wrap, and "VGG-16 transfer (random init, not pretrained)" would be cut off in a narrow column."""
    if slot not in predictions:
        from app_ui.logic import waiting_column_text
        from flagvision.jobs.defaults import default_models_status

        status = default_models_status(ui.workspace())[slot]
        st.caption(f"**{SLOTS[slot][1]}**: {waiting_column_text(slot, status, SLOTS[slot][2])}")
        return None
    st.markdown(f"**{labels[slot]}**")
    st.markdown(answer_markdown(predictions[slot], threshold))
    return predictions[slot]


def _show_result(index: int, result, labels: dict[str, str], threshold: float) -> None:
    with st.container(border=True):
        st.markdown(f"**{result.name}**")
        compared = comparison_markdown(result.predictions, labels, threshold)
        if compared:
            st.markdown(compared)
        cols = st.columns([1, 2, 2])
        cols[0].image(result.image, caption="photo", width="stretch")
        for col, slot in zip(cols[1:], SLOTS, strict=True):
            with col:
                pred = _answer(slot, result.predictions, labels, threshold)
                if pred is None:
                    continue
                inner = st.columns([3, 2])
                with inner[0]:
                    ui.figure("topk_bars", pred.top, key=f"predict_topk_{slot}_{index}")
                with inner[1]:
                    if slot in result.overlays:
                        where = " (the crop that answered)" if pred.box else ""
                        st.image(result.overlays[slot], caption=f"Grad-CAM: {pred.label}{where}", width="stretch")


# -- a model column without a checkpoint: what it waits for --------------------------------------


def _missing_model(slot: str, title: str, how: str) -> None:
    """No trained model in this column: what it waits for (a default-models job under way, the
    ImageNet weights) or how to get one. Polls while a job is under way; its end reruns the page,
    so Predict works as soon as the model is trained."""
    from app_ui.logic import default_part_text
    from flagvision.jobs.defaults import default_models_status

    ws = ui.workspace()
    started = default_models_status(ws)[slot]["state"]

    @st.fragment(run_every=ui.JOBS_POLL_S if started in (*ACTIVE_STATES, "waiting for data") else None)
    @ui.guarded
    def column() -> None:
        status = default_models_status(ws)[slot]
        if status["state"] in (*ACTIVE_STATES, "waiting for data"):
            st.info(f"**{title}**: {default_part_text(slot, status)}", icon=":material/hourglass_top:")
        elif status["state"] == "waiting for weights":
            text = f"no trained model yet, {default_part_text(slot, status)}. {how}"
            st.info(f"**{title}**: {text}", icon=":material/hourglass_top:")
            ui.page_link("train", "Open the Train page")
        else:
            st.info(f"**{title}**: no trained model yet. {how}", icon=":material/info:")
            ui.page_link("train", "Open the Train page")
        if status["state"] != started:
            st.rerun()  # a job started or ended: redraw the page around it

    column()


def _no_model_yet(ws, photos: list[tuple[str, bytes]]) -> None:
    """Said next to the uploader when no model is trained: dropped photos wait, never vanish."""
    waiting = f" {len(photos)} photo{'s' if len(photos) != 1 else ''} waiting." if photos else ""
    st.warning(
        f"No trained model yet: nothing can be classified.{waiting} Train the default models (a few "
        "minutes, in the background) or train your own on the Train page.",
        icon=":material/warning:",
    )
    ui.default_models_button(ws, "predict")


def _default_models_offer(ws) -> None:
    """The default models, when some part (the finder, VGG-16) is still missing."""
    from flagvision.jobs.defaults import default_models_status

    if all(s["state"] == "ready" for s in default_models_status(ws).values()):
        return
    with st.expander("Default models", icon=":material/bolt:"):
        ui.default_models_button(ws, "predict")


# -- example photos -------------------------------------------------------------------------------


def _example_photos(ws) -> list[tuple[str, bytes]]:
    """ "Try an example": check-set scenes rendered once into the workspace, one click each."""
    from flagvision.synthetic.examples import ensure_examples, examples_ready

    with st.expander("Try an example photo", expanded=True, icon=":material/photo_camera:"):
        # Rendered with the built-in data; a workspace without them renders them on request, not
        # during the page's first paint.
        if not examples_ready(ws) and not st.button("Show the example photos", key="predict_examples_render"):
            st.caption("Example scenes rendered by the check set's own route (a few seconds, once).")
            return []
        with st.spinner("Rendering the example photos…"):
            examples = ensure_examples(ws)
        cols = st.columns(len(examples))
        for i, (col, ex) in enumerate(zip(cols, examples, strict=True)):
            with col:
                st.image(str(ex.path), width="stretch")
                if st.button(ex.title, key=f"predict_example_{i}", width="stretch"):
                    st.session_state["predict_example"] = ex.path.name
        chosen = st.session_state.get("predict_example")
        if chosen and st.button("Clear the example", key="predict_example_clear", icon=":material/close:"):
            st.session_state.pop("predict_example", None)
            chosen = None
    by_name = {ex.path.name: ex for ex in examples}
    if chosen not in by_name:
        return []
    ex = by_name[chosen]
    return [(f"example: {ex.title}", ex.path.read_bytes())]


# -- results through the flag finder ------------------------------------------------------------


def _finder(ws, off: list[str]):
    """The workspace's flag finder, or None (said: each photo is then classified whole): none built,
    a chosen model trained on photos that are not flags (``off``: their labels), or turned off here."""
    from flagvision.models.finder import FinderError

    if off:  # both models read the same view, so the whole photo for both
        st.caption(f"The flag finder is off: {whole_photo_text(off)}. Each photo is classified whole.")
        return None
    try:
        finder = ui.finder(ws)
    except FinderError as exc:
        st.warning(f"{exc} Until then each photo is classified whole.", icon=":material/warning:")
        return None
    if finder is None:
        st.caption("No flag finder in this workspace yet: each photo is classified whole (the default models "
                   "include it).")  # fmt: skip
        return None
    if not st.toggle(
        "Find the flags first",
        True,
        key="predict_find_flags",
        help="On: the flag finder boxes each flag in a photo and the models read its crop. Off: the models read "
        "each whole photo, to compare with what they answer on the crop.",
    ):
        st.caption("The flag finder is turned off: each photo is classified whole.")
        return None
    st.caption("The flag finder boxes each flag in a photo; both models read the same crop of it.")
    return finder


def _box_text(box) -> str:
    return f"({box[0]}, {box[1]})–({box[2]}, {box[3]})"


def _cache() -> PhotoCache:
    """Answers per (photo bytes, checkpoint, options) for this session: a toggle reruns the page,
    not the models."""
    if not isinstance(st.session_state.get("predict_cache"), PhotoCache):
        st.session_state["predict_cache"] = PhotoCache(max_entries=160)  # 20 photos × finder, 2 models, 2 overlays
    return st.session_state["predict_cache"]


def _show_found_flags(index: int, result, labels: dict[str, str], threshold: float) -> None:
    """A photo read through the flag finder: the boxes drawn on it, then each flag's answers."""
    with st.container(border=True):
        st.markdown(f"**{result.name}**")
        cols = st.columns([1, 2])
        if result.boxes:
            caption = f"{len(result.boxes)} flag{'s' if len(result.boxes) > 1 else ''} found: " + "; ".join(
                f"{i} {_box_text(b)}" for i, b in enumerate(result.boxes, 1)
            )
            cols[0].image(draw_boxes(result.image, result.boxes), caption=caption, width="stretch")
        else:
            cols[0].image(result.image, caption="photo", width="stretch")
        with cols[1]:
            if result.note:
                st.info(result.note[0].upper() + result.note[1:] + ".", icon=":material/crop_free:")
            for n, flag in enumerate(result.flags, 1):
                if flag.box is not None:
                    st.markdown(f"**Flag {n}** · box {_box_text(flag.box)} · finder score {flag.score:.2f}")
                compared = comparison_markdown(flag.predictions, labels, threshold)
                if compared:
                    st.markdown(compared)
                inner = st.columns(2)
                for col, slot in zip(inner, SLOTS, strict=True):
                    with col:
                        pred = _answer(slot, flag.predictions, labels, threshold)
                        if pred is None:
                            continue
                        ui.figure("topk_bars", pred.top, key=f"predict_topk_{slot}_{index}_{n}")
                        if slot in flag.overlays:
                            where = "the crop of the flag" if flag.box else "the whole photo"
                            st.image(flag.overlays[slot], caption=f"Grad-CAM on {where}: {pred.label}", width=160)


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
    weights_panel(ws, "predict")
    photos = _photos()
    if not checkpoints:
        _no_model_yet(ws, photos)
        return
    _default_models_offer(ws)
    photos += _example_photos(ws)
    if not photos:
        st.caption("Drop photos above to classify them.")
        return
    predictors = {slot: ui.predictor(path) for slot, path in checkpoints.items()}
    labels = {slot: p.label for slot, p in predictors.items()}
    gradcam = st.toggle("Grad-CAM overlays", True, key="predict_gradcam")
    off = finder_off_by(predictors)
    finder = _finder(ws, off)
    search = (
        finder is None
        and not off
        and st.toggle(
            "Look for a small flag in 13 crops",
            False,
            key="predict_search",
            help="When a model is unsure of the whole photo, it also reads 13 overlapping crops and the "
            "surest one answers: a flag far away becomes readable. Up to 14x the work (slow with VGG-16).",
        )
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
            result = analyse_photo(
                name, data, predictors, k=5, gradcam=gradcam, search=search, finder=finder, cache=_cache()
            )
        except ImageError as exc:
            st.error(str(exc), icon=":material/broken_image:")
            summary.append({"photo": name, "error": "unreadable image"})
            continue
        finally:
            if bar is not None:
                bar.progress(i / len(photos), text=f"Classified {i}/{len(photos)}")
        if result.finder_used:
            _show_found_flags(i, result, labels, threshold)
        else:
            _show_result(i, result, labels, threshold)
        answers = {labels[s]: p for s, p in result.predictions.items()}
        summary.append(batch_summary_row(name, answers, result.agreement, threshold))
    if bar is not None:
        bar.empty()
    if len(photos) > 1:
        st.subheader("Summary")
        st.dataframe(summary, hide_index=True, key="predict_summary")


ui.run_page(main, "predict")
