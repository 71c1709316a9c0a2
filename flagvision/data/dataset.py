"""ImageFolder datasets decoded once into uint8 tensors, split, augmented in batches.

A dataset folder holds one sub-folder per class, or ``train/`` plus ``test/`` (or ``val/``) with
class sub-folders each. Every file is decoded once (through :func:`flagvision.data.images.open_image`),
resized to the network input and kept as a uint8 ``N×3×S×S`` tensor; the result is also cached on
disk next to the data, keyed by the content fingerprint, so the next run (or Optuna trial) starts
at once. Unreadable files are skipped and reported, never a crash. Above ``cache_limit_mb`` the
images stay on disk and are decoded per batch instead (:class:`LazyImages`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from flagvision.config import DataConfig
from flagvision.data.folders import DatasetError, Sample, fingerprint_files, scan_dataset
from flagvision.data.images import ImageError, open_image

CACHE_DIR = ".flagvision-cache"
CACHE_VERSION = 1


class LazyImages:
    """Stand-in for a uint8 image tensor that decodes from disk on indexing (over the cache bound)."""

    def __init__(self, paths: Sequence[Path], image_size: int):
        self.paths = list(paths)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), 3, self.image_size, self.image_size)

    def __getitem__(self, index: torch.Tensor | Sequence[int] | slice) -> torch.Tensor:
        idx: Sequence[int]
        if isinstance(index, slice):
            idx = range(*index.indices(len(self.paths)))
        else:
            idx = [int(i) for i in (index.tolist() if isinstance(index, torch.Tensor) else index)]
        return torch.stack([decode_resized(self.paths[i], self.image_size) for i in idx])


@dataclass
class TensorSplit:
    images: torch.Tensor | LazyImages  # uint8, N×3×S×S
    labels: torch.Tensor  # int64, N
    paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor) -> TensorSplit:
        picked = indices.tolist()
        if isinstance(self.images, LazyImages):  # stay lazy: select paths, decode nothing
            images: torch.Tensor | LazyImages = LazyImages(
                [self.images.paths[i] for i in picked], self.images.image_size
            )
        else:
            images = self.images[indices]
        return TensorSplit(images, self.labels[indices], [self.paths[i] for i in picked])

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class DatasetBundle:
    class_names: list[str]
    train: TensorSplit
    val: TensorSplit
    fingerprint: str
    image_size: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    eval_split_name: str | None = None  # "test"/"val" when the folder had one, else None (held out)
    cached_in_memory: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def resize_to_square(img: Image.Image, size: int) -> torch.Tensor:
    """Whole image to ``size``×``size`` uint8 CHW (squashed, not cropped: a flag's layout spans it)."""
    tensor = TF.pil_to_tensor(img)
    return TF.resize(tensor, [size, size], antialias=True)


def decode_resized(path: Path | str, size: int) -> torch.Tensor:
    return resize_to_square(open_image(path), size)


def _decode_all(samples: Sequence[Sample], size: int, progress: Callable[[int, int], None] | None):
    """Decode in a thread pool (PIL releases the GIL); return tensors, labels, paths and skips."""
    results: list[torch.Tensor | None] = [None] * len(samples)
    skipped: list[tuple[str, str]] = []

    def work(i: int) -> None:
        try:
            results[i] = decode_resized(samples[i].path, size)
        except ImageError as exc:
            skipped.append((str(samples[i].path), str(exc)))

    if progress:
        progress(0, len(samples))  # the start: a progress bar's rate and ETA count from here
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for done, _ in enumerate(pool.map(work, range(len(samples))), 1):
            if progress and (done % 256 == 0 or done == len(samples)):
                progress(done, len(samples))
    keep = [i for i, t in enumerate(results) if t is not None]
    decoded = [t for t in results if t is not None]  # in the order of keep
    images = torch.stack(decoded) if decoded else torch.empty(0, 3, size, size, dtype=torch.uint8)
    labels = torch.tensor([samples[i].label for i in keep], dtype=torch.int64)
    paths = [str(samples[i].path) for i in keep]
    return images, labels, paths, sorted(skipped)


def _stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    train_idx, val_idx = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = max(1, round(len(idx) * fraction)) if len(idx) > 1 else 0
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return torch.cat(train_idx).sort().values, torch.cat(val_idx).sort().values


def load_dataset(
    cfg: DataConfig, progress: Callable[[int, int], None] | None = None, use_disk_cache: bool = True
) -> DatasetBundle:
    """Load ``cfg.path`` as a :class:`DatasetBundle` (decoded once; disk cache reused when valid)."""
    if not cfg.path:
        raise DatasetError("no dataset path given")
    index = scan_dataset(cfg.path)
    all_samples = index.train + index.eval
    fingerprint = fingerprint_files(index.root, all_samples, index.class_names)
    size = cfg.image_size
    estimated_mb = len(all_samples) * 3 * size * size / 2**20
    in_memory = estimated_mb <= cfg.cache_limit_mb

    cache_file = index.root / CACHE_DIR / f"{fingerprint}-{size}-v{CACHE_VERSION}.pt"
    decoded = None
    if in_memory and use_disk_cache and cache_file.is_file():
        try:
            decoded = torch.load(cache_file, weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
            decoded = None
    if decoded is None:
        if in_memory:
            tr = _decode_all(index.train, size, progress)
            ev = _decode_all(index.eval, size, None) if index.eval else None
        else:
            tr = _verify_only(index.train, size, progress)
            ev = _verify_only(index.eval, size, None) if index.eval else None
        decoded = {
            "train": tr[:3],
            "eval": ev[:3] if ev else None,
            "skipped": tr[3] + (ev[3] if ev else []),
        }
        if in_memory and use_disk_cache:
            _write_cache(cache_file, decoded)

    images, labels, paths = decoded["train"]
    skipped = [tuple(s) for s in decoded["skipped"]]
    if len(labels) == 0:
        raise DatasetError(f"{cfg.path}: none of the {len(index.train)} image files could be read")
    present = torch.unique(labels).numel()
    if present < 2:
        raise DatasetError(f"{cfg.path}: only one class has readable images; a classifier needs at least two")
    train = TensorSplit(images, labels, list(paths))
    if decoded["eval"] is not None and len(decoded["eval"][1]) > 0:
        eval_images, eval_labels, eval_paths = decoded["eval"]
        val = TensorSplit(eval_images, eval_labels, list(eval_paths))
        eval_name = index.eval_split_name
    else:
        tr_idx, va_idx = _stratified_split(labels, cfg.val_fraction, cfg.split_seed)
        train, val = train.subset(tr_idx), train.subset(va_idx)
        eval_name = None
    if len(val) == 0:
        raise DatasetError(f"{cfg.path}: too few images to hold out a validation split")
    return DatasetBundle(index.class_names, train, val, fingerprint, size, skipped, eval_name, in_memory)


def _verify_only(samples: Sequence[Sample], size: int, progress):
    """Streaming mode: check each file decodes (so bad ones are reported up front), keep paths only."""
    ok, skipped = [], []
    for n, s in enumerate(samples, 1):
        try:
            open_image(s.path)
            ok.append(s)
        except ImageError as exc:
            skipped.append((str(s.path), str(exc)))
        if progress and (n % 256 == 0 or n == len(samples)):
            progress(n, len(samples))
    labels = torch.tensor([s.label for s in ok], dtype=torch.int64)
    return LazyImages([s.path for s in ok], size), labels, [str(s.path) for s in ok], skipped


def _write_cache(path: Path, decoded: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(decoded, tmp)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only dataset folder just means no disk cache


# ---------------------------------------------------------------------------------------------
# Preprocessing and augmentation (batched, on tensors)


def normalize(images_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 N×3×H×W → normalised float32."""
    x = images_uint8.float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def augment_batch(images_uint8: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random affine (scale, aspect, rotation, shift) and colour jitter, in one pass.

    torchvision's v2 transforms draw one parameter set per call; drawing per sample and applying
    them with one ``affine_grid``/``grid_sample`` keeps every image different at batch speed.
    Half the images are also mirrored left to right: a flag seen from the back is the mirror image
    of its front (the built-in data renders a share of back sides too), so a mirror is a second,
    equally real view of every photo. Returns float in [0, 1].
    """
    x = images_uint8.float().div_(255.0)
    if strength <= 0:
        return x
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    s = strength
    angle = uniform(-12 * s, 12 * s) * math.pi / 180
    scale = torch.exp(uniform(-0.25 * s, 0.15 * s))  # <1 zooms in (grid spans less)
    aspect = torch.exp(uniform(-0.2 * s, 0.2 * s))
    tx, ty = uniform(-0.12 * s, 0.12 * s), uniform(-0.12 * s, 0.12 * s)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos * scale * aspect, -sin * scale, tx], 1),
            torch.stack([sin * scale * aspect, cos * scale, ty], 1),
        ],
        1,
    )
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta[:, :, 0] *= mirror.view(n, 1)  # sampling at -x: the mirror image, in the same pass
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    brightness = uniform(1 - 0.35 * s, 1 + 0.35 * s).view(n, 1, 1, 1)
    contrast = uniform(1 - 0.35 * s, 1 + 0.35 * s).view(n, 1, 1, 1)
    saturation = uniform(1 - 0.4 * s, 1 + 0.3 * s).view(n, 1, 1, 1)
    cast = 1 + (torch.rand(n, 3, 1, 1, generator=generator) - 0.5) * 0.12 * s
    gray = x.mean(dim=1, keepdim=True)
    x = gray + (x - gray) * saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    x = x * brightness * cast
    noise_sd = uniform(0, 0.03 * s).view(n, 1, 1, 1)
    x = x + torch.randn(x.shape, generator=generator) * noise_sd
    return x.clamp_(0, 1)


def normalize_float(x01: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    return (x01 - m) / s


@dataclass
class EvalImages(TensorSplit):
    skipped: list[tuple[str, str]] = field(default_factory=list)


def load_eval_images(path: str | os.PathLike[str], class_names: Sequence[str], image_size: int) -> EvalImages:
    """All images of a dataset (its test/ or val/ split if it has one), labelled in ``class_names``' order.

    The folder may hold any subset of the model's classes, one class included; classes of the
    folder that the model does not know are refused by name.
    """
    index = scan_dataset(path, min_classes=1)
    unknown = sorted(set(index.class_names) - set(class_names))
    if unknown:
        raise DatasetError(
            f"{path}: classes unknown to the model: {', '.join(unknown)}; it knows {', '.join(class_names)}"
        )
    remap = {i: list(class_names).index(n) for i, n in enumerate(index.class_names)}
    samples = [Sample(s.path, remap[s.label]) for s in (index.eval or index.train)]
    images, labels, paths, skipped = _decode_all(samples, image_size, None)
    if len(labels) == 0:
        raise DatasetError(f"{path}: no readable images")
    return EvalImages(images, labels, paths, skipped)
