"""App tests: a tiny workspace (24 classes × 6 images at 32 px) shared by the session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_builtin(tmp_path_factory) -> Path:
    """A generated built-in dataset, tiny (the real one takes a minute)."""
    from flagvision.synthetic.scenes import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("tiny_builtin") / "builtin"
    synthesize(root, SynthConfig(train_per_class=4, test_per_class=2, size=32, workers=1))
    return root


@pytest.fixture
def app_ws(tmp_path, monkeypatch, tiny_builtin):
    """A fresh workspace holding the tiny built-in dataset; FLAGVISION_HOME points at it."""
    from flagvision.workspace import Workspace

    root = tmp_path / "ws"
    monkeypatch.setenv("FLAGVISION_HOME", str(root))
    monkeypatch.setenv("FLAGVISION_MAX_JOBS", "1")
    ws = Workspace.open(root)
    shutil.copytree(tiny_builtin, ws.dataset_dir("builtin"))
    yield ws
    _stop_workers(ws)


def _stop_workers(ws) -> None:
    """Cancel (forcefully) every job a test left queued or running, so no worker lingers."""
    from flagvision.jobs import queue as jobs

    store = jobs.open_store(ws)
    for job in store.list_jobs(("queued", "running")):
        try:
            jobs.cancel(ws, job["id"], force=True)
        except Exception:  # noqa: BLE001 - best-effort teardown: one failed cancel must not skip the rest
            pass


def _train_run(ws, cfg, name: str) -> int:
    """Train ``cfg`` in this process, recorded in the store like a background run."""
    from flagvision.jobs import queue as jobs
    from flagvision.training.pipeline import run_training
    from flagvision.training.run import StoreCallback, create_run, finish_run

    store = jobs.open_store(ws)
    run_id, run_dir = create_run(ws, store, cfg, name=name, status="running")
    result = run_training(cfg, run_dir, [StoreCallback(store, run_id)])
    finish_run(store, run_id, result, "succeeded")
    return run_id


@pytest.fixture(scope="session")
def trained_root(tmp_path_factory, tiny_builtin) -> Path:
    """A workspace with a trained custom CNN, a random-init VGG-16 and a 2-trial study."""
    from flagvision.config import DataConfig, HyperParams, RunConfig, VGGConfig
    from flagvision.studies.config import StudyConfig
    from flagvision.studies.runner import run_study
    from flagvision.workspace import Workspace

    root = tmp_path_factory.mktemp("trained") / "ws"
    ws = Workspace.open(root)
    shutil.copytree(tiny_builtin, ws.dataset_dir("builtin"))
    data = DataConfig(path=str(ws.dataset_dir("builtin")), image_size=32, augment=0.0)
    hp = HyperParams(num_filters_conv1=8, num_filters_conv2=16, fc1_units=64, epochs=2, batch_size=32, lr=1e-3)
    _train_run(ws, RunConfig(model="flag_cnn", hparams=hp, data=data, threads=2), "tiny cnn")
    vgg = VGGConfig(blocks=2, pretrained=False, head_units=0, cached_views=1)
    _train_run(
        ws,
        RunConfig(model="vgg16_transfer", hparams=hp.with_changes(epochs=1), data=data, vgg=vgg, threads=2),
        "tiny vgg",
    )
    study_cfg = StudyConfig.from_dict(
        {
            "name": "tiny-study",
            "n_trials": 2,
            "epochs_per_trial": 1,
            "sampler": "random",
            "pruner": "none",
            "space": [
                {"name": "num_filters_conv1", "fixed": 8},
                {"name": "fc1_units", "fixed": 64},
                {"name": "num_filters_conv2", "low": 16, "high": 32},
            ],
            "base": RunConfig(model="flag_cnn", data=data, threads=2).to_dict(),
        }
    )
    run_study(study_cfg, ws)
    return root


@pytest.fixture
def trained_ws(trained_root, monkeypatch):
    from flagvision.workspace import Workspace

    monkeypatch.setenv("FLAGVISION_HOME", str(trained_root))
    ws = Workspace.open(trained_root)
    yield ws
    _stop_workers(ws)
