"""Photo-like backgrounds from procedural textures, for the generator's scenes.

Every background is computed per pixel with NumPy from a few random parameters, so it is fast
(about 1-3 ms for 128 px on one core) and deterministic for a ``np.random.Generator``:

- **skies**: a zenith-to-horizon gradient, fractal clouds (fBm value noise, softly thresholded
  and shaded from below), haze towards the horizon, sun glare, overcast grey and dusk colours,
  sometimes a distant skyline or treeline silhouette;
- **facades** (``brick``, ``plaster``): a wall plane seen through a pinhole camera with yaw and
  pitch; each pixel's ray gives wall coordinates in metres, from which bricks or stone blocks
  (staggered rows, per-brick colour, mortar that fades when a brick is smaller than a pixel),
  plaster stains, storeys, windows with sky reflections, shutters and ledges are computed;
  light falls off across the wall; the sky shows above the roof line;
- **trees**: canopies from fBm noise against a height-dependent threshold, leaf clumps from a
  finer octave, light from above, autumn colours sometimes, trunks and grass below;
- **street**: a street seen down its length: road with lane markings, pavements, facades on
  both sides (the same wall texture, in world coordinates), sky above, distance haze.

Flag colours appear on purpose (blue sky, white clouds, red roofs and bricks, yellow walls, green
trees, flag-coloured shutters and doors) so colour alone never identifies a flag.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import cast

import numpy as np
from PIL import Image

from flagvision.config import ConfigError
from flagvision.synthetic.flags import FLAG_NAMES, render_flag

Array = np.ndarray

BACKGROUND_KINDS: tuple[str, ...] = ("sky", "clouds", "overcast", "dusk", "haze", "brick", "plaster", "trees", "street")
"""Every kind :func:`photo_background` draws."""

# How often each kind is drawn when ``kind`` is None (skies are the commonest backdrop of a flag).
_KIND_WEIGHTS = np.array([1.0, 1.5, 0.8, 0.7, 0.6, 1.0, 1.0, 1.2, 1.0])
_KIND_WEIGHTS /= _KIND_WEIGHTS.sum()


@lru_cache(maxsize=1)
def flag_palette() -> tuple[tuple[int, int, int], ...]:
    """Every colour covering at least 5 % of some flag (the colours backgrounds must carry too)."""
    colors: set[tuple[int, int, int]] = set()
    for name in FLAG_NAMES:
        image = render_flag(name, 48)
        counts = cast("list[tuple[int, tuple[int, int, int]]]", image.getcolors(48 * 48) or [])
        colors.update(rgb for count, rgb in counts if count > 0.05 * image.width * image.height)
    return tuple(sorted(colors))


def _flag_color(rng: np.random.Generator) -> Array:
    palette = flag_palette()
    return np.asarray(palette[int(rng.integers(len(palette)))], np.float32)


def _jitter(rng: np.random.Generator, rgb: tuple[float, float, float] | Array, amount: float = 15.0) -> Array:
    """``rgb`` with a little random change, as a (3, 1, 1) column: images are channel-first."""
    color = np.asarray(rgb, np.float32).reshape(3) + rng.normal(0.0, amount, 3).astype(np.float32)
    return np.clip(color, 0, 255).reshape(3, 1, 1)


@lru_cache(maxsize=128)
def _upsampler(n: int, cells: int) -> Array:
    """(n, cells + 1) matrix that interpolates a grid of cells + 1 values onto n pixels (smoothstep)."""
    t = (np.arange(n, dtype=np.float64) + 0.5) * cells / n
    i = np.minimum(np.floor(t).astype(np.int64), cells - 1)
    f = t - i
    f = f * f * (3 - 2 * f)
    m = np.zeros((n, cells + 1), np.float32)
    m[np.arange(n), i] = 1 - f
    m[np.arange(n), i + 1] = f
    return m


def _fbm(
    rng: np.random.Generator, n: int, cells: float, octaves: int, stretch: float = 1.0, gain: float = 0.5
) -> Array:
    """Fractal value noise in about 0..1, ``n`` x ``n``: octaves of random grids, each interpolated by
    two small matrix products. ``stretch`` > 1 makes features wider than tall (clouds)."""
    out = np.zeros((n, n), np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        cx = min(n, max(1, round(cells * 2**k)))
        cy = min(n, max(1, round(cells * 2**k * stretch)))
        grid = rng.random((cy + 1, cx + 1), dtype=np.float32)
        out += amp * (_upsampler(n, cy) @ grid @ _upsampler(n, cx).T)
        total += amp
        amp *= gain
    return out / total


def _noise_1d(rng: np.random.Generator, n: int, cells: int) -> Array:
    return _upsampler(n, cells) @ rng.random(cells + 1, dtype=np.float32)


def _smoothstep(lo: float | Array, hi: float | Array, x: Array) -> Array:
    width = hi - lo
    width = max(width, 1e-6) if isinstance(width, float) else np.maximum(width, np.float32(1e-6))
    t = np.clip((x - lo) / width, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _frac(x: Array) -> Array:
    # x - floor(x): np.mod on float32 arrays is ~30x slower than this
    return x - np.floor(x)


def _table(colors: list[Array]) -> Array:
    """(3, k) colour table from k (3, 1, 1) colours, for ``np.take(table, ids, axis=1)``."""
    return np.concatenate(colors, axis=1)[:, :, 0]


def _blend(base: Array, color: Array, weight: Array) -> Array:
    return base + (color - base) * weight


# --- skies --------------------------------------------------------------------------------------

_BLUE_ZENITH = ((35, 85, 170), (20, 70, 160), (60, 115, 195), (45, 100, 200), (70, 130, 210))
_BLUE_HORIZON = ((170, 205, 235), (200, 220, 240), (150, 190, 230), (215, 228, 240))
_DUSK = (  # (zenith, horizon)
    ((45, 55, 110), (250, 160, 80)),
    ((90, 60, 120), (245, 130, 110)),
    ((30, 40, 90), (240, 110, 60)),
    ((120, 90, 140), (255, 200, 130)),
)


def _pick(rng: np.random.Generator, options: tuple) -> Array:
    return np.asarray(options[int(rng.integers(len(options)))], np.float32)


def _sky(rng: np.random.Generator, n: int, kind: str) -> Array:
    """An ``n`` x ``n`` x 3 float sky of ``kind`` (sky, clouds, overcast, dusk, haze)."""
    y = ((np.arange(n, dtype=np.float32) + 0.5) / n)[:, None]
    x = ((np.arange(n, dtype=np.float32) + 0.5) / n)[None, :]
    horizon = float(rng.uniform(0.8, 1.6))  # where the gradient ends, in image heights
    if kind == "overcast":
        g = float(rng.uniform(150, 215))
        zenith, low = _jitter(rng, (g - 25, g - 22, g - 15), 6), _jitter(rng, (g + 15, g + 15, g + 18), 6)
    elif kind == "dusk":
        zenith, low = (_jitter(rng, c, 12) for c in _DUSK[int(rng.integers(len(_DUSK)))])
    elif kind == "haze":
        zenith, low = _jitter(rng, (150, 180, 215), 12), _jitter(rng, (225, 228, 230), 8)
    else:
        zenith, low = _jitter(rng, _pick(rng, _BLUE_ZENITH), 10), _jitter(rng, _pick(rng, _BLUE_HORIZON), 8)
    t = np.clip(y / horizon, 0, 1) ** float(rng.uniform(0.6, 1.6))
    # a photographed sky is never one exact gradient: faint airglow and vignetting
    glow = 0.96 + 0.08 * _fbm(rng, n, 2, 2) - float(rng.uniform(0, 0.12)) * ((x - 0.5) ** 2 + (y - 0.5) ** 2)
    img = (zenith + (low - zenith) * t) * glow

    if kind in ("clouds", "overcast", "dusk") or (kind == "sky" and rng.random() < 0.3):
        cover = {"clouds": rng.uniform(0.35, 0.65), "overcast": rng.uniform(0.1, 0.45)}.get(
            kind, rng.uniform(0.55, 0.7)
        )
        gain = 0.4 if kind == "overcast" else 0.55  # an overcast sky is smoother
        d = _fbm(rng, n, float(rng.uniform(1.5, 4)), 5, stretch=float(rng.uniform(0.4, 1.0)), gain=gain)
        cloud = _smoothstep(cover, cover + rng.uniform(0.08, 0.25), d)
        # lit from above: brighter where the density rises towards the top of a cloud
        under = np.clip((np.roll(d, -max(1, n // 40), axis=0) - d) * 6.0, -0.5, 0.5)
        if kind == "dusk":
            lit, shadow = _jitter(rng, (255, 190, 150), 12), _jitter(rng, (110, 80, 110), 12)
        elif kind == "overcast":
            lit, shadow = (
                np.full((3, 1, 1), img.mean() + 35.0, np.float32),
                np.full((3, 1, 1), img.mean() - 45.0, np.float32),
            )
        else:
            lit, shadow = _jitter(rng, (250, 250, 252), 4), _jitter(rng, (165, 172, 185), 10)
        shade = np.clip(0.75 + under - 0.5 * (d - cover), 0, 1)
        color = shadow + (lit - shadow) * shade
        img = _blend(img, color, cloud * float(rng.uniform(0.75, 1.0)))
    if kind in ("sky", "clouds", "dusk", "haze") and rng.random() < 0.45:  # the sun's glare
        sx, sy = rng.uniform(-0.2, 1.2), rng.uniform(-0.2, 0.9 if kind == "dusk" else 0.6)
        r2 = (x - sx) ** 2 + (y - sy) ** 2
        glare = float(rng.uniform(0.4, 1.0)) * np.exp(-r2 / float(rng.uniform(0.002, 0.02)))
        glare += float(rng.uniform(0.1, 0.4)) * np.exp(-np.sqrt(r2) / float(rng.uniform(0.1, 0.4)))
        img = _blend(img, _jitter(rng, (255, 248, 225), 5), np.clip(glare, 0, 1))
    if kind == "haze" or rng.random() < 0.3:
        haze = np.clip(y / horizon, 0, 1) ** float(rng.uniform(1.0, 3.0)) * float(rng.uniform(0.3, 0.8))
        img = _blend(img, _jitter(rng, (225, 225, 228), 8), np.broadcast_to(haze, (n, n)))
    if rng.random() < 0.35:  # a distant skyline or treeline along the bottom
        top = 1 - float(rng.uniform(0.05, 0.3)) + 0.12 * (_noise_1d(rng, n, int(rng.integers(4, 24))) - 0.5)
        city = rng.random() < 0.5
        if city:  # flat-topped blocks
            top = np.repeat(top[:: max(1, n // 12)], max(1, n // 12))[:n]
            top = np.pad(top, (0, n - len(top)), mode="edge")
        silhouette = _smoothstep(top[None, :] - 0.004, top[None, :] + 0.004, np.broadcast_to(y, (n, n)))
        tone = _jitter(rng, (95, 100, 110) if city else (55, 80, 60), 12)
        img = _blend(img, tone + (low - tone) * np.float32(0.35), silhouette)
    return img


# --- walls --------------------------------------------------------------------------------------

_WALLS = ((232, 220, 192), (232, 197, 71), (217, 164, 65), (224, 123, 57), (181, 82, 59), (236, 236, 230),
          (200, 90, 80), (150, 170, 190), (215, 200, 170), (240, 220, 120))  # fmt: skip
_BRICKS = ((150, 60, 45), (170, 80, 55), (120, 55, 40), (185, 110, 70), (200, 170, 120), (110, 100, 95))
_SHUTTERS = ((40, 90, 50), (120, 40, 35), (40, 60, 110), (90, 90, 90), (230, 230, 225))
_ROOFS = ((160, 57, 43), (122, 46, 34), (85, 85, 85), (47, 79, 111))


# Material indices of a wall's colour table (:meth:`_Wall.table`).
_WALL, _GLASS, _FRAME, _SHUTTER, _MORTAR, _ROOF = range(6)


class _Wall:
    """One facade style: material, colours and the grid of storeys and windows (metres)."""

    def __init__(self, rng: np.random.Generator, brick: bool) -> None:
        self.brick = brick
        if brick:
            self.color = _jitter(rng, _pick(rng, _BRICKS) if rng.random() < 0.8 else _flag_color(rng), 12)
            stone = rng.random() < 0.3
            self.unit = (0.6, 0.3) if stone else (0.24, 0.075)  # block length, height
            self.mortar = _jitter(rng, (200, 195, 185) if rng.random() < 0.7 else (90, 85, 80), 10)
        else:
            self.color = _jitter(rng, _pick(rng, _WALLS) if rng.random() < 0.75 else _flag_color(rng), 10)
            self.unit = (0.0, 0.0)
            self.mortar = self.color
        self.bay = float(rng.uniform(2.4, 4.0))  # window spacing
        self.storey = float(rng.uniform(2.8, 3.6))
        self.win = (float(rng.uniform(0.35, 0.6)) * self.bay, float(rng.uniform(0.4, 0.6)) * self.storey)
        self.win_bottom = float(rng.uniform(0.15, 0.3)) * self.storey
        self.frame = _jitter(rng, (235, 235, 230) if rng.random() < 0.7 else (60, 50, 45), 8)
        self.glass = _jitter(rng, (55, 70, 90), 12)
        self.shutter: Array | None = None
        if rng.random() < 0.4:
            self.shutter = _jitter(rng, _pick(rng, _SHUTTERS) if rng.random() < 0.6 else _flag_color(rng), 8)
        self.ledges = rng.random() < 0.6
        self.roof = _jitter(rng, _pick(rng, _ROOFS), 10)

    def table(self) -> Array:
        """Colours indexed by the material indices (_WALL ... _ROOF)."""
        shutter = self.color if self.shutter is None else self.shutter
        return _table([self.color, self.glass, self.frame, shutter, self.mortar, self.roof])

    def layout(
        self, rng: np.random.Generator, u: Array, v: Array, footprint: Array
    ) -> tuple[Array, Array, Array | None]:
        """Material index, brightness and mortar weight (bricks only) at wall coordinates ``u``
        (along, metres) and ``v`` (height, metres); ``footprint`` is a pixel's size in metres
        there (mortar fades where a brick is only a pixel or two high)."""
        n = u.shape[0]
        ids = np.zeros(u.shape, np.intp)
        shade = 0.85 + 0.3 * _fbm(rng, n, 3, 4)  # stains and weathering
        mortar = None
        if self.brick:
            bw, bh = self.unit
            row = np.floor(v / bh)
            shifted = u / bw + 0.5 * _frac(row * 0.5) * 2  # odd rows shifted by half a brick
            col = np.floor(shifted)
            h = ((row.astype(np.int64) * 73856093) ^ (col.astype(np.int64) * 19349663)) & 1023
            shade *= 0.82 + (0.36 / 1023) * h.astype(np.float32)
            fu, fv = shifted - col, v / bh - row
            edge = np.minimum(np.minimum(fu, 1 - fu) * bw, np.minimum(fv, 1 - fv) * bh)
            mortar = (edge < 0.012).astype(np.float32) * np.clip(bh / footprint / 2.5 - 0.6, 0, 1)
        fu = _frac(u / self.bay) * self.bay - (self.bay - self.win[0]) / 2
        fv = _frac(v / self.storey) * self.storey - self.win_bottom
        upper = v > self.storey * 0.3  # no windows at the foot of the wall
        rows = (fv > 0) & (fv < self.win[1]) & upper
        inside = rows & (fu > 0) & (fu < self.win[0])
        rim = 0.08
        frame = (fu > -rim) & (fu < self.win[0] + rim) & (fv > -rim) & (fv < self.win[1] + rim) & upper & ~inside
        frame |= inside & ((np.abs(fu - self.win[0] / 2) < 0.04) | (np.abs(fv - self.win[1] * 0.65) < 0.04))
        ids[inside] = _GLASS
        shade = np.where(inside, 0.75 + 1.0 * np.clip(fv / self.win[1], 0, 1), shade)  # the sky's reflection
        ids[frame] = _FRAME
        if self.shutter is not None:
            side = rows & (
                ((fu > -self.win[0] / 2 - rim) & (fu < -rim))
                | ((fu > self.win[0] + rim) & (fu < self.win[0] * 1.5 + rim))
            )
            ids[side] = _SHUTTER
            shade = np.where(side, 0.85 + 0.15 * (_frac(fv / 0.08) < 0.5).astype(np.float32), shade)
        if self.ledges:  # a ledge under each row of windows, its shadow below
            fl = _frac((v - self.win_bottom + 0.12) / self.storey) * self.storey
            shade = shade * np.where(
                fl < 0.12, np.float32(1.2), np.where(fl > self.storey - 0.15, np.float32(0.72), np.float32(1.0))
            )
        if mortar is not None:
            mortar *= ids == _WALL
        return ids, shade, mortar


def _paint(table: Array, ids: Array, shade: Array, mortar: Array | None, mortar_color: Array) -> Array:
    img = np.take(table, ids, axis=1) * shade
    if mortar is not None:
        img = _blend(img, mortar_color * shade, mortar)
    return img


def _camera_rays(n: int, yaw: float, pitch: float, fov: float) -> tuple[Array, Array, Array]:
    """World directions (dx, dy, dz) of every pixel's ray; y up, z forward at yaw 0."""
    f = 1.0 / math.tan(fov / 2)
    s = (np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1
    px, py = np.meshgrid(s, -s)  # py: up
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    # pitch about x, then yaw about y
    y1, z1 = py * cp + f * sp, -py * sp + f * cp
    return px * cy + z1 * sy, y1, -px * sy + z1 * cy


def _facade(rng: np.random.Generator, n: int, brick: bool) -> Array:
    """A wall plane z = distance seen by a camera with yaw and pitch; the sky above its roof line."""
    wall = _Wall(rng, brick)
    fov = math.radians(float(rng.uniform(45, 75)))
    distance = float(rng.uniform(3, 9) if brick else rng.uniform(5, 18))
    dx, dy, dz = _camera_rays(
        n, math.radians(float(rng.uniform(-50, 50))), math.radians(float(rng.uniform(-5, 30))), fov
    )
    hit = dz > 1e-3
    t = distance / np.maximum(dz, np.float32(1e-3))
    u = float(rng.uniform(0, 10)) + t * dx
    v = float(rng.uniform(1.5, 12.0)) + t * dy  # the eye's height plus the ray's rise
    height = wall.storey * float(rng.integers(2, 7)) + 0.6
    footprint = t * (2 / n) * math.tan(fov / 2)
    ids, shade, mortar = wall.layout(rng, u, v, footprint)
    roof = (v >= height - 0.6) & (v < height)
    ids[roof] = _ROOF
    shade = np.where(roof, 0.8 + 0.2 * (_frac(u / 0.3) < 0.5).astype(np.float32), shade)
    # light across the wall (its turn towards the sun)
    shade *= float(rng.uniform(0.75, 1.1)) + float(rng.uniform(-0.25, 0.25)) * np.tanh(u / 10)
    img = _paint(wall.table(), ids, shade, mortar, wall.mortar)
    above = ~hit | (v >= height) | (v < 0)
    return np.where(above, _sky(rng, n, "clouds" if rng.random() < 0.5 else "sky"), img)


# --- trees --------------------------------------------------------------------------------------

_GREENS = ((46, 94, 46), (76, 122, 46), (107, 142, 35), (31, 61, 31), (60, 110, 60), (90, 130, 70))
_AUTUMN = ((190, 90, 30), (200, 150, 40), (150, 50, 30), (210, 180, 60))


def _trees(rng: np.random.Generator, n: int) -> Array:
    img = _sky(rng, n, ("sky", "clouds", "overcast", "haze")[int(rng.integers(4))])
    y = np.broadcast_to(((np.arange(n, dtype=np.float32) + 0.5) / n)[:, None], (n, n))
    ground = 1 - float(rng.uniform(0.0, 0.25))
    grass = _jitter(rng, _pick(rng, _GREENS), 15) * (0.8 + 0.4 * _fbm(rng, n, 8, 3))
    img = np.where(y > ground, grass, img)
    xs = (np.arange(n, dtype=np.float32) + 0.5) / n
    for _ in range(int(rng.integers(0, 4))):  # trunks
        tx, w = float(rng.uniform(0, 1)), float(rng.uniform(0.015, 0.05))
        bend = (y - 1) * float(rng.uniform(-0.1, 0.1))
        trunk = np.abs(xs[None, :] - tx - bend) < w * (1.3 - 0.5 * y)
        bark = _jitter(rng, (75, 60, 45), 12) * (0.7 + 0.5 * _fbm(rng, n, 12, 2, stretch=4.0))
        img = np.where(trunk, bark, img)
    density = _fbm(rng, n, float(rng.uniform(2, 5)), 5, gain=0.6)
    full = rng.random() < 0.25  # a hedge or a canopy filling the frame
    thr = 0.35 if full else float(rng.uniform(0.4, 0.55)) + float(rng.uniform(0.0, 0.4)) * (0.5 - y)
    canopy = _smoothstep(thr - 0.02, thr + 0.02, density)
    leaves = _fbm(rng, n, float(rng.uniform(16, 40)), 2)
    if rng.random() < 0.2:
        a, b = _jitter(rng, _pick(rng, _AUTUMN), 15), _jitter(rng, _pick(rng, _GREENS), 15)
    else:
        a, b = _jitter(rng, _pick(rng, _GREENS), 15), _jitter(rng, _pick(rng, _GREENS), 15)
    mix = _smoothstep(0.35, 0.65, _fbm(rng, n, 2, 2))
    color = a + (b - a) * mix
    light = np.clip(0.55 + 1.4 * (density - thr) + 0.5 * (leaves - 0.5) + 0.2 * (0.5 - y), 0.25, 1.3)
    return _blend(img, color * light, canopy)


# --- street -------------------------------------------------------------------------------------


def _street(rng: np.random.Generator, n: int) -> Array:
    """A street seen down its length: road, pavements, facades on both sides, sky, distance haze."""
    fov = math.radians(float(rng.uniform(50, 75)))
    yaw, pitch = math.radians(float(rng.uniform(-20, 20))), math.radians(float(rng.uniform(-5, 15)))
    dx, dy, dz = _camera_rays(n, yaw, pitch, fov)
    eye = float(rng.uniform(1.4, 2.0))
    half = float(rng.uniform(5, 12))  # building line from the street's centre
    road = float(rng.uniform(0.45, 0.75)) * half
    far = np.float32(1e6)
    t_ground = np.where(dy < -1e-4, eye / np.maximum(-dy, np.float32(1e-4)), far)
    left = dx < 0
    t_wall = np.where(np.abs(dx) > 1e-4, half / np.maximum(np.abs(dx), np.float32(1e-4)), far)
    along, height = t_wall * dz, eye + t_wall * dy
    segment = np.floor(along / float(rng.uniform(8, 16)) + left.astype(np.float32) * 0.5).astype(np.int64) & 63
    tops = rng.uniform(7, 22, 64).astype(np.float32)
    is_wall = (t_wall < t_ground) & (height < tops[segment]) & (t_wall < far)
    is_ground = (t_ground <= t_wall) & (t_ground < far)
    wall = _Wall(rng, rng.random() < 0.4)
    footprint = t_wall * (2 / n) * math.tan(fov / 2)
    ids, shade, mortar = wall.layout(rng, along, np.maximum(height, 0), footprint)
    shade = shade * np.where(left, np.float32(rng.uniform(0.7, 1.0)), np.float32(rng.uniform(0.8, 1.1)))
    # colour table: the wall's materials, then the ground's, then one tint per building
    asphalt = _jitter(rng, np.full(3, rng.uniform(55, 110)) + (0, 0, 4), 3)
    paving = _jitter(rng, np.full(3, rng.uniform(140, 190)) - (0, 4, 12), 5)
    line = _jitter(rng, (235, 235, 230) if rng.random() < 0.7 else (230, 190, 40), 6)
    tints = [_jitter(rng, _pick(rng, _WALLS) if rng.random() < 0.7 else _flag_color(rng), 10) for _ in range(8)]
    table = np.concatenate([wall.table(), _table([asphalt, paving, line, *tints])], axis=1)
    if not wall.brick:  # plastered buildings each get their own colour
        ids = np.where(ids == _WALL, 9 + (segment & 7), ids)
    gx, gz = t_ground * dx, t_ground * dz
    kerb = np.abs(gx) < road
    tile = (_frac(gx / 0.5) < 0.08) | (_frac(gz / 0.5) < 0.08)
    dashes = (np.abs(gx) < 0.08) & (_frac(gz / 6) < 0.5)
    ground_ids = np.where(dashes, 8, np.where(kerb, 6, 7))
    ground_shade = np.where(kerb, 0.85 + 0.3 * _fbm(rng, n, 16, 2), np.where(tile, np.float32(0.8), np.float32(1.0)))
    ids = np.where(is_ground, ground_ids, ids)
    shade = np.where(is_ground, ground_shade, shade)
    if mortar is not None:
        mortar *= is_wall
    img = _paint(table, ids, shade, mortar, wall.mortar)
    img = np.where(
        is_wall | is_ground, img, _sky(rng, n, ("sky", "clouds", "overcast", "haze", "dusk")[int(rng.integers(5))])
    )
    distance = np.minimum(np.minimum(t_wall, t_ground), np.float32(400))
    haze = (1 - np.exp(-distance / float(rng.uniform(80, 300)))) * (is_wall | is_ground)
    return _blend(img, _jitter(rng, (200, 205, 215), 8), haze)


def draw_kind(rng: np.random.Generator) -> str:
    """A background kind drawn at random (skies most often)."""
    return BACKGROUND_KINDS[int(rng.choice(len(BACKGROUND_KINDS), p=_KIND_WEIGHTS))]


def photo_background(rng: np.random.Generator, size: int, kind: str | None = None) -> Image.Image:
    """A photo-like background, RGB ``size`` x ``size``, drawn from ``rng`` alone.

    ``kind`` is one of :data:`BACKGROUND_KINDS`; None draws one at random (skies most often).
    """
    if kind is None:
        kind = draw_kind(rng)
    if kind not in BACKGROUND_KINDS:
        raise ConfigError(f"unknown background kind {kind!r}; valid kinds: {', '.join(BACKGROUND_KINDS)}")
    if not isinstance(size, int) or not 8 <= size <= 4096:
        raise ConfigError(f"size must be an integer 8..4096, got {size!r}")
    if kind in ("brick", "plaster"):
        img = _facade(rng, size, kind == "brick")
    elif kind == "trees":
        img = _trees(rng, size)
    elif kind == "street":
        img = _street(rng, size)
    else:
        img = _sky(rng, size, kind)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0).copy(), "RGB")
