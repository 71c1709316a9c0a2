"""How the check set draws, with PIL and ``random.Random`` only (no code shared with the generator's
renderer beyond the flag definitions): the flag as a 3-D ruled surface seen through a pinhole camera
(a mesh of strips, each a PIL perspective transform), photographic skies, a horizon, a facade in
perspective, trees, the pole, and a PIL-only camera. :mod:`flagvision.synthetic.checkset` composes
them into framings.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import cast

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from flagvision.synthetic.flags import FLAG_NAMES, render_flag

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, x1 and y1 exclusive


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


@dataclass
class _Mesh:
    """A flag drawn as a strip mesh: RGB layer, cloth coverage (L) and where its hoist is."""

    layer: Image.Image
    mask: Image.Image
    hoist: tuple[tuple[float, float], tuple[float, float]]  # the hoist edge's two ends on screen


def _mesh_flag(
    r: random.Random, tex: Image.Image, size: int, width: float, centre: tuple[float, float], *,
    hanging: bool = False, yaw_deg: float = 40.0,
) -> _Mesh:  # fmt: skip
    """``tex`` as a shaded strip mesh spanning ``width`` pixels across, centred on ``centre``.

    ``hanging``: a banner hung by its top edge (folds of even depth, the hoist along the top);
    otherwise a flag flying from its left edge (folds deepen towards the fly).
    """
    tw, th = tex.size
    aspect = th / tw
    strips = 28
    amp, freq, phase = r.uniform(0.0, 0.09), r.uniform(0.8, 2.5), r.uniform(0, 2 * math.pi)
    twist = r.uniform(-0.08, 0.08)
    yaw, pitch, roll = (
        math.radians(r.uniform(-yaw_deg, yaw_deg)),
        math.radians(r.uniform(-15, 15)),
        math.radians(r.uniform(-10, 10)),
    )
    if hanging:
        amp, twist, roll = amp * 0.5, twist * 0.3, roll * 0.3

    def point(u: float, v: float) -> tuple[float, float, float]:
        depth_profile = 0.5 if hanging else u
        z = amp * depth_profile * math.sin(2 * math.pi * freq * u + phase) + twist * (v - 0.5) * u
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
    scale = width / max(max(xs) - min(xs), 1e-6)
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    ox, oy = centre

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
    hoist = (screen(top[0]), screen(top[-1])) if hanging else (screen(top[0]), screen(bottom[0]))
    return _Mesh(layer, mask, hoist)


def _pole(
    draw: ImageDraw.ImageDraw, r: random.Random, a: tuple[float, float], b: tuple[float, float], width: int
) -> None:
    """A metal or wooden pole from ``a`` to ``b`` with a lit side and a finial at ``a``."""
    tone = r.choice([(200, 200, 205), (235, 235, 235), (120, 120, 125), (140, 100, 60)])
    dark = tuple(int(c * 0.6) for c in tone)
    draw.line([a, b], fill=dark, width=width)
    if width >= 3:
        draw.line([(a[0] - width / 4, a[1]), (b[0] - width / 4, b[1])], fill=tone, width=max(1, width // 3))
    rad = width * 0.9
    draw.ellipse([a[0] - rad, a[1] - rad, a[0] + rad, a[1] + rad], fill=r.choice([(210, 180, 60), tone]))


def _noise_layer(r: random.Random, size: int, cells: tuple[int, ...], blur: float) -> Image.Image:
    """Cloud-like greyscale noise: random grids enlarged by PIL and blended coarse to fine, blurred."""
    noise = np.random.default_rng(r.getrandbits(64))
    acc: Image.Image | None = None
    for k, c in enumerate(cells):
        grid = Image.fromarray((noise.random((c, c)) * 255).astype(np.uint8), "L")
        layer = grid.resize((size, size), Image.Resampling.BICUBIC)
        acc = layer if acc is None else Image.blend(acc, layer, 0.5 / (k + 1))
    assert acc is not None
    return ImageOps.autocontrast(acc.filter(ImageFilter.GaussianBlur(blur)))


def _photo_sky(r: random.Random, size: int) -> Image.Image:
    """A sky drawn by PIL: colourised gradient, blurred-noise clouds, sun glare, haze."""
    kind = r.choice(["blue", "blue", "blue", "overcast", "dusk", "haze"])
    zenith, horizon = {
        "blue": ((r.randrange(20, 70), r.randrange(70, 130), r.randrange(160, 220)), (185, 210, 238)),
        "overcast": ((150, 152, 160), (205, 206, 210)),
        "dusk": ((r.randrange(40, 100), 50, r.randrange(90, 140)), (250, r.randrange(120, 190), 90)),
        "haze": ((160, 185, 215), (228, 228, 226)),
    }[kind]
    g = Image.linear_gradient("L").resize((size, size)).point(lambda v: int(255 * (v / 255) ** 0.8))
    sky = ImageOps.colorize(g, zenith, horizon).convert("RGB")
    if kind != "haze" and r.random() < 0.8:
        clouds = _noise_layer(r, size, (3, 6, 12, 24), size / 90)
        cover = r.randrange(90, 200) if kind != "overcast" else r.randrange(20, 90)
        soft = r.randrange(15, 60)
        mask = clouds.point(lambda v: max(0, min(255, (v - cover) * 255 // soft)))
        lit = (255, 225, 200) if kind == "dusk" else (250, 250, 252)
        shadow = (120, 90, 120) if kind == "dusk" else (170, 175, 188)
        shading = ImageOps.colorize(ImageChops.offset(clouds, 0, size // 40), lit, shadow).convert("RGB")
        sky.paste(shading, (0, 0), mask)
    if kind in ("blue", "dusk") and r.random() < 0.4:  # the sun's glare
        rad = int(size * r.uniform(0.3, 0.9))
        glare = ImageOps.invert(Image.radial_gradient("L").resize((rad * 2, rad * 2)))
        glare = glare.point(lambda v: int(255 * (v / 255) ** 3))
        layer = Image.new("L", (size, size), 0)
        layer.paste(glare, (int(r.uniform(-0.2, 1.0) * size) - rad, int(r.uniform(-0.2, 0.6) * size) - rad))
        sky = ImageChops.screen(sky, ImageOps.colorize(layer, (0, 0, 0), (255, 245, 220)).convert("RGB"))
    if r.random() < 0.5:  # haze towards the horizon
        strength = r.uniform(0.3, 0.7)
        haze = Image.linear_gradient("L").resize((size, size)).point(lambda v: int(v * strength))
        sky.paste((230, 230, 230), (0, 0), haze)
    return sky


def _horizon(r: random.Random, img: Image.Image, palette: list[RGB]) -> None:
    """A low treeline or roofline along the bottom of a sky (drawn polygons, softly blurred)."""
    size = img.width
    layer = img.copy()
    draw = ImageDraw.Draw(layer)
    base = size * r.uniform(0.8, 0.97)
    pts = [(0.0, float(size))]
    x = 0.0
    roofs = r.random() < 0.5
    while x < size:
        h = base - size * r.uniform(0.0, 0.12)
        step = size * r.uniform(0.05, 0.15)
        if roofs:  # pitched roofs
            pts += [(x, h), (x + step / 2, h - step * 0.4), (x + step, h)]
        else:
            pts += [(x, h), (x + step / 2, h - size * r.uniform(0.0, 0.05))]
        x += step
    pts.append((float(size), float(size)))
    color = r.choice([(160, 57, 43), (90, 90, 95), (47, 79, 111)]) if roofs else r.choice([(40, 70, 40), (60, 95, 50)])
    if r.random() < 0.3:
        color = _any_color(r, palette)
    draw.polygon(pts, fill=color)
    img.paste(layer.filter(ImageFilter.GaussianBlur(size / 200)))


def _building(r: random.Random, size: int, palette: list[RGB]) -> Image.Image:
    """A facade drawn flat (wall, courses, windows, shutters) and warped into perspective over a sky."""
    W, H = size * 2, size * 2
    wall = r.choice([(232, 220, 192), (232, 197, 71), (217, 164, 65), (181, 82, 59), (236, 236, 230), (200, 90, 80)])
    if r.random() < 0.3:
        wall = _any_color(r, palette)
    elevation = Image.new("RGB", (W, H), wall)
    grime = _noise_layer(r, W, (4, 16, 64), 1.0).point(lambda v: 150 + v * 105 // 255)
    elevation = ImageChops.multiply(elevation, Image.merge("RGB", (grime, grime, grime)))
    draw = ImageDraw.Draw(elevation)
    if r.random() < 0.4:  # brick courses
        course = r.randrange(5, 10)
        mortar = (205, 200, 190)
        for k, y in enumerate(range(0, H, course)):
            draw.line([(0, y), (W, y)], fill=mortar)
            for x in range((k % 2) * course, W, course * 3):
                draw.line([(x, y), (x, y + course)], fill=mortar)
    bay, storey = r.randrange(W // 8, W // 4), r.randrange(H // 6, H // 3)
    ww, wh = int(bay * r.uniform(0.35, 0.6)), int(storey * r.uniform(0.4, 0.65))
    frame = (240, 240, 235) if r.random() < 0.7 else (70, 55, 45)
    shutter = (
        r.choice([(40, 90, 50), (120, 40, 35), (40, 60, 110), _any_color(r, palette)]) if r.random() < 0.5 else None
    )
    glass = ImageOps.colorize(Image.linear_gradient("L").resize((ww, wh)), (40, 55, 75), (150, 170, 195)).convert("RGB")
    for y in range(storey // 4, H - wh, storey):
        draw.line([(0, y + wh + 4), (W, y + wh + 4)], fill=tuple(int(c * 0.75) for c in wall), width=3)
        for x in range(bay // 4, W - ww, bay):
            if shutter and ww >= 4:  # a window too narrow for shutters (a small check image) has none
                draw.rectangle([x - ww // 2, y, x - 2, y + wh], fill=shutter)
                draw.rectangle([x + ww + 2, y, x + ww + ww // 2, y + wh], fill=shutter)
            elevation.paste(glass, (x, y))
            draw.rectangle([x, y, x + ww, y + wh], outline=frame, width=3)
            draw.line([(x + ww // 2, y), (x + ww // 2, y + wh)], fill=frame, width=2)
    # the facade's outline on screen: a quad with converging top and bottom edges
    top_l, top_r = size * r.uniform(-0.1, 0.45), size * r.uniform(-0.1, 0.45)
    if r.random() < 0.3:
        top_l = top_r = -size * 0.2  # the wall fills the frame upwards
    left, right = -size * r.uniform(0.0, 0.3), size * (1 + r.uniform(0.0, 0.3))
    bot_l, bot_r = size * r.uniform(1.0, 1.3), size * r.uniform(1.0, 1.3)
    quad = [(left, top_l), (right, top_r), (right, bot_r), (left, bot_l)]
    coeffs = _perspective_coeffs(quad, [(0.0, 0.0), (float(W), 0.0), (float(W), float(H)), (0.0, float(H))])
    warped = elevation.transform((size, size), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)
    cover = Image.new("L", (W, H), 255).transform((size, size), Image.Transform.PERSPECTIVE, coeffs)
    # the light falls across the wall
    shade = Image.linear_gradient("L").rotate(90).resize((size, size)).point(lambda v: 150 + v * 105 // 255)
    if r.random() < 0.5:
        shade = ImageOps.mirror(shade)
    warped = ImageChops.multiply(warped, Image.merge("RGB", (shade, shade, shade)))
    img = _photo_sky(r, size)
    img.paste(warped, (0, 0), cover)
    roof = [(left, top_l), (right, top_r), (right, top_r + size * 0.04), (left, top_l + size * 0.04)]
    ImageDraw.Draw(img).polygon(roof, fill=r.choice([(160, 57, 43), (85, 85, 85), (122, 46, 34)]))
    return img


def _trees(r: random.Random, size: int) -> Image.Image:
    """Trees drawn by PIL: clumps of blurred ellipses cut by noise, colourised leaves, trunks."""
    img = _photo_sky(r, size)
    draw = ImageDraw.Draw(img)
    for _ in range(r.randrange(0, 4)):
        x = r.uniform(0, size)
        draw.line([(x, size), (x + r.uniform(-0.1, 0.1) * size, size * r.uniform(0.2, 0.6))],
                  fill=(70, 55, 40), width=max(2, int(size * r.uniform(0.02, 0.05))))  # fmt: skip
    blobs = Image.new("L", (size, size), 0)
    bd = ImageDraw.Draw(blobs)
    line = size * r.uniform(0.1, 0.6)  # the canopy's upper edge, roughly
    for _ in range(r.randrange(25, 70)):
        x, y = r.uniform(-0.1, 1.1) * size, r.uniform(line, size * 1.1)
        rad = size * r.uniform(0.05, 0.2)
        bd.ellipse([x - rad, y - rad * 0.8, x + rad, y + rad * 0.8], fill=255)
    texture = _noise_layer(r, size, (8, 24, 48), 0.6)
    canopy = ImageChops.multiply(blobs.filter(ImageFilter.GaussianBlur(size / 30)), texture.point(lambda v: 90 + v))
    canopy = canopy.point(lambda v: max(0, min(255, (v - 110) * 6)))
    dark, light = r.choice(
        [((20, 50, 20), (110, 160, 70)), ((30, 60, 30), (150, 170, 60)), ((60, 30, 10), (220, 150, 40))]
    )
    leaves = ImageOps.colorize(_noise_layer(r, size, (16, 48), 0.4), dark, light).convert("RGB")
    img.paste(leaves, (0, 0), canopy)
    return img


def _scene_backdrop(r: random.Random, size: int, palette: list[RGB], kinds: tuple[str, ...]) -> Image.Image:
    kind = r.choice(kinds)
    if kind == "building":
        return _building(r, size, palette)
    if kind == "trees":
        return _trees(r, size)
    sky = _photo_sky(r, size)
    if r.random() < 0.5:
        _horizon(r, sky, palette)
    return sky


def _flag_on_pole(
    r: random.Random, img: Image.Image, name: str, width: float, centre: tuple[float, float], *,
    vertical: bool = False, pole: bool = True, yaw_deg: float = 30.0,
) -> Box:  # fmt: skip
    """Draw flag ``name`` (and its pole) onto ``img``; return the cloth's box."""
    size = img.width
    tex = render_flag(name, 320)
    if vertical:  # flag protocol: hoist along the top, the upper edge on the left
        tex = tex.transpose(Image.Transpose.TRANSPOSE)
    mesh = _mesh_flag(r, tex, size, width, centre, hanging=vertical, yaw_deg=yaw_deg)
    draw = ImageDraw.Draw(img)
    thick = max(2, int(size * r.uniform(0.01, 0.02)))
    (ax, ay), (bx, by) = mesh.hoist
    if vertical:
        draw.line([(ax - thick, ay), (bx + thick, by)], fill=(90, 90, 95), width=thick)  # the crossbar
        if pole:
            _pole(draw, r, (ax - thick, ay - size * 0.05), (ax - thick, float(size)), thick)
    elif pole:
        _pole(draw, r, (ax, ay - size * 0.04), (ax + (bx - ax) * 6, float(size)), thick)
    img.paste(mesh.layer, (0, 0), mesh.mask.filter(ImageFilter.GaussianBlur(0.6)))
    box = mesh.mask.point(lambda v: 255 if v > 127 else 0).getbbox()
    if box is None:  # a flag seen exactly edge-on: no cloth visible (not drawn by these ranges)
        raise RuntimeError(f"check image of {name}: the flag is not visible")
    return box


def _camera(r: random.Random, img: Image.Image, size: int) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(r.uniform(0.7, 1.25))
    img = ImageEnhance.Contrast(img).enhance(r.uniform(0.75, 1.25))
    img = ImageEnhance.Color(img).enhance(r.uniform(0.7, 1.3))
    if r.random() < 0.5:
        return img.filter(ImageFilter.GaussianBlur(r.uniform(0.3, 1.2) * size / 128))
    return img.filter(ImageFilter.UnsharpMask(radius=1.5, percent=r.randrange(50, 150)))
