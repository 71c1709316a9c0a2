"""The flag finder: annotated scenes, boxes near the true ones, nothing in an empty sky, vertical
flags boxed taller than wide, a checkpoint in the workspace, and ``predict --json`` carrying the box."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from flagvision.errors import is_user_error
from flagvision.models.finder import (
    NO_FLAG_FOUND,
    Finder,
    FinderConfig,
    FinderError,
    box_iou,
    crop_for_classifier,
    finder_dir,
    finder_ready,
    train_finder,
)
from flagvision.synthetic.scenes import render_annotated
from fv_helpers import make_pattern_dataset, run_cli

# IoU >= 0.5 is the usual detection criterion (PASCAL VOC); with the mask at a quarter of the
# input size, upsampled twice, a box edge is off by up to 2 px of the 64 px input: a 30 %-wide
# flag still clears 0.5 with room to spare, a wrong place does not.
IOU = 0.5


def _sky(rng: np.random.Generator, n: int) -> Image.Image:
    return Image.new("RGB", (n, n), (120, 170, 230))


@pytest.fixture(scope="session")
def tiny_finder() -> Finder:
    """A finder trained for a few seconds on 64 px scenes (one thread, seeded: the same every time)."""
    import torch

    torch.set_num_threads(1)
    cfg = FinderConfig(input_size=64, width=12, scenes=600, val_scenes=0, epochs=8, workers=1, threads=1)
    return train_finder(cfg)


def _scenes(name: str, vertical: bool, count: int = 8):
    """Flags 30-80 % of the frame wide on a plain sky, from fixed random seeds."""
    out = []
    for i in range(200):
        scene = render_annotated(np.random.default_rng([5, i]), 96, [name], background=_sky,
                                 vertical_share=float(vertical))  # fmt: skip
        box = scene.boxes[0][1]
        if 0.3 * 96 <= box[2] - box[0] <= 0.8 * 96:
            out.append(scene)
        if len(out) == count:
            return out
    raise AssertionError("not enough scenes")


def test_annotated_scenes_know_where_their_flags_are():
    rng = np.random.default_rng(0)
    counts, vertical_tall = set(), []
    for _ in range(40):
        scene = render_annotated(rng, 64)
        assert scene.image.size == (64, 64) and scene.mask.shape == (64, 64)
        assert 0 <= scene.mask.min() and scene.mask.max() <= 1
        counts.add(len(scene.boxes))
        for (_, (x0, y0, x1, y1)), vertical in zip(scene.boxes, scene.vertical, strict=True):
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            assert scene.mask[y0:y1, x0:x1].max() > 0.5  # the mask is flag inside every box
            if vertical and x1 < 64 and y1 < 64 and x0 > 0 and y0 > 0:
                vertical_tall.append(y1 - y0 > x1 - x0)
        if not scene.boxes:
            assert scene.mask.max() == 0
    assert {0, 1, 2} <= counts  # scenes without a flag, with one and with several
    assert vertical_tall and all(vertical_tall)  # a flag hoisted vertically is taller than wide


def test_finder_boxes_a_flag_near_its_true_box(tiny_finder):
    ious = []
    for scene in _scenes("Germany", vertical=False):
        found = tiny_finder.find_flags(scene.image)
        ious.append(max((box_iou(scene.boxes[0][1], d.box) for d in found), default=0.0))
    assert sum(iou >= IOU for iou in ious) >= 6, ious


def test_a_vertical_flag_is_boxed_taller_than_wide(tiny_finder):
    tall = []
    for scene in _scenes("Germany", vertical=True):
        found = tiny_finder.find_flags(scene.image)
        assert found, "a big flag on a plain sky is found"
        x0, y0, x1, y1 = found[0].box
        tall.append(y1 - y0 > x1 - x0)
    assert sum(tall) >= 6, tall
    # The crop a classifier reads keeps it so: letterboxed to a square, not squashed.
    photo = _scenes("Germany", vertical=True, count=1)[0].image
    box = found[0].box
    square = crop_for_classifier(photo, box, mode="letterbox")
    assert square.width == square.height
    squashed = crop_for_classifier(photo, box, mode="squash")
    assert squashed.height > squashed.width


def test_an_empty_sky_has_no_flag(tiny_finder):
    sky = ImageOps.colorize(Image.linear_gradient("L").resize((160, 120)), (40, 95, 180), (190, 215, 240))
    assert tiny_finder.find_flags(sky) == []


def _finder_of_constant_mask(probability: float, squares=((4, 12, 4, 12),), **cfg) -> Finder:
    """A finder whose mask is ``probability`` in ``squares`` of its 16 x 16 cells (rows, then columns; a
    centred square by default) and zero elsewhere (no training)."""
    import torch

    from flagvision.models.finder import FINDER_FORMAT, FinderNet

    config = FinderConfig(input_size=64, width=4, **cfg)
    net = FinderNet(config.width)

    class Square(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = torch.full((x.shape[0], 1, 16, 16), -20.0)
            for top, bottom, left, right in squares:
                logits[..., top:bottom, left:right] = float(np.log(probability / (1 - probability)))
            return logits

    finder = Finder(net, {"format": FINDER_FORMAT, "config": config.to_dict(), "input_size": 64})
    finder.net = Square()
    return finder


def test_a_faint_flag_answers_when_nothing_clears_the_threshold():
    photo = Image.new("RGB", (128, 128), (90, 140, 200))
    faint = _finder_of_constant_mask(0.3)  # below threshold and min_score, above faint_threshold
    (found,) = faint.find_flags(photo)
    assert box_iou(found.box, (32, 32, 96, 96)) > 0.7 and found.score == pytest.approx(0.3, abs=0.01)
    assert _finder_of_constant_mask(0.3, faint_threshold=0.0).find_flags(photo) == []  # off: no flag found
    assert _finder_of_constant_mask(0.1).find_flags(photo) == []  # fainter than faint_threshold: nothing
    (sure,) = _finder_of_constant_mask(0.9).find_flags(photo)
    assert sure.score == pytest.approx(0.9, abs=0.01)


def test_the_finder_is_a_checkpoint_in_the_workspace(tiny_finder, workspace):
    with pytest.raises(FinderError, match="finder train") as missing:
        Finder.from_workspace(workspace)
    assert is_user_error(missing.value)
    tiny_finder.save(finder_dir(workspace))
    loaded = Finder.from_workspace(workspace)
    photo = _scenes("Germany", vertical=False, count=1)[0].image
    assert loaded.find_flags(photo) == tiny_finder.find_flags(photo)
    (finder_dir(workspace) / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(FinderError, match="damaged"):
        Finder.from_workspace(workspace)


def test_first_start_builds_the_finder_only_when_missing_or_from_an_older_generator(tiny_finder, workspace):
    from flagvision.synthetic.scenes import GENERATOR_VERSION

    assert not finder_ready(workspace)  # missing: data builtin (ensure_finder) builds it
    tiny_finder.save(finder_dir(workspace))
    assert tiny_finder.card["generator"] == GENERATOR_VERSION and finder_ready(workspace)
    card = finder_dir(workspace) / "card.json"
    card.write_text(json.dumps({**tiny_finder.card, "generator": "synth-0"}), encoding="utf-8")
    assert not finder_ready(workspace)  # trained on an older generator's scenes: built again


def test_predict_json_carries_the_box_and_says_when_no_flag_is_found(tiny_finder, tmp_path):
    ws = tmp_path / "ws"
    data = make_pattern_dataset(tmp_path / "data", per_class=10)
    out = run_cli("--workspace", str(ws), "train", "--data", str(data), "--epochs", "1", "--image-size", "32")
    assert out.returncode == 0, out.stderr
    ckpt = str(ws / "runs" / "1" / "checkpoint")
    tiny_finder.save(ws / "finder")
    scene = _scenes("Germany", vertical=False, count=1)[0]
    scene.image.save(tmp_path / "flag.png")
    ImageOps.colorize(Image.linear_gradient("L").resize((160, 120)), (40, 95, 180), (190, 215, 240)).save(
        tmp_path / "sky.png"
    )
    out = run_cli("--workspace", str(ws), "predict", "--checkpoint", ckpt, str(tmp_path / "flag.png"),
                  str(tmp_path / "sky.png"), "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    flag, sky = json.loads(out.stdout)["predictions"]
    expected = tiny_finder.find_flags(scene.image)[0]
    assert flag["box"] == list(expected.box) and flag["score"] == pytest.approx(expected.score)
    assert box_iou(tuple(flag["box"]), scene.boxes[0][1]) >= IOU
    assert flag["flags"][0]["box"] == flag["box"] and flag["finder"].endswith("found")
    assert sky["box"] is None and sky["score"] is None and sky["flags"] == [] and sky["finder"] == NO_FLAG_FOUND
    out = run_cli("--workspace", str(ws), "predict", "--checkpoint", ckpt, str(tmp_path / "sky.png"))
    assert NO_FLAG_FOUND in out.stdout
    whole = run_cli("--workspace", str(ws), "predict", "--checkpoint", ckpt, str(tmp_path / "flag.png"),
                    "--whole-photo", "--json")  # fmt: skip
    assert json.loads(whole.stdout)["predictions"][0]["box"] is None
    status = run_cli("--workspace", str(ws), "finder", "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["built"] is True


def test_a_flag_filling_the_frame_is_one_box_not_its_fragments():
    photo = Image.new("RGB", (128, 128), (200, 30, 40))
    stripes = ((1, 6, 1, 15), (10, 15, 1, 15))  # two colour fields of a close-up, 62 % of the photo between them
    (whole,) = _finder_of_constant_mask(0.9, stripes).find_flags(photo)
    assert box_iou(whole.box, (8, 8, 120, 120)) > 0.8 and whole.score == pytest.approx(0.9, abs=0.01)
    apart = _finder_of_constant_mask(0.9, stripes, fill_share=0.0).find_flags(photo)  # off: the fragments
    assert len(apart) == 2 and all(box_iou(d.box, whole.box) < 0.5 for d in apart)
    # two small flags (18 % of the photo together) stay two flags
    assert len(_finder_of_constant_mask(0.9, ((2, 7, 2, 7), (9, 14, 9, 14))).find_flags(photo)) == 2
