"""Export of a checkpoint to TorchScript (and ONNX when installed)."""

from __future__ import annotations

import io
import json

import pytest
import torch

from flagvision.config import DataConfig, HyperParams, RunConfig
from flagvision.inference.export import ExportError, available_formats, export_checkpoint, export_filename
from flagvision.training.pipeline import run_training


@pytest.fixture(scope="module")
def checkpoint(tiny_dataset, tmp_path_factory):
    cfg = RunConfig(
        hparams=HyperParams(num_filters_conv1=8, num_filters_conv2=16, fc1_units=64, epochs=1),
        data=DataConfig(path=str(tiny_dataset), image_size=32),
    )
    result = run_training(cfg, tmp_path_factory.mktemp("run"))
    return result.checkpoint_dir


def test_torchscript_export_matches_the_model(checkpoint):
    from flagvision.training.checkpoints import load_checkpoint

    data = export_checkpoint(checkpoint, "torchscript")
    extra = {"card.json": ""}
    scripted = torch.jit.load(io.BytesIO(data), _extra_files=extra)
    card = json.loads(extra["card.json"])
    assert card["input_size"] == 32 and len(card["class_names"]) == 3
    model, _ = load_checkpoint(checkpoint)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-4, atol=1e-4)
    assert export_filename(checkpoint, "torchscript", stem="run7") == "flagvision-run7.pt"


def test_unknown_or_unavailable_format_is_refused(checkpoint):
    with pytest.raises(ExportError, match="valid"):
        export_checkpoint(checkpoint, "tflite")
    if "onnx" not in available_formats():
        with pytest.raises(ExportError, match="not installed"):
            export_checkpoint(checkpoint, "onnx")
