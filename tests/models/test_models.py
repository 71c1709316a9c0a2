"""The model registry and both models: shapes, freezing, feature split, activations, weights wiring."""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from flagvision.config import ACTIVATIONS, ConfigError, DataConfig, HyperParams, RunConfig, VGGConfig, cnn_feature_size
from flagvision.models import weights
from flagvision.models.networks import FlagModel, get_model, list_models, model_info, register_model

NUM_CLASSES = 24
IMAGE_SIZE = 32  # small inputs keep the VGG tests fast; 32 px still leaves a 1×1 map after 5 blocks


def _cfg(name: str, image_size: int = IMAGE_SIZE, **vgg: object) -> RunConfig:
    vgg = {"pretrained": False, **vgg}  # no ImageNet file on test machines
    return RunConfig(model=name, data=DataConfig(image_size=image_size), vgg=VGGConfig(**vgg))


def _model(name: str, num_classes: int = NUM_CLASSES, **kw: object) -> FlagModel:
    torch.manual_seed(0)
    return get_model(name, num_classes, _cfg(name, **kw))


@pytest.fixture(autouse=True)
def isolated_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(weights, "_verified", set())


# ----------------------------------------------------------------------------- registry


def test_registry_lists_both_models() -> None:
    assert list_models() == ["flag_cnn", "vgg16_transfer"]


def test_unknown_model_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="flag_cnn, vgg16_transfer"):
        get_model("resnet", NUM_CLASSES, RunConfig())


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("flag_cnn")(lambda n, cfg, load: None)


@pytest.mark.parametrize("name", list_models())
def test_model_info_describes_the_built_model(name: str) -> None:
    info = model_info(name)
    model = _model(name)  # pretrained=False
    assert info.name == name == model.name == RunConfig(model=name).model
    assert model.label == info.display_label(pretrained=False) == _cfg(name).label
    assert RunConfig(model=name).label == info.display_label() == info.label
    assert info.needs_weights == (model.normalization[0] != (0.5, 0.5, 0.5))  # ImageNet statistics
    assert info.display_label(pretrained=False).endswith(" (random init, not pretrained)") == info.needs_weights


def test_model_info_of_an_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown model 'resnet'; valid: flag_cnn, vgg16_transfer"):
        model_info("resnet")
    with pytest.raises(ConfigError, match="valid: flag_cnn, vgg16_transfer"):
        RunConfig(model="resnet")


def test_a_model_without_model_info_cannot_be_registered() -> None:
    with pytest.raises(ConfigError, match="unknown model 'resnet'"):
        register_model("resnet")(lambda n, cfg, load: None)  # type: ignore[arg-type,return-value]
    assert "resnet" not in list_models()


def test_get_model_checks_the_geometry_of_the_model_it_builds() -> None:
    """A config written for the CNN (16 px is fine for it) cannot build a 5-block VGG that halves it to nothing."""
    cfg = RunConfig(model=list_models()[0], data=DataConfig(image_size=16), vgg=VGGConfig(pretrained=False))
    vgg = next(n for n in list_models() if model_info(n).needs_weights)
    with pytest.raises(ConfigError, match="image_size ≥ 32"):
        get_model(vgg, NUM_CLASSES, cfg)


_REGISTRY_MODULES = {"flagvision/config.py"}  # where the model names are written, once each


def test_model_names_are_written_only_in_the_registry() -> None:
    """Everything else names a model through config.CUSTOM_CNN / VGG16_TRANSFER or model_info()."""
    root = Path(__file__).resolve().parents[2]
    names = set(list_models())
    files = [*sorted((root / "flagvision").rglob("*.py")), *sorted((root / "pages").glob("*.py"))]
    files += [*sorted((root / "app_ui").glob("*.py")), root / "streamlit_app.py"]
    found = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if rel in _REGISTRY_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert len(files) > 10 and found == []
    # The check can fail: the registry module itself does hold the names.
    config_source = ast.parse((root / "flagvision/config.py").read_text(encoding="utf-8"))
    assert names <= {n.value for n in ast.walk(config_source) if isinstance(n, ast.Constant)}


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_num_classes_must_be_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        get_model("flag_cnn", bad, RunConfig())  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- shared interface


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_finite_and_backward(name: str) -> None:
    model = _model(name)
    x = torch.randn(3, 3, model.input_size, model.input_size)
    out = model(x)
    assert out.shape == (3, NUM_CLASSES)
    assert torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([0, 5, 23])).backward()
    trainable = model.trainable_parameters()
    assert trainable and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


@pytest.mark.parametrize("name", list_models())
def test_extract_then_classify_equals_forward(name: str) -> None:
    model = _model(name).eval()  # eval: dropout would make two passes differ
    x = torch.randn(2, 3, model.input_size, model.input_size)
    features = model.extract_features(x)
    assert features.shape == (2, model.feature_dim)
    torch.testing.assert_close(model.classify_features(features), model(x))


@pytest.mark.parametrize("name", list_models())
def test_reset_head_changes_only_the_last_layer(name: str) -> None:
    model = _model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_head(5)
    assert model.num_classes == 5
    assert model(torch.randn(2, 3, model.input_size, model.input_size)).shape == (2, 5)
    last = model.head[-1]
    assert last.weight.requires_grad and last.out_features == 5
    changed = {k for k, v in model.state_dict().items() if k not in before or not torch.equal(v, before[k])}
    prefix = next(k for k, m in model.named_modules() if m is last)
    assert changed == {f"{prefix}.weight", f"{prefix}.bias"}


@pytest.mark.parametrize("name", list_models())
def test_same_seed_same_weights(name: str) -> None:
    a, b = _model(name), _model(name)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("name", list_models())
def test_gradcam_layer_is_last_conv_and_hookable(name: str) -> None:
    model = _model(name).eval()
    layer = model.gradcam_layer()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert layer is convs[-1]
    # Grad-CAM's hooks: activations out, gradients back (input requires grad for a frozen backbone).
    grabbed: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda m, i, o: grabbed.update(act=o))
    x = torch.randn(1, 3, model.input_size, model.input_size, requires_grad=True)
    out = model(x)
    handle.remove()
    (grad,) = torch.autograd.grad(out[0, 3], grabbed["act"])
    assert grad.shape == grabbed["act"].shape and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", list_models())
def test_preprocessing_travels_with_the_model(name: str) -> None:
    model = _model(name)
    pre = model.preprocessing()
    assert pre["input_size"] == IMAGE_SIZE
    assert (tuple(pre["mean"]), tuple(pre["std"])) == model.normalization
    expected_mean = (0.485, 0.456, 0.406) if name == "vgg16_transfer" else (0.5, 0.5, 0.5)
    assert model.normalization[0] == expected_mean


# ----------------------------------------------------------------------------- flag_cnn


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_builds_and_forwards(activation: str) -> None:
    cfg = RunConfig(hparams=HyperParams(activation=activation), data=DataConfig(image_size=IMAGE_SIZE))
    model = get_model("flag_cnn", NUM_CLASSES, cfg)
    acts = [m for m in model.modules() if type(m).__name__ == activation]
    assert len(acts) == 3  # after conv1, conv2 and fc1
    out = model(torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE))
    assert out.shape == (2, NUM_CLASSES) and torch.isfinite(out).all()


@pytest.mark.parametrize(("k1", "k2", "size"), [(3, 3, 32), (5, 5, 64), (7, 3, 48), (7, 7, 24), (3, 5, 17)])
def test_cnn_feature_size_matches_config(k1: int, k2: int, size: int) -> None:
    hp = HyperParams(kernel_size_conv1=k1, kernel_size_conv2=k2, num_filters_conv2=32, fc1_units=64)
    model = get_model("flag_cnn", NUM_CLASSES, RunConfig(hparams=hp, data=DataConfig(image_size=size)))
    side = cnn_feature_size(hp, size)
    assert model.feature_dim == 32 * side * side
    assert model.head.fc1.in_features == model.feature_dim
    assert model.extract_features(torch.randn(1, 3, size, size)).shape == (1, model.feature_dim)


def test_cnn_is_the_seeds_network() -> None:
    hp = HyperParams()
    model = get_model("flag_cnn", NUM_CLASSES, RunConfig())
    b, h = model.backbone, model.head
    assert (b.conv1.in_channels, b.conv1.out_channels, b.conv1.kernel_size, b.conv1.padding) == (3, 24, (5, 5), (0, 0))
    assert (b.conv2.out_channels, b.conv2.kernel_size) == (96, (5, 5))
    assert isinstance(b.pool1, nn.MaxPool2d) and isinstance(b.pool2, nn.MaxPool2d)
    assert (h.fc1.out_features, h.dropout.p, h.fc2.out_features) == (384, hp.dropout_rate, NUM_CLASSES)
    assert isinstance(h.act3, nn.LeakyReLU) and h.act3.negative_slope == 0.01
    assert model.frozen_backbone is False and model.pretrained is False
    assert model.label == RunConfig().label


# ----------------------------------------------------------------------------- vgg16_transfer


def test_frozen_vgg_trains_exactly_its_head() -> None:
    model = _model("vgg16_transfer")
    assert model.frozen_backbone is True
    assert {id(p) for p in model.trainable_parameters()} == {id(p) for p in model.head.parameters()}
    assert len(model.trainable_parameters()) == len(list(model.head.parameters())) == 4


def test_frozen_layers_stay_in_eval_mode() -> None:
    model = _model("vgg16_transfer", fine_tune_last=True, blocks=2)
    model.train()
    block1, block2 = list(model.backbone)[:5], list(model.backbone)[5:]
    assert not any(m.training for m in block1)
    assert all(m.training for m in block2) and model.head.training
    model.eval()
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("blocks", [1, 3, 5])
def test_fine_tune_last_adds_the_last_blocks_params(blocks: int) -> None:
    frozen = _model("vgg16_transfer", blocks=blocks)
    tuned = _model("vgg16_transfer", blocks=blocks, fine_tune_last=True)
    assert tuned.frozen_backbone is False
    # the last block = the convs after the previous block's MaxPool (2 convs in blocks 1–2, 3 after)
    pools = [i for i, m in enumerate(tuned.backbone) if isinstance(m, nn.MaxPool2d)]
    start = pools[-2] + 1 if blocks > 1 else 0
    last_block = [p for m in list(tuned.backbone)[start:] for p in m.parameters()]
    assert len(last_block) == (4 if blocks <= 2 else 6)
    expected = {id(p) for p in tuned.head.parameters()} | {id(p) for p in last_block}
    assert {id(p) for p in tuned.trainable_parameters()} == expected
    extra = sum(p.numel() for p in tuned.trainable_parameters()) - sum(p.numel() for p in frozen.trainable_parameters())
    assert extra == sum(p.numel() for p in last_block)


@pytest.mark.parametrize(("blocks", "channels"), [(1, 64), (2, 128), (3, 256), (4, 512), (5, 512)])
def test_vgg_blocks_cut_after_the_blocks_maxpool(blocks: int, channels: int) -> None:
    from torchvision.models import vgg16

    with torch.device("meta"):
        reference = vgg16().features
    model = _model("vgg16_transfer", blocks=blocks)
    kept = list(model.backbone)
    assert isinstance(kept[-1], nn.MaxPool2d)
    assert sum(isinstance(m, nn.MaxPool2d) for m in kept) == blocks
    for ours, theirs in zip(kept, reference, strict=False):  # the kept layers are a prefix of the full network
        assert type(ours) is type(theirs)
        if isinstance(ours, nn.Conv2d):
            assert ours.weight.shape == theirs.weight.shape
    assert model.feature_dim == channels * 2 * 2  # AdaptiveAvgPool2d(2)
    assert model(torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)).shape == (1, NUM_CLASSES)


def test_vgg_linear_head_when_head_units_is_zero() -> None:
    model = _model("vgg16_transfer", head_units=0, blocks=2)
    assert [type(m) for m in model.head] == [nn.Linear]
    assert model(torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)).shape == (2, NUM_CLASSES)


def test_vgg_refuses_an_image_too_small_for_its_blocks() -> None:
    with pytest.raises(ConfigError, match="image_size ≥ 32"):
        _model("vgg16_transfer", image_size=16, blocks=5)


def test_random_init_vgg_is_labelled_so() -> None:
    model = _model("vgg16_transfer")
    assert model.pretrained is False
    assert model.label == "VGG-16 transfer (random init, not pretrained)" == _cfg("vgg16_transfer").label


def test_pretrained_without_cached_weights_says_how_to_get_them() -> None:
    cfg = RunConfig(model="vgg16_transfer", vgg=VGGConfig(pretrained=True))
    with pytest.raises(weights.WeightsMissingError) as info:
        get_model("vgg16_transfer", NUM_CLASSES, cfg)
    assert "weights import" in str(info.value) and "--no-pretrained" in str(info.value)
    assert not weights.weights_path().exists()  # and nothing was downloaded


def test_from_checkpoint_builds_without_the_weights_file() -> None:
    cfg = _cfg("vgg16_transfer", pretrained=True)
    model = get_model("vgg16_transfer", NUM_CLASSES, cfg, from_checkpoint=True)
    assert model.pretrained is True and model.frozen_backbone is True


def test_pretrained_weights_are_loaded_into_the_backbone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A generated (random) state dict stands in for the file; its own hash prefix is injected so the
    # loading path runs. This checks the wiring (which tensors go where), not ImageNet quality.
    gen = torch.Generator().manual_seed(1)
    shapes = weights._reference_shapes()
    state = {k: torch.randn(s, generator=gen) for k, s in shapes.items() if k.startswith("features.")}
    path = tmp_path / "generated.pth"
    torch.save(state, path)
    prefix = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    weights.import_weights(path, expected_prefix=prefix)

    cfg = _cfg("vgg16_transfer", pretrained=True, blocks=2)
    with pytest.raises(weights.WeightsError, match="does not match the published hash prefix"):
        get_model("vgg16_transfer", NUM_CLASSES, cfg)  # not the published file → refused

    monkeypatch.setattr(weights, "PUBLISHED_HASH_PREFIX", prefix)
    model = get_model("vgg16_transfer", NUM_CLASSES, cfg)
    assert model.pretrained is True and model.label == "VGG-16 transfer"
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[f"features.{key}"])
    assert len(model.backbone.state_dict()) == 8  # 4 convs × (weight, bias) in two blocks


def test_library_does_not_import_streamlit() -> None:
    code = "import sys, flagvision.models.networks, flagvision.models.weights; print('streamlit' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
