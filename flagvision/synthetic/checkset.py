"""Check images made by a second, independent route, to test what a synth-trained model learned.

A model trained on :mod:`flagvision.synthetic.scenes` can score perfectly on that generator's own test split
and still fail on flags that merely *look* different. This module draws check images with
deliberately different machinery, sharing only the flat artwork of :func:`flagvision.synthetic.flags.
render_flag`:

- **cloth**: a 3-D ruled surface (a curtain-like fold profile along the length plus a twist)
  seen through a pinhole camera with yaw, pitch and roll, rendered as a mesh of vertical strips,
  each one mapped with a PIL perspective transform and shaded flat by its facet normal (synth uses
  a per-pixel displacement field, normal shading and a homography instead);
- **backgrounds**: PIL's own gradients and blurred white noise colourised with ``ImageOps.colorize``,
  blurred bokeh discs, split horizons and stripes; for the scene framings, photo-like skies
  (colourised gradients, clouds from PIL-enlarged noise grids thresholded by a lookup table, sun
  glare from a radial gradient, haze), facades drawn flat as an elevation (courses, windows,
  shutters) and warped by one PIL perspective transform, trees from blurred ellipse clumps cut by
  noise (synth and :mod:`flagvision.synthetic.backgrounds` compute theirs per pixel with NumPy instead);
- **framings** (:data:`FRAMINGS`): ``closeup`` (the flag fills the frame), ``scene_small`` (a whole
  scene, the flag 10-35 % of the width on a pole against a sky), ``building`` (a flag in front of
  a facade or among trees), ``vertical`` (hoisted vertically as flag protocol does: the pattern
  turned so the hoist runs along the top and the upper edge is on the left, taller than wide,
  hung from a crossbar), ``two_flags`` (two different flags on two poles); each image's flag
  boxes go into the manifest. The older framings (:data:`LEGACY_FRAMINGS`) remain.
  :data:`PHOTO_FRAMINGS` draw the flag onto crops of real photographs the caller gives
  (:func:`load_photos`; ``python -m benchmarks.photo_backgrounds``). A PIL-only
  camera (``ImageEnhance``, unsharp mask, JPEG);
- randomness from Python's ``random.Random`` (seeded with a string per image) rather than
  NumPy's per-image generators.

Limits, honestly: this is still synthetic. It reuses the same vector flags (the same simplified
emblems and the same colour values), so it measures robustness to a change of *rendering style*,
not to real photographs (real cloth, fabric texture, printing errors, faded colours, lens
distortion, other emblem drawings). A good score here is necessary, not sufficient; a bad score
is a reliable warning (e.g. a model that keys on colours rather than layout).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from PIL import Image, ImageOps

from flagvision.config import ConfigError
from flagvision.synthetic.checkset_drawing import (
    RGB,
    Box,
    _backdrop,
    _camera,
    _flag_on_pole,
    _flag_palette,
    _photo_sky,
    _scene_backdrop,
)
from flagvision.synthetic.flags import FLAG_ASPECT, FLAG_NAMES, check_flag_name
from flagvision.workspace import Workspace, staged_folder

CHECKSET_VERSION = "checkset-2"
FRAMINGS = ("closeup", "scene_small", "building", "vertical", "two_flags")
LEGACY_FRAMINGS = ("close", "whole", "small")  # checkset-1: tight crop, whole flag, flag at ~40 % of the width
# Drawn onto crops of real photographs that the caller gives (make_checkset's ``photos``): a flag 20-30 %
# of the width on a pole, and a vertically hoisted flag. Real skies, water, trees and buildings
# rather than drawn ones: what the flag finder meets in a user's photo.
PHOTO_FRAMINGS = ("photo_scene", "photo_vertical")


@dataclass
class CheckScene:
    """One check image and what it shows: each flag's name and box (x0, y0, x1, y1) in pixels."""

    image: Image.Image
    framing: str
    flags: list[str]
    boxes: list[Box]


def photo_backdrop(r: random.Random, photos: Sequence[Image.Image], size: int) -> Image.Image:
    """A square crop of one of ``photos`` (45-90 % of its shorter side, from its upper part, where
    the sky usually is), resized to ``size``."""
    photo = r.choice(photos)
    w, h = photo.size
    side = max(1, int(min(w, h) * r.uniform(0.45, 0.9)))
    x, y = r.randint(0, w - side), r.randint(0, max(0, (h - side) // 3))
    return photo.crop((x, y, x + side, y + side)).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def render_photo_without_flag(r: random.Random, photos: Sequence[Image.Image], size: int = 128) -> Image.Image:
    """A crop of one of ``photos`` (:func:`photo_backdrop`) through the check set's camera, no flag drawn."""
    return _camera(r, photo_backdrop(r, photos, size), size)


def _vertical_width(r: random.Random, name: str, size: int, lo: float, hi: float) -> float:
    """The cloth's width of a vertically hoisted flag ``name``: ``lo``-``hi`` of the frame, and short
    enough that its height stays within 80 % of the frame."""
    tall = 1 / FLAG_ASPECT[name]  # the hoisted flag's height / width
    return min(r.uniform(lo, hi) * size, 0.8 * size / tall)


def render_check_scene(name: str, r: random.Random, size: int = 128, framing: str | None = None,
                       photos: Sequence[Image.Image] = ()) -> CheckScene:  # fmt: skip
    """One check image of flag ``name`` in ``framing`` (one of :data:`FRAMINGS`, the older
    :data:`LEGACY_FRAMINGS`, or :data:`PHOTO_FRAMINGS`, drawn onto a crop of one of ``photos``),
    with the flags' boxes; drawn entirely from ``r``."""
    check_flag_name(name)
    framing = framing or r.choice(FRAMINGS)
    known = FRAMINGS + LEGACY_FRAMINGS + PHOTO_FRAMINGS
    if framing not in known:
        raise ConfigError(f"framing must be one of {', '.join(known)}, got {framing!r}")
    if framing in PHOTO_FRAMINGS and not photos:
        raise ConfigError(f"the {framing} framing draws onto photographs: give at least one")
    palette = _palette_cached()
    flags, boxes = [name], []
    if framing == "photo_scene":
        background = photo_backdrop(r, photos, size)
        centre = (r.uniform(0.25, 0.75) * size, r.uniform(0.2, 0.5) * size)
        boxes.append(_flag_on_pole(r, background, name, r.uniform(0.2, 0.3) * size, centre))
    elif framing == "photo_vertical":
        background = photo_backdrop(r, photos, size)
        centre = (r.uniform(0.3, 0.7) * size, size / 2 + r.uniform(-0.1, 0.1) * size)
        width = _vertical_width(r, name, size, 0.15, 0.3)
        boxes.append(_flag_on_pole(r, background, name, width, centre, vertical=True, yaw_deg=20))
    elif framing in LEGACY_FRAMINGS or framing == "closeup":
        background = _backdrop(r, size, palette) if r.random() < 0.5 or framing != "closeup" else _photo_sky(r, size)
        target = {"close": (1.15, 1.5), "closeup": (1.1, 1.45), "whole": (0.6, 0.85), "small": (0.38, 0.5)}[framing]
        width = r.uniform(*target) * size
        if framing == "closeup":  # a long flag is enlarged until its height fills the frame too
            width *= max(1.0, 0.75 / FLAG_ASPECT[name])
        # a close framing keeps the hoist half (where the emblems are) in view
        if framing in ("close", "closeup"):
            ox = size / 2 + r.uniform(0.05, 0.2) * width
        else:
            ox = size / 2 + r.uniform(-0.1, 0.1) * size
        centre = (ox, size / 2 + r.uniform(-0.1, 0.1) * size)
        boxes.append(_flag_on_pole(r, background, name, width, centre, pole=r.random() < 0.5, yaw_deg=40))
    elif framing == "scene_small":
        background = _scene_backdrop(r, size, palette, ("sky",))
        width = r.uniform(0.1, 0.35) * size
        centre = (r.uniform(0.2, 0.8) * size, r.uniform(0.15, 0.55) * size)
        boxes.append(_flag_on_pole(r, background, name, width, centre))
    elif framing == "building":
        background = _scene_backdrop(r, size, palette, ("building", "building", "trees"))
        width = r.uniform(0.2, 0.45) * size
        centre = (r.uniform(0.3, 0.7) * size, r.uniform(0.25, 0.6) * size)
        boxes.append(_flag_on_pole(r, background, name, width, centre, pole=r.random() < 0.7))
    elif framing == "vertical":
        background = _scene_backdrop(r, size, palette, ("sky", "building", "trees"))
        width = _vertical_width(r, name, size, 0.15, 0.35)
        centre = (r.uniform(0.3, 0.7) * size, size / 2 + r.uniform(-0.1, 0.1) * size)
        boxes.append(_flag_on_pole(r, background, name, width, centre, vertical=True, yaw_deg=20))
    else:  # two_flags: two different flags on two poles
        other = r.choice([n for n in FLAG_NAMES if n != name])
        flags.append(other)
        background = _scene_backdrop(r, size, palette, ("sky", "sky", "building"))
        first_left = r.random() < 0.5
        for flag, left in ((name, first_left), (other, not first_left)):
            width = r.uniform(0.25, 0.38) * size
            cx = (r.uniform(0.22, 0.3) if left else r.uniform(0.7, 0.78)) * size
            boxes.append(_flag_on_pole(r, background, flag, width, (cx, r.uniform(0.3, 0.55) * size), yaw_deg=20))
    img = background
    if r.random() < 0.2:  # seen from the other side: the back of the flag, the pole on the right
        img = ImageOps.mirror(img)
        boxes = [(size - x1, y0, size - x0, y1) for x0, y0, x1, y1 in boxes]
    img = _camera(r, img, size)
    boxes = [(max(0, x0), max(0, y0), min(size, x1), min(size, y1)) for x0, y0, x1, y1 in boxes]
    return CheckScene(img, framing, flags, boxes)


def render_check_image(name: str, r: random.Random, size: int = 128, framing: str | None = None) -> Image.Image:
    """One check image of flag ``name`` (RGB, ``size`` square), drawn entirely from ``r``."""
    if name not in FLAG_NAMES:
        raise ConfigError(f"unknown flag {name!r}; valid names: {', '.join(FLAG_NAMES)}")
    return render_check_scene(name, r, size, framing).image


_PALETTE: list[RGB] = []


def _palette_cached() -> list[RGB]:
    if not _PALETTE:
        _PALETTE.extend(_flag_palette())
    return _PALETTE


def read_checkset_manifest(checkset_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest ``checkset.json`` of a check set folder (images, framings and boxes since checkset-2)."""
    path = Path(checkset_dir) / "checkset.json"
    if not path.is_file():
        raise ConfigError(f"{checkset_dir} has no checkset.json: write one with: python -m flagvision data checkset")
    return cast("dict[str, Any]", json.loads(path.read_text(encoding="utf-8")))


def make_checkset(out_dir: str | os.PathLike[str], per_class: int = 10, seed: int = 1234, size: int = 128,
                  progress: Callable[[int, int], None] | None = None, *,
                  overwrite: bool = False, framings: Sequence[str] = FRAMINGS,
                  photos: Sequence[Image.Image] = ()) -> dict[str, Any]:  # fmt: skip
    """Write an ImageFolder ``out_dir/<Class Name>/<nnn>.jpg`` of check images and return its manifest.

    The images of each class cycle through ``framings`` (default: all of :data:`FRAMINGS`), so
    each class gets every framing once ``per_class`` reaches their number. The manifest
    (``checkset.json`` beside the class folders) lists every image with its framing, its flags
    and their boxes (x0, y0, x1, y1 in pixels); a two-flag image sits in its first flag's folder.
    Written into a temporary sibling folder and renamed at the end; an existing non-empty
    ``out_dir`` raises FileExistsError unless ``overwrite``. :data:`PHOTO_FRAMINGS` draw onto crops
    of ``photos`` (:func:`load_photos`).
    """
    if not 1 <= per_class <= 10_000 or not 32 <= size <= 1024:
        raise ConfigError(f"per_class must be 1..10000 and size 32..1024, got {per_class} and {size}")
    framings = tuple(framings)
    known = FRAMINGS + LEGACY_FRAMINGS + PHOTO_FRAMINGS
    unknown = [f for f in framings if f not in known]
    if not framings or unknown:
        raise ConfigError(f"framings must be among {', '.join(known)}, got {list(framings)}")
    total, done = per_class * len(FLAG_NAMES), 0
    images: list[dict[str, Any]] = []
    with staged_folder(Path(out_dir), overwrite) as tmp:
        for name in FLAG_NAMES:
            folder = tmp / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                r = random.Random(f"{seed}/{name}/{i}")  # str seeds are hashed: stable across runs
                scene = render_check_scene(name, r, size, framings[i % len(framings)], photos)
                scene.image.save(folder / f"{i:03d}.jpg", format="JPEG", quality=r.randrange(60, 96))
                images.append({"file": f"{name}/{i:03d}.jpg", "class": name, "framing": scene.framing,
                               "flags": scene.flags, "boxes": [list(b) for b in scene.boxes]})  # fmt: skip
                done += 1
                if progress:
                    progress(done, total)
        manifest = {"generator": "flagvision.synthetic.checkset", "version": CHECKSET_VERSION, "seed": seed,
                    "per_class": per_class, "size": size, "class_names": list(FLAG_NAMES),
                    "framings": list(framings), "photos": len(photos), "images": images}  # fmt: skip
        (tmp / "checkset.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def load_photos(folder: str | os.PathLike[str], longest_side: int = 1024) -> tuple[list[Image.Image], list[str]]:
    """The photographs in ``folder`` (its image files, recursively), each shrunk to at most
    ``longest_side`` pixels, in path order; and one line per image file that could not be read.
    ConfigError when ``folder`` is not a folder or none of its photographs can be read."""
    from flagvision.data.images import ImageError, is_image_name, open_image

    if not Path(folder).is_dir():
        raise ConfigError(f"{folder}: not a folder")
    photos, skipped = [], []
    for path in sorted(p for p in Path(folder).rglob("*") if is_image_name(p.name)):
        try:
            photo = open_image(path).convert("RGB")
        except ImageError as e:  # a corrupt or odd file costs its own photo only
            skipped.append(str(e))
            continue
        photo.thumbnail((longest_side, longest_side))
        photos.append(photo)
    if not photos:
        raise ConfigError(f"{folder}: no photograph in it could be read")
    return photos, skipped


# -- the workspace's check set (the Runs page's disagreements) ------------------------------------

WORKSPACE_CHECKSET = "checkset"  # <workspace>/checkset/
WORKSPACE_PER_CLASS = 10  # 240 images: every framing twice per flag; about 5 s to draw on one core
WORKSPACE_SEED = 1234


def checkset_dir(ws: Workspace) -> Path:
    """Where a workspace keeps its check set."""
    return ws.root / WORKSPACE_CHECKSET


def checkset_ready(ws: Workspace) -> bool:
    """Whether the workspace has a check set of this version (any size: ``python -m flagvision data
    checkset --out <workspace>/checkset --force`` writes another); cheap, reads the manifest only."""
    try:
        manifest = read_checkset_manifest(checkset_dir(ws))
    except (ConfigError, OSError, ValueError):
        return False
    return manifest.get("version") == CHECKSET_VERSION and bool(manifest.get("images"))


def ensure_checkset(ws: Workspace, progress: Callable[[int, int], None] | None = None) -> Path:
    """The workspace's check set, drawn first (:data:`WORKSPACE_PER_CLASS` per flag, random seed
    :data:`WORKSPACE_SEED`) when it is missing or of an older version."""
    folder = checkset_dir(ws)
    if not checkset_ready(ws):
        make_checkset(folder, per_class=WORKSPACE_PER_CLASS, seed=WORKSPACE_SEED, progress=progress, overwrite=True)
    return folder
