"""The "finder" job: the flag finder trained by a real worker process into the workspace, its
progress in the store, one job at a time."""

from __future__ import annotations

from flagvision.jobs import queue as jobs
from flagvision.jobs.schema import FINISHED_STATES
from flagvision.models.finder import Finder, FinderConfig, finder_status
from fv_helpers import wait_for

TINY = FinderConfig(input_size=64, width=4, scenes=16, val_scenes=0, epochs=1, workers=1, threads=1).to_dict()


def test_finder_job_builds_the_workspace_finder(workspace, monkeypatch):
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "1")
    assert not finder_status(workspace)["built"]
    job_id = jobs.submit_finder(workspace, TINY)
    assert jobs.submit_finder(workspace, TINY) == job_id  # one finder training at a time
    job = wait_for(
        lambda: (j := jobs.get_job(workspace, job_id))["state"] in FINISHED_STATES and j,
        120,
        "the finder job",
        ws=workspace,
    )
    assert job["state"] == "succeeded", job["error"]
    assert job["progress"] == 1.0 and job["progress_text"] == "training: epoch 1 of 1"
    assert finder_status(workspace)["built"]
    assert Finder.from_workspace(workspace).cfg.width == 4
    assert jobs.submit_finder(workspace, TINY) != job_id  # finished: a new request is a new job
    for j in jobs.open_store(workspace).list_jobs(("queued", "running")):
        jobs.cancel(workspace, j["id"], force=True)


def test_a_cancelled_finder_job_stops_and_leaves_no_finder(workspace, monkeypatch):
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "1")
    long = {**TINY, "scenes": 20_000, "epochs": 50}  # far longer than the test waits
    job_id = jobs.submit_finder(workspace, long)
    wait_for(
        lambda: (jobs.get_job(workspace, job_id).get("progress_text") or "").startswith("rendering scenes"),
        60,
        "the finder job to start rendering",
        ws=workspace,
    )
    jobs.cancel(workspace, job_id)
    job = wait_for(
        lambda: (j := jobs.get_job(workspace, job_id))["state"] in FINISHED_STATES and j, 30, "the cancel", ws=workspace
    )
    assert job["state"] == "cancelled", job["error"]
    assert not finder_status(workspace)["built"]
