"""Helpers shared by the tests (importable by name; conftest modules are not)."""

from __future__ import annotations

import os
import subprocess
import sys
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
        capture_output=True, text=True, env=full_env, cwd=cwd or REPO, timeout=timeout,
    )
