"""Export a checkpoint for use outside FlagVision: TorchScript always, ONNX when it is installed.

The exported file holds the network only (input: float N×3×S×S, normalised as the card says;
output: logits in the card's class order). :func:`export_checkpoint` returns the bytes, so the
app can hand them to a download button and the CLI can write them to a file.
"""

from __future__ import annotations

import importlib.util
import io
import os
import warnings
from pathlib import Path

import torch

from flagvision.errors import FlagVisionError
from flagvision.training.checkpoints import CARD_FILE, load_checkpoint, resolve_checkpoint_dir

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}


class ExportError(FlagVisionError, ValueError):
    """An export that cannot be made (unknown format, missing package); the message says why."""


def available_formats() -> list[str]:
    """Formats this installation can write: TorchScript always, ONNX if ``onnx`` is importable."""
    formats = ["torchscript"]
    if importlib.util.find_spec("onnx") is not None:
        formats.append("onnx")
    return formats


def export_filename(checkpoint: str | os.PathLike[str], fmt: str, stem: str = "") -> str:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    stem = stem or Path(resolve_checkpoint_dir(checkpoint)).parent.name or "model"
    return f"flagvision-{stem}{FORMATS[fmt]}"


def export_checkpoint(checkpoint: str | os.PathLike[str], fmt: str = "torchscript") -> bytes:
    """The checkpoint's network as TorchScript (``torch.jit.trace``) or ONNX bytes."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt not in available_formats():
        raise ExportError(f"{fmt} export needs the '{fmt}' package, which is not installed; use torchscript")
    model, card = load_checkpoint(checkpoint)
    model.eval()
    size = int(card["input_size"])
    example = torch.zeros(1, 3, size, size)
    buffer = io.BytesIO()
    with torch.no_grad():
        if fmt == "torchscript":
            with warnings.catch_warnings():
                # torch marks TorchScript deprecated in favour of torch.export, whose files need
                # torch to run too; TorchScript still loads anywhere libtorch does (C++, mobile).
                warnings.simplefilter("ignore", FutureWarning)
                traced = torch.jit.trace(model, example, check_trace=False)
                # Class names travel inside the file, so the export is usable without the card.
                torch.jit.save(traced, buffer, _extra_files={CARD_FILE: _card_json(card)})
        else:
            # torch types f as a path but still takes a BytesIO (torch/onnx/_internal/exporter/_compat.py);
            # a path would save the weights as a separate external-data file.
            torch.onnx.export(
                model,
                (example,),
                buffer,  # type: ignore[arg-type]
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            )
    return buffer.getvalue()


def _card_json(card: dict) -> str:
    import json

    keep = ("model", "label", "class_names", "input_size", "normalization", "resize")
    return json.dumps({k: card[k] for k in keep if k in card}, indent=2)
