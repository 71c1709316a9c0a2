"""Checkpoints are data, not pickles: safetensors weights beside a JSON card.

A checkpoint folder holds ``model.safetensors`` and ``card.json`` (model name, run config, class
names, input size, normalisation, metrics, dataset fingerprint, calibration temperature), enough
to rebuild the model, its exact eval preprocessing and its calibrated probabilities. The
resumable state of an unfinished run sits beside it as ``last.safetensors`` + ``last.json`` +
``last_optimizer.pt`` (a tensor-only file read with ``weights_only=True``). Every file is written
to a temporary name and moved into place with ``os.replace``, so a crash or a full disk mid-write
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from flagvision import strict_json
from flagvision.config import ConfigError, RunConfig, model_info
from flagvision.errors import FlagVisionError
from flagvision.training.engine import EpochMetrics, History, ResumeState, model_normalization

# The file names are defined with the rest of the run folder's layout (workspace.py, which the
# torch-free app poll imports too); they are this module's names as well.
from flagvision.workspace import CARD_FILE, LAST_CARD, LAST_OPTIMIZER, LAST_WEIGHTS, WEIGHTS_FILE, RunPaths

CARD_FORMAT = "flagvision-checkpoint/1"


class CheckpointError(FlagVisionError, ValueError):
    """A checkpoint that cannot be loaded; the message says what is wrong with it."""


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _atomic_write_all(writes: list[tuple[Path, Any]]) -> None:
    """Write several files so that they change together: every temporary file is written (and
    synced) before the first is renamed into place, so a failed write (a full disk) leaves all the
    previous files as they were, not new weights beside an old card or optimizer state."""
    tmps: list[tuple[Path, Path]] = []
    try:
        for path, write in writes:
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            tmps.append((tmp, path))
            write(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        for tmp, path in tmps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in tmps:
            if tmp.exists():
                tmp.unlink()


def _json_writer(data: Any):
    # Strict JSON (a NaN loss or an absent class's accuracy as null): cards and evaluation.json are
    # read by other programs, and NaN is not JSON.
    return lambda p: Path(p).write_text(strict_json.dumps(data, indent=2, sort_keys=True))


def write_json_atomic(path: Path, data: Any) -> None:
    _atomic_write(Path(path), _json_writer(data))


def _state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; clone makes each tensor its own.
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def make_card(model: torch.nn.Module, cfg: RunConfig, class_names: list[str], fingerprint: str, **extra: Any) -> dict:
    mean, std = model_normalization(model)
    return {
        "format": CARD_FORMAT,
        "model": cfg.model,
        "label": cfg.label,
        "pretrained": bool(model_info(cfg.model).needs_weights and cfg.vgg.pretrained),
        "config": cfg.to_dict(),
        "class_names": list(class_names),
        "input_size": cfg.data.image_size,
        "find_flags": cfg.data.find_flags,  # False: prediction reads the whole photo, no flag finder
        "resize": "squash",
        "normalization": {"mean": list(mean), "std": list(std)},
        "dataset_fingerprint": fingerprint,
        "created_at": time.time(),
        **extra,
    }


def save_checkpoint(folder: str | os.PathLike[str], model: torch.nn.Module, card: dict) -> Path:
    """Write weights then card (the card last: a folder with a card always has its weights)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write_all(
        [
            (folder / WEIGHTS_FILE, lambda p: save_file(_state_dict(model), str(p))),
            (folder / CARD_FILE, _json_writer(card)),
        ]
    )
    return folder


def resolve_checkpoint_dir(path: str | os.PathLike[str]) -> Path:
    """Accept a checkpoint folder, a run folder, or the card/weights file inside one."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    if (p / CARD_FILE).is_file():
        return p
    if RunPaths(p).card.is_file():
        return RunPaths(p).checkpoint
    raise CheckpointError(f"{path}: no FlagVision checkpoint here (expected {CARD_FILE} and {WEIGHTS_FILE})")


def read_card(folder: Path) -> dict:
    try:
        card = json.loads((folder / CARD_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder / CARD_FILE}: unreadable card ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise CheckpointError(f"{folder / CARD_FILE}: not a {CARD_FORMAT} card")
    for key in ("model", "config", "class_names", "input_size", "normalization"):
        if key not in card:
            raise CheckpointError(f"{folder / CARD_FILE}: card lacks '{key}'")
    names = card["class_names"]
    if (
        not isinstance(names, list)
        or len(names) < 2
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise CheckpointError(f"{folder / CARD_FILE}: card needs a list of at least two distinct class names")
    norm = card["normalization"]
    for key in ("mean", "std"):
        values = norm.get(key) if isinstance(norm, dict) else None
        if (
            not isinstance(values, list)
            or len(values) != 3
            or not all(_finite_number(v) and (key == "mean" or v > 0) for v in values)
        ):
            raise CheckpointError(
                f"{folder / CARD_FILE}: card's normalization needs a {key} of 3 numbers"
                + (" above 0" if key == "std" else "")
            )
    if "temperature" in card and not (_finite_number(card["temperature"]) and card["temperature"] > 0):
        raise CheckpointError(f"{folder / CARD_FILE}: card's temperature must be a number above 0")
    return card


def card_temperature(card: dict) -> float:
    """The card's calibration temperature (fitted at the end of training); 1.0 for a card written
    before calibration existed, which leaves its probabilities as they were."""
    return float(card.get("temperature", 1.0))


def card_finds_flags(card: dict) -> bool:
    """Whether the model's photos show flags, so prediction finds the flag first (the run's
    ``data.find_flags``); True for a card written before the setting existed."""
    data = card.get("config", {}).get("data") if isinstance(card.get("config"), dict) else None
    value = card.get("find_flags", data.get("find_flags", True) if isinstance(data, dict) else True)
    return value is not False


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu"):
    """Rebuild the model of a checkpoint and load its weights; return ``(model, card)``."""
    from flagvision.models.networks import get_model  # late import: models imports torchvision, heavy

    folder = resolve_checkpoint_dir(path)
    card = read_card(folder)
    try:
        cfg = RunConfig.from_dict(card["config"])
    except (ConfigError, TypeError, AttributeError, KeyError) as exc:
        raise CheckpointError(f"{folder}: the card's config is invalid: {exc}") from None
    # The preprocessing follows the card: it must be the one the weights were trained with (a
    # hostile input_size could also ask for a gigantic resize).
    if card["model"] != cfg.model:
        raise CheckpointError(f"{folder}: the card says model {card['model']!r} but its config says {cfg.model!r}")
    if card["input_size"] != cfg.data.image_size or isinstance(card["input_size"], bool):
        raise CheckpointError(
            f"{folder}: the card's input_size {card['input_size']!r} differs from its config's image size "
            f"{cfg.data.image_size}"
        )
    try:
        # The weights file holds the whole network, so ImageNet weights are not needed to rebuild it.
        model = get_model(cfg.model, len(card["class_names"]), cfg, from_checkpoint=True)
    except ValueError as exc:
        raise CheckpointError(f"{folder}: {exc}") from None
    weights = folder / WEIGHTS_FILE
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError(
            f"{weights}: the weights do not fit a {cfg.model} with {len(card['class_names'])} classes "
            f"as the card describes ({' '.join(first)})"
        ) from None
    model.to(device).eval()
    model.pretrained = bool(card.get("pretrained", False))  # for labels in every output
    return model, card


# --- resumable state of an unfinished run ------------------------------------------------------


def save_last_state(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, history: History, epoch: int
) -> None:
    """State after ``epoch`` completed, enough to continue with ``epoch + 1``."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "next_epoch": epoch + 1,
        "history": [m.to_dict() for m in history.epochs],
        "best_epoch": history.best_epoch,
        "best_val_acc": history.best_val_acc,
    }
    _atomic_write_all(
        [
            (folder / LAST_WEIGHTS, lambda p: save_file(_state_dict(model), str(p))),
            (folder / LAST_OPTIMIZER, lambda p: torch.save(optimizer.state_dict(), p)),
            (folder / LAST_CARD, _json_writer(meta)),
        ]
    )


def load_last_state(folder: Path, model: torch.nn.Module) -> ResumeState:
    """Load the last completed epoch's weights into ``model``; return where to continue."""
    try:
        meta = json.loads((folder / LAST_CARD).read_text())
        model.load_state_dict(load_file(str(folder / LAST_WEIGHTS)), strict=True)
        optimizer_state = torch.load(folder / LAST_OPTIMIZER, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no resumable state (the run finished no epoch)") from None
    # A damaged file makes torch.load raise EOFError, UnpicklingError, RuntimeError...: all mean "damaged".
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{folder}: resumable state is damaged ({exc})") from None
    history = History(
        epochs=[EpochMetrics(**m) for m in meta["history"]],
        best_epoch=meta["best_epoch"],
        best_val_acc=meta["best_val_acc"],
    )
    return ResumeState(next_epoch=int(meta["next_epoch"]), optimizer_state=optimizer_state, history=history)
