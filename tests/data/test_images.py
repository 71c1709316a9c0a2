"""Odd but valid images are accepted the same way everywhere; hostile ones get one clear error."""

import io

import numpy as np
import pytest
from PIL import Image

from flagvision.data.images import ImageError, open_image


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _flag(w=60, h=40) -> Image.Image:
    """Red top half, white bottom half (a known layout to check orientation)."""
    a = np.full((h, w, 3), 255, np.uint8)
    a[: h // 2] = (200, 20, 20)
    return Image.fromarray(a)


def odd_images() -> dict[str, bytes]:
    flag = _flag()
    rgba = flag.convert("RGBA")
    rgba.putalpha(200)
    exif = flag.transpose(Image.Transpose.ROTATE_90)  # stored rotated; EXIF says rotate back
    ex = Image.Exif()
    ex[0x0112] = 6  # orientation: rotate 90 CW to display
    gif_frames = [flag, Image.new("RGB", flag.size, (0, 0, 255))]
    gif = io.BytesIO()
    gif_frames[0].save(gif, "GIF", save_all=True, append_images=gif_frames[1:], duration=100, loop=0)
    arr16 = np.asarray(flag.convert("L"), dtype=np.uint16) * 257
    return {
        "alpha.png": _bytes(rgba, "PNG"),
        "palette.png": _bytes(flag.convert("P", palette=Image.Palette.ADAPTIVE, colors=8), "PNG"),
        "sixteen.png": _bytes(Image.fromarray(arr16), "PNG"),
        "gray.jpg": _bytes(flag.convert("L"), "JPEG"),
        "cmyk.jpg": _bytes(flag.convert("CMYK"), "JPEG"),
        "anim.gif": gif.getvalue(),
        "photo.webp": _bytes(flag, "WEBP"),
        "exif.jpg": _bytes(exif, "JPEG", exif=ex.tobytes(), quality=95),
        "tiny.png": _bytes(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"),
    }


@pytest.mark.parametrize("name", list(odd_images()))
def test_odd_but_valid_images_become_rgb(name):
    img = open_image(odd_images()[name])
    assert img.mode == "RGB"
    if name in ("tiny.png",):
        return
    a = np.asarray(img).astype(int)
    assert img.size == (60, 40), "EXIF rotation applied / original size kept"
    top, bottom = a[:10].mean(axis=(0, 1)), a[-10:].mean(axis=(0, 1))
    if name in ("gray.jpg", "sixteen.png"):
        assert top.mean() < bottom.mean() - 60
    else:
        assert top[0] > top[1] + 80, f"top should be red, got {top}"  # red top: layout preserved
        assert bottom.min() > 180


@pytest.mark.parametrize(
    "data,fragment",
    [
        (b"", "empty"),
        (b"hello, I am text", "not a recognised image"),
    ],
)
def test_hostile_bytes(data, fragment):
    with pytest.raises(ImageError, match=fragment):
        open_image(data)


def test_truncated_jpeg():
    data = _bytes(_flag(200, 200), "JPEG")
    with pytest.raises(ImageError, match="damaged or truncated"):
        open_image(data[: len(data) // 2])


def test_decompression_bomb_refused_without_decoding():
    # A 20000×20000 PNG of one colour compresses to ~1 MB; it must be refused from its header.
    img = Image.new("1", (20000, 20000))
    data = _bytes(img, "PNG")
    with pytest.raises(ImageError, match="larger than|too large"):
        open_image(data)


def test_path_errors_name_the_file(tmp_path):
    p = tmp_path / "holiday.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match="holiday.jpg"):
        open_image(p)
    with pytest.raises(ImageError, match="cannot be read"):
        open_image(tmp_path / "missing.jpg")
