"""From a flag/not-flag mask to boxes: connected components, their boxes and scores, box overlap.

The flag finder's post-processing (:class:`flagvision.models.finder.Finder`), kept apart from the network
and its training; NumPy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in the photo's pixels, right/bottom exclusive


def label_components(fg: np.ndarray) -> np.ndarray:
    """8-connected component labels of a boolean map (-1 = background), by min-label propagation."""
    h, w = fg.shape
    big = h * w
    labels = np.where(fg, np.arange(big).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        neighbours = np.min(
            np.stack([padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]),
            axis=0,
        )
        new = np.where(fg, neighbours, big)
        if np.array_equal(new, labels):
            return np.where(fg, labels, -1)
        labels = new


def cells_box(xs: np.ndarray, ys: np.ndarray, shape: tuple[int, ...], width: int, height: int) -> Box:
    """The box, in a ``width`` x ``height`` image, of mask cells (``xs``, ``ys``) of a mask of ``shape``."""
    h, w = shape[0], shape[1]
    return (
        math.floor(xs.min() * width / w),
        math.floor(ys.min() * height / h),
        math.ceil((xs.max() + 1) * width / w),
        math.ceil((ys.max() + 1) * height / h),
    )


def components(prob: np.ndarray, fg: np.ndarray, width: int, height: int, min_cells: int) -> list[tuple[Box, float]]:
    """(box in a ``width`` x ``height`` image, mean probability) of each connected component of ``fg``."""
    labels = label_components(fg)
    out = []
    for value in np.unique(labels[labels >= 0]):
        ys, xs = np.nonzero(labels == value)
        if len(xs) < min_cells:
            continue
        out.append((cells_box(xs, ys, fg.shape, width, height), float(prob[ys, xs].mean())))
    return out


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
