"""Export a checkpoint for use outside FlagVision: ONNX (any ONNX runtime) or a ``torch.export`` program.

The exported file holds the network only. Input ``image``: float32 N×3×S×S, any batch size N, an
RGB photo squashed to S×S, scaled to 0–1 and normalised as ``(x - mean) / std``; output ``logits``:
N×K in the class order of the card. That contract (input size, mean/std, class names) travels
inside the file as ``card.json``: an ONNX metadata property (``InferenceSession.get_modelmeta()
.custom_metadata_map["card.json"]``) or an extra file of the ``.pt2`` archive
(``torch.export.load(f, extra_files={"card.json": ""})``), so the export is usable without its
checkpoint folder. :func:`export_checkpoint` returns the bytes, so the app can hand them to a
download button and the CLI can write them to a file.

TorchScript is gone: torch marks ``torch.jit.trace``/``save``/``load`` deprecated in favour of
``torch.export``. This module imports torch only inside its functions, so the CLI's parser can
read :data:`FORMATS` without paying for torch.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flagvision.errors import FlagVisionError
from flagvision.workspace import CARD_FILE

if TYPE_CHECKING:  # annotations only: the module imports torch inside its functions
    import torch

FORMATS = {"onnx": ".onnx", "torch_export": ".pt2"}  # format name → file suffix
CARD_KEY = CARD_FILE  # the contract's name inside an exported file (ONNX metadata, .pt2 extra file)
ONNX_OPSET = 18  # what onnxruntime ≥ 1.14 runs; torch's exporter writes its own default otherwise
_ONNX_NEEDS = ("onnx", "onnxscript")  # torch.onnx.export(dynamo=True) imports both
_CARD_KEYS = ("model", "label", "pretrained", "class_names", "input_size", "normalization", "resize")


class ExportError(FlagVisionError, ValueError):
    """An export that cannot be made (unknown format, missing package); the message says why."""


def _check_format(fmt: str) -> None:
    if fmt == "torchscript":
        raise ExportError(
            "TorchScript export was replaced by torch_export (torch marks TorchScript deprecated); "
            f"valid: {', '.join(FORMATS)}"
        )
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")


def available_formats() -> list[str]:
    """Formats this installation can write: ONNX when its exporter's packages are importable, torch_export always."""
    formats = ["torch_export"]
    if all(importlib.util.find_spec(name) is not None for name in _ONNX_NEEDS):
        formats.insert(0, "onnx")  # first: the format that runs without torch
    return formats


def export_filename(checkpoint: str | os.PathLike[str], fmt: str, stem: str = "") -> str:
    from flagvision.training.checkpoints import resolve_checkpoint_dir

    _check_format(fmt)
    stem = stem or Path(resolve_checkpoint_dir(checkpoint)).parent.name or "model"
    return f"flagvision-{stem}{FORMATS[fmt]}"


def export_card(card: dict) -> dict[str, Any]:
    """The part of a checkpoint card an exported file carries: what a caller needs to feed it."""
    out: dict[str, Any] = {k: card[k] for k in _CARD_KEYS if k in card}
    out["input"] = {
        "name": "image",
        "shape": ["batch", 3, int(card["input_size"]), int(card["input_size"])],
        "dtype": "float32",
        "preprocessing": "RGB squashed to input_size × input_size, scaled to 0-1, then (x - mean) / std",
    }
    out["output"] = {"name": "logits", "shape": ["batch", len(card["class_names"])], "order": "class_names"}
    return out


def export_checkpoint(checkpoint: str | os.PathLike[str], fmt: str = "onnx") -> bytes:
    """The checkpoint's network as ONNX or ``torch.export`` (.pt2) bytes, its contract inside."""
    import torch

    from flagvision.training.checkpoints import load_checkpoint

    _check_format(fmt)
    if fmt not in available_formats():
        missing = [name for name in _ONNX_NEEDS if importlib.util.find_spec(name) is None]
        raise ExportError(
            f"{fmt} export needs the package(s) {', '.join(missing)}, which are not installed; "
            f"install them (pip install -r requirements.txt) or use torch_export"
        )
    model, card = load_checkpoint(checkpoint)
    model.eval()
    size = int(card["input_size"])
    # A batch of 2, not 1: torch.export specialises a dimension of size 1, and the batch is dynamic.
    example = torch.zeros(2, 3, size, size)
    contract = json.dumps(export_card(card), indent=2)
    if fmt == "torch_export":
        return _torch_export(model, example, contract)
    return _onnx_export(model, example, contract)


def _torch_export(model: torch.nn.Module, example: torch.Tensor, contract: str) -> bytes:
    import io

    import torch

    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={CARD_KEY: contract})
    return buffer.getvalue()


def _onnx_export(model: torch.nn.Module, example: torch.Tensor, contract: str) -> bytes:
    import torch

    program = torch.onnx.export(
        model,
        (example,),
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes=({0: "batch"},),
        opset_version=ONNX_OPSET,
        dynamo=True,  # torch.export-based exporter; the TorchScript-based one is deprecated
        verbose=False,  # its step-by-step lines would land in the CLI's output
    )
    if program is None:  # typed Optional for the legacy path only
        raise RuntimeError("torch.onnx.export returned no program")
    program.model.metadata_props[CARD_KEY] = contract
    program.model.doc_string = "FlagVision flag classifier; input contract and class names in metadata card.json"
    # In memory, not program.save(path): a path would put the weights in a separate external-data file.
    return program.model_proto.SerializeToString()
