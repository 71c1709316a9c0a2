"""Backgrounds drawn with PIL shapes in flag colours, and flag-coloured distractors.

Why these exist: a first, crude generator produced a model that learned which *colours* a flag
has instead of their *layout* (Austria→France, Holland→France, ...), because its backgrounds
never carried flag colours. These backgrounds are drawn from the colours of the flags
themselves, half of the time from the very flag in the scene: red roofs, green foliage, blue
sky, white clouds, yellow and orange walls, coloured shapes and fragments of other flags, so
that layout is the only reliable signal. :func:`distractors` also goes over the photo-like
backgrounds of :mod:`flagvision.synthetic.backgrounds`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache, lru_cache
from typing import cast

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from flagvision.synthetic.cloth import GREENS, ROOFS, WALLS, jitter, pick
from flagvision.synthetic.flags import FLAG_NAMES, render_flag

Array = np.ndarray


@cache
def flag_colors(name: str) -> tuple[tuple[int, int, int], ...]:
    """The flag's own colours: every colour covering at least 2% of its area."""
    image = render_flag(name, 96)
    # An RGB image's colours are (r, g, b) tuples (PIL types them for every mode).
    counts = cast("list[tuple[int, tuple[int, int, int]]]", image.getcolors(maxcolors=96 * 96) or [])
    total = image.width * image.height
    return tuple(rgb for count, rgb in sorted(counts, reverse=True) if count >= 0.02 * total)


@lru_cache(maxsize=1)
def palette() -> tuple[tuple[int, int, int], ...]:
    return tuple(sorted({rgb for name in FLAG_NAMES for rgb in flag_colors(name)}))


_SKIES = (  # (zenith, horizon, light colour on the flag)
    ((40, 95, 180), (170, 205, 235), (1.0, 1.0, 1.0)),
    ((20, 70, 160), (120, 170, 225), (1.0, 1.0, 0.98)),
    ((70, 130, 200), (220, 230, 240), (1.0, 1.0, 1.0)),
    ((120, 125, 135), (200, 200, 205), (0.95, 0.97, 1.0)),  # overcast
    ((45, 55, 110), (250, 160, 80), (1.0, 0.85, 0.7)),  # sunset
    ((90, 60, 120), (245, 130, 110), (1.0, 0.82, 0.75)),  # dusk
    ((240, 170, 90), (255, 220, 160), (1.0, 0.9, 0.78)),  # golden hour
)
_GROUNDS = ((90, 140, 60), (120, 150, 70), (210, 180, 76), (130, 130, 130), (30, 90, 140),
            (150, 120, 90), (200, 200, 195))  # fmt: skip


class Colors:
    """Draws background colours: half of them from the flag in the scene, the rest from all flags."""

    def __init__(self, rng: np.random.Generator, name: str) -> None:
        self.rng = rng
        self.own = flag_colors(name)
        self.all = palette()

    def flag(self) -> tuple[int, int, int]:
        source = self.own if self.rng.random() < 0.5 else self.all
        return jitter(self.rng, pick(self.rng, source), 12)

    def or_flag(self, options: Sequence[tuple[int, int, int]], p_flag: float = 0.35) -> tuple[int, int, int]:
        return self.flag() if self.rng.random() < p_flag else jitter(self.rng, pick(self.rng, options))


def _gradient(n: int, top: Sequence[int], bottom: Sequence[int]) -> Image.Image:
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None, None]
    rows = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return Image.fromarray(np.broadcast_to(rows, (n, n, 3)).astype(np.uint8))


def _value_noise(rng: np.random.Generator, n: int, octaves: int = 3) -> Array:
    """Smooth fractal noise in 0..1 (bicubic-upsampled random grids)."""
    out = np.zeros((n, n), np.float32)
    weight, total = 1.0, 0.0
    cells = int(rng.integers(3, 7))
    for _ in range(octaves):
        grid = Image.fromarray(rng.random((cells, cells), dtype=np.float32), mode="F")
        out += weight * np.asarray(grid.resize((n, n), Image.Resampling.BICUBIC))
        total += weight
        weight *= 0.5
        cells *= 2
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def _clouds(img: Image.Image, rng: np.random.Generator, n: int, horizon: int) -> None:
    mask = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 7))):
        cx, cy = rng.uniform(-0.1, 1.1) * n, rng.uniform(-0.05, 0.6) * max(horizon, n // 3)
        w = rng.uniform(0.1, 0.4) * n
        for _ in range(int(rng.integers(3, 9))):
            ox, oy = rng.normal(0, w / 2.5), rng.normal(0, w / 8)
            r = rng.uniform(0.2, 0.5) * w
            draw.ellipse(
                [cx + ox - r, cy + oy - r * 0.6, cx + ox + r, cy + oy + r * 0.6], fill=int(rng.integers(150, 256))
            )
    mask = mask.filter(ImageFilter.GaussianBlur(n / rng.uniform(25, 60)))
    shade = int(rng.integers(200, 256))
    img.paste(Image.new("RGB", (n, n), (shade, shade, min(255, shade + 5))), (0, 0), mask)


def _buildings(draw: ImageDraw.ImageDraw, rng: np.random.Generator, colors: Colors, n: int, horizon: int) -> None:
    x = -rng.uniform(0, 0.2) * n
    while x < n:
        w = rng.uniform(0.15, 0.5) * n
        top = horizon - rng.uniform(0.1, 0.6) * n
        wall = colors.or_flag(WALLS, 0.4)
        draw.rectangle([x, top, x + w, n], fill=wall)
        if rng.random() < 0.55:  # pitched or flat roof, often red tiles
            roof = colors.or_flag(ROOFS, 0.3)
            rh = rng.uniform(0.04, 0.15) * n
            draw.polygon([(x - 2, top), (x + w + 2, top), (x + w * rng.uniform(0.5, 0.8), top - rh),
                          (x + w * rng.uniform(0.2, 0.5), top - rh)], fill=roof)  # fmt: skip
        glass = pick(rng, ((40, 55, 70), (140, 180, 215), (235, 220, 160), (20, 20, 25), (200, 210, 220)))
        step_x, step_y = rng.uniform(0.05, 0.11) * n, rng.uniform(0.06, 0.12) * n
        ww, wh = step_x * rng.uniform(0.35, 0.7), step_y * rng.uniform(0.4, 0.7)
        frame = (240, 240, 240) if rng.random() < 0.4 else None
        yy = top + step_y * 0.4
        while yy + wh < n:
            xx = x + step_x * 0.3
            while xx + ww < x + w:
                draw.rectangle([xx, yy, xx + ww, yy + wh], fill=jitter(rng, glass, 10), outline=frame)
                xx += step_x
            yy += step_y
        x += w + rng.uniform(-0.02, 0.05) * n


def _trees(draw: ImageDraw.ImageDraw, rng: np.random.Generator, colors: Colors, n: int, horizon: int) -> None:
    for _ in range(int(rng.integers(2, 7))):
        cx, cy = rng.uniform(-0.1, 1.1) * n, horizon - rng.uniform(0.0, 0.35) * n
        r = rng.uniform(0.08, 0.3) * n
        draw.rectangle([cx - r * 0.08, cy, cx + r * 0.08, horizon + 0.1 * n], fill=jitter(rng, (90, 65, 40)))
        base = colors.or_flag(GREENS, 0.2)
        for _ in range(int(rng.integers(12, 30))):
            ox, oy, rr = rng.normal(0, r * 0.5), rng.normal(-r * 0.3, r * 0.45), rng.uniform(0.15, 0.45) * r
            draw.ellipse([cx + ox - rr, cy + oy - rr, cx + ox + rr, cy + oy + rr], fill=jitter(rng, base, 22))


def _foliage(img: Image.Image, rng: np.random.Generator, colors: Colors, n: int) -> None:
    draw = ImageDraw.Draw(img)
    base = colors.or_flag(GREENS, 0.25)
    draw.rectangle([0, 0, n, n], fill=tuple(int(v * 0.5) for v in base))
    for _ in range(int(rng.integers(80, 160))):
        x, y, r = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(0.02, 0.07) * n
        draw.ellipse([x - r, y - r * 0.6, x + r, y + r * 0.6], fill=jitter(rng, base, 35))
    if rng.random() < 0.6:  # sky showing through the leaves
        for _ in range(int(rng.integers(3, 15))):
            x, y, r = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(0.01, 0.05) * n
            draw.ellipse([x - r, y - r, x + r, y + r], fill=jitter(rng, (190, 215, 240), 15))


def _noise_texture(rng: np.random.Generator, colors: Colors, n: int) -> Image.Image:
    stops = np.asarray(
        [colors.flag() if rng.random() < 0.6 else jitter(rng, pick(rng, WALLS)) for _ in range(3)], np.float32
    )
    t = _value_noise(rng, n, int(rng.integers(2, 5)))[..., None] * 2
    lower = (
        np.clip(1 - t, 0, 1) * stops[0] + np.clip(1 - np.abs(t - 1), 0, 1) * stops[1] + np.clip(t - 1, 0, 1) * stops[2]
    )
    return Image.fromarray(lower.astype(np.uint8))


def distractors(
    img: Image.Image, rng: np.random.Generator, colors: Colors, name: str, n: int, fragments: bool = True
) -> None:
    """Flag-coloured shapes and fragments of other flags, so no colour predicts the class.

    ``fragments=False`` leaves the fragments out (the flag finder's scenes: a pasted piece of a
    flag would be a flag that its mask calls background)."""
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 4))):
        kind = rng.random()
        x, y = rng.uniform(-0.1, 1.0) * n, rng.uniform(-0.1, 1.0) * n
        w, h = rng.uniform(0.05, 0.3) * n, rng.uniform(0.05, 0.3) * n
        if kind < 0.35:
            draw.rectangle([x, y, x + w, y + h], fill=colors.flag())
        elif kind < 0.6:
            draw.ellipse([x, y, x + w, y + h], fill=colors.flag())
        elif kind < 0.8:  # awning / striped fabric
            a, b, k = colors.flag(), colors.flag(), int(rng.integers(3, 9))
            for i in range(k):
                draw.rectangle([x + i * w / k, y, x + (i + 1) * w / k, y + h * 0.5], fill=a if i % 2 else b)
        else:
            pts = [(x + rng.uniform(0, w), y + rng.uniform(0, h)) for _ in range(int(rng.integers(3, 6)))]
            draw.polygon(pts, fill=colors.flag())
    if rng.random() < 0.2 and fragments:  # a fragment (at most about half) of another flag, smaller than the flag
        other = pick(rng, [f for f in FLAG_NAMES if f != name])
        tex = render_flag(other, 64)
        fw, fh = tex.size
        cw, ch = int(fw * rng.uniform(0.2, 0.5)), int(fh * rng.uniform(0.25, 0.55))
        cx, cy = int(rng.integers(0, fw - cw + 1)), int(rng.integers(0, fh - ch + 1))
        scale = rng.uniform(0.1, 0.25) * n / max(cw, ch)
        piece = tex.crop((cx, cy, cx + cw, cy + ch)).resize(
            (max(2, int(cw * scale)), max(2, int(ch * scale))), Image.Resampling.BILINEAR
        )
        img.paste(piece, (int(rng.uniform(-0.1, 0.9) * n), int(rng.uniform(-0.1, 0.9) * n)))


def drawn_background(
    rng: np.random.Generator, colors: Colors, name: str, n: int, fragments: bool = True
) -> tuple[Image.Image, tuple[float, float, float]]:
    """A background and the colour of its light (which also falls on the flag)."""
    zenith, horizon_rgb, light = pick(rng, _SKIES)
    kind = rng.choice(5, p=[0.25, 0.25, 0.2, 0.15, 0.15])  # sky, urban, nature, texture, foliage
    if kind <= 2:
        if rng.random() < 0.25:  # sometimes the sky itself takes a flag colour (tinted glass, haze)
            horizon_rgb = colors.flag()
        img = _gradient(n, jitter(rng, zenith, 12), jitter(rng, horizon_rgb, 12))
        horizon = int(n * (rng.uniform(0.55, 1.1) if kind == 0 else rng.uniform(0.5, 0.95)))
        if rng.random() < 0.75:
            _clouds(img, rng, n, horizon)
        draw = ImageDraw.Draw(img)
        if horizon < n:
            draw.rectangle([0, horizon, n, n], fill=colors.or_flag(_GROUNDS, 0.2))
        if kind == 1:
            _buildings(draw, rng, colors, n, horizon)
        elif kind == 2 or (horizon < n and rng.random() < 0.5):
            _trees(draw, rng, colors, n, horizon)
    elif kind == 3:
        img = _noise_texture(rng, colors, n)
        light = (1.0, 1.0, 1.0)
    else:
        img = Image.new("RGB", (n, n))
        _foliage(img, rng, colors, n)
        light = (1.0, 1.0, 0.97)
    distractors(img, rng, colors, name, n, fragments)
    if rng.random() < 0.5:  # depth of field: the background is often softer than the flag
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5) * n / 96))
    return img, light
