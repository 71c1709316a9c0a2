"""Reproducibility and device set-up, done once per process (STYLE.md #9)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from flagvision.config import ConfigError


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch.Generator for data order and augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is refused clearly."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(name)


def set_threads(threads: int = 0) -> int:
    """Use ``threads`` intra-op threads (0 = one per core); returns the number set."""
    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
