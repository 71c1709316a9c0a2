"""Helpers for the app tests (importable by name; conftest modules are not)."""

from __future__ import annotations

import io
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "streamlit_app.py")
TIMEOUT = 60


def app(page: str | None = None):
    """An AppTest of the whole app (navigation + sidebar), switched to ``page`` and run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    return at


def no_exceptions(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def png_bytes(color=(200, 30, 30), size=(48, 32)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def wait_for(predicate, timeout: float = 40.0, step: float = 0.2):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")
