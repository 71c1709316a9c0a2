"""Helpers of the browser tests that are not fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def failure_snapshot(page: Any, artifacts: Any, name: str) -> Iterator[None]:
    """On any error in the block, keep what the browser showed (``name``.png and its text, beside the
    server log), then let the error go on."""
    try:
        yield
    except BaseException:
        try:
            artifacts.screenshot(page, name)
            (artifacts.root / f"{name}.txt").write_text(page.locator("body").inner_text())
        except Exception:  # noqa: BLE001 - keep the original error
            pass
        raise
