"""Checkpoints are data, not pickles: safetensors weights beside a JSON card.

A checkpoint folder holds ``model.safetensors`` and ``card.json`` (model name, run config, class
names, input size, normalisation, metrics, dataset fingerprint), enough to rebuild the model and
its exact eval preprocessing. The resumable state of an unfinished run sits beside it as
``last.safetensors`` + ``last.json`` + ``last_optimizer.pt`` (a tensor-only file read with
``weights_only=True``). Every file is written to a temporary name and moved into place with
``os.replace``, so a crash or a full disk mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ConfigError, RunConfig
from .engine import EpochMetrics, History, ResumeState, model_normalization

CARD_FORMAT = "flagvision-checkpoint/1"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
LAST_WEIGHTS, LAST_CARD, LAST_OPTIMIZER = "last.safetensors", "last.json", "last_optimizer.pt"


class CheckpointError(ValueError):
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


def write_json_atomic(path: Path, data: Any) -> None:
    _atomic_write(Path(path), lambda p: Path(p).write_text(json.dumps(data, indent=2, sort_keys=True)))


def _state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; clone makes each tensor its own.
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def make_card(model: torch.nn.Module, cfg: RunConfig, class_names: list[str], fingerprint: str, **extra: Any) -> dict:
    mean, std = model_normalization(model)
    return {
        "format": CARD_FORMAT,
        "model": cfg.model,
        "label": cfg.label,
        "pretrained": bool(cfg.model == "vgg16_transfer" and cfg.vgg.pretrained),
        "config": cfg.to_dict(),
        "class_names": list(class_names),
        "input_size": cfg.data.image_size,
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
    _atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(_state_dict(model), str(p)))
    write_json_atomic(folder / CARD_FILE, card)
    return folder


def resolve_checkpoint_dir(path: str | os.PathLike[str]) -> Path:
    """Accept a checkpoint folder, a run folder, or the card/weights file inside one."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    if (p / CARD_FILE).is_file():
        return p
    if (p / "checkpoint" / CARD_FILE).is_file():
        return p / "checkpoint"
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
    if not isinstance(card["class_names"], list) or len(card["class_names"]) < 2:
        raise CheckpointError(f"{folder / CARD_FILE}: card needs a list of at least two class names")
    return card


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu"):
    """Rebuild the model of a checkpoint and load its weights; return ``(model, card)``."""
    from .models import get_model  # late import: models imports torchvision, heavy

    folder = resolve_checkpoint_dir(path)
    card = read_card(folder)
    try:
        cfg = RunConfig.from_dict(card["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{folder}: the card's config is invalid: {exc}") from None
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


def save_last_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, history: History, epoch: int) -> None:
    """State after ``epoch`` completed, enough to continue with ``epoch + 1``."""
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / LAST_WEIGHTS, lambda p: save_file(_state_dict(model), str(p)))
    _atomic_write(folder / LAST_OPTIMIZER, lambda p: torch.save(optimizer.state_dict(), p))
    write_json_atomic(
        folder / LAST_CARD,
        {
            "next_epoch": epoch + 1,
            "history": [m.to_dict() for m in history.epochs],
            "best_epoch": history.best_epoch,
            "best_val_acc": history.best_val_acc,
        },
    )


def load_last_state(folder: Path, model: torch.nn.Module) -> ResumeState:
    """Load the last completed epoch's weights into ``model``; return where to continue."""
    try:
        meta = json.loads((folder / LAST_CARD).read_text())
        model.load_state_dict(load_file(str(folder / LAST_WEIGHTS)), strict=True)
        optimizer_state = torch.load(folder / LAST_OPTIMIZER, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no resumable state (the run finished no epoch)") from None
    except (OSError, json.JSONDecodeError, SafetensorError, RuntimeError, Exception) as exc:
        raise CheckpointError(f"{folder}: resumable state is damaged ({exc})") from None
    history = History(
        epochs=[EpochMetrics(**m) for m in meta["history"]],
        best_epoch=meta["best_epoch"],
        best_val_acc=meta["best_val_acc"],
    )
    return ResumeState(next_epoch=int(meta["next_epoch"]), optimizer_state=optimizer_state, history=history)
