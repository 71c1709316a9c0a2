"""Two models on the same footing: one photo (who is surer, do they agree) and the check set
(where their answers differ, kept per pair of checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flagvision.inference.compare import (
    CompareError,
    agreement,
    checkset_disagreements,
    classes_differ,
    compare,
    compare_on_checkset,
    comparison_text,
    disagreement_summary,
    disagreements,
    load_comparison,
)
from flagvision.inference.predict import Prediction

NAMES = ("Custom CNN", "VGG-16 transfer")


def pred(*top: tuple[str, float]) -> Prediction:
    return Prediction(list(top))


HOLLAND_92 = pred(("Holland", 0.92), ("France", 0.05), ("Croatia", 0.02))
HOLLAND_61 = pred(("Holland", 0.61), ("Croatia", 0.30), ("France", 0.05))
CROATIA_92 = pred(("Croatia", 0.92), ("Slovenia", 0.04), ("Holland", 0.02))


# -- one photo ---------------------------------------------------------------------------------


def test_the_surer_model_is_the_one_with_the_higher_calibrated_confidence_and_a_point_is_a_tie():
    assert compare(HOLLAND_92, HOLLAND_61).surer == 0
    assert compare(HOLLAND_61, HOLLAND_92).surer == 1
    assert compare(HOLLAND_92, pred(("Holland", 0.915))).surer is None  # within one point: as sure
    assert compare(HOLLAND_92, pred(("Holland", 0.905))).surer == 0


def test_where_each_answer_stands_in_the_others_top_3():
    c = compare(HOLLAND_61, CROATIA_92)
    assert not c.same_answer and c.b_in_a == 2 and c.a_in_b == 3
    c = compare(pred(("Spain", 0.5), ("Italy", 0.2), ("Malta", 0.1), ("Croatia", 0.1)), CROATIA_92)
    assert c.b_in_a is None and c.a_in_b is None  # fourth is not in the top 3


def test_the_badge_agrees_partly_agrees_or_disagrees():
    assert agreement(HOLLAND_92, HOLLAND_61) == "agree"
    assert agreement(HOLLAND_61, CROATIA_92) == "partly agree"
    only_one_way = pred(("Spain", 0.9), ("Croatia", 0.05), ("Malta", 0.01))  # has Croatia; Croatia lacks Spain
    assert compare(only_one_way, CROATIA_92).a_in_b is None and agreement(only_one_way, CROATIA_92) == "partly agree"
    assert agreement(pred(("Spain", 0.9), ("Malta", 0.1)), CROATIA_92) == "disagree"


def test_both_sure_of_the_same_answer():
    assert comparison_text(HOLLAND_92, HOLLAND_61, NAMES, 0.5) == (
        "Both answer Holland. Custom CNN is surer (92% vs 61%)."
    )
    assert comparison_text(HOLLAND_92, pred(("Holland", 0.915)), NAMES, 0.5) == (
        "Both answer Holland. They are as sure (92% and 92%)."
    )


def test_the_same_answer_with_one_or_both_models_not_sure():
    assert comparison_text(HOLLAND_92, HOLLAND_61, NAMES, 0.8) == (
        "Both lean to Holland, but VGG-16 transfer is not sure. Custom CNN is surer (92% vs 61%)."
    )
    assert comparison_text(HOLLAND_61, HOLLAND_92, NAMES, 0.8).startswith(
        "Both lean to Holland, but Custom CNN is not sure. VGG-16 transfer is surer"
    )
    assert comparison_text(HOLLAND_92, HOLLAND_61, NAMES, 0.95) == (
        "Neither is sure; both lean to Holland. Custom CNN is surer (92% vs 61%)."
    )


def test_different_answers_say_who_is_surer_and_where_each_has_the_others_answer():
    assert comparison_text(HOLLAND_61, CROATIA_92, NAMES, 0.5) == (
        "They disagree: Custom CNN answers Holland, VGG-16 transfer answers Croatia. "
        "VGG-16 transfer is surer (92% vs 61%). Custom CNN has Croatia second, VGG-16 transfer has Holland third."
    )
    spain = pred(("Spain", 0.7), ("Croatia", 0.2), ("Malta", 0.05))  # has Croatia; Croatia's top 3 lacks Spain
    assert comparison_text(spain, CROATIA_92, NAMES, 0.5).endswith(
        "VGG-16 transfer is surer (92% vs 70%). Custom CNN has Croatia second; Spain is not in the top 3 of "
        "VGG-16 transfer."
    )
    assert comparison_text(CROATIA_92, spain, NAMES, 0.5).endswith(
        "VGG-16 transfer has Croatia second; Spain is not in the top 3 of Custom CNN."
    )
    assert comparison_text(pred(("Spain", 0.915), ("Malta", 0.05)), CROATIA_92, NAMES, 0.5) == (
        "They disagree: Custom CNN answers Spain, VGG-16 transfer answers Croatia. They are as sure (92% and 92%). "
        "Neither has the other's answer in its top 3."
    )


def test_a_model_below_the_threshold_is_named_not_sure_when_they_disagree():
    text = comparison_text(HOLLAND_61, CROATIA_92, NAMES, 0.8)
    assert text.startswith(
        "They disagree: Custom CNN is not sure (closest: Holland), VGG-16 transfer answers Croatia. "
        "VGG-16 transfer is surer (92% vs 61%)."
    )
    spain = pred(("Spain", 0.95), ("Malta", 0.05))
    assert comparison_text(spain, CROATIA_92, NAMES, 0.5) == (
        "They disagree: Custom CNN answers Spain, VGG-16 transfer answers Croatia. Custom CNN is surer (95% vs 92%). "
        "Neither has the other's answer in its top 3."
    )


def test_models_with_other_classes_cannot_be_compared():
    assert classes_differ(NAMES, ["a", "b"], ["b", "a"]) is None
    line = classes_differ(NAMES, ["a", "b"], ["a", "c", "d"])
    assert line == (
        "Custom CNN knows 2 classes and VGG-16 transfer 3, not the same ones: "
        "compare two runs trained on the same flags."
    )


# -- the check set -------------------------------------------------------------------------------


def _predictor(seed: int, classes: list[str], source: str = ""):
    import torch

    from flagvision.config import DataConfig, HyperParams, RunConfig
    from flagvision.inference.predict import Predictor
    from flagvision.models.networks import get_model

    torch.manual_seed(seed)
    hp = HyperParams(num_filters_conv1=8, num_filters_conv2=16, fc1_units=64)
    cfg = RunConfig(model="flag_cnn", hparams=hp, data=DataConfig(image_size=32))
    card = {"model": "flag_cnn", "label": f"net {seed}", "class_names": classes, "input_size": 32,
            "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}  # fmt: skip
    return Predictor(get_model("flag_cnn", len(classes), cfg), card, source=source)


@pytest.fixture(scope="module")
def small_checkset(tmp_path_factory) -> Path:
    from flagvision.synthetic.checkset import make_checkset

    folder = tmp_path_factory.mktemp("checkset") / "checkset"
    make_checkset(folder, per_class=1, size=48, framings=("closeup", "two_flags"))
    return folder


@pytest.fixture(scope="module")
def two_nets():
    from flagvision.synthetic.flags import FLAG_NAMES

    return _predictor(1, list(FLAG_NAMES)), _predictor(2, list(FLAG_NAMES))


def test_disagreements_lists_exactly_the_images_whose_answers_differ(small_checkset, two_nets):
    a, b = two_nets
    manifest = json.loads((small_checkset / "checkset.json").read_text())
    report = checkset_disagreements(a, b, small_checkset)
    paths = [small_checkset / e["file"] for e in manifest["images"]]
    answers_a, answers_b = [p.label for p in a.predict(paths, k=1)], [p.label for p in b.predict(paths, k=1)]
    differ = [str(p) for p, x, y in zip(paths, answers_a, answers_b, strict=True) if x != y]
    assert report["n_images"] == 24 and [r["image"] for r in report["rows"]] == differ
    assert differ, "two untrained nets of different seeds should differ somewhere"
    flags = {str(small_checkset / e["file"]): e["flags"] for e in manifest["images"]}
    assert report["right"]["a"] == sum(x in flags[str(p)] for p, x in zip(paths, answers_a, strict=True))
    for row in report["rows"]:
        ok = (row["answer_a"] in flags[row["image"]], row["answer_b"] in flags[row["image"]])
        assert row["right"] == {(True, True): "both", (True, False): "a", (False, True): "b"}.get(ok, "neither")
        assert row["framing"] in ("closeup", "two_flags") and row["true"] == " + ".join(flags[row["image"]])
        assert 0 < row["confidence_a"] <= 1
    assert report["differ_right"]["a"] == sum(r["right"] in ("a", "both") for r in report["rows"])
    summary = disagreement_summary(report, ("run #1", "run #2"))
    assert summary.startswith(f"{len(differ)} of 24 check images differ; run #1 is right on ")
    same = disagreements(a, a, paths[:3], ["France"] * 3)
    assert same["rows"] == [] and disagreement_summary(same).startswith(
        "The two models give the same answer on all 3 check images."
    )


def test_through_the_finder_each_model_reads_the_crop_of_the_best_flag(tmp_path, two_nets):
    from fv_helpers import red_cloth_finder, red_patch_photo

    photo = tmp_path / "patch.png"
    photo.write_bytes(red_patch_photo())
    a, b = two_nets
    finder = red_cloth_finder()
    report = disagreements(a, b, [photo], ["Austria"], finder)
    pa = a.predict_photo(photo, finder, k=3)[0]
    pb = b.predict_photo(photo, finder, k=3)[0]
    assert report["finder"] and len(report["rows"]) == int(pa.label != pb.label)
    assert report["right"] == {"a": int(pa.label == "Austria"), "b": int(pb.label == "Austria")}
    from flagvision.inference.predict import Predictor

    leaves = Predictor(b.model, {**b.card, "find_flags": False})  # trained on photos that are not flags
    whole = disagreements(a, leaves, [photo], ["Austria"], finder)  # both read the whole photo
    assert not whole["finder"]
    assert whole["right"]["a"] == int(a.predict([photo], k=1)[0].label == "Austria")


def test_other_classes_are_one_clear_error(small_checkset, two_nets):
    with pytest.raises(CompareError, match="not the same ones"):
        checkset_disagreements(two_nets[0], _predictor(3, ["a", "b", "c"]), small_checkset)
    strangers = _predictor(3, ["a", "b", "c"]), _predictor(4, ["c", "b", "a"])
    with pytest.raises(CompareError, match="know none of the check set's flags"):
        checkset_disagreements(*strangers, small_checkset)


def _checkpoint(folder: Path) -> str:
    """A checkpoint folder's files, as the comparison's key reads them (size and time)."""
    folder.mkdir(parents=True)
    (folder / "card.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    return str(folder)


def test_a_comparison_on_the_workspace_check_set_is_computed_once_per_pair(tmp_path, small_checkset):
    import os
    import shutil

    from flagvision.synthetic.checkset import checkset_dir, checkset_ready
    from flagvision.synthetic.flags import FLAG_NAMES
    from flagvision.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    assert not checkset_ready(ws)
    shutil.copytree(small_checkset, checkset_dir(ws))
    assert checkset_ready(ws)
    a = _predictor(1, list(FLAG_NAMES), _checkpoint(tmp_path / "a"))
    b = _predictor(2, list(FLAG_NAMES), _checkpoint(tmp_path / "b"))
    assert load_comparison(ws, a.source, b.source, with_finder=False) is None
    first = compare_on_checkset(ws, a, b)
    kept = load_comparison(ws, a.source, b.source, with_finder=False)
    assert kept == first and kept["n_images"] == 24
    assert load_comparison(ws, a.source, b.source, with_finder=True) is None  # through a finder: another one
    # The second time reads the kept file (marked here), never the models.
    (path,) = (ws.root / "comparisons").glob("*.json")
    path.write_text(json.dumps({**kept, "marked": True}))
    assert compare_on_checkset(ws, a, b)["marked"]
    # A retrained checkpoint (new weights) is another comparison.
    weights = Path(b.source) / "model.safetensors"
    weights.write_bytes(b"new weights")
    os.utime(weights, ns=(1, 1))
    assert load_comparison(ws, a.source, b.source, with_finder=False) is None
    assert "marked" not in compare_on_checkset(ws, a, b)


def test_an_older_check_set_is_drawn_again(tmp_path, small_checkset, monkeypatch):
    import shutil

    from flagvision.synthetic import checkset
    from flagvision.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    shutil.copytree(small_checkset, checkset.checkset_dir(ws))
    manifest_path = checkset.checkset_dir(ws) / "checkset.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "version": "checkset-1"}))
    assert not checkset.checkset_ready(ws)
    monkeypatch.setattr(checkset, "WORKSPACE_PER_CLASS", 1)  # the real 240 images take seconds
    folder = checkset.ensure_checkset(ws)
    assert checkset.checkset_ready(ws) and len(json.loads((folder / "checkset.json").read_text())["images"]) == 24
