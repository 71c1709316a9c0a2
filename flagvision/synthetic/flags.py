"""Vector descriptions of the 24 flags of the built-in dataset, and a renderer for them.

Each flag is a small drawing function over a canvas whose unit is the flag's *height*: y runs
0..1 from top to bottom and x runs 0..length from hoist to fly (length = width / height). Working
in height units keeps emblems undistorted whatever the aspect ratio. Proportions and colours
follow the published specifications (national laws, their construction sheets as reproduced by
Flags of the World, and the Pantone/RGB values given there); emblems are simplified but keep their
true position, size, shapes, colours and layout, which is what a 40–64 px classifier can see.

``render_flag(name, width)`` draws at up to 4x supersampling with PIL and downsamples with a box
filter, so edges are anti-aliased at any resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw

from flagvision.config import ConfigError

Point = tuple[float, float]
Color = str

FLAG_NAMES: tuple[str, ...] = (
    "Austria", "Belgium", "Bulgaria", "Croatia", "Czech Republic", "Denmark", "Estonia",
    "Finland", "France", "Germany", "Greece", "Holland", "Hungary", "Ireland", "Italy", "Latvia",
    "Lithuania", "Luxembourg", "Malta", "Slovakia", "Slovenia", "South Cyprus", "Spain", "Sweden",
)  # fmt: skip

WHITE = "#FFFFFF"
BLACK = "#000000"


class _Canvas:
    """A supersampled drawing surface addressed in flag-height units."""

    def __init__(self, width: int, height: int, length: float, ss: int) -> None:
        self.image = Image.new("RGB", (width * ss, height * ss), WHITE)
        self.draw = ImageDraw.Draw(self.image)
        self.length = length
        # Separate x/y scales: the pixel size is rounded, so map the flag exactly onto it.
        self._sx = width * ss / length
        self._sy = height * ss

    def _px(self, pts: Sequence[Point]) -> list[Point]:
        return [(x * self._sx, y * self._sy) for x, y in pts]

    def rect(self, x0: float, y0: float, x1: float, y1: float, color: Color) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color)

    def poly(self, pts: Sequence[Point], color: Color) -> None:
        self.draw.polygon(self._px(pts), fill=color)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, color: Color) -> None:
        (x0, y0), (x1, y1) = self._px([(cx - rx, cy - ry), (cx + rx, cy + ry)])
        self.draw.ellipse([x0, y0, x1, y1], fill=color)

    def line(self, pts: Sequence[Point], width: float, color: Color) -> None:
        self.draw.line(self._px(pts), fill=color, width=max(1, round(width * self._sy)), joint="curve")

    def hbands(self, colors: Sequence[Color], weights: Sequence[float] | None = None) -> None:
        weights = weights or [1.0] * len(colors)
        total, y = sum(weights), 0.0
        for color, w in zip(colors, weights, strict=True):
            self.rect(0, y, self.length, y + w / total + 1e-3, color)
            y += w / total

    def vbands(self, colors: Sequence[Color]) -> None:
        step = self.length / len(colors)
        for i, color in enumerate(colors):
            self.rect(i * step, 0, (i + 1) * step + 1e-3, 1, color)

    @contextmanager
    def clipped(self, outline: Sequence[Point]) -> Iterator[None]:
        """Draw the body's shapes only inside ``outline`` (heraldic charges inside a shield)."""
        before = self.image.copy()
        yield
        mask = Image.new("L", self.image.size, 0)
        ImageDraw.Draw(mask).polygon(self._px(outline), fill=255)
        self.image.paste(before, (0, 0), Image.eval(mask, lambda v: 255 - v))


@dataclass(frozen=True)
class _Frame:
    """Maps emblem-local coordinates (u, v) to flag height units: origin + scale, no rotation."""

    ox: float
    oy: float
    scale: float

    def __call__(self, pts: Sequence[Point]) -> list[Point]:
        return [(self.ox + u * self.scale, self.oy + v * self.scale) for u, v in pts]

    def p(self, u: float, v: float) -> Point:
        return (self.ox + u * self.scale, self.oy + v * self.scale)

    def s(self, d: float) -> float:
        return d * self.scale


# ---------------------------------------------------------------------------------------------
# Geometry helpers (plain point lists, so PIL only ever fills polygons)


def _bezier(p0: Point, p1: Point, p2: Point, n: int = 16) -> list[Point]:
    """Quadratic Bézier from p0 to p2 with control p1."""
    out = []
    for i in range(n + 1):
        t = i / n
        a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t**2
        out.append((a * p0[0] + b * p1[0] + c * p2[0], a * p0[1] + b * p1[1] + c * p2[1]))
    return out


def _ellipse_pts(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 24) -> list[Point]:
    ca, sa = math.cos(angle), math.sin(angle)
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        pts.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return pts


def _star(cx: float, cy: float, r: float, points: int = 6, inner: float = 0.5) -> list[Point]:
    pts = []
    for i in range(2 * points):
        rr = r if i % 2 == 0 else r * inner
        t = -math.pi / 2 + math.pi * i / points
        pts.append((cx + rr * math.cos(t), cy + rr * math.sin(t)))
    return pts


def _scaled(pts: Sequence[Point], k: float) -> list[Point]:
    """Scale a polygon about its bounding-box centre (used for borders/fimbriation)."""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    return [(cx + (x - cx) * k, cy + (y - cy) * k) for x, y in pts]


def _grown(pts: Sequence[Point], d: float) -> list[Point]:
    """Offset a convex-ish polygon outward by ``d`` (bounding-box based, good for small d)."""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    hw, hh = (max(xs) - min(xs)) / 2, (max(ys) - min(ys)) / 2
    return [(cx + (x - cx) * (1 + d / hw), cy + (y - cy) * (1 + d / hh)) for x, y in pts]


# ---------------------------------------------------------------------------------------------
# Emblems


def _slovakia_arms(c: _Canvas) -> None:
    # Law 63/1993: the arms are equidistant from top, bottom and hoist (1/4 of the height), half
    # the height tall; width ≈ 12/45 of the length; white fimbriation 1/100 of the length.
    f = _Frame(0.25, 0.25, 0.5)  # local v 0..1 = shield height, u 0..0.8 = width
    w = 0.8
    shield = [(0, 0), (w, 0), (w, 0.52)] + _bezier((w, 0.52), (w, 0.86), (w / 2, 1.0))[1:]
    shield += _bezier((w / 2, 1.0), (0, 0.86), (0, 0.52))[1:]
    outline = f(shield)
    c.poly(_grown(outline, 0.015 * c.length), WHITE)
    c.poly(outline, "#EE1C25")
    blue, white = "#0B4EA2", WHITE
    with c.clipped(outline):
        # Three hills, the middle one higher.
        hills: list[Point] = [(0, 1.1), (0, 0.84)]
        hills += _bezier((0, 0.84), (0.13, 0.70), (0.26, 0.80))[1:]
        hills += _bezier((0.26, 0.80), (0.40, 0.58), (0.54, 0.80))[1:]
        hills += _bezier((0.54, 0.80), (0.67, 0.70), (w, 0.84))[1:]
        hills += [(w, 1.1)]
        c.poly(f(hills), blue)
        # Patriarchal (double) cross with slightly flared ends.
        cx, t = w / 2, 0.045
        c.poly(f([(cx - t, 0.68), (cx - t, 0.13), (cx - t - 0.02, 0.09), (cx + t + 0.02, 0.09),
                  (cx + t, 0.13), (cx + t, 0.68)]), white)  # fmt: skip
        for y, half in ((0.27, 0.17), (0.46, 0.26)):
            c.poly(f([(cx - half - 0.015, y - t - 0.02), (cx - half, y - t), (cx + half, y - t),
                      (cx + half + 0.015, y - t - 0.02), (cx + half + 0.015, y + t + 0.02),
                      (cx + half, y + t), (cx - half, y + t), (cx - half - 0.015, y + t + 0.02)]),
                   white)  # fmt: skip


def _slovenia_arms(c: _Canvas) -> None:
    # Centre at 1/4 of the length on the white/blue line; height 1/3 of the flag; the 8x9.4
    # construction grid gives width ≈ 0.85 of the height. Red border ≈ 3% of the height.
    h = 1 / 3
    f = _Frame(0.5 - 0.425 * h, 1 / 3 - 0.5 * h, h)  # local v 0..1 height, u 0..0.85
    w = 0.85
    shield = _bezier((0, 0.07), (w / 2, -0.05), (w, 0.07), 12)
    shield += _bezier((w, 0.07), (w * 0.98, 0.75), (w / 2, 1.0))[1:]
    shield += _bezier((w / 2, 1.0), (w * 0.02, 0.75), (0, 0.07))[1:-1]
    outline = f(shield)
    c.poly(outline, "#ED1C24")
    inner = _scaled(outline, 0.92)
    c.poly(inner, "#005DA4")
    with c.clipped(inner):
        # Triglav: three white peaks, the middle one highest, down to the waves.
        mountain = [(-0.1, 1.2), (-0.1, 0.62), (0.12, 0.58), (0.27, 0.47), (0.33, 0.50),
                    (w / 2, 0.33), (w - 0.33, 0.50), (w - 0.27, 0.47), (w - 0.12, 0.58),
                    (w + 0.1, 0.62), (w + 0.1, 1.2)]  # fmt: skip
        c.poly(f(mountain), WHITE)
        # Two wavy blue lines (sea and rivers) over the mountain's foot.
        for y0 in (0.70, 0.80):
            top = [(u, y0 + 0.025 * math.sin(u / w * 4 * math.pi)) for u in
                   [i * (w + 0.2) / 40 - 0.1 for i in range(41)]]  # fmt: skip
            band = top + [(u, y + 0.045) for u, y in reversed(top)]
            c.poly(f(band), "#005DA4")
        c.poly(f([(-0.1, 0.88), (w + 0.1, 0.88), (w + 0.1, 1.2), (-0.1, 1.2)]), "#005DA4")
        # Three six-pointed gold stars in an inverted triangle above the peak.
        for u, v in ((0.27, 0.14), (w - 0.27, 0.14), (w / 2, 0.25)):
            c.poly(f(_star(u, v, 0.065, 6, 0.5)), "#FFDD00")


def _croatia_arms(c: _Canvas) -> None:
    # Centred on the flag; the crown's top lies in the red stripe, the shield's point in the blue.
    f = _Frame(c.length / 2 - 0.165, 0.35, 0.33)  # local u 0..1 = shield width
    red, white = "#FF0000", WHITE
    shield = [(0, 0), (1, 0), (1, 0.62)] + _bezier((1, 0.62), (1, 1.05), (0.5, 1.2))[1:]
    shield += _bezier((0.5, 1.2), (0, 1.05), (0, 0.62))[1:]
    outline = f(shield)
    c.poly(_grown(outline, 0.006), red)
    c.poly(outline, white)
    with c.clipped(outline):
        for row in range(5):
            for col in range(5):
                if (row + col) % 2 == 0:  # top-left field is red
                    c.poly(f([(col * 0.2, row * 0.24), ((col + 1) * 0.2, row * 0.24),
                              ((col + 1) * 0.2, (row + 1) * 0.24), (col * 0.2, (row + 1) * 0.24)]), red)  # fmt: skip
    # Crown of five small shields on an arch (ancient Croatia, Dubrovnik, Dalmatia, Istria,
    # Slavonia), outlined in red.
    light, dark, gold = "#1E90D6", "#171796", "#F7D117"
    for i in range(5):
        u0 = 0.01 + i * 0.196
        lift = 0.045 - 0.045 * abs(i - 2) / 2  # the middle shield stands highest
        top = -0.345 - lift + 0.03 * abs(i - 2) / 2
        sw, sh = 0.18, 0.30
        small = [(u0, top), (u0 + sw, top), (u0 + sw, top + sh * 0.6)]
        small += _bezier((u0 + sw, top + sh * 0.6), (u0 + sw, top + sh), (u0 + sw / 2, top + sh), 6)[1:]
        small += _bezier((u0 + sw / 2, top + sh), (u0, top + sh), (u0, top + sh * 0.6), 6)[1:]
        c.poly(_grown(f(small), 0.004), red)
        c.poly(f(small), light if i in (0, 2, 4) else dark)
        mid = u0 + sw / 2
        if i == 0:  # star over crescent
            c.poly(f(_star(mid, top + 0.08, 0.045, 6)), gold)
            c.ellipse(*f.p(mid, top + 0.19), f.s(0.05), f.s(0.03), WHITE)
        elif i == 1:  # two red bars
            for y in (0.08, 0.17):
                c.poly(f([(u0, top + y), (u0 + sw, top + y), (u0 + sw, top + y + 0.045), (u0, top + y + 0.045)]), red)
        elif i == 2:  # three crowned leopard heads
            for du, dv in ((-0.045, 0.08), (0.045, 0.08), (0.0, 0.18)):
                c.ellipse(*f.p(mid + du, top + dv), f.s(0.03), f.s(0.03), gold)
        elif i == 3:  # goat
            c.ellipse(*f.p(mid, top + 0.14), f.s(0.055), f.s(0.035), gold)
        else:  # marten on a red bar edged white, star above
            c.poly(f([(u0, top + 0.12), (u0 + sw, top + 0.12), (u0 + sw, top + 0.2), (u0, top + 0.2)]), WHITE)
            c.poly(f([(u0, top + 0.13), (u0 + sw, top + 0.13), (u0 + sw, top + 0.19), (u0, top + 0.19)]), red)
            c.poly(f(_star(mid, top + 0.06, 0.04, 6)), gold)


def _george_cross(c: _Canvas) -> None:
    # The George Cross, edged red, in the canton of the white half.
    cx, cy, s = 0.21, 0.2, 0.30  # centre and span in height units
    f = _Frame(cx, cy, s)
    arm = [(-0.08, 0.0), (-0.13, -0.5), (0.13, -0.5), (0.08, 0.0)]

    def cross(grow: float) -> list[list[Point]]:
        arms = []
        for k in range(4):
            a = k * math.pi / 2
            ca, sa = math.cos(a), math.sin(a)
            pts = [(x * (1 + grow * 2), y * (1 + grow)) for x, y in arm]
            arms.append(f([(x * ca - y * sa, x * sa + y * ca) for x, y in pts]))
        return arms

    for poly in cross(0.12):
        c.poly(poly, "#CF142B")
    for poly in cross(0.0):
        c.poly(poly, "#C7C9C8")
    c.ellipse(cx, cy, s * 0.17, s * 0.17, "#CF142B")
    c.ellipse(cx, cy, s * 0.15, s * 0.15, "#9EA2A2")
    c.ellipse(cx, cy, s * 0.10, s * 0.10, "#C7C9C8")
    c.poly(f([(-0.03, 0.06), (0.0, -0.07), (0.03, 0.06)]), "#7A7D7D")  # St George, a hint


def _cyprus_emblem(c: _Canvas) -> None:
    # Copper-orange silhouette of the island (Pantone 1385) above two crossed olive branches.
    lonlat = [(32.28, 35.10), (32.42, 35.05), (32.55, 35.17), (32.80, 35.17), (32.93, 35.17),
              (32.95, 35.30), (33.05, 35.36), (33.30, 35.34), (33.60, 35.36), (33.90, 35.42),
              (34.10, 35.50), (34.30, 35.58), (34.59, 35.69), (34.42, 35.56), (34.20, 35.44),
              (34.02, 35.33), (33.93, 35.20), (33.95, 35.08), (34.08, 34.97), (33.90, 34.96),
              (33.68, 34.93), (33.60, 34.83), (33.40, 34.72), (33.20, 34.70), (33.04, 34.68),
              (32.96, 34.57), (32.86, 34.64), (32.70, 34.65), (32.55, 34.71), (32.42, 34.76),
              (32.32, 34.90)]  # fmt: skip
    k = math.cos(math.radians(35.1))  # equirectangular: shrink longitude at 35° N
    lon0, lon1, lat1 = 32.28, 34.59, 35.69
    span = (lon1 - lon0) * k
    width = 0.80  # island width in height units (≈ half of the 3:5 flag's length)
    x0, y0 = c.length / 2 - width / 2, 0.16
    island = [(x0 + (lon - lon0) * k / span * width, y0 + (lat1 - lat) / span * width) for lon, lat in lonlat]
    c.poly(island, "#D57800")
    green = "#4E5B31"
    for side in (-1, 1):
        base = (c.length / 2 + side * 0.03, 0.82)
        stem = _bezier(base, (c.length / 2 + side * 0.30, 0.80), (c.length / 2 + side * 0.40, 0.60), 10)
        c.line(stem, 0.012, green)
        for i in range(2, len(stem) - 1):
            (x, y), (x2, y2) = stem[i], stem[i + 1]
            ang = math.atan2(y2 - y, x2 - x)
            for flip in (-1, 1):
                a = ang + flip * 0.8  # leaves on both sides, pointing along the stem
                lx, ly = x + 0.035 * math.cos(a), y + 0.035 * math.sin(a)
                c.poly(_ellipse_pts(lx, ly, 0.038, 0.012, a, 12), green)
        c.poly(
            _ellipse_pts(stem[-1][0] + side * 0.01, stem[-1][1] - 0.03, 0.038, 0.012, -math.pi / 2.6 * side, 12), green
        )


def _outlined(c: _Canvas, pts: Sequence[Point], fill: Color, edge: Color = "#6E5200") -> None:
    """Gold on the gold band needs its dark outline to stay visible, as on the printed flag."""
    c.poly(_grown(pts, 0.004), edge)
    c.poly(pts, fill)


def _spain_arms(c: _Canvas) -> None:
    # Axis at half the flag's height from the hoist, centred in the yellow band, 2/5 as tall.
    f = _Frame(0.5, 0.5, 0.4)  # local (0, 0) = centre of the arms, units of its height
    red, gold, white, silver = "#AA151B", "#F1BF00", WHITE, "#E6E6E6"
    dark_red, blue, purple, green = "#8C0D14", "#005BBF", "#8B2C8E", "#3C8C2C"
    # Pillars of Hercules, each with a crown and a red scroll.
    for side in (-1, 1):
        px = side * 0.36
        _outlined(c, f([(px - 0.05, 0.33), (px + 0.05, 0.33), (px + 0.05, 0.38), (px - 0.05, 0.38)]), gold)
        _outlined(c, f([(px - 0.04, -0.16), (px + 0.04, -0.16), (px + 0.04, 0.33), (px - 0.04, 0.33)]), silver)
        _outlined(c, f([(px - 0.055, -0.21), (px + 0.055, -0.21), (px + 0.055, -0.16), (px - 0.055, -0.16)]), gold)
        _outlined(c, f([(px - 0.05, -0.33), (px - 0.03, -0.26), (px, -0.30), (px + 0.03, -0.26),
                        (px + 0.05, -0.33), (px + 0.05, -0.22), (px - 0.05, -0.22)]), gold)  # fmt: skip
        _outlined(c, f([(px - 0.09, 0.02), (px + 0.09, -0.04), (px + 0.09, 0.04), (px - 0.09, 0.10)]), red)
    # Royal crown over the shield.
    _outlined(c, f([(-0.17, -0.25), (-0.2, -0.40), (-0.08, -0.36), (0, -0.47), (0.08, -0.36),
                    (0.2, -0.40), (0.17, -0.25)]), gold)  # fmt: skip
    _outlined(c, f([(-0.2, -0.27), (0.2, -0.27), (0.2, -0.22), (-0.2, -0.22)]), gold)
    c.poly(f([(-0.12, -0.29), (-0.1, -0.36), (0, -0.41), (0.1, -0.36), (0.12, -0.29)]), dark_red)
    c.poly(f([(-0.02, -0.47), (0.02, -0.47), (0.02, -0.52), (-0.02, -0.52)]), gold)
    # Quartered shield: Castile, León / Aragon, Navarre; Granada in the point.
    shield = [(-0.22, -0.21), (0.22, -0.21), (0.22, 0.18)] + _bezier((0.22, 0.18), (0.22, 0.42), (0, 0.42))[1:]
    shield += _bezier((0, 0.42), (-0.22, 0.42), (-0.22, 0.18))[1:]
    outline = f(shield)
    c.poly(_grown(outline, 0.004), gold)
    c.poly(outline, red)
    with c.clipped(outline):
        c.poly(f([(0, -0.21), (0.22, -0.21), (0.22, 0.06), (0, 0.06)]), white)  # León
        c.poly(f([(-0.22, 0.06), (0, 0.06), (0, 0.42), (-0.22, 0.42)]), gold)  # Aragon
        for i in range(4):
            x = -0.2 + i * 0.05
            c.poly(f([(x, 0.06), (x + 0.025, 0.06), (x + 0.025, 0.42), (x, 0.42)]), red)
        for i in range(4):  # Navarre's gold chains
            c.line(f([(0.0, 0.09 + i * 0.08), (0.22, 0.09 + i * 0.08)]), 0.006, gold)
        c.line(f([(0.0, 0.06), (0.22, 0.3)]), 0.006, gold)
        c.line(f([(0.22, 0.06), (0.0, 0.3)]), 0.006, gold)
        c.poly(f([(-0.16, -0.04), (-0.16, -0.13), (-0.06, -0.13), (-0.06, -0.04)]), gold)  # castle
        c.poly(f([(-0.13, -0.13), (-0.13, -0.17), (-0.09, -0.17), (-0.09, -0.13)]), gold)
        c.ellipse(*f.p(0.11, -0.08), f.s(0.055), f.s(0.07), purple)  # lion
        c.poly(f([(-0.1, 0.28), (0.1, 0.28), (0.1, 0.42), (-0.1, 0.42)]), white)  # Granada
        c.ellipse(*f.p(0, 0.34), f.s(0.03), f.s(0.035), red)
        c.ellipse(*f.p(0, 0.30), f.s(0.02), f.s(0.012), green)
    c.ellipse(*f.p(0, 0.05), f.s(0.07), f.s(0.08), red)  # Bourbon inescutcheon
    c.ellipse(*f.p(0, 0.05), f.s(0.055), f.s(0.065), blue)
    for du, dv in ((-0.025, 0.02), (0.025, 0.02), (0.0, 0.08)):
        c.ellipse(*f.p(du, dv), f.s(0.012), f.s(0.014), gold)


# ---------------------------------------------------------------------------------------------
# The 24 flags: aspect (height / width) and a drawing function.


def _nordic(field: Color, cross: Color, x0: float, bar: float, y0: float) -> Callable[[_Canvas], None]:
    def draw(c: _Canvas) -> None:
        c.rect(0, 0, c.length, 1, field)
        c.rect(x0, 0, x0 + bar, 1, cross)
        c.rect(0, y0, c.length, y0 + bar, cross)

    return draw


def _greece(c: _Canvas) -> None:
    blue = "#0D5EAF"
    for i in range(9):
        c.rect(0, i / 9, c.length, (i + 1) / 9 + 1e-3, blue if i % 2 == 0 else WHITE)
    c.rect(0, 0, 5 / 9, 5 / 9, blue)
    c.rect(2 / 9, 0, 3 / 9, 5 / 9, WHITE)
    c.rect(0, 2 / 9, 5 / 9, 3 / 9, WHITE)


def _czech(c: _Canvas) -> None:
    c.hbands([WHITE, "#D7141A"])
    c.poly([(0, 0), (c.length / 2, 0.5), (0, 1)], "#11457E")  # wedge to half the length


def _with(base: Callable[[_Canvas], None], *emblems: Callable[[_Canvas], None]) -> Callable[[_Canvas], None]:
    def draw(c: _Canvas) -> None:
        base(c)
        for emblem in emblems:
            emblem(c)

    return draw


def _h(*colors: Color, weights: Sequence[float] | None = None) -> Callable[[_Canvas], None]:
    return lambda c: c.hbands(colors, weights)


def _v(*colors: Color) -> Callable[[_Canvas], None]:
    return lambda c: c.vbands(colors)


def _malta_field(c: _Canvas) -> None:
    c.vbands([WHITE, "#CF142B"])


def _cyprus_field(c: _Canvas) -> None:
    c.rect(0, 0, c.length, 1, WHITE)


# name -> (height / width, drawing function)
_FLAGS: dict[str, tuple[float, Callable[[_Canvas], None]]] = {
    "Austria": (2 / 3, _h("#C8102E", WHITE, "#C8102E")),
    "Belgium": (13 / 15, _v(BLACK, "#FDDA24", "#EF3340")),
    "Bulgaria": (3 / 5, _h(WHITE, "#00966E", "#D62612")),
    "Croatia": (1 / 2, _with(_h("#FF0000", WHITE, "#171796"), _croatia_arms)),
    "Czech Republic": (2 / 3, _czech),
    "Denmark": (28 / 37, _nordic("#C8102E", WHITE, 12 / 28, 4 / 28, 12 / 28)),
    "Estonia": (7 / 11, _h("#0072CE", BLACK, WHITE)),
    "Finland": (11 / 18, _nordic(WHITE, "#002F6C", 5 / 11, 3 / 11, 4 / 11)),
    "France": (2 / 3, _v("#002395", WHITE, "#ED2939")),
    "Germany": (3 / 5, _h(BLACK, "#DD0000", "#FFCE00")),
    "Greece": (2 / 3, _greece),
    "Holland": (2 / 3, _h("#AE1C28", WHITE, "#21468B")),
    "Hungary": (1 / 2, _h("#CE2939", WHITE, "#477050")),
    "Ireland": (1 / 2, _v("#169B62", WHITE, "#FF883E")),
    "Italy": (2 / 3, _v("#009246", "#F1F2F1", "#CE2B37")),
    "Latvia": (1 / 2, _h("#9E3039", WHITE, "#9E3039", weights=(2, 1, 2))),
    "Lithuania": (3 / 5, _h("#FDB913", "#006A44", "#C1272D")),
    "Luxembourg": (3 / 5, _h("#EA141D", WHITE, "#00A2E1")),
    "Malta": (2 / 3, _with(_malta_field, _george_cross)),
    "Slovakia": (2 / 3, _with(_h(WHITE, "#0B4EA2", "#EE1C25"), _slovakia_arms)),
    "Slovenia": (1 / 2, _with(_h(WHITE, "#005DA4", "#ED1C24"), _slovenia_arms)),
    "South Cyprus": (3 / 5, _with(_cyprus_field, _cyprus_emblem)),
    "Spain": (2 / 3, _with(_h("#AA151B", "#F1BF00", "#AA151B", weights=(1, 2, 1)), _spain_arms)),
    "Sweden": (5 / 8, _nordic("#006AA7", "#FECC02", 5 / 10, 2 / 10, 4 / 10)),
}
assert tuple(_FLAGS) == FLAG_NAMES

FLAG_ASPECT: dict[str, float] = {name: aspect for name, (aspect, _) in _FLAGS.items()}
"""Official height / width of each flag."""


def check_flag_name(name: str) -> str:
    """Return ``name`` if it is one of the 24 classes, else raise ConfigError listing them."""
    if name not in _FLAGS:
        raise ConfigError(f"unknown flag {name!r}; valid names: {', '.join(FLAG_NAMES)}")
    return name


def flag_size(name: str, width: int) -> tuple[int, int]:
    """Pixel size (width, height) of ``name`` rendered ``width`` pixels wide."""
    return width, max(1, round(width * FLAG_ASPECT[check_flag_name(name)]))


@lru_cache(maxsize=96)
def _render_cached(name: str, width: int) -> Image.Image:
    aspect, draw = _FLAGS[name]
    w, h = flag_size(name, width)
    # 4x supersampling, less for huge flags so the canvas stays within ~16 Mpx.
    ss = max(1, min(4, int(4096 // max(w, 1))))
    canvas = _Canvas(w, h, 1 / aspect, ss)
    draw(canvas)
    return canvas.image.resize((w, h), Image.Resampling.BOX) if ss > 1 else canvas.image


def render_flag(name: str, width: int) -> Image.Image:
    """Draw flag ``name`` flat and anti-aliased, ``width`` px wide with the official aspect (RGB)."""
    check_flag_name(name)
    if not isinstance(width, int) or width < 1:
        raise ConfigError(f"width must be a positive integer, got {width!r}")
    return _render_cached(name, width).copy()
