"""The one training engine: ``fit`` and ``evaluate`` for every model, run, trial and CLI call.

The loops are plain and print nothing; everything else (metrics to the store, best checkpoint,
cancel, Optuna reporting and pruning) is a :class:`Callback`. A model whose backbone is frozen
(``model.frozen_backbone``) gets its features computed once, for a fixed number of augmented views,
so that each head epoch costs almost nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F

from flagvision.config import LR_SCHEDULES, OPTIMIZERS, ConfigError, RunConfig
from flagvision.data.dataset import DatasetBundle, LazyImages, TensorSplit, augment_batch, normalize, normalize_float
from flagvision.runtime import resolve_device, seed_everything, set_threads
from flagvision.training.callbacks import Callback

EVAL_BATCH = 256
# Optimizers with a fused CPU kernel (one pass over each parameter, no temporaries); the others get
# the multi-tensor ("foreach") implementation, which torch only picks by itself on CUDA.
_FUSED_ON_CPU = ("Adam", "SGD", "Adagrad")


@dataclass
class EpochMetrics:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float  # 0–1
    val_loss: float
    val_acc: float  # 0–1
    lr: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:  # epoch is an int, the rest floats
        return asdict(self)


@dataclass
class History:
    epochs: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = 0.0
    stop_reason: str = ""  # "", "early_stopping", or what a callback set (e.g. "cancelled", "pruned")

    def to_dicts(self) -> list[dict[str, Any]]:
        return [m.to_dict() for m in self.epochs]


@dataclass
class ResumeState:
    """Where an interrupted run continues: the next epoch, optimizer state and history so far."""

    next_epoch: int
    optimizer_state: dict[str, Any] | None
    history: History


@dataclass
class FitState:
    """What callbacks see; a callback sets ``stop`` (and ``stop_reason``) to end training."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    cfg: RunConfig
    data: DatasetBundle
    history: History
    epoch: int = 0
    batch: int = 0
    batches_per_epoch: int = 0
    stop: bool = False
    stop_reason: str = ""


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """One of the reference study's seven optimizers. SGD gets momentum 0.9, as any practitioner would use."""
    params = list(params)
    if not params:
        raise ConfigError("the model has no trainable parameters")
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer {name!r} is not supported; valid: {', '.join(OPTIMIZERS)}")
    # Same algorithm, faster implementation (see benchmarks/bench.py "tuning"); CUDA keeps torch's own choice.
    impl: dict[str, bool] = {}
    if all(p.device.type == "cpu" for p in params):
        impl = {"fused": True} if name in _FUSED_ON_CPU else {"foreach": True}
    if name == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, **impl)
    return getattr(torch.optim, name)(params, lr=lr, weight_decay=weight_decay, **impl)


def lr_schedule(
    optimizer: torch.optim.Optimizer, name: str, lr: float, total_steps: int, done_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate per optimizer step (``RunConfig.lr_schedule``), ``done_steps`` already taken
    (a resumed run): "cosine" falls from ``lr`` to zero along a half cosine over ``total_steps``
    (SGDR without restarts, Loshchilov & Hutter 2017); "constant" keeps ``lr``."""
    if name not in LR_SCHEDULES:
        raise ConfigError(f"lr_schedule {name!r} is not supported; valid: {', '.join(LR_SCHEDULES)}")
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = lr  # a resumed optimizer's state holds the last step's rate
    total = max(1, total_steps)

    def factor(step: int) -> float:
        if name == "constant":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(step + done_steps, total) / total))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def prefers_channels_last(model: nn.Module, device: torch.device) -> bool:
    """True on CPU for a model with convolutions: oneDNN's native layout is channels_last (NHWC).

    The conv weights are converted once and the input of each batch is made NHWC, so convolution
    and max-pooling skip their layout reorders; values are unchanged.
    """
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def _input_layout(model: nn.Module) -> torch.memory_format:
    """NHWC when the model's first convolution was converted to it (by fit), else NCHW."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if (
        conv is not None
        and conv.weight.is_contiguous(memory_format=torch.channels_last)
        and not conv.weight.is_contiguous()
    ):
        return torch.channels_last
    return torch.contiguous_format


def model_normalization(model: nn.Module) -> tuple[Sequence[float], Sequence[float]]:
    return getattr(model, "normalization", ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))


@dataclass
class EvalResult:
    accuracy: float
    loss: float
    per_class: dict[str, float | None]  # None: the class has no images in this split
    confusion: list[list[int]]  # rows: true class, columns: predicted
    class_names: list[str]
    predictions: list[int]
    n_images: int

    def to_dict(self, with_predictions: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_predictions:
            d.pop("predictions")
        return d


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor | LazyImages, device: torch.device | None = None
) -> torch.Tensor:
    """Logits for uint8 images (any length), in eval mode, batched."""
    device = device or next(model.parameters()).device
    mean, std = model_normalization(model)
    layout = _input_layout(model)
    model.eval()
    out = []
    for start in range(0, len(images), EVAL_BATCH):
        batch = images[start : start + EVAL_BATCH]
        x = normalize(batch.to(device), mean, std).contiguous(memory_format=layout)
        out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def evaluate(model: nn.Module, split: TensorSplit, class_names: Sequence[str]) -> EvalResult:
    """Accuracy, loss, per-class accuracy and confusion matrix on one split."""
    logits = predict_logits(model, split.images)
    return eval_from_logits(logits, split.labels, class_names)


def eval_from_logits(logits: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]) -> EvalResult:
    """Accuracy, loss, per-class accuracy and confusion matrix from (N, C) logits (or log-probabilities)."""
    k = len(class_names)
    preds = logits.argmax(1)
    loss = F.cross_entropy(logits, labels).item() if len(labels) else float("nan")
    confusion = torch.zeros(k, k, dtype=torch.int64)
    confusion.index_put_((labels, preds), torch.ones_like(labels), accumulate=True)
    totals = confusion.sum(1)
    per_class = {
        name: (confusion[i, i].item() / totals[i].item()) if totals[i] else None for i, name in enumerate(class_names)
    }
    acc = (preds == labels).float().mean().item() if len(labels) else float("nan")
    return EvalResult(acc, loss, per_class, confusion.tolist(), list(class_names), preds.tolist(), len(labels))


@runtime_checkable
class _HasTrainableParameters(Protocol):
    """A model that says which parameters to optimise (a FlagModel: its frozen backbone is left out)."""

    def trainable_parameters(self) -> list[nn.Parameter]: ...


def fit(
    model: nn.Module,
    data: DatasetBundle,
    cfg: RunConfig,
    callbacks: Sequence[Callback] = (),
    resume: ResumeState | None = None,
) -> History:
    """Train ``model`` on ``data.train`` for ``cfg.hparams.epochs``, validating on ``data.val``."""
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    hp = cfg.hparams
    start_epoch = resume.next_epoch if resume else 1
    # Seed per (seed, start epoch): a resumed run is reproducible too, without replaying epochs.
    gen = seed_everything(cfg.seed * 1000 + start_epoch)
    model.to(device)
    if prefers_channels_last(model, device):
        model.to(memory_format=torch.channels_last)  # in place: same Parameter objects, NHWC strides
    layout = _input_layout(model)
    params = model.trainable_parameters() if isinstance(model, _HasTrainableParameters) else model.parameters()
    optimizer = make_optimizer(hp.optimizer, params, hp.lr, cfg.weight_decay)
    if resume and resume.optimizer_state:
        optimizer.load_state_dict(resume.optimizer_state)
    n_train = len(data.train)
    batches_per_epoch = math.ceil(n_train / hp.batch_size)
    schedule = lr_schedule(
        optimizer, cfg.lr_schedule, hp.lr, hp.epochs * batches_per_epoch, (start_epoch - 1) * batches_per_epoch
    )
    history = resume.history if resume else History()
    state = FitState(model, optimizer, cfg, data, history)
    mean, std = model_normalization(model)
    strength = cfg.data.augment

    step = _FeatureStep(model, data, cfg, gen, device) if getattr(model, "frozen_backbone", False) else None
    state.batches_per_epoch = batches_per_epoch
    for cb in callbacks:
        cb.on_fit_start(state)

    epochs_without_gain = 0
    for epoch in range(start_epoch, hp.epochs + 1):
        if state.stop:
            break
        state.epoch = epoch
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n_train, generator=gen)
        loss_sum, correct = 0.0, 0
        seen = 0
        for b, start in enumerate(range(0, n_train, hp.batch_size)):
            idx = order[start : start + hp.batch_size]
            labels = data.train.labels[idx].to(device)
            if step is not None:
                logits = step.train_logits(idx, gen)
            else:
                x = augment_batch(data.train.images[idx], strength, gen).to(device)
                logits = model(normalize_float(x, mean, std).contiguous(memory_format=layout))
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == labels).sum().item())
            seen += len(idx)
            state.batch = b + 1
            for cb in callbacks:
                cb.on_batch_end(state)
            if state.stop:
                break
        if state.stop and seen < n_train:
            break  # an interrupted epoch is not recorded; resume repeats it
        val = step.evaluate_val() if step is not None else evaluate(model, data.val, data.class_names)
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=loss_sum / max(seen, 1),
            train_acc=correct / max(seen, 1),
            val_loss=val.loss,
            val_acc=val.accuracy,
            lr=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - t0,
        )
        improved = metrics.val_acc > history.best_val_acc or not history.epochs
        history.epochs.append(metrics)
        if improved:
            history.best_epoch, history.best_val_acc = epoch, metrics.val_acc
            epochs_without_gain = 0
        else:
            epochs_without_gain += 1
        for cb in callbacks:
            cb.on_epoch_end(state, metrics, improved)
        if not math.isfinite(metrics.train_loss):
            state.stop, state.stop_reason = True, "diverged (loss is not finite); lower the learning rate"
        if cfg.patience and epochs_without_gain >= cfg.patience and not state.stop:
            state.stop, state.stop_reason = True, "early_stopping"
    history.stop_reason = state.stop_reason
    for cb in callbacks:
        cb.on_fit_end(state)
    return history


class _FeatureStep:
    """Head-only training on features computed once by a frozen backbone."""

    def __init__(self, model, data: DatasetBundle, cfg: RunConfig, gen: torch.Generator, device):
        self.model, self.data, self.device = model, data, device
        mean, std = model_normalization(model)
        self.layout = _input_layout(model)
        views = max(1, cfg.vgg.cached_views)
        feats = []
        for v in range(views):
            # View 0 is the plain image; the others are augmented, so the head still sees variety.
            strength = 0.0 if v == 0 else cfg.data.augment
            feats.append(self._features(data.train.images, strength, gen, mean, std))
        self.train_features = torch.stack(feats)  # views × N × ...
        self.val_features = self._features(data.val.images, 0.0, gen, mean, std)

    @torch.no_grad()
    def _features(self, images, strength, gen, mean, std) -> torch.Tensor:
        self.model.eval()
        out = []
        for start in range(0, len(images), 64):
            x = augment_batch(images[start : start + 64], strength, gen).to(self.device)
            out.append(self.model.extract_features(normalize_float(x, mean, std).contiguous(memory_format=self.layout)))
        return torch.cat(out)

    def train_logits(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        view = torch.randint(0, self.train_features.shape[0], (len(idx),), generator=gen)
        f = self.train_features[view, idx].to(self.device)
        return self.model.classify_features(f)

    @torch.no_grad()
    def evaluate_val(self) -> EvalResult:
        self.model.eval()
        logits = self.model.classify_features(self.val_features.to(self.device)).float().cpu()
        return eval_from_logits(logits, self.data.val.labels, self.data.class_names)


class StopAfter(Callback):
    """Stop when ``should_stop()`` turns true, checked after every batch (e.g. a cancel flag)."""

    def __init__(self, should_stop: Callable[[], bool], reason: str = "cancelled", every_s: float = 0.5):
        self.should_stop, self.reason, self.every_s = should_stop, reason, every_s
        self._last = 0.0

    def on_batch_end(self, state: FitState) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            if self.should_stop():
                state.stop, state.stop_reason = True, self.reason
