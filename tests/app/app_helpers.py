"""Helpers for the app tests (importable by name; conftest modules are not)."""

from __future__ import annotations

import io
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "streamlit_app.py")
TIMEOUT = 60

from fv_helpers import app, no_exceptions, wait_for  # noqa: E402,F401  (re-exported for the page tests)


def png_bytes(color=(200, 30, 30), size=(48, 32)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()
