"""Dataset: pick or import a dataset, class counts, samples per class, augmentation, the 24 flags."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import app_ui as ui
from app_ui.logic import dataset_choices, dataset_title, image_strip, sample_paths_per_class
from flagvision.data.importer import import_dataset
from flagvision.synthetic.builtin import builtin_ready, ensure_builtin
from flagvision.synthetic.flags import FLAG_NAMES, render_flag
from flagvision.workspace import BUILTIN_DATASET, Workspace

SAMPLES_PER_CLASS = 3
SAMPLE_TILE_PX = 96  # drawn size of one sample (sharp on a 1.3x screen)
SAMPLE_SHOWN_PX = 72  # shown size of one sample
AUG_VIEWS = 6
FLAG_PX = 120
VIEWS = ["Samples per class", "Augmentation preview", "The 24 flags"]


def handle_zip_upload(ws: Workspace, data: bytes, filename: str, name: str = "") -> dict:
    """Import an uploaded zip as a dataset (the page's upload handler); return the import report."""
    return import_dataset(ws, data, name=name.strip() or Path(filename).stem)[1]


@st.cache_data(show_spinner="Counting images…", max_entries=16)
def _summary(path: str, stamp: float) -> dict:
    from flagvision.data.folders import summarize

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
                    hide_index=True,
                    key="dataset_skipped",
                )


@st.cache_data(show_spinner=False, max_entries=16)
def _sample_strips(path: str, stamp: float) -> tuple[list[bytes], list[str]]:
    """One PNG per class with its first samples side by side, and the class names as captions."""
    import io

    strips, names = [], []
    for name, paths in sample_paths_per_class(path, SAMPLES_PER_CLASS).items():
        buf = io.BytesIO()
        image_strip(paths, tile=SAMPLE_TILE_PX, slots=SAMPLES_PER_CLASS).save(buf, format="PNG")
        strips.append(buf.getvalue())
        names.append(name if paths else f"{name} (no images)")
    return strips, names


@st.cache_data(show_spinner=False)
def _flag_pictures(width: int) -> list[bytes]:
    import io

    out = []
    for name in FLAG_NAMES:
        buf = io.BytesIO()
        render_flag(name, width).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _samples(path: Path, stamp: float) -> None:
    st.caption(f"The first {SAMPLES_PER_CLASS} training images of each class.")
    strips, names = _sample_strips(str(path), stamp)
    # One element for all classes: a grid of 24×3 separate images kept the browser busy for seconds.
    st.image(strips, caption=names, width=SAMPLES_PER_CLASS * (SAMPLE_SHOWN_PX + 3))


@st.cache_data(show_spinner=False, max_entries=16)
def _first_samples(path: str, stamp: float) -> dict[str, list[Path]]:
    return sample_paths_per_class(path, 1)


def _augmentation(path: Path, stamp: float) -> None:
    import torch

    from flagvision.data.dataset import augment_batch, decode_resized

    st.caption("One training image and what the training loop may see of it (random per epoch).")
    groups = _first_samples(str(path), stamp)
    names = [n for n, p in groups.items() if p]
    c1, c2, c3 = st.columns(3)
    cls = c1.selectbox("Class", names, key="dataset_aug_class")
    strength = c2.slider(
        "Augmentation strength",
        0.0,
        1.0,
        0.5,
        0.05,
        key="dataset_aug_strength",
        help="DataConfig.augment: 0 = none, 1 = strong (range 0–1)",
    )
    seed = c3.number_input("Seed", 0, 10_000, 0, key="dataset_aug_seed")
    image = decode_resized(groups[cls][0], 128)
    views = augment_batch(
        image.unsqueeze(0).repeat(AUG_VIEWS, 1, 1, 1), strength, torch.Generator().manual_seed(int(seed))
    )
    pictures = [image.permute(1, 2, 0).numpy()] + [(v.permute(1, 2, 0).numpy() * 255).astype("uint8") for v in views]
    st.image(pictures, caption=["original"] + [f"view {i + 1}" for i in range(AUG_VIEWS)], width=110)


def _flags() -> None:
    st.image(_flag_pictures(FLAG_PX), caption=list(FLAG_NAMES), width=FLAG_PX)


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
    choice = st.selectbox(
        "Dataset",
        choices,
        format_func=dataset_title,
        key="dataset_choice",
        help="The built-in generated flags, or a folder inside the workspace's datasets/",
    )
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
        stamp = _folder_stamp(path)
        summary = _summary(str(path), stamp)
        total = sum(sum(c.values()) for c in summary["splits"].values())
        st.markdown(
            f"**{len(summary['classes'])} classes**, {total} images "
            f"({', '.join(f'{sum(c.values())} {s}' for s, c in summary['splits'].items())}); "
            f"sizes: {', '.join(f'{k} ×{v}' for k, v in summary.get('sizes', {}).items()) or '–'}"
        )
        if summary["unreadable"]:
            st.warning(f"{len(summary['unreadable'])} unreadable file(s) will be skipped in training.")
            st.dataframe(
                [{"file": f, "reason": r} for f, r in summary["unreadable"]], hide_index=True, key="dataset_unreadable"
            )
        cols = st.columns(len(summary["splits"]) or 1)
        for col, (split, counts) in zip(cols, summary["splits"].items(), strict=False):
            with col:
                ui.figure(
                    "class_counts_bars", counts, title=f"Images per class · {split}", key=f"dataset_counts_{split}"
                )
        # Only the open tab is drawn: the title, counts and charts paint first, the pictures after.
        samples_tab, augmentation_tab, flags_tab = ui.lazy_tabs(VIEWS, key="dataset_view")
        if samples_tab.open:
            with samples_tab:
                _samples(path, stamp)
        if augmentation_tab.open:
            with augmentation_tab:
                _augmentation(path, stamp)
        if flags_tab.open:
            with flags_tab:
                _flags()
        return
    st.subheader("The 24 flags")
    _flags()


ui.run_page(main, "dataset")
