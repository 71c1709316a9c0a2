"""The built-in flag dataset: generated into the workspace on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .workspace import BUILTIN_DATASET, Workspace


def builtin_path(ws: Workspace) -> Path:
    return ws.dataset_dir(BUILTIN_DATASET)


def builtin_ready(ws: Workspace) -> bool:
    return (builtin_path(ws) / "manifest.json").is_file()


def ensure_builtin(ws: Workspace, progress: Callable[[int, int], None] | None = None) -> Path:
    """Return the built-in dataset's folder, rendering it first (default SynthConfig) if missing."""
    path = builtin_path(ws)
    if not builtin_ready(ws):
        from .synth import SynthConfig, synthesize

        synthesize(path, SynthConfig(), progress=progress)
    return path
