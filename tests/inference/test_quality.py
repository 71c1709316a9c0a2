"""Per-framing evaluation on the check set, and its Markdown report.

The classifier here is a real, tiny one: nearest flat flag (each input shrunk to 12x8 and compared
with the 24 flat flags). It reads a close-up well and a small flag in a whole scene badly, which is
what the report must show. The finder is a real object too: it proposes the manifest's true box
(or a wrong one, or none) for the image it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flagvision.config import ConfigError
from flagvision.inference.predict import Prediction
from flagvision.inference.quality import (
    answer_labels,
    evaluate_framings,
    iou,
    pipeline_calibration,
    square_crop,
    write_quality_md,
)
from flagvision.synthetic.checkset import make_checkset, read_checkset_manifest
from flagvision.synthetic.flags import FLAG_NAMES, render_flag


class NearestFlatFlag:
    label = "nearest flat flag"

    def __init__(self) -> None:
        self.templates = np.stack([self._vector(render_flag(n, 60)) for n in FLAG_NAMES])

    @staticmethod
    def _vector(image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("RGB").resize((12, 8), Image.Resampling.BOX), np.float32).ravel()

    def predict(self, images, k: int = 5) -> list[Prediction]:
        out = []
        for img in images:
            dist = np.linalg.norm(self.templates - self._vector(img), axis=1)
            order = np.argsort(dist)[:k]
            out.append(Prediction([(FLAG_NAMES[i], float(1 / (1 + dist[i]))) for i in order]))
        return out


@dataclass
class Found:
    box: tuple[float, float, float, float]
    score: float


class ManifestFinder:
    """Finds, for each check image, the box the manifest gives it; ``mode`` spoils some answers."""

    def __init__(self, checkset: Path, mode: str = "true") -> None:
        self.mode = mode
        self.by_pixels = {}
        for entry in read_checkset_manifest(checkset)["images"]:
            with Image.open(checkset / entry["file"]) as im:
                self.by_pixels[im.convert("RGB").tobytes()] = entry

    def find_flags(self, image: Image.Image) -> list[Found]:
        entry = self.by_pixels[image.tobytes()]
        if self.mode == "none" or (self.mode == "no vertical" and entry["framing"] == "vertical"):
            return []
        boxes = [Found(tuple(b), 0.9 - 0.1 * i) for i, b in enumerate(entry["boxes"])]
        if self.mode == "corner":  # a confident wrong box beside the true one
            boxes.append(Found((0, 0, 8, 8), 0.99))
        return boxes


@pytest.fixture(scope="module")
def checkset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("q") / "check"
    make_checkset(out, per_class=5, seed=9, size=64)
    return out


def test_whole_photo_accuracy_per_framing(checkset: Path) -> None:
    results = evaluate_framings(NearestFlatFlag(), checkset)
    framings = results["framings"]
    assert list(framings) == ["closeup", "scene_small", "building", "vertical", "two_flags"]
    assert all(f["n"] == 24 for f in framings.values()) and results["overall"]["n"] == 120
    # a flat-flag matcher reads close-ups far better than whole scenes with a small flag
    assert framings["closeup"]["whole_photo"] > framings["scene_small"]["whole_photo"] + 0.3
    assert "finder" not in framings["closeup"] and results["finder"] is None
    assert results["confusions"] and all(c["route"] == "whole photo" for c in results["confusions"])


def test_the_true_box_helps_and_scores_iou_one(checkset: Path) -> None:
    # the exact box: the flat-flag matcher compares the whole input with a flag
    results = evaluate_framings(NearestFlatFlag(), checkset, ManifestFinder(checkset), crop=lambda im, b: im.crop(b))
    small = results["framings"]["scene_small"]
    assert small["finder"] > small["whole_photo"] + 0.3
    assert results["overall"]["iou_mean"] == pytest.approx(1.0) and results["overall"]["iou_hit"] == 1.0
    assert results["overall"]["not_found"] == 0


def test_the_finders_top_box_is_used_and_a_miss_falls_back_to_the_whole_photo(checkset: Path) -> None:
    wrong = evaluate_framings(NearestFlatFlag(), checkset, ManifestFinder(checkset, "corner"))
    assert wrong["overall"]["iou_hit"] == 0.0  # the highest score answers, even when wrong
    missing = evaluate_framings(NearestFlatFlag(), checkset, ManifestFinder(checkset, "no vertical"))
    vertical = missing["framings"]["vertical"]
    assert vertical["not_found"] == 24 and vertical["iou_mean"] == 0.0
    assert vertical["finder"] == vertical["whole_photo"]  # nothing found: the whole photo answers
    assert missing["framings"]["closeup"]["not_found"] == 0


def test_the_report_is_markdown_with_every_framing_and_is_stable(checkset: Path, tmp_path: Path) -> None:
    results = evaluate_framings(NearestFlatFlag(), checkset, ManifestFinder(checkset))
    a = write_quality_md(results, tmp_path / "a.md").read_text(encoding="utf-8")
    b = write_quality_md(results, tmp_path / "b.md").read_text(encoding="utf-8")
    assert a == b
    for framing in ("closeup", "scene_small", "building", "vertical", "two_flags", "**all**"):
        assert f"| {framing} |" in a
    assert "finder IoU" in a and "nearest flat flag" in a and "| finder |" in a
    plain = write_quality_md(evaluate_framings(NearestFlatFlag(), checkset), tmp_path / "c.md").read_text("utf-8")
    assert "finder IoU" not in plain and "| whole photo |" in plain


def test_an_old_check_set_without_boxes_is_refused_plainly(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "checkset.json").write_text('{"version": "checkset-1"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="data checkset"):
        evaluate_framings(NearestFlatFlag(), tmp_path / "old")
    with pytest.raises(ConfigError, match="checkset.json"):
        evaluate_framings(NearestFlatFlag(), tmp_path)


def test_iou_and_square_crop() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    photo = Image.new("RGB", (100, 80))
    tall = square_crop(photo, (40, 10, 50, 50), margin=0.1)  # a vertical flag: 10 x 40
    assert tall.size == (48, 48)  # square around the longer side: the flag keeps its shape
    edge = square_crop(photo, (90, 70, 100, 80), margin=0.5)  # kept inside the photo
    assert edge.size == (20, 20)


# Four answers over three flags: right and sure, wrong and unsure, right on a two-flag image (its
# second flag), wrong and fairly sure.
CLASSES = ["A", "B", "C"]
AFTER = [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.2, 0.7, 0.1]]
BEFORE = [[0.99, 0.005, 0.005], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.2, 0.7, 0.1]]
FLAGS = [["A"], ["B"], ["A", "C"], ["C"]]
TRUE = ["A", "B", "A", "C"]
FRAMINGS = ["closeup", "closeup", "two_flags", "two_flags"]


def test_an_answer_counts_as_right_when_it_is_any_flag_the_image_shows() -> None:
    assert answer_labels(AFTER, FLAGS, TRUE, CLASSES).tolist() == [0, 1, 2, 2]


def test_pipeline_calibration_per_framing_thresholds_and_risk_coverage() -> None:
    cal = pipeline_calibration(BEFORE, AFTER, FLAGS, TRUE, FRAMINGS, CLASSES, 0.65, (0.5, 0.8), (1.0, 0.5))
    overall = cal["overall"]
    assert overall["n"] == 4 and overall["accuracy"] == 0.5
    # 15 bins: 0.9 right (0.1 off), 0.6 wrong (0.6 off), the two 0.7s share a bin half right (0.2 off each)
    assert overall["ece_after"] == pytest.approx((0.1 + 0.6 + 2 * 0.2) / 4)
    assert overall["ece_before"] == pytest.approx((0.01 + 0.6 + 2 * 0.2) / 4, abs=1e-6)
    assert overall["answered"] == 0.75 and overall["answered_accuracy"] == pytest.approx(2 / 3)
    assert list(cal["framings"]) == ["closeup", "two_flags"]
    close, two = cal["framings"]["closeup"], cal["framings"]["two_flags"]
    assert (close["n"], close["accuracy"], close["answered"], close["answered_accuracy"]) == (2, 0.5, 0.5, 1.0)
    assert (two["answered"], two["answered_accuracy"]) == (1.0, 0.5)
    assert [(t["threshold"], t["coverage"], t["accuracy"]) for t in cal["thresholds"]] == [
        (0.5, 1.0, 0.5),
        (0.8, 0.25, 1.0),
    ]
    full, half = cal["risk_coverage"]
    assert (full["share"], full["coverage"], full["accuracy"]) == (1.0, 1.0, 0.5)
    # the surest half: the 0.9 and both tied 0.7s answer together
    assert half["share"] == 0.5 and half["coverage"] == 0.75 and half["threshold"] == pytest.approx(0.7)
