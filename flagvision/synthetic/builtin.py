"""The built-in flag dataset: generated into the workspace on first use."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flagvision.workspace import BUILTIN_DATASET, Workspace

if TYPE_CHECKING:
    from flagvision.synthetic.scenes import SynthConfig


def builtin_path(ws: Workspace) -> Path:
    return ws.dataset_dir(BUILTIN_DATASET)


def builtin_ready(ws: Workspace) -> bool:
    """True when the built-in dataset exists and comes from the current generator version.

    A dataset rendered by an older version of :mod:`flagvision.synthetic.scenes` counts as missing: the next
    :func:`ensure_builtin` renders it again, so every workspace trains on the same scenes.
    """
    from flagvision.synthetic.scenes import GENERATOR_VERSION

    try:
        manifest = json.loads((builtin_path(ws) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("version") == GENERATOR_VERSION


def ensure_builtin(
    ws: Workspace, progress: Callable[[int, int], None] | None = None, config: SynthConfig | None = None
) -> Path:
    """Return the built-in dataset's folder, rendering it first if missing or outdated (``config``,
    default ``SynthConfig()``: a smaller one is for tests), then the Predict page's example photos."""
    path = builtin_path(ws)
    if not builtin_ready(ws):
        from flagvision.synthetic.scenes import SynthConfig, synthesize

        synthesize(path, config or SynthConfig(), progress=progress, overwrite=True)
    from flagvision.synthetic.examples import ensure_examples

    ensure_examples(ws)  # the Predict page's example photos, with the data (a few seconds, once)
    return path
