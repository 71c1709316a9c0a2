"""The Predict page through the flag finder (boxes drawn, "no flag found"), its cache (a toggle does
not re-run the models: calls counted), the example photos and "Train the default models".

The finder is a real one with hand-set weights that marks red cloth (fv_helpers.red_cloth_finder),
so its boxes are known in advance.
"""

from __future__ import annotations

import re
import shutil

import pytest

from app_helpers import app, no_exceptions
from flagvision.jobs import queue as jobs
from flagvision.models.finder import finder_dir
from fv_helpers import red_cloth_finder, red_patch_photo


@pytest.fixture
def finder_ws(trained_root, tmp_path, monkeypatch):
    """A copy of the trained workspace (its runs' checkpoints stay where they are) with a finder."""
    from flagvision.workspace import Workspace

    root = tmp_path / "with-finder"
    shutil.copytree(trained_root, root)
    monkeypatch.setenv("FLAGVISION_HOME", str(root))
    ws = Workspace.open(root)
    red_cloth_finder(finder_dir(ws))
    return ws


def _grey_photo() -> bytes:
    return red_patch_photo(box=(0, 0, 0, 0), size=(120, 90))


def test_each_found_flag_is_boxed_on_the_photo_and_answered_by_both_models(finder_ws):
    at = app("predict")
    no_exceptions(at)
    assert not [t for t in at.toggle if t.key == "predict_search"]  # the finder replaces the crop search
    at.file_uploader(key="predict_files").set_value(
        [("patch.png", red_patch_photo(), "image/png"), ("grey.png", _grey_photo(), "image/png")]
    ).run()
    no_exceptions(at)
    captions = [c for img in at.get("image") for c in img.captions]
    boxed = [c for c in captions if c.startswith("1 flag found: 1 (")]
    assert len(boxed) == 1, captions
    x0, y0, x1, y1 = (int(v) for v in re.findall(r"\d+", boxed[0].split(": 1 ")[1]))
    assert abs(x0 - 60) <= 6 and abs(y0 - 40) <= 6 and abs(x1 - 140) <= 6 and abs(y1 - 90) <= 6
    assert any(m.value.startswith("**Flag 1** · box (") and "finder score" in m.value for m in at.markdown)
    assert any(c.startswith("Grad-CAM on the crop of the flag") for c in captions)
    # the flat grey photo: nothing found, the whole photo classified, said so
    assert any(i.value.startswith("No flag found: the whole photo was classified") for i in at.info)
    assert any(c.startswith("Grad-CAM on the whole photo") for c in captions)
    assert len(at.get("plotly_chart")) == 4  # two photos × two models
    assert list(at.dataframe[0].value["photo"]) == ["patch.png", "grey.png"]


def test_a_toggle_or_another_checkpoint_does_not_rerun_the_other_models(finder_ws, monkeypatch):
    from flagvision.inference.predict import Predictor
    from fv_helpers import count_calls

    calls = count_calls(monkeypatch, Predictor, ("probabilities", "gradcam"))
    at = app("predict")
    at.file_uploader(key="predict_files").set_value(("patch.png", red_patch_photo(), "image/png")).run()
    no_exceptions(at)
    assert calls == {"probabilities": 2, "gradcam": 2}  # one flag, two models
    at.toggle(key="predict_gradcam").set_value(False).run()
    no_exceptions(at)
    assert calls == {"probabilities": 2, "gradcam": 2} and len(at.get("plotly_chart")) == 2
    at.toggle(key="predict_gradcam").set_value(True).run()  # back on: the overlays are cached too
    assert calls == {"probabilities": 2, "gradcam": 2}
    cnn = at.selectbox(key="predict_ckpt_cnn")
    first = cnn.value
    cnn.select_index(1).run()  # another CNN checkpoint: only the CNN reads the photo again
    no_exceptions(at)
    assert at.selectbox(key="predict_ckpt_cnn").value != first
    assert calls == {"probabilities": 3, "gradcam": 3}


def test_an_example_photo_is_one_click_to_an_answer(trained_ws):
    from flagvision.synthetic.examples import examples_ready

    at = app("predict")
    no_exceptions(at)
    if not examples_ready(trained_ws):  # not rendered with this workspace's data: on request
        assert not [b for b in at.button if (b.key or "").startswith("predict_example_")]
        at.button(key="predict_examples_render").click().run()
        no_exceptions(at)
    titles = [b.label for b in at.button if (b.key or "").startswith("predict_example_") and b.key[-1].isdigit()]
    assert 6 <= len(titles) <= 8 and any("vertically" in t for t in titles)
    assert not at.get("plotly_chart")
    at.button(key="predict_example_0").click().run()
    no_exceptions(at)
    assert any(m.value.startswith(f"**example: {titles[0]}**") for m in at.markdown)
    assert len(at.get("plotly_chart")) == 2  # both models answered
    at.button(key="predict_example_clear").click().run()
    assert not at.get("plotly_chart")


def test_without_a_model_predict_says_so_by_the_uploader_and_queues_the_default_models(app_ws, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no ImageNet weights: VGG-16 waits
    at = app("predict")
    no_exceptions(at)
    at.file_uploader(key="predict_files").set_value(("mine.png", red_patch_photo(), "image/png")).run()
    no_exceptions(at)
    warning = next(w.value for w in at.warning if w.value.startswith("No trained model yet"))
    assert "1 photo waiting" in warning  # a dropped photo is never ignored silently
    assert any("**VGG-16 transfer**: waiting for ImageNet weights" in m.value for m in at.markdown)
    at.button(key="predict_default_models").click().run()
    no_exceptions(at)
    store = jobs.open_store(app_ws)
    queued = store.list_jobs()
    kinds = sorted(j["kind"] for j in queued)
    assert kinds == ["finder", "train"]
    run = store.get_run(next(j for j in queued if j["kind"] == "train")["run_id"])
    assert run["model"] == "flag_cnn" and run["name"] == "default custom CNN"
    assert any("**Custom CNN**: " in m.value and ("queued" in m.value or "training" in m.value) for m in at.markdown)
    assert not [b for b in at.button if b.key == "predict_default_models"]  # nothing left to queue


def test_home_offers_the_default_models(app_ws):
    at = app()
    no_exceptions(at)
    assert at.button(key="home_default_models").label == "Train the default models"
    assert not at.error  # no run yet: the Best models section is empty, not an error


def test_a_damaged_finder_is_one_warning_and_photos_are_still_classified(finder_ws):
    (finder_dir(finder_ws) / "model.safetensors").write_bytes(b"not weights")
    at = app("predict")
    at.file_uploader(key="predict_files").set_value(("patch.png", red_patch_photo(), "image/png")).run()
    no_exceptions(at)
    assert not at.error
    assert any("damaged" in w.value and "classified whole" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 2


@pytest.mark.slow  # a real worker trains the default preset (10 epochs on the tiny data): about a minute
def test_predict_works_as_soon_as_the_default_cnn_is_trained(app_ws, tmp_path, monkeypatch):
    """The real thing, small: the button queues the default CNN (the default preset) on
    the tiny built-in data, a worker trains it, and the same Predict session then classifies."""
    from fv_helpers import wait_for

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    at = app("predict")
    at.button(key="predict_default_models").click().run()
    no_exceptions(at)
    store = jobs.open_store(app_ws)
    for job in store.list_jobs(("queued",)):
        if job["kind"] == "finder":  # not needed here, and minutes of work: cancelled before it starts
            jobs.cancel(app_ws, job["id"])
    train = next(j for j in store.list_jobs() if j["kind"] == "train")
    done = wait_for(
        lambda: (j := store.get_job(train["id"]))["state"] in ("succeeded", "failed", "cancelled") and j,
        240,
        "the default CNN's training",
        ws=app_ws,
    )
    assert done["state"] == "succeeded", done["error"]
    at.run()
    no_exceptions(at)
    assert at.selectbox(key="predict_ckpt_cnn").value is not None
    at.file_uploader(key="predict_files").set_value(("mine.png", red_patch_photo(), "image/png")).run()
    no_exceptions(at)
    assert len(at.get("plotly_chart")) == 1  # the CNN answers; VGG-16 waits for its weights
    assert any("waiting for ImageNet weights" in i.value for i in at.info)


def test_a_model_of_photos_that_are_not_flags_reads_the_whole_photo_and_the_finder_can_be_turned_off(finder_ws):
    from flagvision.config import RunConfig
    from flagvision.inference.photos import WHOLE_PHOTO_MODEL
    from flagvision.training.pipeline import run_training
    from flagvision.training.run import StoreCallback, create_run, finish_run

    store = jobs.open_store(finder_ws)
    flags_cnn = next(r for r in store.list_runs(status="succeeded") if r["model"] == "flag_cnn")
    cfg = RunConfig.from_dict(flags_cnn["config"])
    cfg = cfg.with_changes(data=cfg.data.with_changes(find_flags=False), hparams=cfg.hparams.with_changes(epochs=1))
    run_id, run_dir = create_run(finder_ws, store, cfg, name="not flags", status="running")
    finish_run(store, run_id, run_training(cfg, run_dir, [StoreCallback(store, run_id)]), "succeeded")

    at = app("predict")
    at.selectbox(key="predict_ckpt_cnn").set_value(run_id).run()
    at.file_uploader(key="predict_files").set_value(("patch.png", red_patch_photo(), "image/png")).run()
    no_exceptions(at)
    assert any(c.value == f"The flag finder is off: Custom CNN {WHOLE_PHOTO_MODEL[len('this model ') :]}. "
               "Each photo is classified whole." for c in at.caption)  # fmt: skip
    assert not [t for t in at.toggle if t.key in ("predict_find_flags", "predict_search")]
    captions = [c for img in at.get("image") for c in img.captions]
    assert "photo" in captions and not [c for c in captions if "flag found" in c]
    assert len(at.get("plotly_chart")) == 2  # both models read the same whole photo

    at.selectbox(key="predict_ckpt_cnn").set_value(flags_cnn["id"]).run()  # a flag model: the finder is back
    no_exceptions(at)
    assert at.toggle(key="predict_find_flags").value is True
    assert any(c.startswith("1 flag found") for img in at.get("image") for c in img.captions)
    at.toggle(key="predict_find_flags").set_value(False).run()  # compared with the whole photo
    no_exceptions(at)
    assert not [c for img in at.get("image") for c in img.captions if "flag found" in c]
    assert any(c.value.startswith("The flag finder is turned off") for c in at.caption)
    assert len(at.get("plotly_chart")) == 2
