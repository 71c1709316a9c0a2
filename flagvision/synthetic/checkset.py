"""Check images made by a second, independent route, to test what a synth-trained model learned.

A model trained on :mod:`flagvision.synthetic.scenes` can score perfectly on that generator's own test split
and still fail on flags that merely *look* different. This module draws check images with
deliberately different machinery, sharing only the flat artwork of :func:`flagvision.synthetic.flags.
render_flag`:

- **cloth**: a 3-D ruled surface (a curtain-like fold profile along the length plus a twist)
  seen through a pinhole camera with yaw, pitch and roll, rendered as a mesh of vertical strips,
  each one mapped with a PIL perspective transform and shaded flat by its facet normal (synth uses
  a per-pixel displacement field, normal shading and a homography instead);
- **backgrounds**: PIL's own gradients and blurred white noise colourised with ``ImageOps.colorize``,
  blurred bokeh discs, split horizons and stripes (synth draws skies, buildings, trees);
- **framing**: three fixed framings (tight crop inside the flag, whole flag, flag at ~40% of the
  width) and a PIL-only camera (``ImageEnhance``, unsharp mask, JPEG);
- randomness from Python's ``random.Random`` (seeded with a string per image) rather than
  NumPy's per-image generators.

Limits, honestly: this is still synthetic. It reuses the same vector flags (the same simplified
emblems and the same colour values), so it measures robustness to a change of *rendering style*,
not to real photographs (real cloth, fabric texture, printing errors, faded colours, lens
distortion, other emblem drawings). A good score here is necessary, not sufficient; a bad score
is a reliable warning (e.g. a model that keys on colours rather than layout).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from flagvision.config import ConfigError
from flagvision.synthetic.flags import FLAG_NAMES, render_flag

CHECKSET_VERSION = "checkset-1"
FRAMINGS = ("close", "whole", "small")

RGB = tuple[int, int, int]


def _flag_palette() -> list[RGB]:
    colors: set[RGB] = set()
    for name in FLAG_NAMES:
        image = render_flag(name, 48)
        # An RGB image's colours are (r, g, b) tuples (PIL types them for every mode).
        for count, rgb in cast("list[tuple[int, RGB]]", image.getcolors(48 * 48) or []):
            if count > 0.05 * image.width * image.height:
                colors.add(rgb)
    return sorted(colors)


def _any_color(r: random.Random, palette: list[RGB]) -> RGB:
    if r.random() < 0.6:
        return r.choice(palette)
    return (r.randrange(256), r.randrange(256), r.randrange(256))


def _backdrop(r: random.Random, size: int, palette: list[RGB]) -> Image.Image:
    """A background from PIL's generators; flag colours are frequent on purpose."""
    kind = r.randrange(5)
    if kind == 0:  # colourised linear gradient, any direction
        g = Image.linear_gradient("L").rotate(r.uniform(0, 360), resample=Image.Resampling.BILINEAR, expand=False)
        g = g.resize((size, size))
        img = ImageOps.colorize(g, _any_color(r, palette), _any_color(r, palette)).convert("RGB")
    elif kind == 1:  # radial glow
        g = Image.radial_gradient("L").resize((size, size))
        img = ImageOps.colorize(g, _any_color(r, palette), _any_color(r, palette), _any_color(r, palette)).convert(
            "RGB"
        )
    elif kind == 2:  # blurred noise: foliage, gravel, crowd
        # (Image.effect_noise would be simpler but draws from C rand(), which no seed controls.)
        noise = np.random.default_rng(r.getrandbits(64)).normal(128, r.uniform(40, 120), (size, size))
        g = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(r.uniform(1, 5)))
        g = ImageOps.autocontrast(g)
        img = ImageOps.colorize(g, _any_color(r, palette), _any_color(r, palette)).convert("RGB")
    elif kind == 3:  # horizon: two bands with a soft edge
        img = Image.new("RGB", (size, size), _any_color(r, palette))
        horizon = int(size * r.uniform(0.3, 0.8))
        ImageDraw.Draw(img).rectangle([0, horizon, size, size], fill=_any_color(r, palette))
        img = img.filter(ImageFilter.GaussianBlur(size / 40))
    else:  # wide stripes (a wall, a banner, a striped tent)
        img = Image.new("RGB", (size, size), _any_color(r, palette))
        draw = ImageDraw.Draw(img)
        step = r.uniform(0.08, 0.3) * size
        a, b = _any_color(r, palette), _any_color(r, palette)
        for i in range(int(size / step) + 2):
            if r.random() < 0.5:
                draw.rectangle([i * step, 0, (i + 0.5) * step, size], fill=a if i % 2 else b)
        img = img.rotate(r.uniform(-60, 60), resample=Image.Resampling.BILINEAR, fillcolor=b)
    draw = ImageDraw.Draw(img)
    for _ in range(r.randrange(0, 12)):  # bokeh discs
        x, y, rad = r.uniform(0, size), r.uniform(0, size), r.uniform(0.02, 0.12) * size
        draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=_any_color(r, palette))
    return img.filter(ImageFilter.GaussianBlur(r.uniform(0.5, 3.0) * size / 128))


def _perspective_coeffs(dst: list[tuple[float, float]], src: list[tuple[float, float]]) -> list[float]:
    """PIL PERSPECTIVE coefficients mapping output points ``dst`` to input points ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return np.linalg.solve(np.asarray(rows, float), np.asarray(rhs, float)).tolist()


def _mesh_flag(r: random.Random, name: str, size: int, framing: str) -> tuple[Image.Image, Image.Image]:
    """The flag as a shaded strip mesh: (RGB layer, L coverage mask), both ``size`` x ``size``."""
    tex = render_flag(name, 320)
    tw, th = tex.size
    aspect = th / tw
    strips = 28
    amp, freq, phase = r.uniform(0.0, 0.09), r.uniform(0.8, 2.5), r.uniform(0, 2 * math.pi)
    twist = r.uniform(-0.08, 0.08)
    yaw, pitch, roll = (
        math.radians(r.uniform(-40, 40)),
        math.radians(r.uniform(-15, 15)),
        math.radians(r.uniform(-10, 10)),
    )

    def point(u: float, v: float) -> tuple[float, float, float]:
        z = amp * u * math.sin(2 * math.pi * freq * u + phase) + twist * (v - 0.5) * u
        x, y = u - 0.5, (v - 0.5) * aspect
        # yaw about y, pitch about x, roll about the view axis; camera 2.5 flag lengths away
        x, z = x * math.cos(yaw) + z * math.sin(yaw), -x * math.sin(yaw) + z * math.cos(yaw)
        y, z = y * math.cos(pitch) - z * math.sin(pitch), y * math.sin(pitch) + z * math.cos(pitch)
        x, y = x * math.cos(roll) - y * math.sin(roll), x * math.sin(roll) + y * math.cos(roll)
        depth = 2.5 + z
        return x / depth, y / depth, z

    us = [i / strips for i in range(strips + 1)]
    top = [point(u, 0.0) for u in us]
    bottom = [point(u, 1.0) for u in us]
    xs = [p[0] for p in top + bottom]
    ys = [p[1] for p in top + bottom]
    span = max(max(xs) - min(xs), 1e-6)
    target = {"close": r.uniform(1.15, 1.5), "whole": r.uniform(0.6, 0.85), "small": r.uniform(0.38, 0.5)}[framing]
    scale = target * size / span
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    # a close framing keeps the hoist half (where the emblems are) in view
    ox = size / 2 + (r.uniform(0.05, 0.2) * size * target if framing == "close" else r.uniform(-0.1, 0.1) * size)
    oy = size / 2 + r.uniform(-0.1, 0.1) * size

    def screen(p: tuple[float, float, float]) -> tuple[float, float]:
        return ((p[0] - cx) * scale + ox, (p[1] - cy) * scale + oy)

    layer = Image.new("RGB", (size, size))
    mask = Image.new("L", (size, size), 0)
    light = (r.uniform(-0.6, 0.6), r.uniform(-0.6, 0.2), 1.0)
    for i in range(strips):
        quad = [screen(top[i]), screen(top[i + 1]), screen(bottom[i + 1]), screen(bottom[i])]
        x0, x1 = us[i] * tw, us[i + 1] * tw
        src = [(x0, 0.0), (x1, 0.0), (x1, float(th)), (x0, float(th))]
        try:
            coeffs = _perspective_coeffs(quad, src)
        except np.linalg.LinAlgError:  # a strip seen edge-on
            continue
        # facet normal from the 3-D corners decides the strip's brightness
        (ax, ay, az), (bx, by, bz), (dx, dy, dz) = top[i], top[i + 1], bottom[i]
        e1, e2 = (bx - ax, by - ay, bz - az), (dx - ax, dy - ay, dz - az)
        nrm = (e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0])
        length = math.sqrt(sum(c * c for c in nrm)) or 1.0
        lnorm = math.sqrt(sum(c * c for c in light))
        facing = abs(sum(a * b for a, b in zip(nrm, light, strict=True))) / (length * lnorm)
        strip = tex.transform((size, size), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)
        strip = ImageEnhance.Brightness(strip).enhance(0.5 + 0.6 * facing)
        smask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(smask).polygon(quad, fill=255)
        layer.paste(strip, (0, 0), smask)
        mask.paste(255, (0, 0), smask)
    if r.random() < 0.5:  # a pole at the hoist
        (px0, py0), (px1, py1) = screen(top[0]), screen(bottom[0])
        draw_l, draw_m = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
        w = max(2, int(size * r.uniform(0.012, 0.025)))
        line = [(px0, py0 - size * 0.1), (px1 + (px1 - px0) * 3, py1 + (py1 - py0) * 3)]
        shade = r.randrange(90, 230)
        draw_l.line(line, fill=(shade, shade, shade), width=w)
        draw_m.line(line, fill=255, width=w)
    return layer, mask


def render_check_image(name: str, r: random.Random, size: int = 128, framing: str | None = None) -> Image.Image:
    """One check image of flag ``name`` (RGB, ``size`` square), drawn entirely from ``r``."""
    if name not in FLAG_NAMES:
        raise ConfigError(f"unknown flag {name!r}; valid names: {', '.join(FLAG_NAMES)}")
    framing = framing or r.choice(FRAMINGS)
    if framing not in FRAMINGS:
        raise ConfigError(f"framing must be one of {', '.join(FRAMINGS)}, got {framing!r}")
    palette = _palette_cached()
    background = _backdrop(r, size, palette)
    layer, mask = _mesh_flag(r, name, size, framing)
    if r.random() < 0.2:  # the back of the flag
        layer, mask = ImageOps.mirror(layer), ImageOps.mirror(mask)
    background.paste(layer, (0, 0), mask.filter(ImageFilter.GaussianBlur(0.6)))
    img = ImageEnhance.Brightness(background).enhance(r.uniform(0.7, 1.25))
    img = ImageEnhance.Contrast(img).enhance(r.uniform(0.75, 1.25))
    img = ImageEnhance.Color(img).enhance(r.uniform(0.7, 1.3))
    if r.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(r.uniform(0.3, 1.2) * size / 128))
    else:
        img = img.filter(ImageFilter.UnsharpMask(radius=1.5, percent=r.randrange(50, 150)))
    return img


_PALETTE: list[RGB] = []


def _palette_cached() -> list[RGB]:
    if not _PALETTE:
        _PALETTE.extend(_flag_palette())
    return _PALETTE


def make_checkset(out_dir: str | os.PathLike[str], per_class: int = 10, seed: int = 1234, size: int = 128,
                  progress: Callable[[int, int], None] | None = None, *,
                  overwrite: bool = False) -> dict[str, Any]:  # fmt: skip
    """Write an ImageFolder ``out_dir/<Class Name>/<nnn>.jpg`` of check images and return its manifest.

    The framings cycle close / whole / small so each class gets all three. Written into a
    temporary sibling folder and renamed at the end; an existing non-empty ``out_dir`` raises
    FileExistsError unless ``overwrite``.
    """
    if not 1 <= per_class <= 10_000 or not 32 <= size <= 1024:
        raise ConfigError(f"per_class must be 1..10000 and size 32..1024, got {per_class} and {size}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    total, done = per_class * len(FLAG_NAMES), 0
    try:
        for name in FLAG_NAMES:
            folder = tmp / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                r = random.Random(f"{seed}/{name}/{i}")  # str seeds are hashed: stable across runs
                img = render_check_image(name, r, size, FRAMINGS[i % len(FRAMINGS)])
                img.save(folder / f"{i:03d}.jpg", format="JPEG", quality=r.randrange(60, 96))
                done += 1
                if progress:
                    progress(done, total)
        manifest = {"generator": "flagvision.synthetic.checkset", "version": CHECKSET_VERSION, "seed": seed,
                    "per_class": per_class, "size": size, "class_names": list(FLAG_NAMES)}  # fmt: skip
        (tmp / "checkset.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
