"""The pure helpers of two-model comparisons in the app (app_ui.compare, app_ui.answers)."""

from __future__ import annotations

import json
from pathlib import Path

from app_ui.answers import batch_summary_row, comparison_markdown
from app_ui.compare import card_classes, comparable_runs, default_pair, disagreement_rows, gallery, run_name
from flagvision.inference.predict import Prediction


def _run(tmp_path: Path, run_id: int, model: str, status: str = "succeeded", acc: float | None = None,
         card: bool = True) -> dict:  # fmt: skip
    ckpt = tmp_path / f"run{run_id}" / "checkpoint"
    ckpt.mkdir(parents=True)
    if card:
        (ckpt / "card.json").write_text(json.dumps({"class_names": ["Austria", "France"]}))
    return {"id": run_id, "model": model, "status": status, "test_acc": acc, "label": model.upper(),
            "checkpoint_path": str(ckpt)}  # fmt: skip


def test_comparable_runs_are_finished_with_a_checkpoint_best_first(tmp_path):
    runs = [
        _run(tmp_path, 1, "flag_cnn", acc=0.5),
        _run(tmp_path, 2, "flag_cnn", status="running", acc=0.9),
        _run(tmp_path, 3, "vgg16_transfer", status="cancelled", acc=0.7),
        _run(tmp_path, 4, "flag_cnn", acc=0.95, card=False),
        _run(tmp_path, 5, "flag_cnn", acc=0.8),
    ]
    assert [r["id"] for r in comparable_runs(runs)] == [5, 3, 1]


def test_the_default_pair_is_the_best_cnn_and_the_best_vgg_else_the_best_two(tmp_path):
    cnn_a, cnn_b = _run(tmp_path, 1, "flag_cnn", acc=0.9), _run(tmp_path, 2, "flag_cnn", acc=0.8)
    vgg = _run(tmp_path, 3, "vgg16_transfer", acc=0.6)
    assert default_pair(comparable_runs([cnn_a, cnn_b, vgg])) == (1, 3)
    assert default_pair(comparable_runs([cnn_b, cnn_a])) == (1, 2)


def test_run_names_and_card_classes(tmp_path):
    run = _run(tmp_path, 7, "flag_cnn")
    assert run_name(run) == "run #7 (FLAG_CNN)"
    assert card_classes(run["checkpoint_path"]) == ["Austria", "France"]
    assert card_classes(tmp_path / "nowhere") == []
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "card.json").write_text("{not json")
    assert card_classes(tmp_path / "bad") == []


def test_disagreement_rows_and_gallery(tmp_path):
    image = tmp_path / "Spain" / "001.jpg"
    image.parent.mkdir()
    image.write_bytes(b"jpeg")
    row = {"image": str(image), "true": "Spain + Malta", "framing": "two_flags", "answer_a": "Malta",
           "confidence_a": 0.81, "answer_b": "Italy", "confidence_b": 0.4, "right": "a"}  # fmt: skip
    gone = {**row, "image": str(tmp_path / "Italy" / "002.jpg"), "right": "neither"}
    report = {"rows": [row, gone]}
    names = ("run #1 (Custom CNN)", "run #2 (VGG-16 transfer)")
    assert disagreement_rows(report, names) == [
        {"image": "Spain/001.jpg", "true": "Spain + Malta", "framing": "two_flags", names[0]: "Malta (81%)",
         names[1]: "Italy (40%)", "right": names[0]},
        {"image": "Italy/002.jpg", "true": "Spain + Malta", "framing": "two_flags", names[0]: "Malta (81%)",
         names[1]: "Italy (40%)", "right": "neither"},
    ]  # fmt: skip
    assert gallery(report) == [(str(image), "Spain + Malta: Malta / Italy")]  # the missing file is left out


def test_the_batch_table_names_the_surer_model_and_one_model_has_no_sentence():
    a = Prediction([("Austria", 0.9), ("France", 0.1)])
    b = Prediction([("France", 0.6), ("Austria", 0.4)])
    row = batch_summary_row("x.png", {"Custom CNN": a, "VGG-16 transfer": b}, "partly agree", 0.5)
    assert row["surer"] == "Custom CNN" and row["agreement"] == "partly agree"
    assert batch_summary_row("x.png", {"Custom CNN": a, "VGG-16 transfer": a}, "agree")["surer"] == "as sure"
    assert "surer" not in batch_summary_row("x.png", {"Custom CNN": a}, None)
    assert comparison_markdown({"cnn": a}, {"cnn": "Custom CNN"}, 0.5) is None
    text = comparison_markdown({"cnn": a, "vgg": b}, {"cnn": "Custom CNN", "vgg": "VGG-16 transfer"}, 0.5)
    assert text is not None and text.startswith("🟡 They disagree: Custom CNN answers Austria, VGG-16 transfer")
