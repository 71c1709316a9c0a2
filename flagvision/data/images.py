"""Safe decoding of any image a user may hand us, into an RGB PIL image.

Every entry point (dataset import, upload, Predict, CLI) goes through :func:`open_image`, so odd but
valid files (alpha, palette, 16-bit, grayscale, CMYK, EXIF rotation, WebP, animated GIF) are
normalised the same way, and hostile ones (zero bytes, text named .jpg, truncated data,
decompression bombs) are refused with one clear :class:`ImageError` instead of a traceback.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from flagvision.errors import FlagVisionError

# 40 megapixels is ~12x a phone photo; larger images are refused before they are decoded.
MAX_PIXELS = 40_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Refuse truncated files instead of silently padding them with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(FlagVisionError, ValueError):
    """An image that cannot be used; the message says why in user terms."""


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not os.path.basename(name).startswith(".")


def open_image(source: str | os.PathLike[str] | bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``source`` (a path or the file's bytes) to an RGB image, or raise ImageError."""
    label = os.path.basename(os.fspath(source)) if not isinstance(source, bytes) else "uploaded image"
    try:
        if not isinstance(source, bytes) and not stat.S_ISREG(os.stat(source).st_mode):
            # A FIFO or device named like a photo would block or never end when read.
            raise ImageError(f"{label}: not a regular file")
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as exc:
        raise ImageError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise ImageError(f"{label}: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{label}: {width}×{height} pixels is larger than the {max_pixels // 1_000_000} "
                    "megapixel limit; resize it first"
                )
            img.seek(0)  # first frame of animations
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # PIL refuses far larger images (> 2x its own limit) from the header, before our check above.
        raise ImageError(
            f"{label}: too large to decode safely: "
            f"more than the {max_pixels // 1_000_000} megapixel limit; resize it first"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not a recognised image file") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{label}: the image data is damaged or truncated ({exc})") from None
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode to RGB (alpha composited over white)."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose an otherwise good image
        pass
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits using the actual range of the data.
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 0.0
        arr = arr * (255.0 / (65535.0 if hi > 255 else max(hi, 1.0)))
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")
