"""Calibration: the temperature fit, ECE and reliability bins, "not sure", and T through a run's card."""

import json
import math

import pytest
import torch

from flagvision.config import DataConfig, HyperParams, RunConfig
from flagvision.inference.predict import Predictor
from flagvision.training.calibration import (
    T_MAX,
    T_MIN,
    calibrated_softmax,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    risk_coverage,
    selective,
)
from flagvision.training.checkpoints import CheckpointError, card_temperature, load_checkpoint
from flagvision.training.pipeline import run_training
from flagvision.workspace import RunPaths


def _two_class(confidences, correct):
    """Two-class probabilities with top probability ``c`` on class 0; label 0 where ``correct``."""
    probs = torch.tensor([[c, 1 - c] for c in confidences])
    labels = torch.tensor([0 if ok else 1 for ok in correct])
    return probs, labels


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_fit_temperature_recovers_a_known_temperature(true_t):
    gen = torch.Generator().manual_seed(0)
    calibrated = 3.0 * torch.randn(8000, 10, generator=gen)
    # Labels drawn from softmax(calibrated): those logits are calibrated by construction, and the
    # model shows them multiplied by true_t, so dividing by true_t calibrates them again.
    labels = torch.multinomial(calibrated.softmax(1), 1, generator=gen).squeeze(1)
    fitted = fit_temperature(calibrated * true_t, labels)
    assert fitted == pytest.approx(true_t, rel=0.05)
    assert fit_temperature(calibrated * true_t, labels) == fitted  # deterministic


def test_fit_temperature_edges():
    assert fit_temperature(torch.empty(0, 3), torch.empty(0, dtype=torch.long)) == 1.0
    # Every answer right and sure: the NLL falls as T falls, and T stops at the bound.
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(logits, torch.tensor([0, 1])) == pytest.approx(T_MIN, rel=1e-6)
    # Every answer wrong: the flattest probabilities are best.
    assert fit_temperature(logits, torch.tensor([1, 0])) == pytest.approx(T_MAX, rel=1e-6)
    with pytest.raises(ValueError):
        fit_temperature(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))


def test_ece_of_a_known_toy_case():
    # 4 images at 0.62, all right (gap 0.38); 6 at 0.95, half right (gap 0.45): ECE = 0.4·0.38 + 0.6·0.45.
    probs, labels = _two_class([0.62] * 4 + [0.95] * 6, [True] * 4 + [True, False] * 3)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.4 * 0.38 + 0.6 * 0.45)
    bins = reliability_bins(probs, labels)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 10
    assert bins[9]["count"] == 4 and bins[9]["accuracy"] == 1.0  # 0.62 is in (9/15, 10/15]
    assert bins[14]["count"] == 6 and bins[14]["confidence"] == pytest.approx(0.95)
    assert bins[0]["confidence"] is None and bins[0]["accuracy"] is None
    assert [b["lower"] for b in bins[:2]] == [0.0, 1 / 15] and bins[-1]["upper"] == 1.0
    # Perfectly calibrated: 8 of 10 right at 0.8.
    fair, fair_labels = _two_class([0.8] * 10, [True] * 8 + [False] * 2)
    assert expected_calibration_error(fair, fair_labels) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(expected_calibration_error(torch.empty(0, 2), torch.empty(0, dtype=torch.long)))


def test_selective_answers_only_the_sure_part():
    probs, labels = _two_class([0.9, 0.9, 0.7, 0.55], [True, True, False, True])
    at_08 = selective(probs, labels, 0.8)
    assert at_08["coverage"] == 0.5 and at_08["accuracy"] == 1.0 and at_08["answered"] == 2
    assert selective(probs, labels, 0.0)["accuracy"] == 0.75
    assert selective(probs, labels, 0.99)["accuracy"] is None
    curve = risk_coverage(probs, labels)
    assert [(p["coverage"], p["accuracy"]) for p in curve] == [(0.5, 1.0), (0.75, 2 / 3), (1.0, 0.75)]


def test_temperature_changes_probabilities_not_ranking():
    logits = torch.tensor([[2.0, 1.0, -1.0], [0.1, 0.3, 0.2]])
    sharp, flat = calibrated_softmax(logits, 0.5), calibrated_softmax(logits, 3.0)
    assert torch.equal(sharp.argsort(1), flat.argsort(1))
    assert sharp.max() > calibrated_softmax(logits).max() > flat.max()


def test_a_run_fits_its_temperature_into_the_card_and_evaluation(tmp_path, tiny_dataset):
    hp = HyperParams(num_filters_conv1=8, num_filters_conv2=16, fc1_units=64, epochs=2, batch_size=16, lr=1e-3)
    cfg = RunConfig(hparams=hp, data=DataConfig(path=str(tiny_dataset), image_size=32), threads=1)
    run_training(cfg, tmp_path / "run")
    paths = RunPaths(tmp_path / "run")
    card = json.loads(paths.card.read_text())
    assert T_MIN <= card["temperature"] <= T_MAX
    evaluation = json.loads(paths.evaluation.read_text())
    cal = evaluation["calibration"]
    assert cal["temperature"] == card["temperature"] and cal["bins"] == 15
    assert len(cal["reliability_before"]) == len(cal["reliability_after"]) == 15
    assert cal["ece_after"] <= cal["ece_before"] + 1e-6  # fitted on this very split: never worse on it

    model, loaded = load_checkpoint(paths.checkpoint)
    assert card_temperature(loaded) == card["temperature"]
    images = [tiny_dataset / name / "000.png" for name in ("horizontal", "vertical", "diagonal")]
    calibrated = Predictor(model, loaded)
    plain = Predictor(model, {**loaded, "temperature": 1.0})
    p_cal, p_plain = calibrated.probabilities(images), plain.probabilities(images)
    assert torch.equal(torch.argsort(p_cal, dim=1, stable=True), torch.argsort(p_plain, dim=1, stable=True))
    if abs(card["temperature"] - 1.0) > 1e-3:
        assert not torch.allclose(p_cal, p_plain)
    logits = model(calibrated.preprocess(images)).detach()
    assert torch.allclose(p_cal, torch.softmax(logits / card["temperature"], 1), atol=1e-6)


def test_scene_search_chooses_its_view_whatever_the_temperature(tmp_path, tiny_dataset):
    """The search's rules were measured on uncalibrated probabilities: a temperature changes the
    probabilities of the answer, never which view answers."""
    from PIL import Image

    hp = HyperParams(num_filters_conv1=8, num_filters_conv2=16, fc1_units=64, epochs=1, batch_size=16)
    run_training(RunConfig(hparams=hp, data=DataConfig(path=str(tiny_dataset), image_size=32), threads=1), tmp_path)
    model, card = load_checkpoint(tmp_path)
    # A barely trained model is equally unsure of every view; its last layer, scaled up, makes
    # views differ (a real network, as confident as a trained one), so the search has to choose.
    with torch.no_grad():
        [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(30.0)
    scenes = []
    for i, name in enumerate(("horizontal", "vertical", "diagonal")):
        scene = Image.new("RGB", (160, 96), (128, 128, 128))
        scene.paste(Image.open(tiny_dataset / name / "001.png").convert("RGB").resize((40, 40)), (10 + 50 * i, 40))
        scenes.append(scene)
    answers = {t: Predictor(model, {**card, "temperature": t}).search(scenes) for t in (0.05, 1.0, 20.0)}
    # Some scenes answer from a crop: at T = 0.05
    # every whole photo would look sure, at T = 20 none, if the search decided on calibrated probabilities.
    assert any(box is not None for _, box in answers[1.0])
    for t, found in answers.items():
        for (probs, box), (plain, plain_box) in zip(found, answers[1.0], strict=True):
            assert box == plain_box and int(probs.argmax()) == int(plain.argmax())
            assert torch.allclose(probs, torch.softmax(plain.log() / t, 0), atol=1e-5)


def test_old_cards_load_as_t_1_and_bad_temperatures_are_refused(tmp_path, tiny_dataset):
    hp = HyperParams(num_filters_conv1=8, num_filters_conv2=16, fc1_units=64, epochs=1, batch_size=16)
    run_training(RunConfig(hparams=hp, data=DataConfig(path=str(tiny_dataset), image_size=32), threads=1), tmp_path)
    path = RunPaths(tmp_path).card
    card = json.loads(path.read_text())
    del card["temperature"]
    path.write_text(json.dumps(card))
    assert card_temperature(load_checkpoint(tmp_path)[1]) == 1.0
    for bad in (0, -1.5, "2", True, None):
        path.write_text(json.dumps({**card, "temperature": bad}))
        with pytest.raises(CheckpointError, match="temperature"):
            load_checkpoint(tmp_path)
