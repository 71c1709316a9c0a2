"""Checkpoints: round trip, hostile or mismatched files refused, atomic writes, resume state."""

import json
import pickle

import pytest
import torch

from flagvision.config import DataConfig, RunConfig
from flagvision.models.networks import get_model
from flagvision.training import checkpoints as ck
from flagvision.training.checkpoints import (
    CheckpointError,
    load_checkpoint,
    load_last_state,
    make_card,
    save_checkpoint,
)
from flagvision.training.engine import History, make_optimizer


def _cnn(classes=3, **hp):
    cfg = RunConfig(data=DataConfig(image_size=32)).with_hparams(**hp)
    return get_model("flag_cnn", classes, cfg), cfg


@pytest.fixture
def saved(tmp_path):
    model, cfg = _cnn()
    card = make_card(model, cfg, ["a", "b", "c"], "fp123", epoch=2)
    save_checkpoint(tmp_path / "ck", model, card)
    return tmp_path / "ck", model, cfg


def test_round_trip_restores_weights_and_preprocessing(saved):
    folder, model, cfg = saved
    loaded, card = load_checkpoint(folder)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    assert torch.allclose(loaded(x), model(x))
    assert card["class_names"] == ["a", "b", "c"] and card["input_size"] == 32
    assert card["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    assert load_checkpoint(folder / "card.json")[1]["dataset_fingerprint"] == "fp123"


def test_pickle_payload_never_runs(tmp_path, saved):
    folder, _, _ = saved
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "model.safetensors").write_bytes(pickle.dumps({"w": Payload()}))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(folder)
    assert not marker.exists()
    (folder / "last_optimizer.pt").write_bytes(pickle.dumps({"w": Payload()}))
    (folder / "last.json").write_text(
        json.dumps({"next_epoch": 2, "history": [], "best_epoch": 1, "best_val_acc": 0.5})
    )
    with pytest.raises(CheckpointError):
        load_last_state(folder, _cnn()[0])
    assert not marker.exists()


def test_wrong_architecture_refused(tmp_path, saved):
    folder, _, _ = saved
    other, _ = _cnn(fc1_units=64)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="do not fit a flag_cnn with 3 classes"):
        load_checkpoint(folder)


def test_card_with_wrong_class_count_refused(saved):
    folder, _, _ = saved
    card = json.loads((folder / "card.json").read_text())
    card["class_names"] = ["a", "b", "c", "d"]
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="4 classes"):
        load_checkpoint(folder)


@pytest.mark.parametrize(
    "mutate,fragment",
    [
        (lambda c: c.pop("class_names"), "lacks 'class_names'"),
        (lambda c: c.__setitem__("format", "other"), "not a flagvision-checkpoint"),
        (lambda c: c["config"]["hparams"].__setitem__("lr", 5.0), "config is invalid"),
    ],
)
def test_bad_cards_refused(saved, mutate, fragment):
    folder, _, _ = saved
    card = json.loads((folder / "card.json").read_text())
    mutate(card)
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=fragment):
        load_checkpoint(folder)


def test_not_a_checkpoint_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no FlagVision checkpoint"):
        load_checkpoint(tmp_path)


def test_failing_writer_keeps_previous_checkpoint(saved, monkeypatch):
    folder, model, cfg = saved
    before = (folder / "model.safetensors").read_bytes()
    other, _ = _cnn()

    def broken_save(tensors, path):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "save_file", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(folder, other, make_card(other, cfg, ["a", "b", "c"], "fp"))
    assert (folder / "model.safetensors").read_bytes() == before
    assert not [p for p in folder.iterdir() if ".tmp" in p.name]
    load_checkpoint(folder)  # still loads


def test_last_state_round_trip(tmp_path):
    model, cfg = _cnn()
    opt = make_optimizer("Adam", model.parameters(), 1e-3)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    opt.step()
    ck.save_last_state(tmp_path, model, opt, History(), epoch=3)
    fresh, _ = _cnn()
    state = load_last_state(tmp_path, fresh)
    assert state.next_epoch == 4 and state.optimizer_state["state"]
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True))


def test_find_flags_travels_with_the_card_and_an_older_card_reads_as_true(tmp_path):
    from flagvision.inference.predict import Predictor

    model, cfg = _cnn()
    cfg = cfg.with_changes(data=cfg.data.with_changes(find_flags=False))
    save_checkpoint(tmp_path / "leaves", model, make_card(model, cfg, ["a", "b", "c"], "fp"))
    _, card = load_checkpoint(tmp_path / "leaves")
    assert card["find_flags"] is False and card["config"]["data"]["find_flags"] is False
    assert ck.card_finds_flags(card) is False and not Predictor.from_checkpoint(tmp_path / "leaves").finds_flags
    # a card written before the setting: neither the card nor its config name it
    card.pop("find_flags")
    card["config"]["data"].pop("find_flags")
    (tmp_path / "leaves" / "card.json").write_text(json.dumps(card))
    _, old = load_checkpoint(tmp_path / "leaves")
    assert ck.card_finds_flags(old) is True and Predictor.from_checkpoint(tmp_path / "leaves").finds_flags
