"""The built-in dataset generator: config, determinism, layout, manifest, contact sheet, checkset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flagvision.synthetic.checkset import make_checkset, render_check_image
from flagvision.synthetic.flags import FLAG_NAMES
from flagvision.synthetic.scenes import (
    GENERATOR_VERSION,
    SynthConfig,
    contact_sheet,
    contact_sheet_size,
    read_manifest,
    render_scene,
    synthesize,
)

TINY = SynthConfig(train_per_class=2, test_per_class=1, seed=0, size=48, workers=1)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "flags"
    calls: list[tuple[int, int]] = []
    manifest = synthesize(out, TINY, progress=lambda done, total: calls.append((done, total)))
    return out, {"manifest": manifest, "calls": calls}


def test_config_defaults_round_trip_and_validation() -> None:
    cfg = SynthConfig()
    assert (cfg.train_per_class, cfg.test_per_class, cfg.seed, cfg.size, cfg.workers) == (450, 50, 0, 80, 0)
    assert SynthConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="size"):
        SynthConfig(size=8)
    with pytest.raises(ValueError, match="train_per_class"):
        SynthConfig(train_per_class=0)
    with pytest.raises(ValueError, match="integer"):
        SynthConfig(seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="valid: "):
        SynthConfig.from_dict({"sizes": 3})


def test_render_scene_is_deterministic_per_generator() -> None:
    a = render_scene("Greece", np.random.default_rng(7), 64)
    b = render_scene("Greece", np.random.default_rng(7), 64)
    c = render_scene("Greece", np.random.default_rng(8), 64)
    assert a.mode == "RGB" and a.size == (64, 64)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    with pytest.raises(ValueError, match="Austria"):
        render_scene("Narnia", np.random.default_rng(0), 64)


def test_layout_and_manifest(tiny: tuple[Path, dict]) -> None:
    out, info = tiny
    manifest = info["manifest"]
    for name in FLAG_NAMES:
        assert sorted(p.name for p in (out / "train" / name).iterdir()) == ["0000.jpg", "0001.jpg"]
        assert sorted(p.name for p in (out / "test" / name).iterdir()) == ["0000.jpg"]
    with Image.open(out / "train" / "Malta" / "0001.jpg") as im:
        assert im.format == "JPEG" and im.size == (48, 48) and im.mode == "RGB"
    assert read_manifest(out) == manifest
    assert manifest["version"] == GENERATOR_VERSION
    assert manifest["class_names"] == list(FLAG_NAMES)
    assert manifest["counts"]["train"]["Spain"] == 2 and manifest["counts"]["test"]["Spain"] == 1
    assert manifest["num_images"] == 72
    assert manifest["config"] == {"train_per_class": 2, "test_per_class": 1, "seed": 0, "size": 48}
    assert len(manifest["fingerprint"]) == 64
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    calls = info["calls"]
    assert calls[0] == (0, 72) and calls[-1] == (72, 72)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_same_seed_same_bytes_any_worker_count(tiny: tuple[Path, dict], tmp_path: Path) -> None:
    out, info = tiny
    again = synthesize(tmp_path / "again", SynthConfig(**{**TINY.to_dict(), "workers": 2}))
    assert _files(tmp_path / "again") == _files(out)
    assert again == info["manifest"]


def test_different_seed_different_scenes(tiny: tuple[Path, dict], tmp_path: Path) -> None:
    out, info = tiny
    other = synthesize(tmp_path / "other", SynthConfig(**{**TINY.to_dict(), "seed": 1}))
    assert other["fingerprint"] != info["manifest"]["fingerprint"]
    a, b = _files(out), _files(tmp_path / "other")
    assert all(a[k] != b[k] for k in a if k.endswith(".jpg"))


def test_existing_dataset_needs_overwrite(tmp_path: Path) -> None:
    cfg = SynthConfig(train_per_class=1, test_per_class=0, size=32, workers=1)
    synthesize(tmp_path / "d", cfg)
    with pytest.raises(FileExistsError):
        synthesize(tmp_path / "d", cfg)
    manifest = synthesize(tmp_path / "d", SynthConfig(**{**cfg.to_dict(), "seed": 3}), overwrite=True)
    assert read_manifest(tmp_path / "d") == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_builtin_from_an_older_generator_is_rendered_again(workspace, monkeypatch) -> None:
    import flagvision.synthetic.scenes as synth
    from flagvision.synthetic.builtin import builtin_path, builtin_ready, ensure_builtin

    small = SynthConfig(train_per_class=1, test_per_class=1, size=32, workers=1)
    monkeypatch.setattr(synth, "SynthConfig", lambda: small)  # the default config, at test size
    path = builtin_path(workspace)
    assert not builtin_ready(workspace)
    assert ensure_builtin(workspace) == path and builtin_ready(workspace)
    manifest = read_manifest(path)
    assert manifest["version"] == GENERATOR_VERSION and manifest["num_images"] == 48

    (path / "manifest.json").write_text(json.dumps({**manifest, "version": "synth-0"}))
    (path / "train" / "Austria" / "stale.jpg").write_bytes(b"from the old generator")
    assert not builtin_ready(workspace)
    ensure_builtin(workspace)
    assert builtin_ready(workspace) and read_manifest(path) == manifest
    assert not (path / "train" / "Austria" / "stale.jpg").exists()
    (path / "manifest.json").write_text("{not json")
    assert not builtin_ready(workspace)


def test_interrupted_build_leaves_nothing(tmp_path: Path) -> None:
    def stop(done: int, total: int) -> None:
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthesize(tmp_path / "d", SynthConfig(train_per_class=30, test_per_class=0, size=32, workers=1), stop)
    assert list(tmp_path.iterdir()) == []


def test_contact_sheet(tiny: tuple[Path, dict], tmp_path: Path) -> None:
    path = contact_sheet(tiny[0], tmp_path / "sheet.png", per_class=2, split="train", thumb=40)
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == contact_sheet_size(24, 2, 40)
    assert contact_sheet_size(24, 2, 40)[0] > contact_sheet_size(24, 1, 40)[0]


def test_checkset_is_an_imagefolder_and_deterministic(tmp_path: Path) -> None:
    make_checkset(tmp_path / "a", per_class=1, seed=5, size=48)
    make_checkset(tmp_path / "b", per_class=1, seed=5, size=48)
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_dir()) == sorted(FLAG_NAMES)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    import random

    img = render_check_image("Denmark", random.Random(1), 64, "small")
    assert img.size == (64, 64) and img.mode == "RGB"
