"""Scene search: the views a photo is read in, and which one answers."""

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
