"""The 24 vector flags: names, aspect ratios, and spot checks of colours and layout."""

from __future__ import annotations

import numpy as np
import pytest

from flagvision.synthetic.flags import FLAG_ASPECT, FLAG_NAMES, render_flag

EXPECTED = ("Austria", "Belgium", "Bulgaria", "Croatia", "Czech Republic", "Denmark", "Estonia",
            "Finland", "France", "Germany", "Greece", "Holland", "Hungary", "Ireland", "Italy",
            "Latvia", "Lithuania", "Luxembourg", "Malta", "Slovakia", "Slovenia", "South Cyprus",
            "Spain", "Sweden")  # fmt: skip


def _px(name: str, fx: float, fy: float, width: int = 300) -> np.ndarray:
    """Colour at a fractional position (fx of the width, fy of the height) as int RGB."""
    img = np.asarray(render_flag(name, width), dtype=int)
    h, w = img.shape[:2]
    return img[min(h - 1, int(fy * h)), min(w - 1, int(fx * w))]


def _near(rgb: np.ndarray, target: tuple[int, int, int], tol: int = 40) -> bool:
    return bool(np.abs(rgb - np.asarray(target)).max() <= tol)


RED, WHITE = (200, 16, 46), (255, 255, 255)


def test_names_and_count() -> None:
    assert FLAG_NAMES == EXPECTED
    assert len(set(FLAG_NAMES)) == 24
    assert set(FLAG_ASPECT) == set(FLAG_NAMES)


@pytest.mark.parametrize("name", FLAG_NAMES)
@pytest.mark.parametrize("width", [37, 160])
def test_every_flag_renders_with_official_aspect(name: str, width: int) -> None:
    img = render_flag(name, width)
    assert img.mode == "RGB"
    assert img.size == (width, round(width * FLAG_ASPECT[name]))


def test_official_aspects() -> None:
    assert FLAG_ASPECT["Denmark"] == pytest.approx(28 / 37)
    assert FLAG_ASPECT["Belgium"] == pytest.approx(13 / 15)
    assert FLAG_ASPECT["Estonia"] == pytest.approx(7 / 11)
    assert FLAG_ASPECT["Finland"] == pytest.approx(11 / 18)
    assert FLAG_ASPECT["Sweden"] == pytest.approx(5 / 8)
    assert FLAG_ASPECT["Croatia"] == FLAG_ASPECT["Latvia"] == pytest.approx(1 / 2)


def test_unknown_name_and_bad_width() -> None:
    with pytest.raises(ValueError, match="Austria"):
        render_flag("Atlantis", 100)
    with pytest.raises(ValueError, match="width"):
        render_flag("Austria", 0)


def test_result_is_a_copy() -> None:
    a = render_flag("Austria", 50)
    a.paste((0, 0, 0), (0, 0, 50, 33))
    assert _near(_px("Austria", 0.5, 0.1, 50), RED)


def test_tricolour_layouts() -> None:
    assert _near(_px("Austria", 0.5, 0.02), RED) and _near(_px("Austria", 0.5, 0.5), WHITE)
    assert _near(_px("Austria", 0.5, 0.98), RED)
    assert _near(_px("Italy", 0.1, 0.5), (0, 146, 70)) and _near(_px("Italy", 0.9, 0.5), (206, 43, 55))
    assert _near(_px("France", 0.1, 0.5), (0, 35, 149)) and _near(_px("France", 0.5, 0.5), WHITE)
    assert _near(_px("Germany", 0.5, 0.1), (0, 0, 0)) and _near(_px("Germany", 0.5, 0.9), (255, 206, 0))
    assert _near(_px("Latvia", 0.5, 0.5), WHITE) and not _near(_px("Latvia", 0.5, 0.35), WHITE)  # 2:1:2


def test_holland_and_luxembourg_blues_differ() -> None:
    holland, lux = _px("Holland", 0.5, 0.9), _px("Luxembourg", 0.5, 0.9)
    assert np.abs(holland - lux).sum() > 120
    assert lux[2] > 180 and holland[2] < 160  # light blue vs dark blue


def test_crosses_and_canton() -> None:
    assert _near(_px("Denmark", 14 / 37, 0.1), WHITE)  # vertical bar at 12..16 of 37
    assert _near(_px("Denmark", 0.8, 0.5), WHITE) and _near(_px("Denmark", 0.8, 0.2), RED)
    assert _near(_px("Sweden", 6 / 16, 0.1), (254, 204, 2))
    assert _near(_px("Greece", 0.15, 2.5 / 9), WHITE)  # canton cross
    assert _near(_px("Czech Republic", 0.1, 0.5), (17, 69, 126))  # blue wedge


def test_emblems_where_expected() -> None:
    # Slovakia: the shield sits in the hoist half across all three stripes; the fly is plain blue.
    assert not _near(_px("Slovakia", 0.3, 0.5), (11, 78, 162))
    assert _near(_px("Slovakia", 0.8, 0.5), (11, 78, 162))
    assert _near(_px("Slovakia", 0.3, 0.4), WHITE)  # the double cross on the shield's axis
    assert _near(_px("Slovakia", 0.2, 0.35), (238, 28, 37))  # red field beside it
    assert _near(_px("Slovakia", 0.3, 0.72), (11, 78, 162))  # the middle hill
    # Slovenia: the blue shield rises into the white stripe at a quarter of the length.
    assert not _near(_px("Slovenia", 0.25, 0.25), WHITE)
    assert _near(_px("Slovenia", 0.75, 0.25), WHITE)
    # Croatia: chequy red/white shield in the centre, over the white and blue stripes.
    centre = np.asarray(render_flag("Croatia", 400), dtype=int)[95:140, 170:230].reshape(-1, 3)
    reds = (np.abs(centre - (255, 0, 0)).max(axis=1) < 40).mean()
    whites = (np.abs(centre - (255, 255, 255)).max(axis=1) < 40).mean()
    assert reds > 0.25 and whites > 0.25
    # Spain: arms on the yellow band at a third of the length, not in the fly.
    assert not _near(_px("Spain", 1 / 3, 0.5), (241, 191, 0), 30)
    assert _near(_px("Spain", 0.8, 0.5), (241, 191, 0))
    # Malta: silver George Cross in the canton; Cyprus: copper island in the middle.
    assert _near(_px("Malta", 0.21, 0.2), (199, 201, 200), 30)  # right arm
    assert _near(_px("South Cyprus", 0.45, 0.35), (213, 120, 0), 50)
