"""Fixtures of the reliability suite: a small model trained on rendered flags (shared by the
session), a workspace holding it as a finished run, and a sentinel tree beside the workspace."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_kit import FLAGS, tree_state

TRAIN_PER_FLAG = 36


def _render_training_set(root: Path, seed: int = 0) -> Path:
    """Each flag, whole or slightly cropped, lighter or darker; a quarter of them grey, because a
    grey photo of a flag must still be recognised by its layout."""
    from flagvision.synthetic.flags import render_flag

    rng = np.random.default_rng(seed)
    for name in FLAGS:
        base = render_flag(name, 96).convert("RGB")
        folder = root / name
        folder.mkdir(parents=True)
        w, h = base.size
        for i in range(TRAIN_PER_FLAG):
            dx, dy = rng.integers(0, w // 10 + 1, 2)
            ex, ey = rng.integers(0, w // 10 + 1, 2)
            img = base.crop((dx, dy, w - ex, h - ey)) if i % 4 else base
            img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.75, 1.25)))
            if i % 4 == 1:
                img = img.convert("L").convert("RGB")
            img.resize((48, 32)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def flag_root(tmp_path_factory) -> Path:
    """A workspace (under ``<tmp>/outer/ws``) with one succeeded custom-CNN run on four flags."""
    from flagvision.config import DataConfig, HyperParams, RunConfig
    from flagvision.jobs import queue as jobs
    from flagvision.training.pipeline import run_training
    from flagvision.training.run import StoreCallback, create_run, finish_run
    from flagvision.workspace import Workspace

    outer = tmp_path_factory.mktemp("flagmodel")
    ws = Workspace.open(outer / "ws")
    data = _render_training_set(ws.dataset_dir("fourflags"))
    hp = HyperParams(
        num_filters_conv1=16,
        num_filters_conv2=32,
        fc1_units=64,
        epochs=12,
        batch_size=16,
        lr=1e-3,
        optimizer="Adam",
        activation="ReLU",
        dropout_rate=0.0,
    )
    cfg = RunConfig(
        model="flag_cnn", hparams=hp, data=DataConfig(path=str(data), image_size=32, augment=0.3), threads=2, seed=1
    )
    store = jobs.open_store(ws)
    run_id, run_dir = create_run(ws, store, cfg, name="four flags", status="running")
    result = run_training(cfg, run_dir, [StoreCallback(store, run_id)])
    finish_run(store, run_id, result, "succeeded")
    assert result.evaluation.accuracy >= 0.9, result.evaluation.accuracy
    return ws.root


@pytest.fixture
def flag_ws(flag_root, tmp_path, monkeypatch):
    """A private copy of the trained workspace (tests may break it), with FLAGVISION_HOME set."""
    from flagvision.jobs.store import Store
    from flagvision.workspace import Workspace

    root = tmp_path / "outer" / "ws"
    shutil.copytree(flag_root, root)  # with the WAL file: it may hold the latest rows
    monkeypatch.setenv("FLAGVISION_HOME", str(root))
    ws = Workspace.open(root)
    store = Store(ws.db_path)
    for run in store.list_runs():  # the copy's rows point at the copy's folders
        store.update_run(
            run["id"], run_dir=str(ws.run_dir(run["id"])), checkpoint_path=str(ws.run_dir(run["id"]) / "checkpoint")
        )
    store.close() if hasattr(store, "close") else None
    return ws


@pytest.fixture
def checkpoint(flag_root) -> Path:
    """The trained checkpoint folder (read-only: copy it before changing anything)."""
    return flag_root / "runs" / "1" / "checkpoint"


@pytest.fixture(scope="session")
def flag_images() -> dict[str, Image.Image]:
    from flagvision.synthetic.flags import render_flag

    return {name: render_flag(name, 120).convert("RGB") for name in FLAGS}


@pytest.fixture
def guarded_ws(tmp_path, monkeypatch):
    """An empty workspace at ``<tmp>/outer/ws`` with a sentinel tree beside it and a dataset and a
    run inside it; yields ``(ws, check)``, where ``check()`` asserts nothing outside the workspace
    changed and the existing dataset and run are byte for byte the same."""
    from flagvision.workspace import Workspace

    outer = tmp_path / "outer"
    sentinel = outer / "sentinel"
    (sentinel / "deep").mkdir(parents=True)
    (sentinel / "keep.txt").write_text("must not change")
    (sentinel / "deep" / "keep.png").write_bytes(b"\x89PNG not really")
    monkeypatch.setenv("FLAGVISION_HOME", str(outer / "ws"))
    ws = Workspace.open(outer / "ws")
    existing = ws.dataset_dir("existing")
    for cls in ("a", "b"):
        (existing / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8), (10, 200, 10) if cls == "a" else (200, 10, 10)).save(existing / cls / "x.png")
    (ws.run_dir(1)).mkdir(parents=True)
    (ws.run_dir(1) / "config.json").write_text("{}")
    outside_before = tree_state(outer, skip=("ws",))
    inside_before = {k: tree_state(d) for k, d in (("datasets", ws.datasets_dir), ("runs", ws.runs_dir))}

    def check(new_datasets: tuple[str, ...] = ()) -> None:
        assert tree_state(outer, skip=("ws",)) == outside_before, "something was written outside the workspace"
        assert tree_state(ws.runs_dir) == inside_before["runs"], "an existing run changed"
        datasets = tree_state(ws.datasets_dir)
        kept = {k: v for k, v in datasets.items() if k.split("/")[0] not in new_datasets}
        assert kept == inside_before["datasets"], "an existing dataset changed or a partial import was left"
        leftovers = [p.name for p in ws.root.iterdir() if p.suffix == ".zip" or p.name.startswith(".import-")]
        assert not leftovers, leftovers

    return ws, check
