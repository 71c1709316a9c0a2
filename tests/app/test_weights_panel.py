"""The VGG-16 weights panel on Train and Predict: the Download job against a real HTTP server on
127.0.0.1, Import with a right and a wrong file, random initialisation only when ticked.

TORCH_HOME is a tmp dir in every test; the download URL and the test hash prefix come from the
environment, which the app and its workers read alike. The stand-in file is generated, not ImageNet's.
"""

from __future__ import annotations

import os

import pytest

from app_helpers import app, no_exceptions, wait_for
from flagvision.jobs import queue as jobs
from flagvision.jobs.schema import FINISHED_STATES
from flagvision.models import weights
from fv_helpers import WeightsServer, closed_port_url, standin_vgg_weights


@pytest.fixture
def no_weights(app_ws, tmp_path, monkeypatch):
    """An empty torch cache; the stand-in file (seed 0) is what the checks accept."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(weights.WEIGHTS_URL_ENV, closed_port_url())
    standin = tmp_path / "vgg16-standin.pth"
    digest = standin_vgg_weights(standin, seed=0)
    monkeypatch.setenv(weights.HASH_PREFIX_ENV, digest[:8])
    return standin


def _vgg_on_train():
    at = app("train")
    at.selectbox(key="train_model").set_value("vgg16_transfer").run()
    no_exceptions(at)
    return at


def _headline(at) -> str:
    titles = [e.label for e in at.expander if e.label.startswith("VGG-16 ImageNet weights")]
    assert len(titles) == 1, [e.label for e in at.expander]
    return titles[0]


def _cache_contents() -> list[str]:
    folder = weights.weights_path().parent
    return sorted(os.listdir(folder)) if folder.exists() else []


def _weights_job_finished(ws):
    job = jobs.latest_weights_job(ws)
    return job if job is not None and job["state"] in FINISHED_STATES else None


def test_download_job_from_the_train_page(app_ws, no_weights, monkeypatch):
    at = _vgg_on_train()
    assert _headline(at) == "VGG-16 ImageNet weights: missing (528 MB)"
    assert at.checkbox(key="train_vgg_random").value is False  # never ticked for the user
    assert any("needs its ImageNet weights" in e.value for e in at.error)
    assert at.button(key="train_start").disabled
    with WeightsServer(no_weights.read_bytes()) as server:
        monkeypatch.setenv(weights.WEIGHTS_URL_ENV, server.url)
        at.button(key="train_weights_download").click().run()
        no_exceptions(at)
        job = jobs.latest_weights_job(app_ws)
        assert job is not None and job["kind"] == "weights"
        job = wait_for(lambda: _weights_job_finished(app_ws), 60, "the download job to finish", ws=app_ws)
    assert job["state"] == "succeeded", job["error"]
    at.run()
    no_exceptions(at)
    assert _headline(at) == "VGG-16 ImageNet weights: found (528 MB)"
    assert any("Found at" in s.value for s in at.success)
    assert not any("needs its ImageNet weights" in e.value for e in at.error)
    assert not at.button(key="train_start").disabled
    assert _cache_contents() == [weights.WEIGHTS_FILENAME]


def test_failed_download_says_why_under_the_button(app_ws, no_weights, monkeypatch):
    body = no_weights.read_bytes()
    at = _vgg_on_train()
    with WeightsServer(body, cut_after=len(body) // 2) as server:
        monkeypatch.setenv(weights.WEIGHTS_URL_ENV, server.url)
        at.button(key="train_weights_download").click().run()
        wait_for(lambda: _weights_job_finished(app_ws), 60, "the download job to fail", ws=app_ws)
    at.run()
    no_exceptions(at)
    failed = [e.value for e in at.error if e.value.startswith("The last download failed")]
    assert len(failed) == 1 and "connection broke after" in failed[0]
    assert _headline(at).endswith("missing (528 MB)") and _cache_contents() == []
    assert not at.button(key="train_weights_download").disabled  # try again


def test_import_refuses_a_wrong_file_then_installs_the_right_one(app_ws, no_weights, tmp_path):
    wrong = tmp_path / "other.pth"
    standin_vgg_weights(wrong, seed=5)  # a valid state dict, but not the expected file
    at = _vgg_on_train()
    at.text_input(key="train_weights_path").input(str(wrong)).run()
    at.button(key="train_weights_import").click().run()
    no_exceptions(at)
    errors = [e.value for e in at.error if e.value.startswith("Import failed")]
    assert len(errors) == 1 and "Nothing was installed" in errors[0] and "\n" not in errors[0]
    assert _cache_contents() == [] and _headline(at).endswith("missing (528 MB)")

    at.text_input(key="train_weights_path").input(str(no_weights)).run()
    at.button(key="train_weights_import").click().run()
    no_exceptions(at)
    assert _headline(at) == "VGG-16 ImageNet weights: found (528 MB)"
    assert weights.weights_path().read_bytes() == no_weights.read_bytes()


def test_import_from_the_predict_page(app_ws, no_weights):
    at = app("predict")
    no_exceptions(at)
    assert _headline(at) == "VGG-16 ImageNet weights: missing (528 MB)"
    at.button(key="predict_weights_import").click().run()
    assert any("Type the path" in e.value for e in at.error)  # an empty path: one line
    at.text_input(key="predict_weights_path").input(str(no_weights)).run()
    at.button(key="predict_weights_import").click().run()
    no_exceptions(at)
    assert _headline(at) == "VGG-16 ImageNet weights: found (528 MB)"


def test_random_init_is_an_explicit_choice_and_labelled(app_ws, no_weights):
    at = _vgg_on_train()
    assert at.button(key="train_start").disabled
    at.checkbox(key="train_vgg_random").check().run()
    no_exceptions(at)
    assert not any("needs its ImageNet weights" in e.value for e in at.error)
    at.slider(key="train_hp_epochs").set_value(1).run()
    at.button(key="train_start").click().run()
    no_exceptions(at)
    (run,) = jobs.open_store(app_ws).list_runs()
    assert run["config"]["vgg"]["pretrained"] is False
    assert run["label"] == "VGG-16 transfer (random init, not pretrained)"


def test_panel_texts_and_the_weights_job_title():
    from app_ui.logic import job_row, job_title, weights_headline, weights_job_state

    assert weights_headline({"available": True, "size_mb": 528}) == "VGG-16 ImageNet weights: found (528 MB)"
    assert weights_headline({"available": False, "size_mb": 528}) == "VGG-16 ImageNet weights: missing (528 MB)"
    states = {s: weights_job_state({"state": s}) for s in ("queued", "running", "failed", "succeeded", "cancelled")}
    assert states == {
        "queued": "active",
        "running": "active",
        "failed": "failed",
        "succeeded": "done",
        "cancelled": "done",
    }
    assert weights_job_state(None) == "none"
    job = {"id": 3, "kind": "weights", "state": "running", "run_id": None, "progress": 0.5, "progress_text": "x"}
    assert job_title(job) == "Download of the VGG-16 weights"
    assert job_row(job)["run"] == ""
