"""One dropped photo through the chosen models (the Predict page's path)."""

from __future__ import annotations

import pytest

from flagvision.data.images import ImageError
from flagvision.inference.photos import analyse_photo


def test_analyse_photo_names_a_corrupt_file():
    with pytest.raises(ImageError, match="holiday.jpg"):
        analyse_photo("holiday.jpg", b"garbage", {})
