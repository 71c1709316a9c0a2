"""Dataset: pick or import a dataset, class counts, samples per class, augmentation, the 24 flags."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from flagvision.builtin import builtin_ready, ensure_builtin
from flagvision.flags import FLAG_NAMES, render_flag
from flagvision.importer import import_dataset
from flagvision.ui_logic import dataset_choices, dataset_title, sample_paths_per_class
from flagvision.workspace import BUILTIN_DATASET, Workspace
from app_pages import _common as ui

SAMPLES_PER_CLASS = 3
CLASSES_PER_ROW = 4
AUG_VIEWS = 6


def handle_zip_upload(ws: Workspace, data: bytes, filename: str, name: str = "") -> dict:
    """Import an uploaded zip as a dataset (the page's upload handler); return the import report."""
    return import_dataset(ws, data, name=name.strip() or Path(filename).stem)[1]


@st.cache_data(show_spinner="Counting images…", max_entries=16)
def _summary(path: str, stamp: float) -> dict:
    from flagvision.data import summarize

    return summarize(path)


def _folder_stamp(path: Path) -> float:
    """Changes when the dataset changes (manifest, or any class folder touched)."""
    stamps = [path.stat().st_mtime]
    stamps += [p.stat().st_mtime for p in path.iterdir() if p.is_dir()]
    return max(stamps)


def _import_section(ws: Workspace) -> None:
    with st.expander("Import a dataset (zip of class folders)", expanded=False, icon=":material/upload:"):
        st.caption(
            "A zip holding one folder per class (`<class>/<image>`), or `train/` and `test/` each with "
            "class folders. Files that are not readable images are skipped and listed."
        )
        upload = st.file_uploader("Dataset zip", type=["zip"], key="dataset_zip")
        name = st.text_input("Dataset name", key="dataset_import_name", placeholder="defaults to the zip's name")
        if st.button("Import dataset", key="dataset_import", disabled=upload is None):
            with st.spinner("Importing…"):
                report = handle_zip_upload(ws, upload.getvalue(), upload.name, name)
            st.session_state["dataset_last_import"] = report
            st.session_state["dataset_pending_choice"] = report["name"]
            st.rerun()
        report = st.session_state.get("dataset_last_import")
        if report:
            st.success(
                f"Imported **{report['name']}**: {report['images']} images in {len(report['classes'])} classes.",
                icon=":material/check_circle:",
            )
            if report["skipped"]:
                st.warning(f"{len(report['skipped'])} file(s) skipped:")
                st.dataframe(
                    [{"file": f, "reason": why} for f, why in report["skipped"]],
                    hide_index=True, key="dataset_skipped",
                )


def _samples(path: Path) -> None:
    st.subheader("Samples per class")
    groups = list(sample_paths_per_class(path, SAMPLES_PER_CLASS).items())
    for start in range(0, len(groups), CLASSES_PER_ROW):
        cols = st.columns(CLASSES_PER_ROW)
        for col, (name, paths) in zip(cols, groups[start : start + CLASSES_PER_ROW]):
            with col:
                st.markdown(f"**{name}**")
                if paths:
                    st.image([str(p) for p in paths], width=72)
                else:
                    st.caption("no images")
    return None


def _augmentation(path: Path) -> None:
    import torch

    from flagvision.data import augment_batch, decode_resized

    st.subheader("Augmentation preview")
    st.caption("One training image and what the training loop may see of it (random per epoch).")
    groups = sample_paths_per_class(path, 1)
    names = [n for n, p in groups.items() if p]
    c1, c2, c3 = st.columns(3)
    cls = c1.selectbox("Class", names, key="dataset_aug_class")
    strength = c2.slider("Augmentation strength", 0.0, 1.0, 0.5, 0.05, key="dataset_aug_strength",
                         help="DataConfig.augment: 0 = none, 1 = strong (range 0–1)")
    seed = c3.number_input("Seed", 0, 10_000, 0, key="dataset_aug_seed")
    image = decode_resized(groups[cls][0], 128)
    views = augment_batch(image.unsqueeze(0).repeat(AUG_VIEWS, 1, 1, 1), strength, torch.Generator().manual_seed(int(seed)))
    pictures = [image.permute(1, 2, 0).numpy()] + [(v.permute(1, 2, 0).numpy() * 255).astype("uint8") for v in views]
    st.image(pictures, caption=["original"] + [f"view {i + 1}" for i in range(AUG_VIEWS)], width=110)


def _flags() -> None:
    st.subheader("The 24 flags")
    per_row = 6
    for start in range(0, len(FLAG_NAMES), per_row):
        cols = st.columns(per_row)
        for col, name in zip(cols, FLAG_NAMES[start : start + per_row]):
            col.image(render_flag(name, 120), caption=name)


@ui.guarded
def main() -> None:
    ws = ui.workspace()
    st.title("Dataset")
    choices = dataset_choices(ws)
    pending = st.session_state.pop("dataset_pending_choice", None)
    if pending in choices:
        st.session_state["dataset_choice"] = pending
    if st.session_state.get("dataset_choice") not in choices:
        st.session_state["dataset_choice"] = choices[0]
    choice = st.selectbox("Dataset", choices, format_func=dataset_title, key="dataset_choice",
                          help="The built-in generated flags, or a folder inside the workspace's datasets/")
    _import_section(ws)
    path = ws.dataset_dir(choice)
    if choice == BUILTIN_DATASET and not builtin_ready(ws):
        st.info("The built-in dataset has not been generated yet.")
        if st.button("Generate the built-in dataset", key="dataset_build", type="primary"):
            bar = st.progress(0.0, text="Rendering flag scenes…")
            ensure_builtin(ws, progress=ui.progress_callback(bar, "Rendering flag scenes…"))
            st.rerun()
    else:
        st.caption(f"Folder: `{path}`")
        summary = _summary(str(path), _folder_stamp(path))
        total = sum(sum(c.values()) for c in summary["splits"].values())
        st.markdown(
            f"**{len(summary['classes'])} classes**, {total} images "
            f"({', '.join(f'{sum(c.values())} {s}' for s, c in summary['splits'].items())}); "
            f"sizes: {', '.join(f'{k} ×{v}' for k, v in summary.get('sizes', {}).items()) or '–'}"
        )
        if summary["unreadable"]:
            st.warning(f"{len(summary['unreadable'])} unreadable file(s) will be skipped in training.")
            st.dataframe([{"file": f, "reason": r} for f, r in summary["unreadable"]], hide_index=True,
                         key="dataset_unreadable")
        cols = st.columns(len(summary["splits"]) or 1)
        for col, (split, counts) in zip(cols, summary["splits"].items()):
            with col:
                ui.figure("class_counts_bars", counts, title=f"Images per class · {split}", key=f"dataset_counts_{split}")
        _samples(path)
        _augmentation(path)
    _flags()


main()
