import dataclasses
import json

import pytest

from flagvision.config import (
    ACTIVATIONS,
    HYPERPARAMS,
    OPTIMIZERS,
    PARAM_SPECS,
    SEARCHABLE,
    ConfigError,
    DataConfig,
    HyperParams,
    RunConfig,
    VGGConfig,
    cnn_feature_size,
)


def test_seed_table_exactly():
    """Names, ranges and the default preset exactly as DESIGN.md's table."""
    expected = {
        "num_filters_conv1": (8, 64, 8, 24),
        "num_filters_conv2": (16, 128, 16, 96),
        "kernel_size_conv1": (3, 7, 2, 5),
        "kernel_size_conv2": (3, 7, 2, 5),
        "fc1_units": (64, 512, 64, 384),
        "batch_size": (16, 128, 16, 16),
    }
    for name, (lo, hi, step, default) in expected.items():
        spec = PARAM_SPECS[name]
        assert (spec.low, spec.high, spec.step, spec.default) == (lo, hi, step, default)
    assert (PARAM_SPECS["dropout_rate"].low, PARAM_SPECS["dropout_rate"].high, PARAM_SPECS["dropout_rate"].default) == (
        0.0,
        0.5,
        0.02,
    )
    lr = PARAM_SPECS["lr"]
    assert (lr.low, lr.high, lr.log, lr.default) == (1e-5, 1e-3, True, 9e-4)
    assert HyperParams().lr == lr.default and lr.reference == lr.reference_value == 1.8e-4
    assert PARAM_SPECS["activation"].choices == ("ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh") == ACTIVATIONS
    assert (
        PARAM_SPECS["optimizer"].choices
        == ("Adam", "SGD", "RMSprop", "Adadelta", "Adagrad", "ASGD", "NAdam")
        == OPTIMIZERS
    )
    assert PARAM_SPECS["activation"].default == "LeakyReLU" and PARAM_SPECS["optimizer"].default == "NAdam"
    assert PARAM_SPECS["epochs"].default == 10
    assert len(HYPERPARAMS) == 11 and len(SEARCHABLE) == 10 and "epochs" not in SEARCHABLE
    hp = HyperParams()
    assert {s.name: s.default for s in HYPERPARAMS} == hp.to_dict()


@pytest.mark.parametrize(
    "field,value,fragment",
    [
        ("num_filters_conv1", 12, "step 8"),
        ("num_filters_conv1", 72, "outside"),
        ("kernel_size_conv1", 4, "step 2"),
        ("lr", 0.5, "outside"),
        ("lr", float("nan"), "outside"),
        ("dropout_rate", -0.1, "outside"),
        ("activation", "GELU", "ReLU, LeakyReLU"),
        ("optimizer", "AdamW", "NAdam"),
        ("batch_size", "sixteen", "not a number"),
    ],
)
def test_out_of_range_refused_with_valid_options(field, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        HyperParams(**{field: value})


def test_json_round_trip_and_frozen():
    cfg = RunConfig(
        model="vgg16_transfer", vgg=VGGConfig(blocks=3, pretrained=False), data=DataConfig(path="/x", image_size=48)
    )
    cfg = cfg.with_hparams(lr=3e-4, activation="ELU")
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg and again.hparams.lr == 3e-4
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # frozen
    assert "random init" in again.label


def test_unknown_fields_refused():
    with pytest.raises(ConfigError, match="unknown HyperParams"):
        HyperParams.from_dict({"num_filters": 3})
    with pytest.raises(ConfigError, match="unknown RunConfig"):
        RunConfig.from_dict(json.loads('{"modle": "x"}'))


def test_vanishing_feature_map_refused_naming_the_fix():
    hp = HyperParams(kernel_size_conv1=7, kernel_size_conv2=7)
    assert cnn_feature_size(hp, 64) == 11
    with pytest.raises(ConfigError, match=r"image_size ≥ \d+ or smaller kernels"):
        RunConfig(hparams=hp, data=DataConfig(image_size=16))
    RunConfig(hparams=hp, data=DataConfig(image_size=32))  # fine


def test_huge_fc1_refused():
    hp = HyperParams(num_filters_conv2=128, fc1_units=512, kernel_size_conv1=3, kernel_size_conv2=3)
    with pytest.raises(ConfigError, match="fc1 would hold"):
        RunConfig(hparams=hp, data=DataConfig(image_size=256))


def test_data_config_ranges():
    with pytest.raises(ConfigError, match="image_size"):
        DataConfig(image_size=4)
    with pytest.raises(ConfigError, match="val_fraction"):
        DataConfig(val_fraction=0.9)


def test_find_flags_is_a_boolean_and_an_older_config_reads_as_true():
    old = RunConfig().to_dict()
    old["data"].pop("find_flags")
    assert RunConfig.from_dict(old).data.find_flags is True
    assert RunConfig.from_json(RunConfig(data=DataConfig(find_flags=False)).to_json()).data.find_flags is False
    with pytest.raises(ConfigError, match="find_flags"):
        DataConfig(find_flags="no")
