"""The flag finder: where the flags are in a photo, before a classifier reads them (find → crop → classify).

A classifier trained on flags that fill the frame reads a whole photo with a small flag as a blur
of sky. The finder is class-agnostic: a small fully convolutional network predicts, for every
4 x 4 pixel cell of the photo squashed to ``input_size``, whether it is flag cloth. It learns from
the generator's own ground truth (:func:`flagvision.synthetic.scenes.render_annotated`: scenes with no flag,
one flag or several, 10-95 % of the frame wide, some hoisted vertically). Post-processing:
the mask, upsampled twice, is thresholded; its connected components become boxes, each scored by
its mean probability; the best few answer (none: the best component at a fainter threshold, if
any). :func:`crop_for_classifier` cuts a box out with a margin and keeps the flag's aspect ratio,
so that a vertical flag stays taller than wide.

The finder is a checkpoint like the classifiers: ``<workspace>/finder/model.safetensors`` and a
JSON ``card.json`` (its config, input size, the generator version, training figures), built by
``python -m flagvision finder train``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from flagvision.config import ConfigError, JsonConfig
from flagvision.data.images import open_image
from flagvision.errors import FlagVisionError
from flagvision.models.mask_boxes import Box, box_iou, cells_box, components
from flagvision.parallel import parallel_map
from flagvision.synthetic.scenes import GENERATOR_VERSION, Background, render_annotated
from flagvision.training.checkpoints import write_json_atomic
from flagvision.workspace import CARD_FILE, FINDER_DIR, WEIGHTS_FILE, Workspace

FINDER_FORMAT = "flagvision-finder/1"
MASK_STRIDE = 4  # input pixels per mask cell
NO_FLAG_FOUND = "no flag found: the whole photo was classified"

CropMode = Literal["letterbox", "context", "squash"]
CROP_MODES: tuple[str, ...] = ("letterbox", "context", "squash")
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class FinderError(FlagVisionError, ValueError):
    """No flag finder in the workspace, or one that cannot be loaded; the message says which."""


@dataclass(frozen=True)
class FinderConfig(JsonConfig):
    """How the flag finder is built and how its mask becomes boxes."""

    input_size: int = 128  # px, the side the photo is squashed to; 64..512, a multiple of 16
    width: int = 24  # channels of the stem (the context branch has 3x), 4..64
    # Training scenes and epochs: 4000 x 10. The finder learns more from more scenes than from more passes or
    # a wider network. With the synth-4 default CNN and the readings of both sides of a vertical flag, check
    # images of random seed 1234 (480) / 4321 (240), accuracy and IoU >= 0.5 hits: 2000 x 12 (session 6's)
    # 90.8 / 92.5 % (83.1 / 86.3 %); 3000 x 12 93.5 / 94.6 % (87.9 / 91.2 %); 4000 x 10 93.5 / 94.2 % (90.6 /
    # 90.0 %); 2000 x 12 with width 32 91.9 / 92.5 % (84.6 / 87.1 %). The finder step: 76 s -> 144 s on a
    # quiet 2-core machine (docs/QUALITY.md). Session 6 went from 1200 x 20 to 2000 x 12 (the same optimizer
    # steps): seed 1234 84.6 -> 86.0 %, seed 4321 84.2 -> 86.7 %.
    scenes: int = 4000  # generated training scenes, 16..100000
    val_scenes: int = 200  # held-out scenes to measure the boxes on, 0..10000
    epochs: int = 10  # passes over the training scenes, 1..100 (training is cheap next to rendering them)
    batch_size: int = 32  # 1..512
    lr: float = 3e-3  # AdamW learning rate, 1e-5..1e-1 (one-cycle schedule)
    seed: int = 0  # random seed of the scenes and of the weights, >= 0
    threshold: float = 0.5  # mask probability above which a cell is flag, 0.05..0.95
    min_score: float = 0.6  # a component's mean probability needed to count as a flag, 0..1
    min_cells: int = 3  # smaller components (in upsampled mask cells) are noise, >= 1
    max_flags: int = 5  # flags answered per photo, by score, 1..20
    # Nothing found at ``threshold``/``min_score``: the best component of the mask above this answers, as
    # one faint flag (0 = off: "no flag found"). Small flags in whole scenes are often only faintly
    # masked; measured with the default finder and CNN on 480 check images (random seed 1234): "no flag
    # found" 41 -> 15 images, scene_small 72.9 -> 84.4 %, IoU >= 0.5 76.9 -> 79.6 % (0.1 and 0.2 did no
    # better); on 150 generated scenes without a flag, nothing is found in 44 % instead of 64 %.
    faint_threshold: float = 0.15  # 0..0.95
    # Cells above ``faint_threshold`` (``threshold`` when that is off) covering this share of the photo: a
    # flag filling the frame, one box over all of them (a close-up's colour fields are otherwise often found
    # as separate fragments, the answering one a shield or a stripe). Measured with the synth-4 default CNN
    # and finder, check images of random seed 1234 / 4321, accuracy and IoU >= 0.5 hits: off 93.5 / 94.2 %
    # (90.6 / 90.0 %); 0.3 93.8 / 95.0 % (91.7 / 91.2 %); 0.25 93.8 / 93.8 %; 0.4 93.3 / 95.0 %; 0.5 93.5 /
    # 94.6 %. 0 = off.
    fill_share: float = 0.3  # 0..1
    # share of training flags hoisted vertically, 0..1: 0.35 (0.25 before; with the scenes above) measured
    # 86.0 -> 87.7 % (seed 1234) and 86.7 -> 86.7 % (seed 4321), vertical +3 / +8 points, IoU hits 81.9 ->
    # 83.1 % and 84.2 -> 86.2 %, close-ups +2 / -6, scene_small -2 / -4
    vertical_share: float = 0.35
    small_share: float = 0.35  # share of training flags drawn small (10-35 % of the width), 0..1 (0 before)
    multi_share: float = 0.35  # share of training scenes with two or three flags, 0..0.85 (0.2 before)
    workers: int = 0  # processes rendering scenes, 0 = all CPU cores, 1 = in this process (max 64)
    threads: int = 0  # torch threads while training, 0 = all CPU cores

    def __post_init__(self) -> None:
        ints = {"input_size": (64, 512), "width": (4, 64), "scenes": (16, 100_000), "val_scenes": (0, 10_000),
                "epochs": (1, 100), "batch_size": (1, 512), "seed": (0, 2**63 - 1), "min_cells": (1, 10_000),
                "max_flags": (1, 20), "workers": (0, 64), "threads": (0, 256)}  # fmt: skip
        for name, (low, high) in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"FinderConfig.{name} must be an integer in {low}..{high}, got {value!r}")
        if self.input_size % 16:
            raise ConfigError(f"FinderConfig.input_size must be a multiple of 16, got {self.input_size}")
        floats = {"lr": (1e-5, 1e-1), "threshold": (0.05, 0.95), "min_score": (0.0, 1.0), "vertical_share": (0.0, 1.0),
                  "small_share": (0.0, 1.0), "multi_share": (0.0, 0.85), "faint_threshold": (0.0, 0.95),
                  "fill_share": (0.0, 1.0)}  # fmt: skip
        for name, (lo, hi) in floats.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ConfigError(f"FinderConfig.{name} must be a number in {lo}..{hi}, got {value!r}")

    @property
    def mask_size(self) -> int:
        return self.input_size // MASK_STRIDE


@dataclass(frozen=True)
class Detection:
    """One flag the finder found."""

    box: Box  # in the photo's own pixels
    score: float  # the mean flag probability inside the found region, 0..1


# ---------------------------------------------------------------------------------------------
# The network


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class FinderNet(nn.Module):
    """Fully convolutional: an RGB batch (N, 3, S, S) in 0..1 → flag logits (N, 1, S/4, S/4).

    A 4 x 4 patch stem makes the mask's cells at once (cheap on a CPU); a context branch (down to
    S/16, one dilated block) sees the surroundings: a flag-coloured wall is not a flag, a flag on
    a pole is.
    """

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        w = width
        stem = nn.Sequential(nn.Conv2d(3, w, MASK_STRIDE, MASK_STRIDE), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.local = nn.Sequential(stem, _block(w, 2 * w), _block(2 * w, 2 * w))
        self.context = nn.Sequential(_block(2 * w, 3 * w, 2), _block(3 * w, 3 * w, 2), _block(3 * w, 3 * w, 1, 2))
        self.head = nn.Sequential(nn.Conv2d(5 * w, 2 * w, 1), nn.ReLU(inplace=True), nn.Conv2d(2 * w, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local(x - 0.5)
        context = F.interpolate(self.context(local), size=local.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([local, context], dim=1))


# ---------------------------------------------------------------------------------------------
# Training scenes


def _scene_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0xF1, stream, index])


def _render_range(
    seed: int,
    stream: int,
    start: int,
    stop: int,
    size: int,
    shares: tuple[float, float, float],
    background: Background | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scenes [start, stop) as uint8 (N, S, S, 3) and their masks at mask resolution, float32 (N, S/4, S/4)."""
    images = np.empty((stop - start, size, size, 3), np.uint8)
    masks = np.empty((stop - start, size // MASK_STRIDE, size // MASK_STRIDE), np.float32)
    vertical_share, small_share, multi_share = shares
    for k, i in enumerate(range(start, stop)):
        scene = render_annotated(
            _scene_rng(seed, stream, i), size, background=background, vertical_share=vertical_share,
            small_share=small_share, multi_share=multi_share,
        )  # fmt: skip
        images[k] = np.asarray(scene.image)
        m = size // MASK_STRIDE
        masks[k] = scene.mask.reshape(m, MASK_STRIDE, m, MASK_STRIDE).mean(axis=(1, 3))
    return images, masks


def render_finder_scenes(
    count: int, cfg: FinderConfig, stream: int = 0, progress: Callable[[int, int], None] | None = None,
    background: Background | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``count`` annotated scenes of ``cfg.input_size`` (stream 0 trains, 1 is held out)."""
    size, chunk = cfg.input_size, 50
    ranges = [(s, min(s + chunk, count)) for s in range(0, count, chunk)]
    if progress:
        progress(0, count)
    shares = (cfg.vertical_share, cfg.small_share, cfg.multi_share)
    calls = [(cfg.seed, stream, start, stop, size, shares, background) for start, stop in ranges]
    sizes = [stop - start for start, stop in ranges]
    parts = parallel_map(_render_range, calls, sizes, cfg.workers or os.cpu_count() or 1, progress)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _to_batch(images: np.ndarray) -> torch.Tensor:
    images = images if images.flags.writeable and images.flags.c_contiguous else images.copy()
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # Binary cross-entropy for every cell plus a soft Dice term, so that a flag of a few cells
    # weighs as much as the sky around it.
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


def train_finder(
    cfg: FinderConfig | None = None, progress: Progress | None = None, background: Background | None = None
) -> Finder:
    """Render the scenes, train the finder and measure it on held-out scenes; returns it (card included)."""
    cfg = cfg or FinderConfig()
    started = time.perf_counter()
    images, masks = render_finder_scenes(
        cfg.scenes, cfg, 0, (lambda d, t: progress("rendering scenes", d, t)) if progress else None, background
    )
    val_images, val_masks = (
        render_finder_scenes(cfg.val_scenes, cfg, 1, None, background) if cfg.val_scenes else (images[:0], masks[:0])
    )
    rendered = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        net = FinderNet(cfg.width)
        steps_per_epoch = math.ceil(len(images) / cfg.batch_size)
        optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.2
        )
        target_all = torch.from_numpy(masks)[:, None]
        net.train()
        for epoch in range(cfg.epochs):
            order = torch.randperm(len(images), generator=generator)
            for step in range(steps_per_epoch):
                idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                x, y = _to_batch(images[idx.numpy()]), target_all[idx]
                if torch.rand(1, generator=generator).item() < 0.5:  # the back of every scene is a scene too
                    x, y = x.flip(-1), y.flip(-1)
                loss = _loss(net(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            if progress:
                progress("training", epoch + 1, cfg.epochs)
        net.eval()
    finally:
        torch.set_num_threads(previous_threads)
    trained = time.perf_counter()
    metrics: dict[str, float] = {"render_seconds": rendered - started, "train_seconds": trained - rendered}
    card: dict[str, Any] = {
        "format": FINDER_FORMAT,
        "config": cfg.to_dict(),
        "input_size": cfg.input_size,
        "mask_size": cfg.mask_size,
        "generator": GENERATOR_VERSION,
        "created_at": time.time(),
        "metrics": metrics,
    }
    finder = Finder(net, card)
    if cfg.val_scenes:
        metrics.update(measure_finder(finder, val_images, val_masks))
    return finder


def _mask_boxes(mask: np.ndarray, size: int) -> list[Box]:
    """Ground-truth boxes of a mask-resolution target (one per connected component), in input pixels."""
    return [box for box, _ in components(mask, mask >= 0.5, size, size, 1)]


def measure_finder(finder: Finder, images: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Share of held-out scenes answered right: every true flag matched by a box of IoU >= 0.5, and
    nothing found in a scene without a flag (the boxes of the targets come from their masks)."""
    hits = flags = empty_right = empties = 0
    size = images.shape[1]
    for image, mask in zip(images, masks, strict=True):
        truth = _mask_boxes(mask, size)
        found = [d.box for d in finder.find_flags(Image.fromarray(image))]
        if not truth:
            empties += 1
            empty_right += not found
            continue
        for box in truth:
            flags += 1
            hits += any(box_iou(box, f) >= 0.5 for f in found)
    return {
        "val_iou50_share": hits / flags if flags else float("nan"),
        "val_empty_right_share": empty_right / empties if empties else float("nan"),
        "val_scenes": float(len(images)),
    }


# ---------------------------------------------------------------------------------------------
# The loaded finder


class Finder:
    """A trained flag finder (read-only at inference; safe to cache)."""

    def __init__(self, net: FinderNet, card: dict[str, Any]) -> None:
        self.net, self.card = net.eval(), card
        self.cfg = FinderConfig.from_dict(card["config"])

    @classmethod
    def from_dir(cls, folder: str | os.PathLike[str]) -> Finder:
        folder = Path(folder)
        card_path, weights = folder / CARD_FILE, folder / WEIGHTS_FILE
        if not card_path.is_file():
            raise FinderError(f"no flag finder in {folder}; build it with: python -m flagvision finder train")
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FinderError(f"{card_path}: unreadable finder card ({exc}); rebuild it with: "
                              "python -m flagvision finder train") from None  # fmt: skip
        if not isinstance(card, dict) or card.get("format") != FINDER_FORMAT:
            raise FinderError(
                f"{card_path}: not a {FINDER_FORMAT} card; rebuild it with: python -m flagvision finder train"
            )
        try:
            cfg = FinderConfig.from_dict(card.get("config") or {})
            net = FinderNet(cfg.width)
            net.load_state_dict(load_file(str(weights)), strict=True)
        except (ConfigError, TypeError) as exc:
            raise FinderError(f"{card_path}: the finder's config is invalid: {exc}") from None
        except (OSError, SafetensorError, RuntimeError) as exc:
            first = str(exc).splitlines()[0]
            raise FinderError(f"{weights}: the finder's weights are missing or damaged ({first}); rebuild them with: "
                              "python -m flagvision finder train") from None  # fmt: skip
        return cls(net, card)

    @classmethod
    def from_workspace(cls, ws: Workspace) -> Finder:
        """The workspace's finder; FinderError (one clear line) when it is missing or damaged."""
        return cls.from_dir(finder_dir(ws))

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Weights first, card last: a folder with a card always has its weights."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{WEIGHTS_FILE}.tmp{os.getpid()}"
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.net.state_dict().items()}
        save_file(state, str(tmp))
        os.replace(tmp, folder / WEIGHTS_FILE)
        write_json_atomic(folder / CARD_FILE, self.card)
        return folder

    @torch.no_grad()
    def probability_map(self, image: Image.Image) -> np.ndarray:
        """Flag probability per cell, upsampled twice: (S/2, S/2) for the photo squashed to S x S."""
        size = self.cfg.input_size
        x = _to_batch(np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))[None])
        logits = F.interpolate(self.net(x), scale_factor=2, mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)[0, 0].numpy()

    def find_flags(self, image: Image.Image | bytes | str | os.PathLike[str]) -> list[Detection]:
        """The flags in ``image``, best first (at most ``max_flags``); empty when none is found."""
        pil = image if isinstance(image, Image.Image) else open_image(image)
        prob = self.probability_map(pil)
        filled = prob >= (self.cfg.faint_threshold or self.cfg.threshold)
        if self.cfg.fill_share and filled.mean() >= self.cfg.fill_share:  # a close-up (FinderConfig.fill_share)
            ys, xs = np.nonzero(filled)
            box = cells_box(xs, ys, filled.shape, pil.width, pil.height)
            return [Detection(box, round(float(prob[ys, xs].mean()), 4))]
        found = components(prob, prob >= self.cfg.threshold, pil.width, pil.height, self.cfg.min_cells)
        found = [(box, score) for box, score in found if score >= self.cfg.min_score]
        if not found and self.cfg.faint_threshold:  # one faint flag rather than none (FinderConfig.faint_threshold)
            faint = components(prob, prob >= self.cfg.faint_threshold, pil.width, pil.height, self.cfg.min_cells)
            found = sorted(faint, key=lambda bs: -bs[1])[:1]
        found.sort(key=lambda bs: -bs[1])
        return [Detection(box, round(score, 4)) for box, score in found[: self.cfg.max_flags]]


def finder_dir(ws: Workspace) -> Path:
    """Where a workspace keeps its flag finder."""
    return ws.root / FINDER_DIR


def finder_status(ws: Workspace) -> dict[str, Any]:
    """Whether the workspace has a finder, and its figures (no torch work beyond reading the card)."""
    folder = finder_dir(ws)
    try:
        finder = Finder.from_dir(folder)
    except FinderError as exc:
        return {"built": False, "path": str(folder), "message": str(exc)}
    metrics = finder.card.get("metrics", {})
    return {"built": True, "path": str(folder), "config": finder.card["config"], "metrics": metrics,
            "generator": finder.card.get("generator"), "created_at": finder.card.get("created_at")}  # fmt: skip


def build_finder(
    ws: Workspace, cfg: FinderConfig | None = None, progress: Progress | None = None,
    background: Background | None = None,
) -> Finder:  # fmt: skip
    """Train a finder and store it in the workspace (replacing the previous one)."""
    finder = train_finder(cfg, progress, background)
    finder.save(finder_dir(ws))
    return finder


# ---------------------------------------------------------------------------------------------
# The crop a classifier reads


def finder_ready(ws: Workspace) -> bool:
    """True when the workspace has a finder trained on the current generator's scenes."""
    try:
        card = json.loads((finder_dir(ws) / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(card, dict) and card.get("format") == FINDER_FORMAT and card.get("generator") == GENERATOR_VERSION


def ensure_finder(ws: Workspace, progress: Progress | None = None) -> bool:
    """Build the workspace's finder with its defaults (first start) when it is missing or was
    trained on an older generator's scenes; True when it was built now."""
    if finder_ready(ws):
        return False
    build_finder(ws, FinderConfig(), progress)
    return True


def crop_for_classifier(
    image: Image.Image, box: Box, margin: float = 0.15, mode: CropMode = "letterbox"
) -> Image.Image:
    """The box with ``margin`` (a share of its width and of its height) on every side, as a crop.

    ``letterbox`` pads the crop to a square with its own border colour and ``context`` widens
    the shorter side with the photo around it (both keep the flag's aspect ratio: a classifier
    squashes its input to a square, so a vertical flag stays taller than wide); ``squash`` hands
    the crop over as it is.
    """
    if mode not in CROP_MODES:
        raise ConfigError(f"crop mode must be one of {', '.join(CROP_MODES)}, got {mode!r}")
    x0, y0, x1, y1 = box
    w, h = max(1, x1 - x0), max(1, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = w * (0.5 + margin), h * (0.5 + margin)
    if mode == "context":
        half_w = half_h = max(half_w, half_h)
    window = (
        max(0, round(cx - half_w)),
        max(0, round(cy - half_h)),
        min(image.width, round(cx + half_w)),
        min(image.height, round(cy + half_h)),
    )
    if window[2] <= window[0] or window[3] <= window[1]:
        return image.convert("RGB")
    crop = image.convert("RGB").crop(window)
    if mode == "squash" or crop.width == crop.height:
        return crop
    side = max(crop.size)
    edge = np.concatenate([np.asarray(crop)[[0, -1]].reshape(-1, 3), np.asarray(crop)[:, [0, -1]].reshape(-1, 3)])
    fill = tuple(int(v) for v in np.median(edge, axis=0))
    square = Image.new("RGB", (side, side), fill)
    square.paste(crop, ((side - crop.width) // 2, (side - crop.height) // 2))
    return square


def as_images(images: Sequence[Image.Image | bytes | str | os.PathLike[str]]) -> list[Image.Image]:
    return [img if isinstance(img, Image.Image) else open_image(img) for img in images]
