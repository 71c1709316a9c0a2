"""Configuration: one frozen dataclass per concern, and the hyperparameter definitions.

``HYPERPARAMS`` is the single source of the reference study's search space (names, ranges, defaults). The
Streamlit sliders, the CLI flags, Optuna's ``suggest_*`` calls and the validation of a saved run
config are all generated from it, so a range lives in exactly one place.

``MODEL_INFOS`` is the single source of a model's identity (name, label, default image size,
capabilities, geometry check); ``flagvision.models.networks`` builds its registry on it, and this module
stays free of torch so the CLI parser can import it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Self, cast

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

from flagvision.errors import FlagVisionError

ACTIVATIONS = ("ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh")
LR_SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("Adam", "SGD", "RMSprop", "Adadelta", "Adagrad", "ASGD", "NAdam")


class ConfigError(FlagVisionError, ValueError):
    """A configuration value or combination that cannot be trained; the message names the fix."""


@dataclass(frozen=True)
class ParamSpec:
    """One tunable hyperparameter: its type, range and default, and a one-line help text."""

    name: str
    kind: Literal["int", "float", "categorical"]
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[str, ...] = ()
    effect: str = ""  # what raising or lowering it does, in a sentence a student can act on
    # Where FlagVision's default is not the reference study's value: the reference study's value, and why not.
    reference: Any = None
    reference_note: str = ""

    @property
    def reference_value(self) -> Any:
        """The reference study's value (its best preset)."""
        return self.default if self.reference is None else self.reference

    def check(self, value: Any) -> Any:
        """Return ``value`` coerced to the spec's type, or raise ConfigError naming the range."""
        if self.kind == "categorical":
            if value not in self.choices:
                raise ConfigError(f"{self.name}={value!r} is not one of {', '.join(self.choices)}")
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.name}={value!r} is not a number") from None
        low, high = self.bounds()
        if not math.isfinite(number) or not (low <= number <= high):
            raise ConfigError(f"{self.name}={value!r} is outside its range {self.describe_range()}")
        if self.kind == "int":
            if number != int(number):
                raise ConfigError(f"{self.name}={value!r} must be a whole number")
            number = int(number)
            if self.step and (number - low) % self.step:
                raise ConfigError(f"{self.name}={number} must be {self.describe_range()}")
        return number

    def bounds(self) -> tuple[float, float]:
        """low and high of a numeric spec (every numeric spec has both; a categorical one has neither)."""
        if self.low is None or self.high is None:
            raise ConfigError(f"{self.name} has no numeric range")
        return self.low, self.high

    def describe_range(self) -> str:
        if self.kind == "categorical":
            return "one of " + ", ".join(self.choices)
        low, high = _fmt(self.low), _fmt(self.high)
        text = f"{low}–{high}"
        if self.step:
            text += f" step {_fmt(self.step)}"
        if self.log:
            text += " (log scale)"
        return text

    def grid(self) -> list[Any]:
        """All values of an int spec (for sliders and select boxes)."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            low, high = self.bounds()
            return list(range(int(low), int(high) + 1, int(self.step or 1)))
        raise ConfigError(f"{self.name} is continuous and has no grid")


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    if float(x).is_integer():
        return str(int(x))
    return f"{x:g}"


# The reference study's hyperparameters, exactly as in DESIGN.md. Epochs are constant per study.
HYPERPARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("num_filters_conv1", "int", 24, "Filters in the first convolution", 8, 64, 8),
    ParamSpec("num_filters_conv2", "int", 96, "Filters in the second convolution", 16, 128, 16),
    ParamSpec("kernel_size_conv1", "int", 5, "Kernel size of the first convolution (odd)", 3, 7, 2),
    ParamSpec("kernel_size_conv2", "int", 5, "Kernel size of the second convolution (odd)", 3, 7, 2),
    ParamSpec("fc1_units", "int", 384, "Units of the first fully connected layer", 64, 512, 64),
    ParamSpec("dropout_rate", "float", 0.02, "Dropout before the last layer", 0.0, 0.5),
    ParamSpec("activation", "categorical", "LeakyReLU", "Activation after each layer", choices=ACTIVATIONS),
    ParamSpec(
        "lr",
        "float",
        9e-4,
        "Learning rate (with the cosine schedule: where it starts)",
        1e-5,
        1e-3,
        log=True,
        reference=1.8e-4,
        reference_note="kept constant; with the rate falling along a cosine, five times that start reads the check "
        "images and the held-out split better (docs/QUALITY.md)",
    ),
    ParamSpec("optimizer", "categorical", "NAdam", "Optimizer", choices=OPTIMIZERS),
    ParamSpec("batch_size", "int", 16, "Images per optimisation step", 16, 128, 16),
    ParamSpec("epochs", "int", 10, "Passes over the training set (constant within a study)", 1, 100, 1),
)

# What raising or lowering each one does (the app's help, beside its range and the reference study's value).
_EFFECTS = {
    "num_filters_conv1": "More filters tell more colours and edges apart but train slower and overfit "
    "sooner; fewer train faster.",
    "num_filters_conv2": "More filters combine stripes, crosses and emblems into more patterns, at the "
    "cost of time and overfitting.",
    "kernel_size_conv1": "Larger kernels see wider edges and blobs at once; smaller ones keep fine detail "
    "and run faster.",
    "kernel_size_conv2": "Larger kernels relate parts of the flag further apart; smaller ones run faster.",
    "fc1_units": "More units give the classifier more capacity (and more to overfit with); fewer make it smaller "
    "and faster.",
    "dropout_rate": "Raising it fights overfitting on a small dataset but slows learning; 0 turns it off.",
    "activation": "ReLU is the usual choice; LeakyReLU and ELU keep a small gradient for negative inputs; Tanh and "
    "Sigmoid saturate and learn slower.",
    "lr": "The size of each step: too high and the loss jumps or diverges, too low and training crawls.",
    "optimizer": "Adam, NAdam and RMSprop adapt the step per weight and need little tuning; SGD needs "
    "a well-chosen learning rate.",
    "batch_size": "Larger batches give smoother, faster epochs with fewer steps; smaller ones add noise that can "
    "help the model generalise.",
    "epochs": "More epochs keep improving until the model starts to overfit; early stopping can end a run sooner.",
}
HYPERPARAMS = tuple(replace(spec, effect=_EFFECTS[spec.name]) for spec in HYPERPARAMS)
PARAM_SPECS: dict[str, ParamSpec] = {p.name: p for p in HYPERPARAMS}
# The ten parameters an Optuna study searches (epochs is fixed per study).
SEARCHABLE = tuple(p.name for p in HYPERPARAMS if p.name != "epochs")


class JsonConfig:
    """JSON round trip for the frozen config dataclasses (runs, data, VGG, the generator, the finder)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(cast("DataclassInstance", self))  # the mixin is only mixed into dataclasses

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The config from its dict, refusing unknown fields (a config with nested configs overrides this)."""
        check_fields(cls, data)
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.from_dict(json.loads(text))

    def with_changes(self, **changes: Any) -> Self:
        """A validated copy with some fields replaced (configs are never mutated)."""
        return type(self).from_dict({**self.to_dict(), **changes})


def check_fields(cls: type, data: dict[str, Any], what: str = "", error: type[ConfigError] = ConfigError) -> None:
    """Refuse a dict with fields the dataclass ``cls`` does not have, naming the valid ones."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise error(f"unknown {what or cls.__name__} field(s): {', '.join(unknown)}; valid: {', '.join(sorted(known))}")


@dataclass(frozen=True)
class HyperParams(JsonConfig):
    """The reference study's eleven hyperparameters; defaults are the reference study's best preset, but for
    the learning rate: 9e-4 where the cosine schedule (``RunConfig.lr_schedule``) starts, for its 1.8e-4 kept
    constant."""

    num_filters_conv1: int = 24  # 8–64 step 8
    num_filters_conv2: int = 96  # 16–128 step 16
    kernel_size_conv1: int = 5  # 3–7 step 2
    kernel_size_conv2: int = 5  # 3–7 step 2
    fc1_units: int = 384  # 64–512 step 64
    dropout_rate: float = 0.02  # 0.0–0.5
    activation: str = "LeakyReLU"  # one of ACTIVATIONS
    lr: float = 9e-4  # 1e-5–1e-3, log scale; the reference study: 1.8e-4 at a constant rate (see HYPERPARAMS)
    optimizer: str = "NAdam"  # one of OPTIMIZERS
    batch_size: int = 16  # 16–128 step 16
    epochs: int = 10  # 1–100; constant per study (the reference study: 5 per trial, 10 final)

    def __post_init__(self) -> None:
        for spec in HYPERPARAMS:
            object.__setattr__(self, spec.name, spec.check(getattr(self, spec.name)))


DEFAULT_HPARAMS = HyperParams()
# The reference study's best preset exactly, and its constant learning rate (RunConfig.lr_schedule).
REFERENCE_HPARAMS = HyperParams(**{spec.name: spec.reference_value for spec in HYPERPARAMS})
REFERENCE_LR_SCHEDULE = "constant"

# The registry names of the two models, written once: run configs, checkpoint cards and the database
# store them, and every other module names a model through these constants or MODEL_INFOS.
CUSTOM_CNN = "flag_cnn"  # the reference study's network, built from scratch
VGG16_TRANSFER = "vgg16_transfer"  # a frozen section of ImageNet VGG-16 + a new head

# Default network input per model. The custom CNN reads 40 px: ten epochs of the default preset over the
# built-in data take about 2 minutes on 2 CPU cores (64 px: 3x as much), and of 40-80 px it reads the check
# images best through the flag finder, for the least training time (docs/INPUT_SIZE.md).
# VGG-16 halves its input five times and needs 64 px to keep the 2×2 map its head reads.
CNN_IMAGE_SIZE = 40
VGG_IMAGE_SIZE = 64
DEFAULT_AUGMENT = 0.75  # fairly strong: photos from elsewhere gain, and ten epochs still fit the data

# "Not sure" below this calibrated top probability (0–1): the answer becomes "not sure — closest: A,
# B" instead of a bare class. A flag on predict and evaluate, a number on the Predict page.
# Chosen from the check set through the default pipeline (docs/QUALITY.md, synth-4 default CNN and finder):
# of QUALITY.md's steps (0.50-0.95), the highest that leaves over 90 % of the images answered on both check
# sets, random seed 1234 / 4321. Session 7's CNN (constant rate): at 0.95, 92.1 / 93.8 % answered, 97.1 /
# 98.2 % of them right (0.8: 97.3 / 97.9 % answered, 95.5 / 97.0 % right; 0.97: 90.6 / 92.1 % at 97.5 /
# 98.6 %, too near the 90 % floor). Today's (cosine from 9e-4): at 0.95, 94.6 / 93.3 % at 97.4 / 98.7 %.
CONFIDENCE_THRESHOLD = 0.95


def default_image_size(model: str) -> int:
    """The default network input of ``model`` (a registry name)."""
    return model_info(model).image_size


@dataclass(frozen=True)
class DataConfig(JsonConfig):
    """How a dataset is read, split, cached and augmented."""

    path: str = ""  # ImageFolder root (class sub-folders, or train/ and test|val/ splits)
    image_size: int = CNN_IMAGE_SIZE  # pixels, square network input (8–256)
    val_fraction: float = 0.2  # share held out when the folder has no test/ split (0.05–0.5)
    split_seed: int = 0  # seeds the stratified split
    augment: float = DEFAULT_AUGMENT  # augmentation strength, 0 = none, 1 = strong
    cache_limit_mb: int = 2048  # decoded-tensor cache bound; above it images stream from disk
    # The photos show flags: prediction finds the flag first (the flag finder) and reads its crop.
    # False for a dataset of something else: its model reads the whole photo. Older configs: True.
    find_flags: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.find_flags, bool):
            raise ConfigError(f"find_flags={self.find_flags!r} must be true or false")
        if not 8 <= int(self.image_size) <= 256:
            raise ConfigError(f"image_size={self.image_size} is outside 8–256")
        if not 0.05 <= float(self.val_fraction) <= 0.5:
            raise ConfigError(f"val_fraction={self.val_fraction} is outside 0.05–0.5")
        if not 0.0 <= float(self.augment) <= 1.0:
            raise ConfigError(f"augment={self.augment} is outside 0–1")
        if int(self.cache_limit_mb) < 0:
            raise ConfigError("cache_limit_mb must be ≥ 0")


@dataclass(frozen=True)
class VGGConfig(JsonConfig):
    """VGG-16 transfer options."""

    blocks: int = 5  # convolutional blocks of VGG-16 kept as feature extractor (1–5)
    fine_tune_last: bool = False  # also train the last kept block
    pretrained: bool = True  # ImageNet weights; False = random init, labelled so everywhere
    head_units: int = 256  # hidden units of the new classifier head (0 = linear head)
    cached_views: int = 4  # augmented views whose frozen features are cached (1 = no augmentation)

    def __post_init__(self) -> None:
        if not 1 <= int(self.blocks) <= 5:
            raise ConfigError(f"VGG blocks={self.blocks} is outside 1–5")
        if int(self.head_units) < 0:
            raise ConfigError("head_units must be ≥ 0")
        if not 1 <= int(self.cached_views) <= 32:
            raise ConfigError(f"cached_views={self.cached_views} is outside 1–32")


@dataclass(frozen=True)
class RunConfig(JsonConfig):
    """Everything one training run needs; written as ``config.json`` next to the run."""

    model: str = CUSTOM_CNN  # a name from flagvision.models.networks.list_models()
    hparams: HyperParams = field(default_factory=HyperParams)
    data: DataConfig = field(default_factory=DataConfig)
    vgg: VGGConfig = field(default_factory=VGGConfig)
    weight_decay: float = 0.0  # L2 penalty passed to the optimizer (0–0.1)
    # How the learning rate moves during training: "cosine" falls from the set rate to zero along a
    # half cosine over all the run's steps; "constant" keeps the set rate throughout.
    lr_schedule: str = "cosine"
    patience: int = 0  # early stopping: epochs without val-accuracy gain (0 = off)
    seed: int = 0  # seeds weights init, shuffling and augmentation
    device: str = "auto"  # auto, cpu, cuda
    threads: int = 0  # torch intra-op threads (0 = all cores)

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.weight_decay) <= 0.1:
            raise ConfigError(f"weight_decay={self.weight_decay} is outside 0–0.1")
        if int(self.patience) < 0:
            raise ConfigError("patience must be ≥ 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device={self.device!r} is not one of auto, cpu, cuda")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule={self.lr_schedule!r} is not one of {', '.join(LR_SCHEDULES)}")
        check_geometry(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        check_fields(cls, data)
        data = dict(data)
        for key, sub in (("hparams", HyperParams), ("data", DataConfig), ("vgg", VGGConfig)):
            if isinstance(data.get(key), dict):
                data[key] = sub.from_dict(data[key])
        return cls(**data)

    def with_hparams(self, **changes: Any) -> RunConfig:
        return replace(self, hparams=self.hparams.with_changes(**changes))

    @property
    def label(self) -> str:
        """Human name of the model, marking random-init VGG explicitly."""
        return model_info(self.model).display_label(pretrained=self.vgg.pretrained)


def cnn_feature_size(hp: HyperParams, image_size: int) -> int:
    """Side of the feature map after conv1 → pool → conv2 → pool (valid convolutions, 2×2 pool)."""
    side = image_size
    for k in (hp.kernel_size_conv1, hp.kernel_size_conv2):
        side = (side - k + 1) // 2
    return side


MAX_FC1_WEIGHTS = 64_000_000  # ~256 MB of fp32 weights in fc1 alone: beyond that, refuse


def check_cnn_geometry(hp: HyperParams, image_size: int) -> None:
    """Refuse a combination whose feature map vanishes or whose fc1 would be absurdly large."""
    side = cnn_feature_size(hp, image_size)
    if side < 1:
        smallest = next(s for s in range(8, 257) if cnn_feature_size(hp, s) >= 1)
        raise ConfigError(
            f"kernel sizes {hp.kernel_size_conv1} and {hp.kernel_size_conv2} shrink a "
            f"{image_size}px image to nothing after two conv+pool stages; use image_size ≥ {smallest} "
            "or smaller kernels"
        )
    fc1_weights = hp.num_filters_conv2 * side * side * hp.fc1_units
    if fc1_weights > MAX_FC1_WEIGHTS:
        raise ConfigError(
            f"fc1 would hold {fc1_weights / 1e6:.0f}M weights ({hp.num_filters_conv2} filters × "
            f"{side}×{side} × {hp.fc1_units} units), more than {MAX_FC1_WEIGHTS // 1_000_000}M; "
            "use a smaller image_size, fewer conv2 filters or fewer fc1 units"
        )


def check_vgg_geometry(cfg: RunConfig) -> None:
    """Refuse more VGG-16 blocks than the image can be halved by (each block ends in a 2×2 pool)."""
    blocks, size = cfg.vgg.blocks, cfg.data.image_size
    if size < 2**blocks:
        raise ConfigError(
            f"{blocks} VGG-16 blocks halve a {size}px image to nothing; use image_size ≥ {2**blocks} or fewer blocks"
        )


def _check_cnn_config(cfg: RunConfig) -> None:
    check_cnn_geometry(cfg.hparams, cfg.data.image_size)


# ----------------------------------------------------------------------------- model identity


@dataclass(frozen=True)
class ModelInfo:
    """What the CLI, the app, the study and the checks know about one model, without importing torch.

    ``flagvision.models.networks`` registers one builder per entry of :data:`MODEL_INFOS`; everything else
    reads a model's label, default size and capabilities from here instead of comparing names.
    """

    name: str  # registry name, as stored in run configs, checkpoint cards and the database
    label: str  # human name for tables, select boxes and plots
    image_size: int  # default square network input in px
    needs_weights: bool  # starts from ImageNet weights unless cfg.vgg.pretrained is False
    searchable: bool  # every hyperparameter shapes it, so studies search it (the custom CNN)
    check: Callable[[RunConfig], None]  # raises ConfigError when the input shrinks to nothing

    def display_label(self, pretrained: bool = True) -> str:
        """The label, marked "(random init, not pretrained)" for a model that should have had ImageNet weights."""
        return self.label if pretrained or not self.needs_weights else f"{self.label} ({RANDOM_INIT_MARK})"


RANDOM_INIT_MARK = "random init, not pretrained"  # beside every label of a model without its ImageNet weights


_CUSTOM_CNN_INFO = ModelInfo(
    CUSTOM_CNN, "Custom CNN", CNN_IMAGE_SIZE, needs_weights=False, searchable=True, check=_check_cnn_config
)
_VGG16_INFO = ModelInfo(
    VGG16_TRANSFER, "VGG-16 transfer", VGG_IMAGE_SIZE, needs_weights=True, searchable=False, check=check_vgg_geometry
)
MODEL_INFOS: Mapping[str, ModelInfo] = MappingProxyType({i.name: i for i in (_CUSTOM_CNN_INFO, _VGG16_INFO)})


def model_names() -> list[str]:
    """The registry's model names, sorted, without importing torch (select boxes, CLI choices)."""
    return sorted(MODEL_INFOS)


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registry name; ConfigError listing the valid names otherwise."""
    try:
        return MODEL_INFOS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(sorted(MODEL_INFOS))}") from None


def check_geometry(cfg: RunConfig) -> None:
    """The one geometry check: refuse a config whose model would see an input shrunk to nothing."""
    model_info(cfg.model).check(cfg)
