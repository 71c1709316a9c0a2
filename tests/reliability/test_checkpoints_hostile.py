"""Hostile checkpoints and weights files through every entry point that loads them.

A code payload must never run: each test plants a pickle whose unpickling writes a marker file and
shows the marker is never created (and ``test_payload_is_live`` shows that it would be, if
anything unpickled it). ``tests/training/test_checkpoints.py`` covers ``load_checkpoint`` and
``load_last_state`` themselves; here are the CLI, the Predict page, a resumed run, ``weights
import`` and the card fields a hostile card could abuse.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest

from reliability_kit import (
    CLI_CKPT,
    LOAD,
    PREDICT_PAGE,
    RESUME,
    WEIGHTS,
    app,
    encode,
    expect,
    no_exceptions,
    pickle_payload,
    torch_payload,
)


def _msg(text: str) -> str:
    return text.split("“", 1)[1].split("”", 1)[0] if "“" in text else text


def test_payload_is_live(tmp_path):
    """The control: unpickling the payload does run code (so its marker's absence elsewhere counts)."""
    import torch

    marker = tmp_path / "ran"
    pickle.loads(pickle_payload(marker))
    assert marker.read_text() == "code ran"
    marker.unlink()
    (tmp_path / "evil.pt").write_bytes(torch_payload(marker))
    torch.load(tmp_path / "evil.pt", weights_only=False)  # what weights_only=True is there to prevent
    assert marker.exists()


def _copy(checkpoint: Path, dest: Path) -> Path:
    shutil.copytree(checkpoint, dest)
    return dest


def test_cli_refuses_hostile_checkpoints(checkpoint, tmp_path, flag_images, capsys):
    from safetensors.torch import save_file

    from flagvision.config import RunConfig
    from flagvision.models.networks import get_model

    marker = tmp_path / "pwned"
    poisoned = _copy(checkpoint, tmp_path / "poisoned")
    (poisoned / "model.safetensors").write_bytes(pickle_payload(marker))
    wrong_arch = _copy(checkpoint, tmp_path / "wrong_arch")
    card = json.loads((checkpoint / "card.json").read_text())
    cfg = RunConfig.from_dict(card["config"]).with_hparams(fc1_units=128)
    other = get_model("flag_cnn", 4, cfg)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(wrong_arch / "model.safetensors"))
    wrong_classes = _copy(checkpoint, tmp_path / "wrong_classes")
    card["class_names"] = [*card["class_names"], "Atlantis"]
    (wrong_classes / "card.json").write_text(json.dumps(card))
    photo = tmp_path / "france.png"
    photo.write_bytes(encode(flag_images["France"], "PNG"))

    cases = {
        "pickle with a code payload as model.safetensors": poisoned,
        "checkpoint of the wrong architecture": wrong_arch,
        "card with the wrong class count": wrong_classes,
    }
    # The code payload through a real subprocess; the others through cli.main in this process
    # (the same code; an exception would escape into the test), to save two torch imports.
    from flagvision.cli import main as cli
    from fv_helpers import run_cli

    for key, folder in cases.items():
        if key.startswith("pickle"):
            out = run_cli("predict", "--checkpoint", str(folder), str(photo))
            code, err = out.returncode, out.stderr
        else:
            code, err = cli.main(["predict", "--checkpoint", str(folder), str(photo)]), capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and err.startswith("error: "), (key, err)
        assert _msg(expect(key, CLI_CKPT)) in err, (key, err)
    assert not marker.exists()


def test_predict_page_with_a_poisoned_checkpoint(flag_ws, flag_images, tmp_path):
    marker = tmp_path / "pwned"
    (flag_ws.run_dir(1) / "checkpoint" / "model.safetensors").write_bytes(pickle_payload(marker))
    at = app("predict")
    at.file_uploader(key="predict_files").set_value(
        [("france.png", encode(flag_images["France"], "PNG"), "image/png")]
    ).run()
    no_exceptions(at)
    errors = [e.value for e in at.error]
    assert (
        len(errors) == 1 and _msg(expect("pickle with a code payload as model.safetensors", PREDICT_PAGE)) in errors[0]
    )
    assert not marker.exists()


def test_resume_with_a_poisoned_optimizer_state(flag_ws, tmp_path):
    from flagvision.training.checkpoints import CheckpointError
    from flagvision.training.pipeline import read_run_config, run_training

    marker = tmp_path / "pwned"
    run_dir = flag_ws.run_dir(1)
    assert (run_dir / "checkpoint" / "last.json").is_file()
    (run_dir / "checkpoint" / "last_optimizer.pt").write_bytes(torch_payload(marker))
    with pytest.raises(CheckpointError) as info:
        run_training(read_run_config(run_dir), run_dir, resume=True)
    assert _msg(expect("pickle with a code payload as last_optimizer.pt", RESUME)) in str(info.value)
    assert not marker.exists()


def test_weights_import_of_a_code_payload(tmp_path):
    from flagvision.models.weights import WeightsError, import_weights, weights_path
    from fv_helpers import run_cli

    marker = tmp_path / "pwned"
    evil = tmp_path / "vgg16-397923af.pth"
    evil.write_bytes(torch_payload(marker))
    torch_home = tmp_path / "torch"
    out = run_cli("weights", "import", str(evil), env={"TORCH_HOME": str(torch_home)})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "is not torchvision's vgg16-397923af.pth" in out.stderr
    # Past the hash check (a file forged to match the 32-bit prefix): the restricted loader refuses it.
    import os

    os.environ["TORCH_HOME"], saved = str(torch_home), os.environ.get("TORCH_HOME")
    try:
        prefix = hashlib.sha256(evil.read_bytes()).hexdigest()[:8]
        with pytest.raises(WeightsError, match="not a loadable PyTorch weights file"):
            import_weights(evil, expected_prefix=prefix)
        assert not weights_path().exists()
    finally:
        if saved is None:
            os.environ.pop("TORCH_HOME")
        else:
            os.environ["TORCH_HOME"] = saved
    assert not marker.exists()
    assert "not a loadable PyTorch weights file" in expect(
        "torch.save file with a code payload as the VGG-16 .pth", WEIGHTS
    )


def _mutations():
    return {
        "card input_size not the trained size (e.g. 100000: a 120 GB resize)": lambda c: c.__setitem__(
            "input_size", 100000
        ),
        "card input_size not a number": lambda c: c.__setitem__("input_size", "32"),
        "card normalization without mean": lambda c: c["normalization"].pop("mean"),
        "card normalization std 0 (NaN probabilities)": lambda c: c["normalization"].__setitem__("std", [0, 0, 0]),
        "card class names not strings / duplicated": lambda c: c.__setitem__("class_names", [1, 2, 2, 3]),
        "card model differs from its config": lambda c: c.__setitem__("model", "vgg16_transfer"),
        "card config not a mapping": lambda c: c.__setitem__("config", ["flag_cnn"]),
    }


@pytest.mark.parametrize("key", list(_mutations()))
def test_hostile_cards_refused(checkpoint, tmp_path, key):
    from flagvision.inference.predict import Predictor
    from flagvision.training.checkpoints import CheckpointError

    folder = _copy(checkpoint, tmp_path / "ck")
    card = json.loads((folder / "card.json").read_text())
    _mutations()[key](card)
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError) as info:
        Predictor.from_checkpoint(folder)
    assert _msg(expect(key, LOAD)) in str(info.value)
