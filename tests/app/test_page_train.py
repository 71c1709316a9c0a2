"""Train page: widgets from the specs, config errors before submitting, Start → job, Cancel."""

from __future__ import annotations

import json

from app_helpers import app, no_exceptions, wait_for
from flagvision.config import CNN_IMAGE_SIZE, DEFAULT_AUGMENT, HYPERPARAMS, VGG_IMAGE_SIZE
from flagvision.jobs import queue as jobs


def test_every_hyperparameter_has_a_widget_with_its_range(app_ws):
    at = app("train")
    no_exceptions(at)
    for spec in HYPERPARAMS:
        widget = [*at.slider, *at.select_slider, *at.selectbox]
        match = [w for w in widget if w.key == f"train_hp_{spec.name}"]
        assert len(match) == 1, spec.name
        assert spec.describe_range() in match[0].help
    assert at.slider(key="train_hp_num_filters_conv1").min == 8
    assert at.slider(key="train_hp_num_filters_conv1").max == 64


def test_impossible_config_is_an_error_before_start(app_ws):
    at = app("train")
    at.select_slider(key="train_image_size").set_value(224).run()
    at.slider(key="train_hp_num_filters_conv2").set_value(128).run()
    at.slider(key="train_hp_fc1_units").set_value(512).run()
    at.slider(key="train_hp_kernel_size_conv1").set_value(3).run()
    no_exceptions(at)
    assert any("cannot be trained" in e.value and "fc1" in e.value for e in at.error)
    assert at.button(key="train_start").disabled


def test_image_size_follows_the_model_until_the_user_picks_one(app_ws, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-home"))
    at = app("train")
    assert at.select_slider(key="train_image_size").value == CNN_IMAGE_SIZE
    assert at.slider(key="train_augment").value == DEFAULT_AUGMENT
    at.selectbox(key="train_model").set_value("vgg16_transfer").run()
    assert at.select_slider(key="train_image_size").value == VGG_IMAGE_SIZE
    at.selectbox(key="train_model").set_value("flag_cnn").run()
    assert at.select_slider(key="train_image_size").value == CNN_IMAGE_SIZE
    at.select_slider(key="train_image_size").set_value(96).run()
    at.selectbox(key="train_model").set_value("vgg16_transfer").run()
    no_exceptions(at)
    assert at.select_slider(key="train_image_size").value == 96  # the user's choice stays
    assert not at.warning or all("Session State" not in w.value for w in at.warning)


def test_vgg_shows_weights_status_and_random_init(app_ws, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-home"))  # no weights cached here
    at = app("train")
    at.selectbox(key="train_model").set_value("vgg16_transfer").run()
    no_exceptions(at)
    assert any("not on this machine yet" in w.value for w in at.warning)
    assert at.checkbox(key="train_vgg_random").value is False  # random init only when chosen
    assert at.slider(key="train_hp_num_filters_conv1").disabled
    assert any("needs its ImageNet weights" in e.value for e in at.error)
    assert at.button(key="train_start").disabled
    at.checkbox(key="train_vgg_random").check().run()
    assert not any("needs its ImageNet weights" in e.value for e in at.error)
    assert not at.button(key="train_start").disabled


def test_start_creates_a_job_and_cancel_stops_it(app_ws):
    at = app("train")
    at.select_slider(key="train_image_size").set_value(32).run()
    at.slider(key="train_hp_epochs").set_value(1).run()
    at.slider(key="train_hp_num_filters_conv1").set_value(8).run()
    at.select_slider(key="train_hp_lr").set_value(1e-3).run()
    at.selectbox(key="train_hp_optimizer").set_value("Adam").run()
    at.text_input(key="train_run_name").input("from the app").run()
    at.button(key="train_start").click().run()
    no_exceptions(at)
    store = jobs.open_store(app_ws)
    runs = store.list_runs()
    assert len(runs) == 1 and runs[0]["name"] == "from the app"
    cfg = runs[0]["config"]
    assert cfg["hparams"]["num_filters_conv1"] == 8 and cfg["hparams"]["lr"] == 1e-3
    assert cfg["hparams"]["optimizer"] == "Adam" and cfg["data"]["image_size"] == 32
    job = store.get_job(runs[0]["job_id"])
    assert job["state"] in ("queued", "running"), job
    assert at.selectbox(key="train_run_id").value == runs[0]["id"]
    at.button(key=f"train_cancel_{runs[0]['id']}").click().run()
    no_exceptions(at)

    def finished():
        jobs.tick(app_ws)  # what the sidebar does every 2 s: reaps a worker killed before it could record
        j = store.get_job(job["id"])
        return j if j["state"] in ("cancelled", "succeeded", "failed") else None

    final = wait_for(finished)
    assert final["state"] == "cancelled", final


def test_resume_button_for_a_cancelled_run_with_state(trained_ws):
    """A cancelled run that saved an epoch offers Resume; pressing it queues a job."""
    import shutil

    from flagvision.training.pipeline import read_run_config
    from flagvision.training.run import create_run

    store = jobs.open_store(trained_ws)
    done = next(r for r in store.list_runs() if r["name"] == "tiny cnn")
    cfg = read_run_config(trained_ws.run_dir(done["id"]))
    run_id, run_dir = create_run(trained_ws, store, cfg, name="interrupted", status="cancelled")
    shutil.copytree(trained_ws.run_dir(done["id"]) / "checkpoint", run_dir / "checkpoint")
    try:
        at = app("train")
        at.selectbox(key="train_run_id").set_value(run_id).run()
        # The choice names the run; its status (which changes while the panel polls) is beside it.
        assert at.selectbox(key="train_run_id").value == run_id
        assert f"#{run_id} interrupted" in at.selectbox(key="train_run_id").options
        assert not any("cancelled" in o or "succeeded" in o for o in at.selectbox(key="train_run_id").options)
        assert any(f"#{run_id} interrupted" in m.value and "cancelled" in m.value for m in at.markdown)
        at.button(key=f"train_resume_{run_id}").click().run()
        no_exceptions(at)
        assert any(j["run_id"] == run_id for j in store.list_jobs(("queued", "running", "succeeded", "failed")))
    finally:
        for j in store.list_jobs(("queued", "running")):
            jobs.cancel(trained_ws, j["id"], force=True)
        from flagvision.training.run import delete_run

        delete_run(trained_ws, store, run_id)


def test_early_stopping_weight_decay_schedule_and_random_seed_are_set_in_the_app(app_ws):
    at = app("train")
    assert at.selectbox(key="train_lr_schedule").value == "cosine"  # RunConfig's default
    at.select_slider(key="train_image_size").set_value(32).run()
    at.slider(key="train_hp_epochs").set_value(1).run()
    at.number_input(key="train_patience").set_value(3).run()
    at.select_slider(key="train_weight_decay").set_value(1e-4).run()
    at.selectbox(key="train_lr_schedule").set_value("constant").run()
    at.number_input(key="train_seed").set_value(7).run()
    at.button(key="train_start").click().run()
    no_exceptions(at)
    run = jobs.open_store(app_ws).list_runs()[0]
    cfg = run["config"]
    assert (cfg["patience"], cfg["weight_decay"], cfg["lr_schedule"], cfg["seed"]) == (3, 1e-4, "constant", 7)
    helps = {w.help for w in (at.number_input(key="train_patience"), at.select_slider(key="train_weight_decay"))}
    assert all("Range:" in h for h in helps)


def test_photos_that_are_not_flags_untick_the_finder_for_the_run(app_ws):
    at = app("train")
    box = at.checkbox(key="train_find_flags")
    assert box.value is True and "whole photo" in box.help and "Untick" in box.help
    at.select_slider(key="train_image_size").set_value(32).run()
    at.slider(key="train_hp_epochs").set_value(1).run()
    at.checkbox(key="train_find_flags").uncheck().run()
    at.button(key="train_start").click().run()
    no_exceptions(at)
    run = jobs.open_store(app_ws).list_runs()[0]
    assert run["config"]["data"]["find_flags"] is False
    assert json.loads(app_ws.run_paths(run["id"]).config.read_text())["data"]["find_flags"] is False


def test_the_reference_studys_preset_is_one_click_away_and_so_are_the_defaults(app_ws):
    from flagvision.config import DEFAULT_HPARAMS, REFERENCE_HPARAMS

    at = app("train")
    assert at.select_slider(key="train_hp_lr").value == DEFAULT_HPARAMS.lr == 9e-4
    at.select_slider(key="train_hp_lr").set_value(3.16e-4).run()  # a value of the user's own, then the preset
    at.button(key="train_preset_reference").click().run()
    no_exceptions(at)
    assert not at.warning, [w.value for w in at.warning]
    assert at.select_slider(key="train_hp_lr").value == REFERENCE_HPARAMS.lr == 1.8e-4
    assert at.selectbox(key="train_lr_schedule").value == "constant"
    at.select_slider(key="train_image_size").set_value(32).run()
    at.slider(key="train_hp_epochs").set_value(1).run()
    at.button(key="train_start").click().run()
    no_exceptions(at)
    cfg = jobs.open_store(app_ws).list_runs()[0]["config"]
    expected = {**REFERENCE_HPARAMS.to_dict(), "epochs": 1}
    assert (cfg["hparams"], cfg["lr_schedule"]) == (expected, "constant")
    at.button(key="train_preset_default").click().run()
    no_exceptions(at)
    assert at.select_slider(key="train_hp_lr").value == 9e-4
    assert at.selectbox(key="train_lr_schedule").value == "cosine"
