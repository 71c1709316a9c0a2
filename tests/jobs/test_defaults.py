"""The default models request: what it queues, in which order, never twice; without the built-in
data, the data's job first (a real worker), which queues the models when it has written it."""

from __future__ import annotations

from flagvision.jobs import defaults
from flagvision.jobs import queue as jobs
from flagvision.jobs.schema import FINISHED_STATES
from flagvision.models import weights
from flagvision.synthetic.builtin import builtin_path, builtin_ready
from flagvision.synthetic.examples import examples_ready
from flagvision.synthetic.scenes import SynthConfig, read_manifest, synthesize
from fv_helpers import wait_for

# The built-in data, small: 24 classes x 3 images at 32 px in one process (the full set takes ~40 s).
SMALL_SYNTH = {"train_per_class": 2, "test_per_class": 1, "size": 32, "workers": 1}
TINY_FINDER = {"input_size": 64, "width": 4, "scenes": 16, "val_scenes": 0, "epochs": 1, "workers": 1, "threads": 1}


def _builtin(ws, tmp_path):
    """A small built-in dataset, where the defaults look for it (with its manifest: ready)."""
    synthesize(builtin_path(ws), SynthConfig(train_per_class=1, test_per_class=1, size=32, workers=1))
    assert builtin_ready(ws)


def _states(ws) -> dict[str, str]:
    return {part: s["state"] for part, s in defaults.default_models_status(ws).items()}


def _finished(ws, job_id, timeout=120):
    return wait_for(
        lambda: (j := jobs.get_job(ws, job_id))["state"] in FINISHED_STATES and j,
        timeout,
        lambda: f"job {job_id} to finish (now: {jobs.get_job(ws, job_id)['progress_text']})",
        ws=ws,
    )


def _stop_all(ws) -> None:
    for job in jobs.open_store(ws).list_jobs(("queued", "running")):
        jobs.cancel(ws, job["id"], force=True)


def test_without_weights_it_queues_the_cnn_then_the_finder_and_says_vgg_waits(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no ImageNet weights there
    _builtin(workspace, tmp_path)
    status = defaults.default_models_status(workspace)
    assert {p: s["state"] for p, s in status.items()} == {
        "data": "ready",
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
        assert run["config"]["hparams"] == defaults.RunConfig().hparams.to_dict()  # the default preset
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


def test_without_data_the_data_job_goes_first_and_queues_the_models_when_it_has_written_it(
    workspace, tmp_path, monkeypatch
):
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no ImageNet weights there
    store = jobs.open_store(workspace)
    assert _states(workspace)["data"] == "missing"
    blocker = store.create_job("study", {})  # holds the one slot: the data job waits in the queue
    store.claim_next_queued(1)
    try:
        queued = defaults.submit_default_models(workspace, finder_config=TINY_FINDER, synth=SMALL_SYNTH)
        assert list(queued) == ["data"]  # only the data now: the models need it
        data_job = store.get_job(queued["data"])
        assert data_job["kind"] == "builtin" and data_job["payload"]["then"] == jobs.THEN_DEFAULT_MODELS
        assert _states(workspace) == {
            "data": "queued",
            "cnn": "waiting for data",
            "finder": "waiting for data",
            "vgg": "waiting for weights",
        }
        assert defaults.submit_default_models(workspace) == {}  # nothing twice: the queued data job counts
        assert [j["kind"] for j in store.list_jobs(("queued",))] == ["builtin"]
    finally:
        store.finish_job(blocker, "cancelled")
    try:
        jobs.dispatch(workspace)
        job = _finished(workspace, queued["data"])
        assert job["state"] == "succeeded", job["error"]
        assert job["progress"] == 1.0 and job["progress_text"] == "done; the default models are queued"
        assert builtin_ready(workspace) and examples_ready(workspace)
        manifest = read_manifest(builtin_path(workspace))
        assert manifest["num_images"] == 24 * 3 and manifest["image_size"] == [32, 32]
        assert set(job["result"]["queued"]) == {"cnn", "finder"}
        cnn_job = store.get_job(job["result"]["queued"]["cnn"])
        assert store.get_run(cnn_job["run_id"])["name"] == defaults.RUN_NAMES["cnn"]
        assert store.get_job(job["result"]["queued"]["finder"])["payload"]["config"] == TINY_FINDER
        assert cnn_job["id"] < job["result"]["queued"]["finder"]  # the CNN first, as with the data there
    finally:
        _stop_all(workspace)


def test_a_data_job_already_under_way_is_told_to_queue_the_models(workspace, tmp_path, monkeypatch):
    """Home's "Generate the built-in dataset" queues the data alone; "Train the default models"
    while it waits or runs does not queue it twice but has it queue the models afterwards."""
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "1")
    store = jobs.open_store(workspace)
    blocker = store.create_job("study", {})
    store.claim_next_queued(1)
    try:
        data_id = jobs.submit_builtin(workspace)
        assert "then" not in store.get_job(data_id)["payload"]
        assert _states(workspace)["cnn"] == "missing"  # not yet asked for
        assert defaults.submit_default_models(workspace) == {}
        assert store.get_job(data_id)["payload"]["then"] == jobs.THEN_DEFAULT_MODELS
        assert _states(workspace)["cnn"] == "waiting for data"
        assert [j["id"] for j in store.list_jobs(("queued", "running")) if j["kind"] == "builtin"] == [data_id]
    finally:
        _stop_all(workspace)
        store.finish_job(blocker, "cancelled")


def test_a_data_job_that_cannot_write_the_data_fails_in_one_line_and_queues_nothing(workspace, monkeypatch):
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "1")
    builtin_path(workspace).write_text("a file where the dataset's folder goes")
    try:
        queued = defaults.submit_default_models(workspace, synth=SMALL_SYNTH)
        job = _finished(workspace, queued["data"])
        assert job["state"] == "failed"
        assert job["error"] == f"Not a directory: {builtin_path(workspace)}"
        assert [j["kind"] for j in jobs.open_store(workspace).list_jobs()] == ["builtin"]  # no model queued
        assert _states(workspace)["data"] == "missing"
    finally:
        _stop_all(workspace)


def test_a_cancelled_data_job_stops_rendering_and_leaves_no_data(workspace, monkeypatch):
    """Cancelled while two processes render: the rest of the scenes are dropped (no wait for them)."""
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "1")
    long = {"train_per_class": 2000, "test_per_class": 0, "size": 32, "workers": 2}  # minutes of rendering
    job_id = defaults.submit_default_models(workspace, synth=long)["data"]
    try:
        wait_for(
            lambda: (jobs.get_job(workspace, job_id)["progress"] or 0) > 0,
            60,
            "the data job to render its first scenes",
            ws=workspace,
        )
        jobs.cancel(workspace, job_id)
        job = _finished(workspace, job_id, timeout=30)
        assert job["state"] == "cancelled", job["error"]
        assert not builtin_ready(workspace)
        assert not [p.name for p in workspace.datasets_dir.iterdir()]  # no half dataset, no staging folder
        assert [j["kind"] for j in jobs.open_store(workspace).list_jobs()] == ["builtin"]
    finally:
        _stop_all(workspace)
