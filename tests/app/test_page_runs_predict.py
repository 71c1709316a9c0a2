"""Runs and Predict pages against a workspace with a trained CNN and a random-init VGG-16."""

from __future__ import annotations

import shutil

from app_helpers import app, no_exceptions, png_bytes
from flagvision.jobs import queue as jobs


def test_runs_table_filter_sort_and_overlay(trained_ws):
    at = app("runs")
    no_exceptions(at)
    table = at.dataframe[0].value
    assert {"tiny cnn", "tiny vgg"} <= set(table["name"])
    at.multiselect(key="runs_filter_model").set_value(["vgg16_transfer"]).run()
    table = at.dataframe[0].value
    assert set(table["model"]) == {"VGG-16 transfer (random init, not pretrained)"}
    at.multiselect(key="runs_filter_model").set_value([]).run()
    at.selectbox(key="runs_sort").set_value("best test accuracy").run()
    no_exceptions(at)
    assert len(at.get("plotly_chart")) >= 2  # overlaid loss and accuracy


def test_runs_evaluation_export_and_delete(trained_ws):
    store = jobs.open_store(trained_ws)
    cnn = next(r for r in store.list_runs() if r["name"] == "tiny cnn")
    at = app("runs")
    at.selectbox(key="runs_selected").set_value(cnn["id"]).run()
    no_exceptions(at)
    assert any("accuracy on" in m.value for m in at.markdown)

    def charts():
        return {c.key for c in at.get("plotly_chart")}

    # The run's tabs are lazy: only the open one is drawn (per-class accuracy first).
    assert f"runs_per_class_{cnn['id']}" in charts() and f"runs_confusion_{cnn['id']}" not in charts()
    assert not any("Misclassified images" in m.value for m in at.markdown)
    assert not at.get("json") and not at.get("code")
    at.session_state["runs_view"] = "Confusion matrix"
    at.run()
    assert f"runs_confusion_{cnn['id']}" in charts() and f"runs_per_class_{cnn['id']}" not in charts()
    at.session_state["runs_view"] = "Misclassified"
    at.run()
    assert any("Misclassified images" in m.value for m in at.markdown)
    at.session_state["runs_view"] = "Calibration"
    at.run()
    no_exceptions(at)
    assert f"runs_reliability_{cnn['id']}" in charts() and f"runs_per_class_{cnn['id']}" not in charts()
    assert any(m.value.startswith("Temperature **") and "after" in m.value for m in at.markdown)
    at.session_state["runs_view"] = "Config and log"
    at.run()
    assert at.get("json") and not any(m.value.startswith("**Misclassified") for m in at.markdown)
    at.session_state["runs_view"] = "Export"
    at.run()
    at.button(key=f"runs_export_{cnn['id']}").click().run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    download = at.get("download_button")
    assert download and "flagvision-run" in download[0].proto.label

    # Delete a copy, so the session's runs stay for other tests.
    from flagvision.training.pipeline import read_run_config
    from flagvision.training.run import create_run

    copy_id, copy_dir = create_run(
        trained_ws, store, read_run_config(trained_ws.run_dir(cnn["id"])), name="doomed", status="failed"
    )
    at = app("runs")
    at.selectbox(key="runs_selected").set_value(copy_id).run()
    at.session_state["runs_view"] = "Delete"
    at.run()
    assert at.button(key=f"runs_delete_{copy_id}").disabled  # not before confirming
    at.checkbox(key=f"runs_delete_confirm_{copy_id}").check().run()
    at.button(key=f"runs_delete_{copy_id}").click().run()
    no_exceptions(at)
    assert store.get_run(copy_id) is None and not copy_dir.exists()


def test_predict_batch_with_corrupt_file(trained_ws):
    at = app("predict")
    no_exceptions(at)
    assert at.selectbox(key="predict_ckpt_cnn").value is not None
    assert at.selectbox(key="predict_ckpt_vgg").value is not None
    at.file_uploader(key="predict_files").set_value(
        [
            ("red.png", png_bytes((220, 20, 20)), "image/png"),
            ("broken.jpg", b"\xff\xd8\xff not really a jpeg", "image/jpeg"),
            ("stripes.png", png_bytes((20, 20, 220), size=(60, 40)), "image/png"),
        ]
    ).run()
    no_exceptions(at)
    assert len(at.error) == 1 and "broken.jpg" in at.error[0].value
    summary = at.dataframe[0].value
    assert list(summary["photo"]) == ["red.png", "broken.jpg", "stripes.png"]
    assert len(at.get("plotly_chart")) == 4  # two photos × two models' top-5
    assert any("models" in m.value and ("agree" in m.value) for m in at.markdown)
    assert at.toggle(key="predict_search").value is False  # off by default: up to 14x the work
    at.toggle(key="predict_search").set_value(True).run()  # the same photos, with the crop search
    no_exceptions(at)
    assert len(at.error) == 1 and len(at.get("plotly_chart")) == 4
    assert list(at.dataframe[0].value["photo"]) == ["red.png", "broken.jpg", "stripes.png"]


def test_predict_with_one_model_says_how_to_get_the_other(trained_ws, tmp_path, monkeypatch):
    from flagvision.workspace import Workspace

    root = tmp_path / "one-model"
    ws = Workspace.open(root)
    src = jobs.open_store(trained_ws)
    cnn = next(r for r in src.list_runs() if r["name"] == "tiny cnn")
    dst = jobs.open_store(ws)
    new_id = dst.create_run(
        name="copied cnn",
        model="flag_cnn",
        status="succeeded",
        label="Custom CNN",
        config=cnn["config"],
        test_acc=cnn["test_acc"],
    )
    shutil.copytree(trained_ws.run_dir(cnn["id"]), ws.run_dir(new_id))
    dst.update_run(new_id, run_dir=str(ws.run_dir(new_id)), checkpoint_path=str(ws.run_dir(new_id) / "checkpoint"))
    monkeypatch.setenv("FLAGVISION_HOME", str(root))
    at = app("predict")
    no_exceptions(at)
    assert any("Train a VGG-16 transfer model on the Train page" in i.value for i in at.info)
    at.file_uploader(key="predict_files").set_value(("one.png", png_bytes(), "image/png")).run()
    no_exceptions(at)
    assert not at.error
    assert len(at.get("plotly_chart")) == 1


def test_predict_below_the_threshold_says_not_sure_with_the_two_closest(trained_ws):
    from flagvision.inference.predict import Predictor

    store = jobs.open_store(trained_ws)
    cnn = next(r for r in store.list_runs() if r["name"] == "tiny cnn")
    photo = png_bytes((30, 160, 40), size=(60, 40))
    at = app("predict")
    at.selectbox(key="predict_ckpt_cnn").set_value(cnn["id"]).run()
    at.file_uploader(key="predict_files").set_value([("green.png", photo, "image/png")]).run()
    no_exceptions(at)
    at.number_input(key="predict_threshold").set_value(99).run()
    no_exceptions(at)
    # The two closest classes as the model itself ranks them, with their calibrated probabilities.
    pred = Predictor.from_checkpoint(cnn["checkpoint_path"]).predict([photo], k=5)[0]
    assert pred.confidence < 0.99
    (first, p1), (second, p2) = pred.top[:2]
    expected = f"not sure — closest: {first} {p1:.0%}, {second} {p2:.0%}"
    assert any(m.value == f"🤔 {expected}" for m in at.markdown), [m.value for m in at.markdown]
    at.number_input(key="predict_threshold").set_value(0).run()  # nothing below 0 %: a plain answer
    assert any(m.value == f"Answer: **{first} {p1:.0%}**" for m in at.markdown)
    assert not any("not sure" in m.value for m in at.markdown)
