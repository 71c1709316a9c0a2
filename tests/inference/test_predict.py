"""Scene search: the views a photo is read in, and which one answers."""

import io

import pytest
import torch
from PIL import Image, ImageOps

from flagvision.inference.predict import (
    SEARCH_GRID,
    SURER_ABOVE,
    TALL_ABOVE,
    WHOLE_ABOVE,
    WHOLE_PHOTO_BONUS,
    choose_view,
    readings,
    scene_views,
    view_of,
)
from flagvision.synthetic.flags import render_flag


def test_scene_views_are_the_photo_then_overlapping_crops_inside_it():
    image = Image.new("RGB", (200, 120))
    views = scene_views(image)
    assert len(views) == 1 + sum(steps * steps for _, steps in SEARCH_GRID) == 14
    assert views[0] == (None, image)
    boxes = [box for box, _ in views[1:]]
    for box, crop in views[1:]:
        left, top, right, bottom = box
        assert 0 <= left < right <= 200 and 0 <= top < bottom <= 120
        assert crop.size == (right - left, bottom - top)
    assert (0, 0, 150, 90) in boxes and (50, 30, 200, 120) in boxes  # 75 % crops reach the corners
    assert (0, 0, 110, 66) in boxes and (90, 54, 200, 120) in boxes and (45, 27, 155, 93) in boxes  # 55 %: centre too


def test_the_whole_photo_answers_unless_a_crop_is_clearly_surer():
    def probs(*tops):  # one row per view, its top class probability first
        return torch.tensor([[t, 1 - t] for t in tops])

    assert choose_view(probs(0.60, 0.65, 0.62)) == 0  # within the bonus: the whole photo keeps its answer
    assert choose_view(probs(0.60, 0.60 + WHOLE_PHOTO_BONUS + 0.05, 0.62)) == 1
    assert choose_view(probs(0.30, 0.50, 0.95)) == 2


def test_a_found_box_is_read_whole_upright_either_way_or_as_cropped():
    photo = (200, 100)
    assert readings((0, 0, 200, 100), photo) == ("whole", "crop")  # a close-up: the finder's box is most of the photo
    assert readings((0, 0, 150, 100), photo) == (("whole", "crop") if 0.75 > WHOLE_ABOVE else ("crop", "whole"))
    assert readings((10, 10, 40, 30), photo) == ("crop",)  # wider than tall and small: as it is
    upright = ("upright", "upright_back")  # a vertical flag seen from the front or the back
    assert readings((10, 10, 30, 31), photo) == ("crop", *upright)  # a little taller than wide (Belgium is 13:15)
    assert readings((10, 10, 30, 10 + int(20 * TALL_ABOVE) + 5), photo) == upright  # a vertical flag
    # a box over SURER_ABOVE of the photo (18 %) may be a close-up the finder cut off: read whole as well
    assert SURER_ABOVE < 0.17 < WHOLE_ABOVE
    assert readings((0, 0, 70, 50), photo) == ("crop", "whole")
    assert readings((0, 0, 40, 90), photo) == (*upright, "whole")


def test_a_vertical_flag_is_turned_back_upright_from_the_front_and_from_the_back():
    flag = render_flag("Lithuania", 60)  # yellow over green over red: upside down it is another pattern
    front = flag.transpose(Image.Transpose.TRANSPOSE)  # hoisted vertically: hoist on top, upper edge on the left
    back = ImageOps.mirror(front)  # the same flag seen from the other side
    assert front.height > front.width
    assert view_of(front, "upright").tobytes() == flag.tobytes()
    # from the back, the plain transpose is upside down; the other turn is the flag's mirror image
    assert view_of(back, "upright").tobytes() == ImageOps.flip(flag).tobytes()
    assert view_of(back, "upright_back").tobytes() == ImageOps.mirror(flag).tobytes()
    assert view_of(front, "crop") is front


def _colour_predictor(temperature: float):
    """A real Predictor over a hand-set two-class network: the redder the image on average, the more
    "Red" (a logit of 10 x the mean normalised red) against "Grey" (9.5 - 10 x it)."""
    from flagvision.inference.predict import Predictor

    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[-10.0, 0.0, 0.0], [10.0, 0.0, 0.0]]))
        net[2].bias.copy_(torch.tensor([9.5, 0.0]))
    card = {"model": "flag_cnn", "class_names": ["Grey", "Red"], "input_size": 32, "temperature": temperature,
            "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}  # fmt: skip
    return Predictor(net, card)


def test_a_sure_whole_photo_answers_for_a_box_read_less_sure():
    from flagvision.inference.predict import CROP_MARGIN, CROP_MODE, WHOLE_SURE
    from flagvision.models.finder import crop_for_classifier
    from fv_helpers import red_cloth_finder, red_patch_photo

    photo = Image.open(io.BytesIO(red_patch_photo())).convert("RGB")  # a red patch on grey, 13 % of the photo
    finder = red_cloth_finder()
    (found,) = finder.find_flags(photo)
    assert readings(found.box, photo.size) == ("crop",)  # a small box: read as cropped only
    crop = crop_for_classifier(photo, found.box, CROP_MARGIN, CROP_MODE)
    for temperature, answer in ((1.0, "Grey"), (0.1, "Red"), (3.0, "Red")):
        predictor = _colour_predictor(temperature)
        whole, cropped = predictor.probabilities([photo, crop])
        (pred,) = predictor.predict_photo(photo, finder, k=2)
        assert pred.box == found.box and pred.label == answer
        if answer == "Grey":  # the whole photo is sure of Grey, the crop less sure of Red: the whole answers
            assert float(whole[0]) >= WHOLE_SURE > float(cropped[1]) > 0.5
            assert pred.confidence == pytest.approx(float(whole[0]), abs=1e-6)
        elif temperature < 1:  # the crop itself is sure: it answers
            assert float(cropped[1]) >= WHOLE_SURE
        else:  # the whole photo is not sure enough to overrule the crop
            assert float(whole.max()) < WHOLE_SURE
