"""The default models request: what it queues, in which order, never twice."""

from __future__ import annotations

import shutil

from flagvision.jobs import defaults
from flagvision.jobs import queue as jobs
from flagvision.models import weights
from fv_helpers import make_pattern_dataset


def _builtin(ws, tmp_path):
    """A small stand-in for the built-in data, where the defaults look for it."""
    shutil.copytree(make_pattern_dataset(tmp_path / "pattern"), ws.dataset_dir("builtin"))


def test_without_weights_it_queues_the_cnn_then_the_finder_and_says_vgg_waits(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no ImageNet weights there
    _builtin(workspace, tmp_path)
    status = defaults.default_models_status(workspace)
    assert {p: s["state"] for p, s in status.items()} == {
        "cnn": "missing",
        "finder": "missing",
        "vgg": "waiting for weights",
    }
    # Held in the queue: a running job of another kind fills the one slot, so nothing starts here.
    store = jobs.open_store(workspace)
    blocker = store.create_job("study", {})
    store.claim_next_queued(1)
    try:
        queued = defaults.submit_default_models(workspace)
        assert set(queued) == {"cnn", "finder"}
        assert queued["cnn"] < queued["finder"]  # the CNN first: Predict works as soon as it is done
        cnn_job = store.get_job(queued["cnn"])
        run = store.get_run(cnn_job["run_id"])
        assert run["model"] == "flag_cnn" and run["name"] == defaults.RUN_NAMES["cnn"]
        assert run["config"]["hparams"] == defaults.RunConfig().hparams.to_dict()  # the reference study's preset
        assert store.get_job(queued["finder"])["kind"] == "finder"
        status = defaults.default_models_status(workspace)
        assert status["cnn"]["state"] == "queued" and status["cnn"]["job"]["id"] == queued["cnn"]
        assert status["finder"]["state"] == "queued"
        assert defaults.submit_default_models(workspace) == {}  # nothing twice
    finally:
        for job in store.list_jobs(("queued", "running")):
            if job["id"] != blocker:
                jobs.cancel(workspace, job["id"])
        store.finish_job(blocker, "cancelled")


def test_with_weights_vgg_is_queued_too(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    path = weights.weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"present")  # only its presence is read here; its hash is checked when loaded
    _builtin(workspace, tmp_path)
    store = jobs.open_store(workspace)
    blocker = store.create_job("study", {})
    store.claim_next_queued(1)
    try:
        queued = defaults.submit_default_models(workspace)
        assert list(queued) == ["cnn", "finder", "vgg"]
        vgg_run = store.get_run(store.get_job(queued["vgg"])["run_id"])
        assert vgg_run["model"] == "vgg16_transfer" and vgg_run["config"]["vgg"]["pretrained"] is True
    finally:
        for job in store.list_jobs(("queued", "running")):
            if job["id"] != blocker:
                jobs.cancel(workspace, job["id"])
        store.finish_job(blocker, "cancelled")
