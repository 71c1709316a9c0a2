"""The workspace: one folder shared by the app, the CLI, workers and optuna-dashboard.

Layout::

    <root>/flagvision.db        SQLite (WAL): runs, metrics, jobs and Optuna's own tables
    <root>/datasets/<name>/     ImageFolder trees (``builtin`` is the generated flag set)
    <root>/runs/<id>/           config.json, checkpoint (safetensors + card.json), log
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import FlagVisionError

ENV_VAR = "FLAGVISION_HOME"
BUILTIN_DATASET = "builtin"


class WorkspaceError(FlagVisionError, ValueError):
    """A path or name that does not belong to the workspace."""


def default_root() -> Path:
    """``$FLAGVISION_HOME`` if set, else ``./workspace``."""
    return Path(os.environ.get(ENV_VAR) or "workspace").resolve()


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> Workspace:
        """Resolve the root (argument < env var < ./workspace) and create its folders."""
        ws = cls(Path(root).resolve() if root else default_root())
        for folder in (ws.root, ws.datasets_dir, ws.runs_dir):
            if folder.exists() and not folder.is_dir():
                raise WorkspaceError(f"{folder} is a file, not a folder; a workspace must be a folder")
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file on the way, no permission, read-only disk
                raise WorkspaceError(f"cannot use {folder} as a workspace folder: {exc.strerror or exc}") from None
        return ws

    @property
    def db_path(self) -> Path:
        return self.root / "flagvision.db"

    @property
    def storage_url(self) -> str:
        """Optuna storage URL of the shared SQLite file."""
        return f"sqlite:///{self.db_path}"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def dataset_dir(self, name: str = BUILTIN_DATASET) -> Path:
        return self.confine(self.datasets_dir / _plain_name(name, self.datasets_dir))

    def run_dir(self, run_id: int | str) -> Path:
        return self.confine(self.runs_dir / _plain_name(run_id, self.runs_dir))

    def list_datasets(self) -> list[str]:
        return sorted(p.name for p in self.datasets_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def confine(self, path: str | os.PathLike[str]) -> Path:
        """Return ``path`` resolved, refusing anything that escapes the workspace root.

        Relative paths are taken relative to the root. Symlinks are resolved first, so a link
        pointing outside is refused too.
        """
        p = Path(path)
        if not p.is_absolute():
            p = self.root / p
        resolved = p.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise WorkspaceError(f"{path} is outside the workspace {self.root}")
        return resolved


def _plain_name(name: int | str, parent: Path) -> str:
    """``name`` if it is one folder name; "..", "." or a path would leave ``parent`` (for the
    workspace root or a sibling folder, which confine() alone would let through)."""
    text = str(name)
    if text in ("", ".", "..") or "/" in text or "\\" in text or "\0" in text:
        raise WorkspaceError(f"{text!r} is not a folder name inside {parent}")
    return text
