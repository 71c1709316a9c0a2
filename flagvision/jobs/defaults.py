"""The default models, one request away: the reference study's custom CNN on the built-in data, the
flag finder, and VGG-16 transfer when its ImageNet weights are on this machine.

:func:`default_models_status` says, per part (the built-in data too), whether it is there, under
way (with its job) or what it waits for; :func:`submit_default_models` queues what is missing
(nothing twice). Without the built-in data, its job ("builtin") goes first and queues the models
when it succeeds. The CNN goes first, so the Predict page works as soon as it is done; the finder
and VGG-16 follow in the queue.
Cheap to call (no torch): the app asks on every rerun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flagvision.config import CUSTOM_CNN, VGG16_TRANSFER, DataConfig, RunConfig, default_image_size
from flagvision.jobs import queue as jobs
from flagvision.jobs.schema import ACTIVE_STATES
from flagvision.workspace import CARD_FILE, FINDER_DIR, Workspace

PARTS = ("data", "cnn", "finder", "vgg")
MODEL_PARTS = ("cnn", "finder", "vgg")
MODEL_OF_PART = {"cnn": CUSTOM_CNN, "vgg": VGG16_TRANSFER}
RUN_NAMES = {"cnn": "default custom CNN", "vgg": "default VGG-16 transfer"}


def default_run_config(ws: Workspace, part: str) -> RunConfig:
    """The default run of ``part`` ("cnn" or "vgg"): ``RunConfig()`` defaults on the built-in data."""
    from flagvision.synthetic.builtin import builtin_path

    model = MODEL_OF_PART[part]
    data = DataConfig(path=str(builtin_path(ws)), image_size=default_image_size(model))
    return RunConfig(model=model, data=data)


def finder_card_path(ws: Workspace) -> Path:
    """The finder's card (written last by ``Finder.save``: a card means a whole finder), found without
    importing ``models.finder`` (which imports torch)."""
    return ws.root / FINDER_DIR / CARD_FILE


def _weights_available() -> bool:
    from flagvision.models.weights import weights_status

    return bool(weights_status()["available"])


def default_models_status(ws: Workspace) -> dict[str, dict[str, Any]]:
    """Per part: ``state`` and, while under way, its ``job`` (the store's row: ``progress``,
    ``progress_text``, ``started_at``).

    "data" (the built-in dataset and the example photos) is "ready", "queued", "running" or
    "missing". A model ("cnn", "finder", "vgg") is "ready", "queued", "running", "missing",
    "waiting for weights" (VGG-16 without its ImageNet weights) or "waiting for data" (missing, and
    the data's job queues it when it ends). A model counts as ready when any run of it succeeded
    (the user's own runs count too).
    """
    from flagvision.synthetic.builtin import builtin_ready

    store = jobs.open_store(ws)
    active = store.list_jobs(ACTIVE_STATES)
    succeeded = {r["model"] for r in store.list_runs(status="succeeded")}
    runs = {r["id"]: r for r in store.list_runs(limit=200) if r["status"] in ACTIVE_STATES}
    out: dict[str, dict[str, Any]] = {}
    for part, model in MODEL_OF_PART.items():
        job = next(
            (j for j in active if j["kind"] == "train" and (runs.get(j["run_id"]) or {}).get("model") == model), None
        )
        if job is not None:
            out[part] = {"state": job["state"], "job": job}
        elif model in succeeded:
            out[part] = {"state": "ready"}
        elif part == "vgg" and not _weights_available():
            out[part] = {"state": "waiting for weights"}
        else:
            out[part] = {"state": "missing"}
    finder_job = next((j for j in active if j["kind"] == "finder"), None)
    if finder_job is not None:
        out["finder"] = {"state": finder_job["state"], "job": finder_job}
    else:
        out["finder"] = {"state": "ready" if finder_card_path(ws).is_file() else "missing"}
    data_job = next((j for j in active if j["kind"] == "builtin"), None)
    if data_job is not None:
        out["data"] = {"state": data_job["state"], "job": data_job}
        if data_job["payload"].get("then") == jobs.THEN_DEFAULT_MODELS:
            for part in MODEL_PARTS:
                if out[part]["state"] == "missing":
                    out[part] = {"state": "waiting for data"}
    else:
        out["data"] = {"state": "ready" if builtin_ready(ws) else "missing"}
    return {part: out[part] for part in PARTS}


def submit_default_models(
    ws: Workspace, finder_config: dict[str, Any] | None = None, synth: dict[str, Any] | None = None
) -> dict[str, int]:
    """Queue every missing part; return ``{part: job_id}`` of those queued now (nothing twice).

    Without the built-in data, only its job is queued (``synth``: ``SynthConfig`` overrides, for
    tests), told to queue the models when it succeeds; a data job already under way is told so
    too. With the data: :func:`queue_default_models`."""
    status = default_models_status(ws)
    if status["data"]["state"] != "ready":
        under_way = status["data"].get("job")
        job_id = jobs.submit_builtin(ws, synth, then=jobs.THEN_DEFAULT_MODELS, finder_config=finder_config)
        return {} if under_way is not None else {"data": job_id}
    return queue_default_models(ws, finder_config, status)


def queue_default_models(
    ws: Workspace, finder_config: dict[str, Any] | None = None, status: dict[str, dict[str, Any]] | None = None
) -> dict[str, int]:
    """Queue every missing model (the CNN, then the finder, then VGG-16 if its weights are here) on
    the built-in data, which must exist (the data's job calls this when it has written it); return
    ``{part: job_id}`` of those queued now."""
    status = status or default_models_status(ws)
    queued: dict[str, int] = {}
    for part in MODEL_PARTS:
        if status[part]["state"] not in ("missing", "waiting for data"):
            continue
        if part == "finder":
            queued[part] = jobs.submit_finder(ws, finder_config)
        else:
            queued[part], _ = jobs.submit_training(ws, default_run_config(ws, part), name=RUN_NAMES[part])
    return queued
