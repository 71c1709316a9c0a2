"""What a dataset folder holds, read without torch: its classes and splits, its images, its content
fingerprint and a summary (class counts per split, image sizes, unreadable files).

A dataset folder holds one sub-folder per class, or ``train/`` plus ``test/`` (or ``val/``) with
class sub-folders each.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flagvision.data.images import ImageError, is_image_name, open_image
from flagvision.errors import FlagVisionError

SPLIT_TRAIN = ("train",)
SPLIT_EVAL = ("test", "val", "valid", "validation")


class DatasetError(FlagVisionError, ValueError):
    """A dataset that cannot be used as a whole (empty, one class, not a folder...)."""


@dataclass
class Sample:
    path: Path
    label: int


@dataclass
class DatasetIndex:
    """What the folder holds, before decoding."""

    root: Path
    class_names: list[str]
    train: list[Sample]
    eval: list[Sample]  # empty when the folder has no test/ or val/ split
    eval_split_name: str | None


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p.name))


def scan_dataset(root: str | os.PathLike[str], min_classes: int = 2) -> DatasetIndex:
    """Index an ImageFolder tree; raise DatasetError when it cannot be a classification set.

    Training needs ``min_classes=2``; evaluating a trained model may read a single class
    ("how does my model do on these Austrian photos?"), so :func:`load_eval_images` asks for 1.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    subdirs = {p.name.lower(): p for p in _class_dirs(root)}
    train_dir = next((subdirs[n] for n in SPLIT_TRAIN if n in subdirs), None)
    eval_name = next((n for n in SPLIT_EVAL if n in subdirs), None)
    if train_dir is not None:
        class_names = [p.name for p in _class_dirs(train_dir)]
    else:
        class_names = [p.name for p in _class_dirs(root)]
    if not class_names:
        raise DatasetError(f"{root} holds no class sub-folders; expected <class>/<image> or train/<class>/<image>")
    if len(class_names) < min_classes:
        raise DatasetError(f"{root} has only one class ({class_names[0]}); a classifier needs at least two")

    def collect(base: Path) -> list[Sample]:
        out: list[Sample] = []
        for label, name in enumerate(class_names):
            folder = base / name
            if folder.is_dir():
                out.extend(Sample(p, label) for p in _images_in(folder))
        return out

    train = collect(train_dir if train_dir is not None else root)
    evaluation = collect(subdirs[eval_name]) if (train_dir is not None and eval_name) else []
    if not train:
        raise DatasetError(
            f"{root} holds no image files (looked for {', '.join(sorted({'.jpg', '.png', '.webp', '.bmp', '.gif'}))})"
        )
    return DatasetIndex(root, class_names, train, evaluation, eval_name if evaluation else None)


def fingerprint_files(root: Path, samples: Sequence[Sample], class_names: Sequence[str]) -> str:
    """Content hash of the dataset: relative paths, labels and file bytes."""
    h = hashlib.sha256()
    h.update(json.dumps(list(class_names)).encode())
    for s in sorted(samples, key=lambda s: str(s.path)):
        h.update(str(s.path.relative_to(root)).encode())
        h.update(str(s.label).encode())
        with open(s.path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:16]


def summarize(path: str | os.PathLike[str]) -> dict:
    """Class counts per split, image sizes and unreadable files, without decoding into tensors."""
    index = scan_dataset(path)
    result: dict = {"path": str(index.root), "classes": index.class_names, "splits": {}, "unreadable": []}
    sizes: dict[str, int] = {}
    for split_name, samples in (("train", index.train), (index.eval_split_name or "test", index.eval)):
        if not samples:
            continue
        counts = [0] * len(index.class_names)
        for s in samples:
            try:
                img = open_image(s.path)
            except ImageError as exc:  # report, never crash
                result["unreadable"].append((str(s.path), str(exc)))
                continue
            key = f"{img.width}x{img.height}"
            sizes[key] = sizes.get(key, 0) + 1
            counts[s.label] += 1
        result["splits"][split_name] = dict(zip(index.class_names, counts, strict=True))
    result["sizes"] = dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:10])
    return result
