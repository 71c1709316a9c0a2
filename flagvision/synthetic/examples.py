"""Example photos for the Predict page: a handful of check scenes, rendered once into the workspace.

They come from the second route (:mod:`flagvision.synthetic.checkset`), not from the generator the
models train on, so trying them says something about what a model learned: whole scenes with a
small flag, close-ups, a flag on a building, one hoisted vertically, two flags in one scene.
Written to ``<workspace>/examples/`` as JPEG files (about a second for all of them) with an
``examples.json`` naming each one's flags and boxes; rendered again when :data:`EXAMPLES_VERSION`
or the check set's version changes.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from flagvision.workspace import Workspace

EXAMPLES_DIR = "examples"
EXAMPLES_VERSION = "examples-1"
EXAMPLE_SIZE = 384  # px, square
# (file stem, flag, framing, random seed, title): whole scenes and close-ups, one vertical, one with two flags
EXAMPLES: tuple[tuple[str, str, str, int, str], ...] = (
    ("france_on_a_pole", "France", "scene_small", 11, "France, a small flag on a pole"),
    ("germany_close_up", "Germany", "closeup", 12, "Germany, close-up"),
    ("sweden_vertical", "Sweden", "vertical", 13, "Sweden, hoisted vertically"),
    ("italy_on_a_building", "Italy", "building", 14, "Italy, on a building"),
    ("greece_close_up", "Greece", "closeup", 15, "Greece, close-up"),
    ("two_flags", "Spain", "two_flags", 16, "Two flags"),
    ("ireland_on_a_pole", "Ireland", "scene_small", 17, "Ireland, a small flag on a pole"),
)


@dataclass(frozen=True)
class ExamplePhoto:
    path: Path
    title: str  # e.g. "France on a pole"
    flags: tuple[str, ...]  # what it shows, for the caption


def examples_dir(ws: Workspace) -> Path:
    return ws.root / EXAMPLES_DIR


def _manifest(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / "examples.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _version() -> str:
    from flagvision.synthetic.checkset import CHECKSET_VERSION

    return f"{EXAMPLES_VERSION}/{CHECKSET_VERSION}"


def _current(folder: Path) -> dict | None:
    """The manifest if it is of this version and every file it names is there, else None."""
    manifest = _manifest(folder)
    if manifest is None or manifest.get("version") != _version():
        return None
    photos = manifest.get("photos")
    if not isinstance(photos, list) or not all(isinstance(i, dict) and (folder / i["file"]).is_file() for i in photos):
        return None
    return manifest


def examples_ready(ws: Workspace) -> bool:
    """Whether the example photos are there (cheap: reads the manifest, renders nothing)."""
    return _current(examples_dir(ws)) is not None


def ensure_examples(ws: Workspace) -> list[ExamplePhoto]:
    """The example photos, rendering them first if they are missing or from an older version."""
    folder = examples_dir(ws)
    manifest = _current(folder)
    if manifest is None:
        manifest = _render(folder)
    return [ExamplePhoto(folder / item["file"], item["title"], tuple(item["flags"])) for item in manifest["photos"]]


def _render(folder: Path) -> dict:
    from flagvision.synthetic.checkset import render_check_scene
    from flagvision.training.checkpoints import write_json_atomic

    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for stem, flag, framing, seed, title in EXAMPLES:
        scene = render_check_scene(flag, random.Random(seed), EXAMPLE_SIZE, framing)
        name = f"{stem}.jpg"
        tmp = folder / f".{name}.tmp"
        scene.image.save(tmp, format="JPEG", quality=90)
        tmp.replace(folder / name)
        photos.append(
            {
                "file": name,
                "title": title,
                "flags": list(scene.flags),
                "framing": framing,
                "boxes": [list(b) for b in scene.boxes],
            }
        )
    manifest = {"version": _version(), "photos": photos}
    write_json_atomic(folder / "examples.json", manifest)  # last: a manifest means every file is there
    return manifest
