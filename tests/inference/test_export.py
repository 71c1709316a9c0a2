"""Export of a checkpoint to ONNX (run in onnxruntime) and to torch.export, for both models.

Every test here turns a FutureWarning or DeprecationWarning into an error, so an export path that
torch (or the ONNX exporter) marks deprecated fails the suite instead of printing a warning.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from flagvision.cli.main import main
from flagvision.config import DataConfig, HyperParams, RunConfig, VGGConfig
from flagvision.inference.export import CARD_KEY, ExportError, available_formats, export_checkpoint, export_filename
from flagvision.models.networks import get_model
from flagvision.training.checkpoints import load_checkpoint, make_card, save_checkpoint
from fv_helpers import run_cli

pytestmark = pytest.mark.filterwarnings("error::FutureWarning", "error::DeprecationWarning")

CLASSES = ["austria", "france", "germany"]
CONFIGS = {
    "flag_cnn": RunConfig(
        hparams=HyperParams(num_filters_conv1=8, num_filters_conv2=16, fc1_units=64),
        data=DataConfig(image_size=32),
    ),
    # Two of VGG-16's five blocks, random init: the same network code as the full transfer model.
    "vgg16_transfer": RunConfig(
        model="vgg16_transfer",
        data=DataConfig(image_size=32),
        vgg=VGGConfig(blocks=2, pretrained=False, head_units=32),
    ),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def checkpoint(request, tmp_path_factory):
    torch.manual_seed(0)
    cfg = CONFIGS[request.param]
    model = get_model(cfg.model, len(CLASSES), cfg)
    folder = tmp_path_factory.mktemp(request.param) / "checkpoint"
    save_checkpoint(folder, model, make_card(model, cfg, CLASSES, "fp"))
    return folder


def _inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, 3, 32, 32, generator=g) for n in (1, 2, 5)]  # the batch is dynamic


def _reference(checkpoint, x: torch.Tensor) -> torch.Tensor:
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        return model.eval()(x)


def test_onnx_runs_in_onnxruntime_like_pytorch(checkpoint):
    import onnxruntime as ort

    assert "onnx" in available_formats()
    session = ort.InferenceSession(export_checkpoint(checkpoint, "onnx"), providers=["CPUExecutionProvider"])
    (image,), (logits,) = session.get_inputs(), session.get_outputs()
    assert (image.name, logits.name) == ("image", "logits")
    assert isinstance(image.shape[0], str) and image.shape[1:] == [3, 32, 32]
    for x in _inputs():
        (got,) = session.run(None, {"image": x.numpy()})
        np.testing.assert_allclose(got, _reference(checkpoint, x).numpy(), rtol=1e-4, atol=1e-4)

    card = json.loads(session.get_modelmeta().custom_metadata_map[CARD_KEY])
    assert card["class_names"] == CLASSES
    assert card["input_size"] == 32 and card["input"]["shape"] == ["batch", 3, 32, 32]
    _, ckpt_card = load_checkpoint(checkpoint)
    assert card["normalization"] == ckpt_card["normalization"] and card["model"] == ckpt_card["model"]


def test_torch_export_round_trip(checkpoint):
    data = export_checkpoint(checkpoint, "torch_export")
    extra = {CARD_KEY: ""}
    program = torch.export.load(io.BytesIO(data), extra_files=extra)
    card = json.loads(extra[CARD_KEY])
    assert card["class_names"] == CLASSES and card["input_size"] == 32
    for x in _inputs():
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x), _reference(checkpoint, x), rtol=1e-4, atol=1e-4)
    assert export_filename(checkpoint, "torch_export", stem="run7") == "flagvision-run7.pt2"
    assert export_filename(checkpoint, "onnx", stem="run7") == "flagvision-run7.onnx"


def test_unknown_or_retired_format_is_refused(checkpoint):
    with pytest.raises(ExportError, match="unknown export format 'tflite'; valid: onnx, torch_export"):
        export_checkpoint(checkpoint, "tflite")
    with pytest.raises(ExportError, match="replaced by torch_export"):
        export_checkpoint(checkpoint, "torchscript")


@pytest.mark.parametrize("checkpoint", ["flag_cnn"], indirect=True)
def test_cli_export_writes_a_file_onnxruntime_reads(checkpoint, tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "model.onnx"
    done = run_cli("export", "--checkpoint", str(checkpoint), "--out", str(out))  # a real process: its output
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "[torch.onnx]" not in done.stdout + done.stderr
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map[CARD_KEY])["class_names"] == CLASSES

    # A folder as --out: the file gets its default name there.
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "torch_export", "--out", str(tmp_path)]) == 0
    program = torch.export.load(tmp_path / export_filename(checkpoint, "torch_export"))
    x = _inputs()[1]
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), _reference(checkpoint, x), rtol=1e-4, atol=1e-4)


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no FlagVision checkpoint" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main(["export", "--checkpoint", str(tmp_path), "--format", "torchscript"])
    assert exc.value.code == 2 and "invalid choice: 'torchscript'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["export", "--help"])
    assert exc.value.code == 0 and "torch_export" in capsys.readouterr().out
