import math

import pytest
import torch

from flagvision.config import ACTIVATIONS, LR_SCHEDULES, OPTIMIZERS, ConfigError, DataConfig, RunConfig, VGGConfig
from flagvision.data.dataset import load_dataset
from flagvision.models.networks import get_model
from flagvision.runtime import seed_everything
from flagvision.training.engine import Callback, ResumeState, StopAfter, evaluate, fit, make_optimizer


@pytest.fixture(scope="module")
def tiny_data(tiny_dataset):
    return load_dataset(DataConfig(path=str(tiny_dataset), image_size=32, augment=0.0), use_disk_cache=False)


def _cfg(tiny_dataset, **hp):
    base = dict(epochs=6, batch_size=16, lr=1e-3)
    base.update(hp)
    return RunConfig(data=DataConfig(path=str(tiny_dataset), image_size=32, augment=0.0), threads=2).with_hparams(
        **base
    )


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_lowers_the_loss(tiny_data, tiny_dataset, optimizer):
    # Adadelta's lr is a multiplier of its own step size (default 1.0): 1e-3 barely moves it,
    # so its check uses the largest lr the seed's range allows plus more epochs.
    cfg = _cfg(tiny_dataset, optimizer=optimizer, activation="ReLU", epochs=12 if optimizer == "Adadelta" else 6)
    seed_everything(0)
    model = get_model("flag_cnn", tiny_data.num_classes, cfg)
    history = fit(model, tiny_data, cfg)
    losses = [m.train_loss for m in history.epochs]
    assert len(losses) == cfg.hparams.epochs
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_learns_the_separable_set(tiny_data, tiny_dataset, activation):
    cfg = _cfg(tiny_dataset, optimizer="Adam", activation=activation, epochs=25)
    seed_everything(0)
    model = get_model("flag_cnn", tiny_data.num_classes, cfg)
    history = fit(model, tiny_data, cfg)
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    assert history.best_val_acc >= 0.5  # chance is 1/3


def test_evaluate_confusion_and_per_class(tiny_data, tiny_dataset):
    cfg = _cfg(tiny_dataset, optimizer="Adam", epochs=8)
    seed_everything(1)
    model = get_model("flag_cnn", tiny_data.num_classes, cfg)
    fit(model, tiny_data, cfg)
    result = evaluate(model, tiny_data.val, tiny_data.class_names)
    conf = torch.tensor(result.confusion)
    assert conf.shape == (3, 3) and conf.sum().item() == len(tiny_data.val) == result.n_images
    assert result.accuracy == pytest.approx(conf.diag().sum().item() / conf.sum().item())
    assert set(result.per_class) == set(tiny_data.class_names)


def test_early_stopping_and_callbacks(tiny_data, tiny_dataset):
    seen = []

    class Record(Callback):
        def on_epoch_end(self, state, metrics, improved):
            seen.append((metrics.epoch, improved))

    # lr so small that nothing improves after the first epoch: patience 2 stops at epoch 3.
    cfg = _cfg(tiny_dataset, optimizer="SGD", lr=1e-5, epochs=20).with_changes(patience=2)
    model = get_model("flag_cnn", tiny_data.num_classes, cfg)
    history = fit(model, tiny_data, cfg, [Record()])
    assert history.stop_reason == "early_stopping"
    assert len(history.epochs) < 20 and [e for e, _ in seen] == list(range(1, len(history.epochs) + 1))


def test_stop_mid_epoch_records_no_partial_epoch(tiny_data, tiny_dataset):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 3

    cfg = _cfg(tiny_dataset, epochs=5)
    model = get_model("flag_cnn", tiny_data.num_classes, cfg)
    history = fit(model, tiny_data, cfg, [StopAfter(should_stop, every_s=0)])
    assert history.stop_reason == "cancelled"
    assert len(history.epochs) <= 2


def test_frozen_vgg_trains_only_its_head_on_cached_features(tiny_data, tiny_dataset):
    cfg = RunConfig(
        model="vgg16_transfer",
        vgg=VGGConfig(blocks=2, pretrained=False, cached_views=2, head_units=32),
        data=DataConfig(path=str(tiny_dataset), image_size=32, augment=0.3),
        threads=2,
    ).with_hparams(epochs=4, lr=1e-3, optimizer="Adam")
    seed_everything(0)
    model = get_model("vgg16_transfer", tiny_data.num_classes, cfg)
    assert model.frozen_backbone
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(model, tiny_data, cfg)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    head = {n for n, _ in model.named_parameters() if _.requires_grad}
    assert changed and changed <= head
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss


def test_make_optimizer_lists_valid_names():
    with pytest.raises(ValueError, match="valid: Adam, SGD"):
        make_optimizer("AdamW", [torch.nn.Parameter(torch.zeros(1))], 1e-3)


def test_cosine_schedule_falls_to_zero_and_constant_stays(tiny_data, tiny_dataset):
    lrs = {}
    for schedule in LR_SCHEDULES:
        cfg = _cfg(tiny_dataset, epochs=4).with_changes(lr_schedule=schedule)
        model = get_model("flag_cnn", tiny_data.num_classes, cfg)
        lrs[schedule] = [m.lr for m in fit(model, tiny_data, cfg).epochs]
    assert lrs["constant"] == [pytest.approx(1e-3)] * 4
    cosine = lrs["cosine"]
    assert all(a > b for a, b in zip(cosine[:-1], cosine[1:], strict=True)), cosine
    # After epoch 2 of 4 the half cosine is at its middle; after the last step the rate is zero.
    assert cosine[1] == pytest.approx(0.5e-3, rel=1e-6) and cosine[-1] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match="lr_schedule"):
        RunConfig(lr_schedule="step")


def test_a_resumed_run_continues_the_schedule_where_it_stopped(tiny_data, tiny_dataset):
    cfg = _cfg(tiny_dataset, epochs=5, optimizer="Adam")
    whole = fit(get_model("flag_cnn", tiny_data.num_classes, cfg), tiny_data, cfg)
    saved = {}

    class StopAfterTwo(Callback):
        def on_epoch_end(self, state, metrics, improved):
            if metrics.epoch == 2:
                saved["optimizer"] = state.optimizer.state_dict()
                state.stop = True

    model = get_model("flag_cnn", tiny_data.num_classes, cfg)
    first = fit(model, tiny_data, cfg, [StopAfterTwo()])
    resumed = fit(model, tiny_data, cfg, resume=ResumeState(3, saved["optimizer"], first))
    assert [m.epoch for m in resumed.epochs] == [1, 2, 3, 4, 5]
    assert [m.lr for m in resumed.epochs] == pytest.approx([m.lr for m in whole.epochs], rel=1e-9)
