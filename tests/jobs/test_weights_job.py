"""The "weights" job: VGG-16's weights downloaded by a real worker process from a real HTTP server
on 127.0.0.1, its progress in the store, its failure as one line, its cancel; and its place in the
queue (it takes no slot of FLAGVISION_MAX_JOBS). TORCH_HOME is a tmp dir in every test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from flagvision.jobs import queue as jobs
from flagvision.jobs.schema import FINISHED_STATES
from flagvision.models import weights
from flagvision.workspace import Workspace
from fv_helpers import WeightsServer, closed_port_url, standin_vgg_weights, wait_for


@pytest.fixture
def ws(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An isolated workspace and torch cache; the workers inherit the environment."""
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(weights.WEIGHTS_URL_ENV, closed_port_url())
    monkeypatch.delenv(weights.HASH_PREFIX_ENV, raising=False)
    yield workspace
    for job in jobs.open_store(workspace).list_jobs(("queued", "running")):
        jobs.cancel(workspace, job["id"], force=True)


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    path = tmp_path_factory.mktemp("standin") / "standin.pth"
    digest = standin_vgg_weights(path, seed=1)
    return path.read_bytes(), digest


def _finished(ws: Workspace, job_id: int):
    job = jobs.get_job(ws, job_id)
    return job if job["state"] in FINISHED_STATES else None


def _cache_contents() -> list[str]:
    folder = weights.weights_path().parent
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_download_job_installs_the_file_and_reports_megabytes(ws, standin, monkeypatch):
    body, digest = standin
    monkeypatch.setenv(weights.HASH_PREFIX_ENV, digest[:8])
    with WeightsServer(body) as server:
        job_id = jobs.submit_weights_download(ws, url=server.url)
        assert jobs.submit_weights_download(ws, url=server.url) == job_id  # one download at a time
        job = wait_for(lambda: _finished(ws, job_id), 60, "the download job to finish", ws=ws)
    assert job["state"] == "succeeded", job["error"]
    assert job["result"] == {"path": str(weights.weights_path())}
    assert job["progress"] == 1.0 and job["progress_text"] in ("checking the file", "downloading 1 of 1 MB")
    assert weights.weights_path().read_bytes() == body and _cache_contents() == [weights.WEIGHTS_FILENAME]
    assert jobs.latest_weights_job(ws)["id"] == job_id
    log = jobs.read_log_tail(jobs.job_log_path(ws, job))
    assert f"job {job_id} succeeded" in log


def test_broken_download_fails_the_job_with_one_line_and_no_partial_file(ws, standin, monkeypatch):
    body, digest = standin
    monkeypatch.setenv(weights.HASH_PREFIX_ENV, digest[:8])
    with WeightsServer(body, cut_after=len(body) // 3) as server:
        monkeypatch.setenv(weights.WEIGHTS_URL_ENV, server.url)  # the worker's default URL
        job_id = jobs.submit_weights_download(ws)
        job = wait_for(lambda: _finished(ws, job_id), 60, "the download job to fail", ws=ws)
    assert job["state"] == "failed"
    assert "connection broke after" in job["error"] and "\n" not in job["error"]
    assert _cache_contents() == []
    # A new request starts a new job (the failed one is done).
    assert jobs.submit_weights_download(ws, url=closed_port_url()) != job_id


def test_cancelled_download_stops_and_removes_its_partial_file(ws, standin, monkeypatch):
    body, digest = standin
    monkeypatch.setenv(weights.HASH_PREFIX_ENV, digest[:8])
    with WeightsServer(body, stall_after=len(body) // 2) as server:
        job_id = jobs.submit_weights_download(ws, url=server.url)
        wait_for(
            lambda: "downloading" in (jobs.get_job(ws, job_id)["progress_text"] or ""),
            60,
            "the download to start",
            ws=ws,
        )
        assert any(name.endswith(".partial") for name in _cache_contents())  # it is mid-file
        jobs.cancel(ws, job_id)
        job = wait_for(lambda: _finished(ws, job_id), 30, "the cancel to land", ws=ws)
    assert job["state"] == "cancelled"
    assert _cache_contents() == []


def test_a_download_takes_no_training_slot(ws):
    store = jobs.open_store(ws)
    busy = store.create_job("train", {}, state="running", heartbeat_at=time.time())
    queued_train = store.create_job("train", {})
    download = store.create_job("weights", {"url": None})
    claimed = store.claim_next_queued(1)
    assert claimed is not None and claimed["id"] == download  # passes the queued training
    assert store.claim_next_queued(1) is None  # the training still waits for its slot
    store.finish_job(busy, "succeeded")
    assert store.claim_next_queued(1)["id"] == queued_train  # the running download does not count
