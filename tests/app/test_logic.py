"""Pure helpers behind the pages (no Streamlit)."""

from __future__ import annotations

import pytest

from app_ui import logic as ui
from app_ui import study_form
from flagvision.config import HYPERPARAMS, PARAM_SPECS, ConfigError


def test_every_hyperparameter_gets_a_widget_within_its_spec():
    widgets = {w.name: w for w in ui.hyperparameter_widgets()}
    assert set(widgets) == {s.name for s in HYPERPARAMS}
    for spec in HYPERPARAMS:
        w = widgets[spec.name]
        assert spec.describe_range() in w.help
        if spec.kind == "categorical":
            assert w.widget == "selectbox" and w.options == spec.choices
        elif spec.kind == "int":
            assert (w.widget, w.low, w.high, w.step) == ("slider", spec.low, spec.high, spec.step)
        elif spec.log:
            assert w.widget == "select_slider"
            assert w.options[0] == spec.low and w.options[-1] == spec.high and spec.default in w.options
        else:
            assert (w.low, w.high) == (spec.low, spec.high)


def test_log_grid_is_sorted_readable_and_in_range():
    grid = ui.log_grid(PARAM_SPECS["lr"])
    assert grid == sorted(grid) and len(grid) >= 20
    assert all(1e-5 <= v <= 1e-3 for v in grid)
    assert ui.nearest(grid, 2e-4) in grid
    assert PARAM_SPECS["lr"].default in grid and 1.8e-4 in grid  # FlagVision's default and the reference study's


def test_build_run_config_validates():
    cfg = ui.build_run_config("flag_cnn", {"lr": 1e-3, "epochs": 2}, "/data", image_size=32)
    assert cfg.hparams.lr == 1e-3 and cfg.hparams.num_filters_conv1 == 24 and cfg.data.image_size == 32
    with pytest.raises(ConfigError, match="fc1"):
        ui.build_run_config("flag_cnn", {"num_filters_conv2": 128, "fc1_units": 512, "kernel_size_conv1": 3}, "/d", 224)
    vgg = ui.build_run_config("vgg16_transfer", {}, "/d", vgg={"pretrained": False, "blocks": 2})
    assert vgg.label == "VGG-16 transfer (random init, not pretrained)"


def test_space_override_full_narrow_fixed_choices():
    fc1 = PARAM_SPECS["fc1_units"]
    assert study_form.space_override(fc1, (64, 512)) is None
    assert study_form.space_override(fc1, (128, 128)) == {"name": "fc1_units", "fixed": 128}
    assert study_form.space_override(fc1, (64, 256)) == {"name": "fc1_units", "low": 64, "high": 256}
    act = PARAM_SPECS["activation"]
    assert study_form.space_override(act, list(act.choices)) is None
    assert study_form.space_override(act, ["ELU"]) == {"name": "activation", "fixed": "ELU"}
    assert study_form.space_override(act, ["Tanh", "ReLU"]) == {"name": "activation", "choices": ["ReLU", "Tanh"]}
    with pytest.raises(ConfigError):
        study_form.space_override(act, [])
    lr = PARAM_SPECS["lr"]
    assert study_form.space_override(lr, study_form.range_widget_default(lr)) is None


def test_space_overrides_make_a_valid_study_config():
    from flagvision.studies.config import StudyConfig

    overrides = [
        study_form.space_override(PARAM_SPECS["fc1_units"], (64, 128)),
        study_form.space_override(PARAM_SPECS["optimizer"], ["Adam"]),
    ]
    cfg = StudyConfig.from_dict({"name": "x", "space": overrides})
    assert cfg.search_space().fixed == {"optimizer": "Adam"}


def test_runs_table_filters_sorts_missing_last():
    runs = [
        {"id": 1, "name": "a", "model": "flag_cnn", "status": "succeeded", "test_acc": 0.5, "created_at": 1.0},
        {"id": 2, "name": "b", "model": "vgg16_transfer", "status": "failed", "test_acc": None, "created_at": 2.0},
        {"id": 3, "name": "c", "model": "flag_cnn", "status": "succeeded", "test_acc": 0.9, "created_at": 3.0},
    ]
    assert [r["id"] for r in ui.runs_table(runs)] == [3, 2, 1]
    assert [r["id"] for r in ui.runs_table(runs, sort="best test accuracy")] == [3, 1, 2]
    assert [r["id"] for r in ui.runs_table(runs, models=["flag_cnn"], statuses=["succeeded"])] == [3, 1]
    assert ui.runs_table(runs)[0]["test_acc_%"] == 90.0
    with pytest.raises(ValueError, match="valid"):
        ui.runs_table(runs, sort="colour")
    best = ui.best_runs_per_model(runs)
    assert [r["id"] for r in best] == [3]


def test_eta_and_durations():
    job = {"state": "running", "progress": 0.25, "started_at": 100.0}
    assert ui.job_eta(job, now=130.0) == pytest.approx(90.0)
    assert ui.job_eta({**job, "progress": 0.0}, now=130.0) is None
    assert ui.epochs_eta([{"seconds": 10}, {"seconds": 20}], 5) == pytest.approx(45.0)
    assert ui.epochs_eta([], 5) is None
    assert ui.format_duration(75) == "1m 15s" and ui.format_duration(None) == "–"
    assert ui.format_duration(3 * 3600 + 120) == "3h 02m"


def test_job_rows_have_no_none_cells():
    """The jobs table shows an empty cell, not "None", for a training job's study and a study's run."""
    base = {"state": "running", "progress": 0.5, "progress_text": "epoch 1/2", "started_at": None}
    train = ui.job_row({**base, "id": 1, "kind": "train", "run_id": 7, "study_name": None})
    study = ui.job_row({**base, "id": 2, "kind": "study", "run_id": None, "study_name": "s1"})
    assert (train["run"], train["study"]) == ("#7", "")
    assert (study["run"], study["study"]) == ("", "s1")
    assert train["progress"] == 50
    for row in (train, study):
        assert None not in row.values(), row


def test_dataset_choices_builtin_first(workspace):
    (workspace.datasets_dir / "aaa").mkdir()
    assert ui.dataset_choices(workspace) == ["builtin", "aaa"]


def test_every_hyperparameter_help_says_what_changing_it_does_its_range_and_the_reference_value():
    from flagvision.config import HYPERPARAMS

    for spec in HYPERPARAMS:
        text = ui.help_text(spec)
        assert spec.effect and spec.effect in text, spec.name
        assert f"Range: {spec.describe_range()}" in text and "the reference study's value" in text, text
        if spec.reference is not None:  # a default of FlagVision's own: both values, and why
            assert ui.format_value(spec.name, spec.reference) in text and spec.reference_note in text, text


def test_default_part_text_says_what_a_model_column_waits_for():
    from app_ui.logic import default_part_text

    running = {"state": "running", "progress": 0.3, "started_at": 100.0, "progress_text": "epoch 3/10 · val acc 51.0%"}
    assert default_part_text("cnn", {"state": "running", "job": running}, now=130.0) == (
        "training: epoch 3/10 · val acc 51.0% · ETA 1m 10s"
    )
    finder = {"state": "running", "progress": 0.5, "started_at": 100.0, "progress_text": "training: epoch 6 of 12"}
    assert default_part_text("finder", {"state": "running", "job": finder}, now=110.0) == (
        "training: epoch 6 of 12 · ETA 10s"
    )
    assert default_part_text("vgg", {"state": "waiting for weights"}) == (
        "waiting for ImageNet weights: download them below"
    )
    assert default_part_text("vgg", {"state": "queued", "job": {}}).startswith("queued")
    assert default_part_text("cnn", {"state": "ready"}) == "trained"
    assert default_part_text("cnn", {"state": "missing"}) == "not trained yet"
    assert ui.job_title({"kind": "finder", "id": 3}) == "Training the flag finder"
    assert default_part_text("cnn", {"state": "waiting for data"}) == "queued after the built-in data"


def test_default_part_text_of_the_built_in_data():
    from app_ui.logic import default_part_text

    rendering = {
        "state": "running",
        "started_at": 100.0,
        "progress": 0.25,
        "progress_text": "rendering scenes 3000/12000",
    }
    assert default_part_text("data", {"state": "running", "job": rendering}, now=110.0) == (
        "rendering scenes 3000/12000 · ETA 30s"  # its own words, not "training: ..."
    )
    assert default_part_text("data", {"state": "ready"}) == "ready"
    assert default_part_text("data", {"state": "missing"}) == "not built yet"
    assert ui.job_title({"kind": "builtin", "id": 4}) == "Building the built-in data"


def test_a_model_column_without_a_model_says_what_it_waits_for():
    from app_ui.logic import waiting_column_text

    how = "Train a VGG-16 transfer model on the Train page."
    weights = waiting_column_text("vgg", {"state": "waiting for weights"}, how)
    assert "ImageNet weights" in weights and "panel" in weights and how not in weights
    queued = waiting_column_text("vgg", {"state": "queued", "job": {}}, how)
    assert queued.startswith("no trained model yet, queued")
    after_data = waiting_column_text("cnn", {"state": "waiting for data"}, how)
    assert after_data == "no trained model yet, queued after the built-in data"
    job = {"state": "running", "progress": 0.5, "started_at": 100.0, "progress_text": "epoch 5/10"}
    running = waiting_column_text("cnn", {"state": "running", "job": job}, how, now=110.0)
    assert running == "no trained model yet, training: epoch 5/10 · ETA 10s"
    assert waiting_column_text("vgg", {"state": "missing"}, how) == f"no trained model yet. {how}"
