"""The model registry and the two classifiers: the reference study's small CNN and a VGG-16 transfer model.

``get_model(name, num_classes, cfg)`` is the only way the engine, the CLI, the study and the app
build a network; ``list_models()`` feeds their choices and the test parametrisation, and
``model_info(name)`` (defined torch-free in ``config``) says its label, default size and checks.

Every model is a ``FlagModel``: ``forward(x) == classify_features(extract_features(x))`` on
normalised float NCHW input of side ``input_size``. When ``frozen_backbone`` is True nothing before
the head trains, so the engine may compute ``extract_features`` once per image and train the head
on cached features. ``normalization`` (mean, std) and ``input_size`` are what the checkpoint card
must store so prediction rebuilds the exact eval preprocessing.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from flagvision.config import (
    ACTIVATIONS,
    CUSTOM_CNN,
    MODEL_INFOS,
    VGG16_TRANSFER,
    ConfigError,
    ModelInfo,
    RunConfig,
    cnn_feature_size,
    model_info,
)
from flagvision.models import weights as _weights

__all__ = [
    "FlagModel",
    "FlagCNN",
    "VGG16Transfer",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FLAG_CNN_MEAN",
    "FLAG_CNN_STD",
    "ModelInfo",
    "register_model",
    "list_models",
    "model_info",
    "get_model",
    "activation_module",
]

Normalization = tuple[tuple[float, float, float], tuple[float, float, float]]

# The statistics VGG-16 was trained with; its filters expect inputs scaled this way.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The CNN learns from scratch: mapping [0, 1] to [-1, 1] centres the inputs without tying them to
# one dataset's statistics, so a checkpoint's preprocessing does not depend on its training data.
FLAG_CNN_MEAN = (0.5, 0.5, 0.5)
FLAG_CNN_STD = (0.5, 0.5, 0.5)

_ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {
    "ReLU": nn.ReLU,
    "LeakyReLU": nn.LeakyReLU,  # default negative slope 0.01, as in the reference study
    "ELU": nn.ELU,
    "Sigmoid": nn.Sigmoid,
    "Tanh": nn.Tanh,
}
# Fail at import, not mid-study, if config.ACTIVATIONS gains a name this module cannot build.
if set(_ACTIVATION_MODULES) != set(ACTIVATIONS):
    raise ImportError(f"models knows activations {sorted(_ACTIVATION_MODULES)}, config lists {sorted(ACTIVATIONS)}")


def activation_module(name: str) -> nn.Module:
    """A fresh activation module for one of ``config.ACTIVATIONS``."""
    try:
        return _ACTIVATION_MODULES[name]()
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}") from None


class FlagModel(nn.Module):
    """The interface shared by every registered model.

    Subclasses set ``backbone`` (feature extractor), ``head`` (an ``nn.Sequential`` ending in the
    class Linear), ``input_size``, ``feature_dim`` and ``num_classes``.
    """

    name: ClassVar[str] = ""
    normalization: Normalization = (FLAG_CNN_MEAN, FLAG_CNN_STD)  # (mean, std) per RGB channel
    pretrained: bool = False  # True only when ImageNet weights were actually loaded (or restored)

    backbone: nn.Module
    head: nn.Sequential
    input_size: int  # square input side in pixels
    feature_dim: int  # length of one extract_features vector (what a feature cache stores)
    num_classes: int

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, input_size, input_size) normalised floats → (N, feature_dim)."""
        return self.backbone(x)

    def classify_features(self, f: torch.Tensor) -> torch.Tensor:
        """(N, feature_dim) → (N, num_classes) logits."""
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify_features(self.extract_features(x))

    @property
    def frozen_backbone(self) -> bool:
        """True when no parameter before the head trains, so features can be computed once and cached.

        Read from the parameters themselves rather than from the config, so it cannot drift.
        """
        return not any(p.requires_grad for p in self.backbone.parameters())

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer should update (a list, so it can be reused and counted)."""
        return [p for p in self.parameters() if p.requires_grad]

    def reset_head(self, num_classes: int) -> None:
        """Replace the final Linear with a freshly initialised one for ``num_classes`` outputs.

        Only the last layer changes (as timm's ``reset_classifier``): hidden head layers keep their
        weights. Uses the global RNG, so seed before calling for a reproducible head.
        """
        _check_num_classes(num_classes)
        last = self.head[-1]
        if not isinstance(last, nn.Linear):  # subclasses guarantee this; guard against refactors
            raise TypeError(f"{type(self).__name__}.head must end in nn.Linear, found {type(last).__name__}")
        self.head[-1] = nn.Linear(last.in_features, num_classes).to(last.weight.device, last.weight.dtype)
        self.num_classes = num_classes

    def gradcam_layer(self) -> nn.Conv2d:
        """The last convolution of the backbone, whose activations Grad-CAM weighs."""
        convs = [m for m in self.backbone.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise TypeError(f"{type(self).__name__} has no convolution for Grad-CAM")
        return convs[-1]

    @property
    def label(self) -> str:
        """Human name for tables and plots; a VGG without ImageNet weights says "random init"."""
        return model_info(self.name).display_label(pretrained=self.pretrained)

    def preprocessing(self) -> dict[str, object]:
        """What a checkpoint card stores so prediction rebuilds the eval transform exactly."""
        mean, std = self.normalization
        return {"input_size": self.input_size, "mean": list(mean), "std": list(std)}


# ----------------------------------------------------------------------------- registry

_Builder = Callable[[int, RunConfig, bool], FlagModel]
_REGISTRY: dict[str, _Builder] = {}


def register_model(name: str) -> Callable[[_Builder], _Builder]:
    """Decorator: register ``builder(num_classes, cfg, load_pretrained) -> FlagModel`` as ``name``.

    ``name`` must have a :class:`ModelInfo` in ``config.MODEL_INFOS``: that is where its label,
    default size and geometry check live.
    """

    def decorate(builder: _Builder) -> _Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        model_info(name)  # ConfigError naming the known models when there is no ModelInfo
        _REGISTRY[name] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    """Registered model names, sorted (CLI choices, select boxes, test parametrisation)."""
    return sorted(_REGISTRY)


def get_model(
    name: str,
    num_classes: int,
    cfg: RunConfig | None = None,
    *,
    from_checkpoint: bool = False,
) -> FlagModel:
    """Build model ``name`` for ``num_classes`` classes from ``cfg`` (defaults when None).

    Random initialisation uses the global RNG: call ``seed_everything`` first. With
    ``cfg.vgg.pretrained`` the ImageNet weights are read from the local torch hub cache only;
    if absent this raises ``weights.WeightsMissingError`` (never downloads).

    ``from_checkpoint=True`` builds the architecture without reading the ImageNet file because the
    caller is about to load a checkpoint's full state dict; ``pretrained`` still follows the config,
    since the checkpoint's weights descend from it. Do not use the result without loading that
    state dict.
    """
    info = model_info(name)  # ConfigError listing the valid names
    cfg = cfg if cfg is not None else RunConfig(model=name)
    _check_num_classes(num_classes)
    # RunConfig checked the geometry of cfg.model; a caller may build another model from it.
    info.check(cfg)
    return _REGISTRY[name](num_classes, cfg, not from_checkpoint)


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")


# ----------------------------------------------------------------------------- flag_cnn


class FlagCNN(FlagModel):
    """The reference study's network: two valid conv + pool stages, then fc1 → dropout → fc2."""

    name = CUSTOM_CNN
    normalization = (FLAG_CNN_MEAN, FLAG_CNN_STD)

    def __init__(self, num_classes: int, cfg: RunConfig) -> None:
        super().__init__()
        hp, size = cfg.hparams, cfg.data.image_size
        side = cnn_feature_size(hp, size)  # ≥ 1: get_model ran the geometry check
        self.input_size = size
        self.feature_dim = hp.num_filters_conv2 * side * side
        self.num_classes = num_classes
        # Named layers keep the reference study's names in the state dict ("backbone.conv1.weight", "head.fc2.bias").
        self.backbone = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, hp.num_filters_conv1, hp.kernel_size_conv1),  # valid padding
                act1=activation_module(hp.activation),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(hp.num_filters_conv1, hp.num_filters_conv2, hp.kernel_size_conv2),
                act2=activation_module(hp.activation),
                pool2=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
            )
        )
        self.head = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(self.feature_dim, hp.fc1_units),
                act3=activation_module(hp.activation),
                dropout=nn.Dropout(hp.dropout_rate),
                fc2=nn.Linear(hp.fc1_units, num_classes),
            )
        )


@register_model(CUSTOM_CNN)
def _build_flag_cnn(num_classes: int, cfg: RunConfig, load_pretrained: bool) -> FlagModel:
    return FlagCNN(num_classes, cfg)


# ----------------------------------------------------------------------------- vgg16_transfer

# 2×2 keeps coarse layout (top/bottom, left/right): flags differ by where colours are, not which,
# and a 1×1 global pool would hand the head a palette. At VGG-16's default 64 px with 5 blocks the map is
# already 2×2, so the pool is then an identity and no information is lost.
VGG_POOL_SIZE = 2


@functools.cache
def _vgg16_block_ends() -> tuple[int, ...]:
    """Indices in ``vgg16().features`` of the MaxPool closing each of the 5 blocks."""
    from torchvision.models import vgg16

    with torch.device("meta"):
        features = vgg16().features
    return tuple(i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d))


class VGG16Transfer(FlagModel):
    """The first ``cfg.vgg.blocks`` blocks of VGG-16 (frozen) + a new head for the flag classes."""

    name = VGG16_TRANSFER
    normalization = (IMAGENET_MEAN, IMAGENET_STD)
    backbone: nn.Sequential  # vgg16's features, cut after the chosen block

    def __init__(self, num_classes: int, cfg: RunConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        from torchvision.models import vgg16

        self._first_trainable = 0  # index in backbone of the first trainable layer (set below)
        vcfg, size = cfg.vgg, cfg.data.image_size
        blocks = int(vcfg.blocks)  # leaves ≥ 1 px of the input: get_model ran the geometry check
        self.input_size = size
        self.num_classes = num_classes
        self.blocks = blocks
        self.pretrained = bool(vcfg.pretrained)

        # Build torchvision's own vgg16 on the meta device (no 138M-parameter allocation, no 400 MB
        # classifier), keep features up to the chosen block's MaxPool, then materialise that part.
        cut = _vgg16_block_ends()[blocks - 1] + 1
        with torch.device("meta"):
            features = vgg16().features[:cut]
        features = features.to_empty(device="cpu")
        # Non-inplace ReLU: an inplace one overwrites the conv output that Grad-CAM hooks read.
        for i, m in enumerate(features):
            if isinstance(m, nn.ReLU):
                features[i] = nn.ReLU(inplace=False)
        self.backbone = features  # state dict keys "backbone.<i>.*" mirror vgg16 "features.<i>.*"

        if self.pretrained and load_pretrained:
            state = _weights.load_pretrained_state_dict()  # WeightsMissingError when not cached
            own = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
            own = {k: v for k, v in own.items() if int(k.split(".")[0]) < cut}
            self.backbone.load_state_dict(own, strict=True)
        else:
            # VGG's own init (torchvision VGG.__init__); to_empty left garbage memory in place.
            for m in self.backbone.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:  # every VGG conv has one
                        nn.init.zeros_(m.bias)

        channels = [m for m in self.backbone if isinstance(m, nn.Conv2d)][-1].out_channels
        self.pool = nn.AdaptiveAvgPool2d(VGG_POOL_SIZE)
        self.feature_dim = channels * VGG_POOL_SIZE * VGG_POOL_SIZE
        if vcfg.head_units > 0:
            self.head = nn.Sequential(
                OrderedDict(
                    fc1=nn.Linear(self.feature_dim, vcfg.head_units),
                    act=nn.ReLU(),
                    dropout=nn.Dropout(cfg.hparams.dropout_rate),
                    fc2=nn.Linear(vcfg.head_units, num_classes),
                )
            )
        else:
            self.head = nn.Sequential(OrderedDict(fc=nn.Linear(self.feature_dim, num_classes)))

        # Freeze the backbone; fine_tune_last re-opens the last kept block (after the previous MaxPool).
        self.backbone.requires_grad_(False)
        first_trainable = cut
        if vcfg.fine_tune_last:
            first_trainable = (_vgg16_block_ends()[blocks - 2] + 1) if blocks > 1 else 0
            for m in list(self.backbone)[first_trainable:]:
                m.requires_grad_(True)
        self._first_trainable = first_trainable
        self.train()  # puts the frozen part in eval mode via the override below

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        # The parameter-free pool belongs to the feature side so cached features are small.
        return torch.flatten(self.pool(self.backbone(x)), 1)

    def train(self, mode: bool = True) -> VGG16Transfer:
        """As nn.Module.train, but frozen layers stay in eval mode (matters if they ever hold BN/dropout)."""
        super().train(mode)
        for m in list(self.backbone)[: self._first_trainable]:
            m.eval()
        return self


@register_model(VGG16_TRANSFER)
def _build_vgg16_transfer(num_classes: int, cfg: RunConfig, load_pretrained: bool) -> FlagModel:
    return VGG16Transfer(num_classes, cfg, load_pretrained=load_pretrained)


# Fail at import, not when a select box offers it, if a ModelInfo has no builder.
if set(_REGISTRY) != set(MODEL_INFOS):
    raise ImportError(f"models builds {sorted(_REGISTRY)}, config.MODEL_INFOS describes {sorted(MODEL_INFOS)}")
