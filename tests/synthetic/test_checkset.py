"""The second-route check set: every framing renders, boxes are true, the manifest records them."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flagvision.config import ConfigError
from flagvision.synthetic.checkset import (
    FRAMINGS,
    LEGACY_FRAMINGS,
    PHOTO_FRAMINGS,
    load_photos,
    make_checkset,
    render_check_scene,
    render_photo_without_flag,
)
from flagvision.synthetic.flags import FLAG_NAMES, render_flag


def _flag_colour_share(pixels: np.ndarray, name: str) -> float:
    """Share of ``pixels`` (N x 3) within a small distance of one of the flag's main colours."""
    flat = np.asarray(render_flag(name, 60), np.float32).reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    main = colours[counts > 0.1 * len(flat)]
    dist = np.linalg.norm(pixels[:, None, :].astype(np.float32) - main[None], axis=2).min(axis=1)
    return float((dist < 60).mean())


@pytest.mark.parametrize("framing", FRAMINGS + LEGACY_FRAMINGS)
def test_every_framing_renders_with_boxes_inside_the_image(framing: str) -> None:
    for i, name in enumerate(("Germany", "Sweden", "Spain", "Greece")):
        scene = render_check_scene(name, random.Random(f"t/{framing}/{i}"), 96, framing)
        assert scene.image.size == (96, 96) and scene.image.mode == "RGB"
        assert scene.framing == framing and scene.flags[0] == name
        assert len(scene.boxes) == len(scene.flags) == (2 if framing == "two_flags" else 1)
        for x0, y0, x1, y1 in scene.boxes:
            assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96


def test_the_box_covers_the_flag() -> None:
    # Colours of a high-contrast flag concentrate inside its box, against a background that has
    # no such colour in quantity.
    inside_share, outside_share = [], []
    for i in range(6):
        scene = render_check_scene("Sweden", random.Random(f"cover/{i}"), 128, "scene_small")
        a = np.asarray(scene.image)
        x0, y0, x1, y1 = scene.boxes[0]
        mask = np.zeros(a.shape[:2], bool)
        mask[y0:y1, x0:x1] = True
        inside_share.append(_flag_colour_share(a[mask], "Sweden"))
        outside_share.append(_flag_colour_share(a[~mask], "Sweden"))
    assert np.mean(inside_share) > 0.5
    assert np.mean(inside_share) > 3 * np.mean(outside_share)


def test_scene_small_flags_are_10_to_35_percent_of_the_width() -> None:
    for i in range(10):
        scene = render_check_scene(FLAG_NAMES[i], random.Random(f"small/{i}"), 128, "scene_small")
        x0, _, x1, _ = scene.boxes[0]
        assert 0.07 * 128 <= x1 - x0 <= 0.4 * 128


def test_a_vertical_flag_is_taller_than_wide_and_a_closeup_fills_the_frame() -> None:
    for i, name in enumerate(FLAG_NAMES[:8]):
        x0, y0, x1, y1 = render_check_scene(name, random.Random(f"v/{i}"), 128, "vertical").boxes[0]
        assert y1 - y0 > x1 - x0, (name, (x0, y0, x1, y1))
        x0, y0, x1, y1 = render_check_scene(name, random.Random(f"c/{i}"), 128, "closeup").boxes[0]
        assert (x1 - x0) * (y1 - y0) > 0.6 * 128 * 128


def test_two_flags_shows_two_different_flags_apart() -> None:
    for i in range(5):
        scene = render_check_scene("Italy", random.Random(f"two/{i}"), 128, "two_flags")
        assert scene.flags[0] == "Italy" and scene.flags[1] != "Italy" and scene.flags[1] in FLAG_NAMES
        (a0, _, a1, _), (b0, _, b1, _) = scene.boxes
        assert a1 <= b0 or b1 <= a0  # side by side, not on top of each other


def test_same_random_seed_same_scene() -> None:
    for framing in FRAMINGS:
        a = render_check_scene("Malta", random.Random(f"d/{framing}"), 64, framing)
        b = render_check_scene("Malta", random.Random(f"d/{framing}"), 64, framing)
        assert a.image.tobytes() == b.image.tobytes() and a.boxes == b.boxes and a.flags == b.flags


def test_make_checkset_records_framings_and_boxes_in_the_manifest(tmp_path: Path) -> None:
    manifest = make_checkset(tmp_path / "a", per_class=5, seed=3, size=48)
    again = make_checkset(tmp_path / "b", 1, 3, 48)  # the old positional call still works
    assert again["images"] == [e for e in manifest["images"] if e["file"].endswith("/000.jpg")]
    on_disk = json.loads((tmp_path / "a" / "checkset.json").read_text(encoding="utf-8"))
    assert on_disk == manifest and manifest["version"] == "checkset-2"
    assert manifest["framings"] == list(FRAMINGS)
    assert len(manifest["images"]) == 5 * len(FLAG_NAMES)
    for entry in manifest["images"]:
        assert (tmp_path / "a" / entry["file"]).is_file()
        assert entry["file"].split("/")[0] == entry["class"] == entry["flags"][0]
        assert len(entry["boxes"]) == len(entry["flags"])
    per_class = {e["framing"] for e in manifest["images"] if e["class"] == "South Cyprus"}
    assert per_class == set(FRAMINGS)
    files_a = sorted(p.read_bytes() for p in (tmp_path / "a").rglob("000.jpg"))
    files_b = sorted(p.read_bytes() for p in (tmp_path / "b").rglob("000.jpg"))
    assert files_a == files_b


def test_make_checkset_takes_a_choice_of_framings_and_refuses_unknown_ones(tmp_path: Path) -> None:
    manifest = make_checkset(tmp_path / "v", per_class=1, size=48, framings=["vertical"])
    assert {e["framing"] for e in manifest["images"]} == {"vertical"}
    with pytest.raises(ConfigError, match="closeup"):
        make_checkset(tmp_path / "x", per_class=1, size=48, framings=["upside_down"])


def test_the_check_set_shares_no_code_with_the_generator() -> None:
    code = (
        "import sys, flagvision.synthetic.checkset; print(sorted(m for m in sys.modules if m.startswith('flagvision')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "flagvision.synthetic.scenes" not in loaded and "flagvision.synthetic.backgrounds" not in loaded
    assert "flagvision.synthetic.checkset" in loaded


@pytest.mark.parametrize("framing", FRAMINGS)
def test_every_framing_renders_at_the_smallest_size_the_cli_accepts(framing) -> None:
    """32 px (``data checkset --size 32``): windows, shutters and poles shrink, none degenerates."""
    for i in range(40):
        scene = render_check_scene(FLAG_NAMES[i % len(FLAG_NAMES)], random.Random(f"small/{i}"), 32, framing)
        assert scene.image.size == (32, 32)


def _photograph(width: int = 600, height: int = 400) -> Image.Image:
    """A stand-in for a photograph, made with NumPy alone: a green field with a grain, no flag."""
    rng = np.random.default_rng(5)
    base = np.array([40, 150, 60], np.float32) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def test_photo_framings_draw_the_flag_onto_a_crop_of_the_given_photograph() -> None:
    photo = _photograph()
    for i, name in enumerate(FLAG_NAMES[:8]):
        scene = render_check_scene(name, random.Random(f"p/{i}"), 128, "photo_scene", [photo])
        x0, y0, x1, y1 = scene.boxes[0]
        assert 0.12 * 128 <= x1 - x0 <= 0.35 * 128, (name, scene.boxes)
        pixels = np.asarray(scene.image, np.int16)
        outside = np.ones((128, 128), bool)
        outside[max(0, y0 - 4) : y1 + 4, max(0, x0 - 4) : x1 + 4] = False
        green = (pixels[..., 1] > pixels[..., 0] + 15) & (pixels[..., 1] > pixels[..., 2] + 15)
        assert green[outside].mean() > 0.9, name  # the background is the photograph (and a thin pole)
        x0, y0, x1, y1 = render_check_scene(name, random.Random(f"pv/{i}"), 128, "photo_vertical", [photo]).boxes[0]
        assert y1 - y0 > x1 - x0, (name, (x0, y0, x1, y1))


def test_photo_framings_need_photographs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="photographs"):
        render_check_scene("Italy", random.Random(0), 64, "photo_scene")
    with pytest.raises(ConfigError, match="photographs"):
        make_checkset(tmp_path / "p", per_class=1, size=48, framings=PHOTO_FRAMINGS)
    manifest = make_checkset(tmp_path / "q", per_class=2, size=48, framings=PHOTO_FRAMINGS, photos=[_photograph()])
    assert [e["framing"] for e in manifest["images"][:2]] == list(PHOTO_FRAMINGS) and manifest["photos"] == 1


def test_a_photo_without_a_flag_is_a_crop_of_the_photograph() -> None:
    image = render_photo_without_flag(random.Random(1), [_photograph()], 96)
    pixels = np.asarray(image, np.int16)
    assert image.size == (96, 96) and (pixels[..., 1] > pixels[..., 0] + 15).mean() > 0.95


def test_load_photos_shrinks_big_ones_and_skips_an_unreadable_one_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    _photograph(2400, 600).save(tmp_path / "sub" / "wide.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.txt").write_text("not a photo")
    photos, skipped = load_photos(tmp_path)
    assert [p.size for p in photos] == [(1024, 256)]
    assert len(skipped) == 1 and "broken.jpg" in skipped[0] and "\n" not in skipped[0]
