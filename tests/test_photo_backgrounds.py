"""``python -m benchmarks.photo_backgrounds``: flags drawn onto real photographs, read by the pipeline."""

from __future__ import annotations

import numpy as np
from PIL import Image

from benchmarks.photo_backgrounds import main
from fv_helpers import red_cloth_finder, run_cli


def _photos(folder):
    """Two stand-ins for photographs (NumPy noise over a sky blue and a grass green), no flag."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, colour in (("sky", (90, 140, 210)), ("grass", (50, 140, 60))):
        pixels = np.clip(np.array(colour, np.float32) + rng.normal(0, 10, (300, 500, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{name}.jpg")
    return folder


def test_it_needs_a_workspace_with_a_finder_and_a_trained_cnn(workspace, tmp_path, capsys):
    assert main(["--workspace", str(workspace.root), "--photos", str(_photos(tmp_path / "p"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "flag finder" in err


def _train(data, workspace) -> None:
    trained = run_cli("train", "--data", str(data), "--epochs", "1", "--name", "tiny",
                      env={"FLAGVISION_HOME": str(workspace.root)})  # fmt: skip
    assert trained.returncode == 0, trained.stderr


def test_it_needs_a_cnn_that_knows_the_flags(tiny_dataset, workspace, tmp_path, capsys):
    from flagvision.models.finder import finder_dir

    red_cloth_finder(finder_dir(workspace))
    _train(tiny_dataset, workspace)
    assert main(["--workspace", str(workspace.root), "--photos", str(_photos(tmp_path / "p"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "24 flags" in err


def test_it_reads_flags_on_the_photographs_and_the_photographs_alone(workspace, tmp_path):
    from flagvision.models.finder import finder_dir
    from flagvision.synthetic.checkset import make_checkset

    red_cloth_finder(finder_dir(workspace))  # boxes what is red: the red flags on these photos
    make_checkset(tmp_path / "flags", per_class=3, size=40)  # an ImageFolder of the 24 flags: enough for 1 epoch
    _train(tmp_path / "flags", workspace)
    photos = _photos(tmp_path / "p")
    (photos / "broken.jpg").write_bytes(b"not a photo")
    out = tmp_path / "PB.md"
    code = main(["--workspace", str(workspace.root), "--photos", str(photos), "--per-class", "2",
                 "--no-flag", "6", "--out", str(out)])  # fmt: skip
    assert code == 0
    text = out.read_text()
    assert "| photo_scene | 24 |" in text and "| photo_vertical | 24 |" in text and "| **all** | 48 |" in text
    assert "Crops of the same photographs with no flag drawn (6): the finder finds a flag in 0.0 %" in text
    assert "Files that could not be read: broken.jpg" in text
    assert "**Photographs:** 2 (" in text
