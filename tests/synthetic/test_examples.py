"""The Predict page's example photos: rendered once into the workspace by the second route."""

from __future__ import annotations

from PIL import Image

from flagvision.synthetic.examples import EXAMPLES, ensure_examples, examples_dir, examples_ready


def test_examples_are_rendered_once_and_kept(workspace):
    assert not examples_ready(workspace)
    photos = ensure_examples(workspace)
    assert examples_ready(workspace)
    assert 6 <= len(photos) == len(EXAMPLES) <= 8
    assert all(p.path.parent == examples_dir(workspace) and p.path.is_file() for p in photos)
    framings = {framing for _, _, framing, _, _ in EXAMPLES}
    assert {"closeup", "scene_small", "vertical"} <= framings
    with Image.open(photos[0].path) as img:
        assert img.size[0] == img.size[1] >= 256
    two = next(p for p in photos if p.title == "Two flags")
    assert len(two.flags) == 2 and two.flags[0] == "Spain"
    stamp = photos[0].path.stat().st_mtime_ns
    assert ensure_examples(workspace) == photos and photos[0].path.stat().st_mtime_ns == stamp  # not redrawn
    photos[1].path.unlink()  # a file gone: drawn again
    assert not examples_ready(workspace)
    assert ensure_examples(workspace) == photos and photos[1].path.is_file()
