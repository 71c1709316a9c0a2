"""Comparing two runs on the workspace's check set as a job (kind "compare"; the worker calls
``flagvision.inference.compare.compare_on_checkset``): the Runs page's disagreements."""

from __future__ import annotations

from typing import Any

from flagvision.jobs.queue import dispatch, open_store
from flagvision.jobs.schema import ACTIVE_STATES
from flagvision.workspace import Workspace


def compare_payload(checkpoint_a: str, checkpoint_b: str, with_finder: bool) -> dict[str, Any]:
    return {"a": str(checkpoint_a), "b": str(checkpoint_b), "finder": bool(with_finder)}


def latest_compare_job(ws: Workspace, checkpoint_a: str, checkpoint_b: str, with_finder: bool) -> dict[str, Any] | None:
    """The newest job comparing these two checkpoints (any state), or None."""
    wanted = compare_payload(checkpoint_a, checkpoint_b, with_finder)
    return next(
        (j for j in open_store(ws).list_jobs(limit=200) if j["kind"] == "compare" and j["payload"] == wanted), None
    )


def submit_compare(ws: Workspace, checkpoint_a: str, checkpoint_b: str, with_finder: bool) -> int:
    """Queue the comparison of two checkpoints on the workspace's check set (drawn first if missing;
    ``flagvision.inference.compare.compare_on_checkset`` in a worker, through the workspace's flag
    finder when ``with_finder``); return the job id. One already queued or running for the same pair
    is returned instead of a second one."""
    latest = latest_compare_job(ws, checkpoint_a, checkpoint_b, with_finder)
    if latest is not None and latest["state"] in ACTIVE_STATES:
        return int(latest["id"])
    job_id = open_store(ws).create_job("compare", compare_payload(checkpoint_a, checkpoint_b, with_finder))
    dispatch(ws)
    return job_id
