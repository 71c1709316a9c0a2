"""Photo-like backgrounds: deterministic, every kind at any size, textured (not flat shapes), flag colours."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from flagvision.config import ConfigError
from flagvision.synthetic.backgrounds import BACKGROUND_KINDS, photo_background


def _flat_share(img: Image.Image) -> float:
    """Share of pixels whose 3x3 neighbourhood is one exact colour (flat paint, no texture)."""
    a = np.asarray(img, dtype=np.int16)
    centre = a[1:-1, 1:-1]
    same = np.ones(centre.shape[:2], bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = a[1 + dy : a.shape[0] - 1 + dy, 1 + dx : a.shape[1] - 1 + dx]
            same &= (shifted == centre).all(axis=2)
    return float(same.mean())


def _distinct_colors(img: Image.Image) -> int:
    return len(img.getcolors(img.width * img.height) or [])


def _rectangle_facade(size: int) -> Image.Image:
    """What the old scenes drew: a flat wall with a grid of flat windows under a flat sky."""
    img = Image.new("RGB", (size, size), (120, 170, 225))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, size // 4, size, size], fill=(232, 197, 71))
    for y in range(size // 4 + 6, size - 10, 14):
        for x in range(6, size - 8, 12):
            draw.rectangle([x, y, x + 6, y + 8], fill=(40, 55, 70), outline=(240, 240, 240))
    return img


def test_same_random_seed_same_image_and_seeds_differ() -> None:
    for kind in (*BACKGROUND_KINDS, None):
        a = photo_background(np.random.default_rng(7), 64, kind)
        b = photo_background(np.random.default_rng(7), 64, kind)
        c = photo_background(np.random.default_rng(8), 64, kind)
        assert a.tobytes() == b.tobytes()
        assert a.tobytes() != c.tobytes()


@pytest.mark.parametrize("kind", BACKGROUND_KINDS)
@pytest.mark.parametrize("size", [40, 128, 203])
def test_every_kind_renders_rgb_at_the_asked_size(kind: str, size: int) -> None:
    img = photo_background(np.random.default_rng(size), size, kind)
    assert img.mode == "RGB" and img.size == (size, size)


@pytest.mark.parametrize("kind", BACKGROUND_KINDS)
def test_backgrounds_are_not_flat_shapes(kind: str) -> None:
    old = _rectangle_facade(128)
    # the statistic separates: the old drawing is mostly flat paint with a few colours
    assert _flat_share(old) > 0.5 and _distinct_colors(old) < 50
    for seed in range(6):
        img = photo_background(np.random.default_rng(seed), 128, kind)
        assert _distinct_colors(img) >= 100, (kind, seed)
        if kind in ("brick", "plaster", "trees", "street"):
            assert _flat_share(img) < 0.2, (kind, seed, _flat_share(img))


def test_clouds_vary_across_the_sky_and_a_clear_sky_is_a_gradient() -> None:
    for seed in range(5):
        clouds = np.asarray(photo_background(np.random.default_rng(seed), 96, "clouds"), np.float32).mean(axis=2)
        # clouds make each row vary (a pure vertical gradient has the same value along a row)
        assert (clouds - clouds.mean(axis=1, keepdims=True)).std() > 5
    sky = np.asarray(photo_background(np.random.default_rng(3), 96, "haze"), np.float32)
    assert sky[:, :, 2].std() > 1  # not one flat colour


def _hue_classes(a: np.ndarray) -> dict[str, np.ndarray]:
    r, g, b = (a[..., i].astype(np.int16) for i in range(3))
    return {
        "red": (r > 140) & (g < 100) & (b < 100),
        "blue": (b > 140) & (r < 120) & (b > g + 20),
        "green": (g > r + 15) & (g > b + 15),
        "white": (r > 215) & (g > 215) & (b > 215),
        "yellow": (r > 190) & (g > 150) & (b < 120),
    }


def test_backgrounds_carry_the_colours_of_flags() -> None:
    seen = dict.fromkeys(("red", "blue", "green", "white", "yellow"), 0)
    rng = np.random.default_rng(11)
    for _ in range(80):
        a = np.asarray(photo_background(rng, 64))
        for name, mask in _hue_classes(a).items():
            if mask.mean() > 0.05:
                seen[name] += 1
    # each flag colour covers a real share of several backgrounds, not just a stray pixel
    assert all(count >= 3 for count in seen.values()), seen


def test_unknown_kind_or_size_is_refused_with_the_valid_kinds() -> None:
    with pytest.raises(ConfigError, match="sky"):
        photo_background(np.random.default_rng(0), 64, "moon")
    with pytest.raises(ConfigError):
        photo_background(np.random.default_rng(0), 2)
