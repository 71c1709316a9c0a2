"""Train: configure one run from the hyperparameter specs, start it as a background job, watch it.

The live panel is a fragment that re-reads the store every second while the run is active, so the
curves trail the worker by at most an epoch write plus a second; the rest of the page stays idle.
"""

from __future__ import annotations

import streamlit as st

import app_ui as ui
from app_ui.logic import (
    IMAGE_SIZES,
    build_run_config,
    dataset_choices,
    dataset_title,
    epochs_eta,
    format_duration,
    job_eta,
    model_label,
    param_applies,
    resumable,
)
from app_ui.weights import weights_panel
from flagvision.config import (
    CUSTOM_CNN,
    DEFAULT_AUGMENT,
    DEFAULT_HPARAMS,
    HYPERPARAMS,
    LR_SCHEDULES,
    PARAM_SPECS,
    REFERENCE_HPARAMS,
    REFERENCE_LR_SCHEDULE,
    VGG16_TRANSFER,
    ConfigError,
    HyperParams,
    RunConfig,
    VGGConfig,
    default_image_size,
    model_info,
    model_names,
)
from flagvision.jobs import queue as jobs
from flagvision.workspace import BUILTIN_DATASET


def _model_section(ws) -> tuple[str, dict, bool]:
    """The model, its VGG options, and whether it cannot start yet (VGG-16 without its weights and
    without random initialisation chosen: said on the page, the Start button stays disabled)."""
    model = st.selectbox(
        "Model",
        model_names(),
        format_func=model_label,
        key="train_model",
        help="The custom CNN of the reference study, or a section of VGG-16 as a frozen feature extractor + new head",
    )
    vgg: dict = {}
    waiting_for_weights = False
    if model == VGG16_TRANSFER:  # the options of VGGConfig
        defaults = VGGConfig()
        c1, c2 = st.columns(2)
        vgg["blocks"] = c1.slider(
            "VGG-16 blocks",
            1,
            5,
            defaults.blocks,
            1,
            key="train_vgg_blocks",
            help="Convolutional blocks of VGG-16 kept as feature extractor. Range: 1–5",
        )
        vgg["cached_views"] = c2.slider(
            "Cached views",
            1,
            32,
            defaults.cached_views,
            1,
            key="train_vgg_views",
            help="Augmented views whose frozen features are computed once and cached "
            "(1 = no augmentation). Range: 1–32",
        )
        vgg["head_units"] = c1.select_slider(
            "Head units",
            [0, 64, 128, 256, 512, 1024],
            defaults.head_units,
            key="train_vgg_head",
            help="Hidden units of the new head (0 = linear). Range: ≥ 0",
        )
        vgg["fine_tune_last"] = c2.checkbox(
            "Fine-tune the last block",
            defaults.fine_tune_last,
            key="train_vgg_ft",
            help="Also train the last kept block (slower: no feature cache)",
        )
        available = weights_panel(ws, "train")
        # Never ticked by default: random initialisation is a choice the user makes, not a fallback.
        random_init = st.checkbox(
            "Random initialisation instead of ImageNet weights (labelled “random init, not pretrained”)",
            False,
            key="train_vgg_random",
            help="A VGG-16 that starts from random weights learns far less from a small dataset; "
            "every table, chart and prediction of it says “random init, not pretrained”.",
        )
        waiting_for_weights = not random_init and not available
        if waiting_for_weights:
            st.error(
                "VGG-16 needs its ImageNet weights: download or import them above, or tick random initialisation.",
                icon=":material/error:",
            )
        vgg["pretrained"] = not random_init
    return model, vgg, waiting_for_weights


def _default_sizes() -> str:
    return ", ".join(f"{model_info(m).label} {model_info(m).image_size}" for m in model_names())


def _follow_model_size(model: str | None) -> None:
    """The image size starts at the chosen model's default and follows a change of model, unless
    the user picked another size (VGG-16 needs 64 px for the 2×2 map its head reads)."""
    default = default_image_size(model or CUSTOM_CNN)
    previous = st.session_state.get("train_image_size_default")
    if previous == default:
        # Nothing to follow: writing the widget's state on every run would race a change the user
        # just made (seen: a size set while the page was rerunning came back as the default).
        return
    if st.session_state.get("train_image_size") in (None, previous):
        st.session_state["train_image_size"] = default
    st.session_state["train_image_size_default"] = default


def _config_form(ws):
    left, right = st.columns([1, 1], gap="large")
    with left:
        st.subheader("Model and data")
        try:
            model, vgg, waiting_for_weights = _model_section(ws)
        except ConfigError as exc:
            st.error(str(exc))
            model, vgg, waiting_for_weights = None, {}, False
        choices = dataset_choices(ws)
        dataset = st.selectbox("Dataset", choices, format_func=dataset_title, key="train_dataset")
        c1, c2 = st.columns(2)
        _follow_model_size(model)
        image_size = c1.select_slider(
            "Image size",
            IMAGE_SIZES,
            key="train_image_size",
            help=f"Square network input in pixels ({_default_sizes()} by default). Larger keeps the small "
            "details of emblems and crosses but trains slower (cost grows with the square of the size). Range: 8–256",
        )
        augment = c2.slider(
            "Augmentation strength",
            0.0,
            1.0,
            DEFAULT_AUGMENT,
            0.05,
            key="train_augment",
            help="Random crops, turns, colour and blur applied to each training batch: more makes the model "
            "robust to photos unlike the training images but learns more slowly; 0 = none, 1 = strong. Range: 0–1",
        )
        find_flags = st.checkbox(
            "Photos show flags: find the flag first when predicting",
            True,
            key="train_find_flags",
            help="When this model classifies a photo, the flag finder first boxes each flag in it and the model "
            "reads that crop. Untick it for a dataset of something else (leaves, cars...): the model then "
            "reads each whole photo, recorded with the run and its checkpoint.",
        )
        preset, preset_schedule = _preset()
        epochs = ui.param_widget(PARAM_SPECS["epochs"], key="train_hp_epochs", value=preset.epochs)
        settings = {**_training_settings(preset_schedule), "find_flags": bool(find_flags)}
        name = st.text_input("Run name", key="train_run_name", placeholder="optional")
        start_slot = st.container()
    with right:
        st.subheader("Hyperparameters")
        st.caption(
            "Ranges and defaults are the reference study's, but for the learning rate, which starts higher "
            "for the cosine schedule (hover a label for its range, what it does and why)."
        )
        presets = st.container(horizontal=True)
        presets.button(
            "FlagVision's defaults",
            key="train_preset_default",
            on_click=_use_preset,
            args=("default",),
            help="Every hyperparameter and the learning-rate schedule back to FlagVision's defaults.",
        )
        presets.button(
            "The reference study's preset",
            key="train_preset_reference",
            on_click=_use_preset,
            args=("reference",),
            help="The reference study's best preset exactly: its eleven values, the learning rate "
            f"{REFERENCE_HPARAMS.lr:g} kept constant, to compare FlagVision's defaults with.",
        )
        hparams = {"epochs": epochs}
        for spec in HYPERPARAMS:
            if spec.name == "epochs":
                continue
            applies = model is None or param_applies(model, spec.name)
            hparams[spec.name] = ui.param_widget(
                spec, key=f"train_hp_{spec.name}", value=getattr(preset, spec.name), disabled=not applies
            )
        if model is not None and not model_info(model).searchable:
            st.caption(f"Greyed out: shapes of the custom CNN, not used by {model_info(model).label}.")
    return model, vgg, dataset, image_size, augment, hparams, name, start_slot, waiting_for_weights, settings


WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # RunConfig accepts 0–0.1
LR_SCHEDULE_LABELS = {"cosine": "cosine (falls to zero)", "constant": "constant"}


PRESETS = {
    "default": (DEFAULT_HPARAMS, RunConfig().lr_schedule),
    "reference": (REFERENCE_HPARAMS, REFERENCE_LR_SCHEDULE),
}


def _preset() -> tuple[HyperParams, str]:
    """The hyperparameters and learning-rate schedule the widgets start from: FlagVision's defaults, or
    the reference study's preset once its button was pressed."""
    return PRESETS[st.session_state.get("train_preset", "default")]


def _use_preset(name: str) -> None:
    """A preset button's callback: every hyperparameter widget and the schedule take that preset's values
    (set through the widgets' state, the only way a browser's widgets show a new value)."""
    st.session_state["train_preset"] = name
    hparams, schedule = PRESETS[name]
    for spec in HYPERPARAMS:
        st.session_state[f"train_hp_{spec.name}"] = getattr(hparams, spec.name)
    st.session_state["train_lr_schedule"] = schedule


def _training_settings(schedule: str) -> dict:
    """Early stopping, weight decay, the learning-rate schedule (starting at ``schedule``) and the random
    seed (RunConfig's own settings), folded away."""
    defaults = RunConfig()
    with st.expander("Training settings: early stopping, weight decay, learning-rate schedule, random seed"):
        c1, c2 = st.columns(2)
        c3, c4 = st.columns(2)
        patience = c1.number_input(
            "Early-stopping patience",
            0,
            50,
            int(defaults.patience),
            1,
            key="train_patience",
            help="Stop when the validation accuracy has not improved for this many epochs (the best epoch's "
            "checkpoint is kept): lower ends a run sooner, higher waits longer for a late gain; 0 = never "
            "stop early. Range: 0–50",
        )
        weight_decay = c2.select_slider(
            "Weight decay",
            WEIGHT_DECAYS,
            float(defaults.weight_decay),
            key="train_weight_decay",
            format_func=lambda v: "0 (off)" if v == 0 else f"{v:g}",
            help="An L2 penalty that pulls the weights towards zero: more fights overfitting, too much stops "
            "the model from learning; 0 = off (the reference study used none). Range: 0–0.1",
        )
        lr_schedule = c3.selectbox(
            "Learning-rate schedule",
            LR_SCHEDULES,
            # once the key has a state (the widget's own, or a preset's), that is the value: no start index
            0 if "train_lr_schedule" in st.session_state else LR_SCHEDULES.index(schedule),
            key="train_lr_schedule",
            format_func=lambda v: LR_SCHEDULE_LABELS[v],
            help="Cosine: the rate starts at the learning rate you set and falls smoothly to zero by the last "
            "epoch, so the last epochs fine-tune; constant: the rate stays as set throughout (the reference "
            "study's way).",
        )
        seed = c4.number_input(
            "Random seed",
            0,
            2**31 - 1,
            int(defaults.seed),
            1,
            key="train_seed",
            help="Seeds the weights' start, the shuffling and the augmentation: the same seed and settings "
            "give the same run; change it to see how much a result depends on luck.",
        )
    return {
        "patience": int(patience),
        "weight_decay": float(weight_decay),
        "lr_schedule": str(lr_schedule),
        "seed": int(seed),
    }


def _start(ws, blocked: bool = False) -> None:
    model, vgg, dataset, image_size, augment, hparams, name, start_slot, waiting, settings = _config_form(ws)
    with start_slot:
        _submit(ws, model, vgg, dataset, image_size, augment, hparams, name, settings, blocked or waiting)


def _submit(ws, model, vgg, dataset, image_size, augment, hparams, name, settings, blocked: bool = False) -> None:
    if model is None or blocked:  # blocked: values were just reset, or VGG-16 waits for its weights
        st.button("Start training", key="train_start", type="primary", disabled=True)
        return
    path = ws.dataset_dir(dataset)
    try:
        cfg = build_run_config(model, hparams, path, image_size=image_size, augment=augment, vgg=vgg, **settings)
    except ConfigError as exc:
        st.error(f"This configuration cannot be trained: {exc}", icon=":material/error:")
        st.button("Start training", key="train_start", type="primary", disabled=True)
        return
    if dataset == BUILTIN_DATASET and not (path / "manifest.json").is_file():
        st.warning("The built-in dataset will be generated first (about a minute).")
    if st.button("Start training", key="train_start", type="primary", icon=":material/play_arrow:"):
        if dataset == BUILTIN_DATASET:
            from flagvision.synthetic.builtin import ensure_builtin

            if not (path / "manifest.json").is_file():
                bar = st.progress(0.0, text="Rendering flag scenes…")
                ensure_builtin(ws, progress=ui.progress_callback(bar, "Rendering flag scenes…"))
        job_id, run_id = jobs.submit_training(ws, cfg, name=name.strip())
        st.session_state["train_watch_next"] = run_id  # not the select box's key: see _live
        st.toast(f"Run #{run_id} queued as job {job_id}.", icon=":material/rocket_launch:")
        st.rerun()


def _live(ws) -> None:
    store = ui.store(ws)
    runs = [r for r in store.list_runs(limit=50) if not r.get("study_name")]
    if not runs:
        st.caption("No run yet. Configure one above and press Start training.")
        return
    ids = [r["id"] for r in runs]
    # A run to show next (just started here or on the Study page) waits under its own key: set on
    # the select box's key before st.rerun(), it was lost when that rerun merged with a poll of a
    # fragment, whose request carries the browser's (older) value of every widget.
    pending = st.session_state.pop("train_watch_next", None)
    if pending in ids:
        st.session_state["train_run_id"] = pending
    if st.session_state.get("train_run_id") not in ids:
        st.session_state["train_run_id"] = ids[0]
    by_id = {r["id"]: r for r in runs}
    # No status in the label: it would be the one of this full run and go stale while the panel
    # below polls; the panel's header shows the live one beside the curves.
    run_id = st.selectbox(
        "Run to watch",
        ids,
        key="train_run_id",
        format_func=lambda i: f"#{i} {by_id[i].get('name') or by_id[i].get('label') or ''}".rstrip(),
    )
    started_active = by_id[run_id]["status"] in jobs.ACTIVE_STATES

    @st.fragment(run_every=1 if started_active else None)
    @ui.guarded
    def panel() -> None:
        run = store.get_run(run_id)
        if run is None:
            st.info(f"Run #{run_id} was deleted.")
            return
        job = store.get_job(run["job_id"]) if run.get("job_id") else None
        metrics = store.get_metrics(run_id)
        total = (run["config"].get("hparams") or {}).get("epochs") or 1
        st.markdown(f"**#{run_id} {run.get('name') or ''}** · {run.get('label')} · {ui.state_badge(run['status'])}")
        if run["status"] in jobs.ACTIVE_STATES:
            eta = job_eta(job) if job else None
            eta = eta if eta is not None else epochs_eta(metrics, total)
            text = (job or {}).get("progress_text") or run["status"]
            st.progress(
                float((job or {}).get("progress") or 0.0),
                text=f"{text} · {len(metrics)}/{total} epochs · ETA {format_duration(eta)}",
            )
        elif run.get("error"):
            st.error(f"Run #{run_id} {run['status']}: {run['error']}")
        else:
            best = run.get("best_val_acc")
            test = run.get("test_acc")
            st.caption(
                f"{len(metrics)}/{total} epochs · best val acc {best:.1%}"
                if best is not None
                else f"{len(metrics)} epochs"
            )
            if test is not None:
                st.caption(f"Test accuracy of the best epoch: {test:.1%}")
        if metrics:
            c_loss, c_acc = st.columns(2)
            with c_loss:
                ui.figure("training_curves", metrics, metric="loss", key=f"train_loss_{run_id}")
            with c_acc:
                ui.figure("training_curves", metrics, metric="acc", key=f"train_acc_{run_id}")
        else:
            st.caption("Curves appear after the first epoch.")
        c1, c2, _ = st.columns([1, 1, 3])
        if job and job["state"] in jobs.ACTIVE_STATES:
            if c1.button("Cancel", key=f"train_cancel_{run_id}", icon=":material/stop:"):
                state = jobs.cancel(ws, job["id"])
                st.toast(f"Job {job['id']}: {state}")
                st.rerun()
        if resumable(run, ws.run_paths(run_id).has_resumable_state):
            if c2.button("Resume", key=f"train_resume_{run_id}", icon=":material/replay:"):
                jobs.resume_run(ws, run_id)
                st.rerun()
        if started_active and run["status"] not in jobs.ACTIVE_STATES:
            st.rerun()  # finished: one full rerun turns the polling off and refreshes the rest
        if not started_active and run["status"] in jobs.ACTIVE_STATES:
            st.rerun()  # resumed elsewhere: start polling

    panel()


def _reset_invalid_values(ws) -> bool:
    """Values no widget could hold (a tampered or stale session) are reset, and said so, before
    any widget is drawn: the widgets would otherwise fail, or quietly fall back to a default."""
    checks = {f"train_hp_{spec.name}": ui.value_check(spec) for spec in HYPERPARAMS}
    checks.update(
        {
            "train_model": ui.one_of("model", model_names()),
            "train_dataset": ui.one_of("dataset", dataset_choices(ws)),
            "train_image_size": ui.one_of("image size", IMAGE_SIZES),
            "train_augment": ui.in_range("augmentation strength", 0.0, 1.0),
            "train_patience": ui.in_range("early-stopping patience", 0, 50, integer=True),
            "train_weight_decay": ui.one_of("weight decay", WEIGHT_DECAYS),
            "train_lr_schedule": ui.one_of("learning-rate schedule", LR_SCHEDULES),
            "train_seed": ui.in_range("random seed", 0, 2**31 - 1, integer=True),
        }
    )
    return ui.reset_invalid_state(checks)


@ui.guarded
def main() -> None:
    ws = ui.workspace()
    st.title("Train")
    blocked = _reset_invalid_values(ws)
    _start(ws, blocked)
    st.divider()
    st.subheader("Live training")
    _live(ws)


ui.run_page(main, "train")
