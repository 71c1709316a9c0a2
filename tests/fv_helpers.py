"""Helpers shared by the tests (importable by name; conftest modules are not)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def make_pattern_dataset(root: Path, per_class: int = 12, size: int = 40, classes: int = 3, seed: int = 0) -> Path:
    """Classes that differ by layout, not colour: stripes in different orientations/positions."""
    rng = np.random.default_rng(seed)
    layouts = ["horizontal", "vertical", "diagonal", "cross", "box"][:classes]
    for name in layouts:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = np.full((size, size, 3), 200, np.uint8)
            c = rng.integers(0, 120, 3)
            if name == "horizontal":
                a[size // 3 : 2 * size // 3] = c
            elif name == "vertical":
                a[:, size // 3 : 2 * size // 3] = c
            elif name == "diagonal":
                yy, xx = np.mgrid[:size, :size]
                a[np.abs(yy - xx) < size // 6] = c
            elif name == "cross":
                a[size // 2 - 3 : size // 2 + 3] = c
                a[:, size // 2 - 3 : size // 2 + 3] = c
            else:
                a[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = c
            noise = rng.integers(-20, 20, a.shape)
            Image.fromarray(np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run ``python -m flagvision`` as a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flagvision", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=timeout,
    )


def zip_bytes(
    entries: dict[str, bytes], symlinks: dict[str, str] | None = None, compression: int = zipfile.ZIP_DEFLATED
) -> bytes:
    """A zip archive in memory; ``symlinks`` maps entry names to link targets (stored as links)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def wait_for(
    predicate, timeout: float = 60.0, what: str | Callable[[], str] = "the condition", ws=None, every: float = 0.1
):
    """Poll ``predicate`` until it returns a truthy value, which is returned; fail after ``timeout`` s.

    The one way the tests wait on another process, a server, a file or the clock: a deadline poll on
    the condition itself, never a sleep followed by one read. With ``ws`` it also calls
    ``jobs.tick`` each round, as the app's poller does; ``what`` may be a callable, for a message
    that shows the last state seen. The predicate is always called once more
    after the deadline, so a slow machine fails only when the condition is really not met.
    """
    deadline = time.monotonic() + timeout
    while True:
        if ws is not None:
            from flagvision.jobs import queue as jobs

            jobs.tick(ws)
        last_round = time.monotonic() > deadline
        value = predicate()
        if value:
            return value
        if last_round:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(every)


def app(page: str | None = None, timeout: float = 60):
    """An AppTest of the whole app (navigation + sidebar), switched to ``page`` and run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=timeout)
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    return at


def no_exceptions(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
