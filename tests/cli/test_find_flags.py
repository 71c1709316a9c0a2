"""``train --no-find-flags``: a model of photos that are not flags reads the whole photo in
``predict`` and ``evaluate``, even in a workspace with a flag finder (issue 14)."""

import json
import shutil

from flagvision.inference.photos import WHOLE_PHOTO_MODEL
from fv_helpers import make_pattern_dataset, red_cloth_finder, red_patch_photo, run_cli


def test_a_checkpoint_trained_with_no_find_flags_reads_the_whole_photo(tmp_path):
    from flagvision.models.finder import finder_dir
    from flagvision.workspace import Workspace

    data = make_pattern_dataset(tmp_path / "data", per_class=6)
    ws = tmp_path / "ws"
    out = run_cli("--workspace", str(ws), "train", "--data", str(data), "--epochs", "1", "--image-size", "32",
                  "--no-find-flags")  # fmt: skip
    assert out.returncode == 0, out.stderr
    leaves = ws / "runs" / "1" / "checkpoint"
    card = json.loads((leaves / "card.json").read_text())
    assert card["find_flags"] is False and card["config"]["data"]["find_flags"] is False
    assert json.loads((ws / "runs" / "1" / "config.json").read_text())["data"]["find_flags"] is False
    red_cloth_finder(finder_dir(Workspace.open(ws)))
    # The control: the same weights with a card that allows the finder find the red patch.
    flags = tmp_path / "flags"
    shutil.copytree(leaves, flags)
    card["find_flags"] = card["config"]["data"]["find_flags"] = True
    (flags / "card.json").write_text(json.dumps(card))
    photo = tmp_path / "patch.png"
    photo.write_bytes(red_patch_photo())

    def predict(ckpt, *extra):
        out = run_cli("--workspace", str(ws), "predict", "--checkpoint", str(ckpt), str(photo), "--json", *extra)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["predictions"][0]

    boxed = predict(flags)
    assert boxed["box"] is not None and boxed["finder"] == "1 flag found"
    whole = predict(leaves)
    assert whole["box"] is None and whole["flags"] == [] and whole["finder"] == WHOLE_PHOTO_MODEL
    assert predict(flags, "--whole-photo")["finder"] == "off (--whole-photo)"  # still forces it off for all

    def evaluate(ckpt):
        out = run_cli("--workspace", str(ws), "evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    assert evaluate(flags)["finder"] is True
    report = evaluate(leaves)
    assert report["finder"] is False and report["find_flags"] is False and report["n_images"] == 18
    text = run_cli("--workspace", str(ws), "evaluate", "--checkpoint", str(leaves), "--data", str(data))
    assert text.returncode == 0 and f"({WHOLE_PHOTO_MODEL})" in text.stdout.splitlines()[0]
