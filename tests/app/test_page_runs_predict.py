"""Runs and Predict pages against a workspace with a trained CNN and a random-init VGG-16."""

from __future__ import annotations

import shutil

import pytest

from app_helpers import app, no_exceptions, png_bytes
from flagvision.jobs import queue as jobs
from fv_helpers import wait_for


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
    assert {"agreement", "surer"} <= set(summary.columns)  # both models answered: which one is surer
    assert len(at.get("plotly_chart")) == 4  # two photos × two models' top-5
    assert any(m.value.startswith(("✅ ", "🟡 ", "❌ ")) and " sure" in m.value for m in at.markdown)
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


def _tiny_runs(ws) -> tuple[dict, dict]:
    store = jobs.open_store(ws)
    runs = store.list_runs()
    return next(r for r in runs if r["name"] == "tiny cnn"), next(r for r in runs if r["name"] == "tiny vgg")


def _sharper_copy(ws, run: dict, factor: float) -> int:
    """A copy of ``run``'s checkpoint whose calibration temperature is ``factor`` times its own (a
    surer model: the tiny ones are unsure of everything), recorded as a succeeded run."""
    import json

    from flagvision.workspace import CARD_FILE

    store = jobs.open_store(ws)
    folder = ws.root / f"sharper-{run['id']}"
    shutil.copytree(run["checkpoint_path"], folder)
    card = json.loads((folder / CARD_FILE).read_text())
    (folder / CARD_FILE).write_text(json.dumps({**card, "temperature": card.get("temperature", 1.0) * factor}))
    run_id = store.create_run(name=f"sharper {run['name']}", model=run["model"], status="succeeded",
                              label=run["label"], config=run["config"])  # fmt: skip
    store.update_run(run_id, checkpoint_path=str(folder))
    return run_id


def test_predict_says_which_model_is_surer_and_whether_they_agree(compare_ws):
    from flagvision.inference.compare import agreement, comparison_text
    from flagvision.inference.predict import Predictor

    cnn, vgg = _tiny_runs(compare_ws)
    sharp = _sharper_copy(compare_ws, cnn, 0.05)
    photo = png_bytes((220, 20, 20), size=(60, 40))
    at = app("predict")
    at.selectbox(key="predict_ckpt_cnn").set_value(sharp).run()
    at.selectbox(key="predict_ckpt_vgg").set_value(vgg["id"]).run()
    at.file_uploader(key="predict_files").set_value([("red.png", photo, "image/png")]).run()
    at.number_input(key="predict_threshold").set_value(0).run()  # both sure: "Both answer"/"They disagree:"
    no_exceptions(at)
    store = jobs.open_store(compare_ws)
    a, b = (Predictor.from_checkpoint(store.get_run(i)["checkpoint_path"]) for i in (sharp, vgg["id"]))
    pa, pb = a.predict([photo], k=5)[0], b.predict([photo], k=5)[0]
    assert pa.confidence > pb.confidence + 0.01  # the sharper CNN is the surer one
    expected = comparison_text(pa, pb, (a.label, b.label), 0.0)
    assert f"{a.label} is surer ({pa.confidence:.0%} vs {pb.confidence:.0%})." in expected
    icon = {"agree": "✅", "partly agree": "🟡", "disagree": "❌"}[agreement(pa, pb)]
    assert any(m.value == f"{icon} {expected}" for m in at.markdown), [m.value for m in at.markdown]
    # Both calibrated confidences stay in view beside the sentence.
    assert any(m.value == f"Answer: **{pa.label} {pa.confidence:.0%}**" for m in at.markdown)
    assert any(m.value == f"Answer: **{pb.label} {pb.confidence:.0%}**" for m in at.markdown)


@pytest.fixture
def compare_ws(trained_root, tmp_path, monkeypatch):
    """A copy of the trained workspace (its runs' checkpoints stay where they are) with a small
    check set already drawn (the real one is 240 images)."""
    from flagvision.synthetic.checkset import checkset_dir, make_checkset
    from flagvision.workspace import Workspace

    root = tmp_path / "compare"
    shutil.copytree(trained_root, root)
    monkeypatch.setenv("FLAGVISION_HOME", str(root))
    ws = Workspace.open(root)
    make_checkset(checkset_dir(ws), per_class=1, size=48, framings=("closeup", "two_flags"))
    yield ws
    for job in jobs.open_store(ws).list_jobs(("queued", "running")):
        jobs.cancel(ws, job["id"], force=True)


def test_runs_lists_the_check_images_where_two_runs_differ(compare_ws):
    from app_ui.compare import run_name
    from flagvision.inference.compare import checkset_disagreements, disagreement_summary
    from flagvision.inference.predict import Predictor
    from flagvision.synthetic.checkset import checkset_dir

    store = jobs.open_store(compare_ws)
    cnn, vgg = _tiny_runs(compare_ws)
    at = app("runs")
    no_exceptions(at)
    # By default: the best custom CNN (of the runs and the study's trials) and the VGG-16 run.
    first = store.get_run(at.selectbox(key="runs_dis_a").value)
    assert first["model"] == "flag_cnn" and at.selectbox(key="runs_dis_b").value == vgg["id"]
    at.selectbox(key="runs_dis_a").set_value(cnn["id"]).run()
    assert not [m for m in at.markdown if "check images differ" in m.value]  # computed on request only
    at.button(key="runs_dis_go").click().run()
    no_exceptions(at)
    # A job, not the page's script: a real worker reads the check set; the page shows its progress.
    job = store.latest_job("compare")
    assert job is not None and job["payload"]["a"] == cnn["checkpoint_path"], job
    done = wait_for(
        lambda: (j := store.get_job(job["id"]))["state"] not in ("queued", "running") and j,
        timeout=240,
        what="the comparison job",
        ws=compare_ws,
    )
    assert done["state"] == "succeeded", done.get("error")
    at.run()
    no_exceptions(at)
    names = (run_name(cnn), run_name(vgg))
    a, b = (Predictor.from_checkpoint(r["checkpoint_path"]) for r in (cnn, vgg))
    report = checkset_disagreements(a, b, checkset_dir(compare_ws))
    assert report["rows"], "the tiny CNN and the random-init VGG-16 should differ somewhere"
    assert any(m.value == disagreement_summary(report, names) for m in at.markdown), [m.value for m in at.markdown]
    table = at.dataframe[-1].value  # after the runs table
    assert list(table["true"]) == [r["true"] for r in report["rows"]] and names[0] in table.columns
    captions = [c for img in at.get("image") for c in img.captions]  # the differing images' thumbnails
    assert captions == [f"{r['true']}: {r['answer_a']} / {r['answer_b']}" for r in report["rows"][:24]]
    # Kept: a fresh page shows it at once, no button.
    at = app("runs")
    at.selectbox(key="runs_dis_a").set_value(cnn["id"]).run()
    assert any(m.value == disagreement_summary(report, names) for m in at.markdown)
    assert not [b for b in at.button if b.key == "runs_dis_go"]


def test_runs_with_other_classes_cannot_be_compared_and_say_so(compare_ws):
    import json

    from flagvision.workspace import CARD_FILE

    store = jobs.open_store(compare_ws)
    cnn, vgg = _tiny_runs(compare_ws)
    other = compare_ws.root / "other-classes"
    shutil.copytree(cnn["checkpoint_path"], other)
    card = json.loads((other / CARD_FILE).read_text())
    (other / CARD_FILE).write_text(json.dumps({**card, "class_names": ["Red", "Green", "Blue"]}))
    run_id = store.create_run(name="three colours", model="flag_cnn", status="succeeded", label="Custom CNN",
                              config=cnn["config"])  # fmt: skip
    store.update_run(run_id, checkpoint_path=str(other))
    at = app("runs")
    at.selectbox(key="runs_dis_a").set_value(run_id).run()
    at.selectbox(key="runs_dis_b").set_value(vgg["id"]).run()
    no_exceptions(at)
    assert [w.value for w in at.warning] == [
        f"run #{run_id} (Custom CNN) knows 3 classes and run #{vgg['id']} ({vgg['label']}) 24, not the same ones: "
        "compare two runs trained on the same flags."
    ]
    assert not [b for b in at.button if b.key == "runs_dis_go"]
