"""One dropped photo through the chosen models (the Predict page's path)."""

from __future__ import annotations

import pytest

from flagvision.data.images import ImageError
from flagvision.inference.photos import analyse_photo


def test_analyse_photo_names_a_corrupt_file():
    with pytest.raises(ImageError, match="holiday.jpg"):
        analyse_photo("holiday.jpg", b"garbage", {})


@pytest.fixture(scope="module")
def predictors():
    """Two small untrained custom CNNs (their answers do not matter here, only the path)."""
    import torch

    from flagvision.config import DataConfig, HyperParams, RunConfig
    from flagvision.inference.predict import Predictor
    from flagvision.models.networks import get_model

    torch.manual_seed(0)
    hp = HyperParams(num_filters_conv1=8, num_filters_conv2=16, fc1_units=64)
    cfg = RunConfig(model="flag_cnn", hparams=hp, data=DataConfig(image_size=32))
    card = {"model": "flag_cnn", "class_names": ["a", "b", "c"], "input_size": 32,
            "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}  # fmt: skip
    return {slot: Predictor(get_model("flag_cnn", 3, cfg), dict(card), source=slot) for slot in ("cnn", "vgg")}


def test_each_found_flag_gets_both_models_answers_on_its_box(predictors):
    from flagvision.inference.photos import draw_boxes
    from fv_helpers import red_cloth_finder, red_patch_photo

    result = analyse_photo("patch.png", red_patch_photo(), predictors, k=3, finder=red_cloth_finder())
    assert result.finder_used and result.note is None
    assert len(result.flags) == 1 and len(result.boxes) == 1
    x0, y0, x1, y1 = result.boxes[0]
    assert abs(x0 - 60) <= 6 and abs(y0 - 40) <= 6 and abs(x1 - 140) <= 6 and abs(y1 - 90) <= 6
    flag = result.flags[0]
    assert set(flag.predictions) == {"cnn", "vgg"} and flag.agreement is not None
    assert all(p.box == result.boxes[0] and p.score is not None for p in flag.predictions.values())
    # Grad-CAM on the crop the models read (context mode: a square around the 80 x 50 box)
    assert all(o.size[0] < result.image.size[0] for o in flag.overlays.values())
    drawn = draw_boxes(result.image, result.boxes)
    top_edge = ((x0 + x1) // 2, y0)  # on the outline; the photo itself is left as it was
    assert result.image.getpixel(top_edge) in ((128, 128, 128), (230, 20, 20))
    assert drawn.getpixel(top_edge) not in ((128, 128, 128), (230, 20, 20))


def test_no_flag_found_classifies_the_whole_photo_and_says_so(predictors):
    from flagvision.models.finder import NO_FLAG_FOUND
    from fv_helpers import red_cloth_finder, red_patch_photo

    grey = red_patch_photo(box=(0, 0, 0, 0), size=(90, 60))  # no red at all
    result = analyse_photo("grey.png", grey, predictors, finder=red_cloth_finder())
    assert result.note == NO_FLAG_FOUND and result.boxes == []
    assert len(result.flags) == 1 and all(p.box is None for p in result.predictions.values())
    assert result.overlays["cnn"].size == (90, 60)  # Grad-CAM on the whole photo


def test_the_cache_recomputes_only_what_changed(predictors, monkeypatch):
    from flagvision.inference.photos import PhotoCache
    from flagvision.inference.predict import Predictor
    from fv_helpers import count_calls, red_cloth_finder, red_patch_photo

    calls = count_calls(monkeypatch, Predictor, ("probabilities", "gradcam"))
    cache, finder, photo = PhotoCache(), red_cloth_finder(), red_patch_photo()
    analyse_photo("p.png", photo, predictors, finder=finder, cache=cache, gradcam=False)
    assert calls == {"probabilities": 2, "gradcam": 0}
    analyse_photo("p.png", photo, predictors, finder=finder, cache=cache, gradcam=True)  # Grad-CAM on
    assert calls == {"probabilities": 2, "gradcam": 2}
    again = analyse_photo("p.png", photo, predictors, finder=finder, cache=cache, gradcam=True)
    assert calls == {"probabilities": 2, "gradcam": 2} and len(again.flags[0].overlays) == 2
    analyse_photo("p.png", photo, {"cnn": predictors["cnn"]}, finder=finder, cache=cache)  # one model off
    assert calls == {"probabilities": 2, "gradcam": 2}
    analyse_photo("p.png", photo, predictors, finder=finder, cache=cache, k=2)  # another option: recomputed
    assert calls["probabilities"] == 4


def test_a_model_trained_on_photos_that_are_not_flags_turns_the_finder_off(predictors):
    from flagvision.inference.photos import finder_off_by, whole_photo_text
    from flagvision.inference.predict import Predictor
    from fv_helpers import red_cloth_finder, red_patch_photo

    leaves = Predictor(predictors["vgg"].model, {**predictors["vgg"].card, "find_flags": False}, source="leaves")
    assert finder_off_by(predictors) == [] and finder_off_by({"cnn": predictors["cnn"], "vgg": leaves}) == ["flag_cnn"]
    finder = red_cloth_finder()
    both = analyse_photo("p.png", red_patch_photo(), {"cnn": predictors["cnn"], "vgg": leaves}, finder=finder)
    assert not both.finder_used and both.boxes == [] and both.note is None
    assert all(p.box is None for p in both.predictions.values())  # both read the same whole photo
    assert analyse_photo("p.png", red_patch_photo(), predictors, finder=finder).boxes  # the control: boxed
    assert whole_photo_text(["Custom CNN"]) == (
        "Custom CNN reads the whole photo: it was trained on photos that are not flags"
    )
