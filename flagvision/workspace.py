"""The workspace: one folder shared by the app, the CLI, workers and optuna-dashboard.

Layout::

    <root>/flagvision.db        SQLite (WAL): runs, metrics, jobs and Optuna's own tables
    <root>/datasets/<name>/     ImageFolder trees (``builtin`` is the generated flag set)
    <root>/runs/<id>/           one run's folder: every file of it is named by :class:`RunPaths`
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flagvision.errors import FlagVisionError

ENV_VAR = "FLAGVISION_HOME"
BUILTIN_DATASET = "builtin"
FINDER_DIR = "finder"  # the flag finder's checkpoint (WEIGHTS_FILE + CARD_FILE), shared by every classifier

# The names inside a run folder, defined once here (no torch: the app's poll reads them too).
# checkpoints.py owns the checkpoint format and re-exports the checkpoint folder's names.
CONFIG_FILE = "config.json"  # the resolved RunConfig
CHECKPOINT_DIR = "checkpoint"  # the best epoch's checkpoint and the state to resume
WEIGHTS_FILE = "model.safetensors"  # in CHECKPOINT_DIR: the best epoch's weights
CARD_FILE = "card.json"  # in CHECKPOINT_DIR: model, config, classes, preprocessing, metrics
LAST_WEIGHTS = "last.safetensors"  # in CHECKPOINT_DIR: the last completed epoch's weights
LAST_CARD = "last.json"  # in CHECKPOINT_DIR: next epoch and history, to resume
LAST_OPTIMIZER = "last_optimizer.pt"  # in CHECKPOINT_DIR: optimizer state (tensors only)
EVALUATION_FILE = "evaluation.json"  # accuracy, per-class accuracy, confusion matrix, misclassified
OWNER_FILE = "owner.json"  # pid and start time of the process training the run
LOG_FILE = "log.txt"  # stdout and stderr of a background job's worker (none for a foreground run)


class WorkspaceError(FlagVisionError, ValueError):
    """A path or name that does not belong to the workspace."""


class _RunFile:
    """A file of the run folder (or of its checkpoint folder), read as an attribute of :class:`RunPaths`."""

    def __init__(self, name: str, in_checkpoint: bool = False) -> None:
        self.name, self.in_checkpoint = name, in_checkpoint

    def __get__(self, paths: RunPaths, owner: type | None = None) -> Path:
        return (paths.root / CHECKPOINT_DIR if self.in_checkpoint else paths.root) / self.name


@dataclass(frozen=True)
class RunPaths:
    """Every file of one run folder, ``runs/<id>/``, from its root.

    ``checkpoint`` is a folder (what ``load_checkpoint`` and ``predict`` take); ``weights`` and
    ``card`` are the best epoch's checkpoint in it, ``last_*`` the state a resume continues from.
    """

    root: Path

    config = _RunFile(CONFIG_FILE)
    checkpoint = _RunFile(CHECKPOINT_DIR)
    weights = _RunFile(WEIGHTS_FILE, in_checkpoint=True)
    card = _RunFile(CARD_FILE, in_checkpoint=True)
    last_weights = _RunFile(LAST_WEIGHTS, in_checkpoint=True)
    last_card = _RunFile(LAST_CARD, in_checkpoint=True)
    last_optimizer = _RunFile(LAST_OPTIMIZER, in_checkpoint=True)
    evaluation = _RunFile(EVALUATION_FILE)
    owner = _RunFile(OWNER_FILE)
    log = _RunFile(LOG_FILE)

    @property
    def has_resumable_state(self) -> bool:
        """Whether a resume can continue this run (its last epoch's state was written)."""
        return self.last_card.is_file()

    @property
    def last_state(self) -> tuple[Path, Path, Path]:
        """The three files a resume reads (written together after every epoch)."""
        return (self.last_weights, self.last_card, self.last_optimizer)

    def read_evaluation(self) -> dict | None:
        """The run's ``evaluation.json`` (test-split figures), or None before it is written. Cheap
        (no torch): the Runs page reads it on its first paint."""
        import json

        return json.loads(self.evaluation.read_text()) if self.evaluation.is_file() else None

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file a run folder can hold (``log`` only for a background job's run)."""
        return (
            self.log,
            self.config,
            self.owner,
            self.weights,
            self.card,
            *self.last_state,
            self.evaluation,
        )


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

    def run_paths(self, run_id: int | str) -> RunPaths:
        """The files of run ``run_id``'s folder (the folder itself is made by ``runs.create_run``)."""
        return RunPaths(self.run_dir(run_id))

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


@contextmanager
def staged_folder(out: Path, overwrite: bool) -> Iterator[Path]:
    """Write a folder in an empty sibling of ``out``, then put it in place of ``out`` by renames only,
    so a reader sees the old folder or the new one, never a half-written mix; on any error (or
    Ctrl-C) the sibling is removed and ``out`` is left as it was. A non-empty ``out`` is refused
    (FileExistsError) unless ``overwrite``."""
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
