"""Prediction from a checkpoint: the card's exact eval preprocessing, top-k, Grad-CAM.

A dropped photo goes through :func:`flagvision.images.open_image` (EXIF rotation, alpha, CMYK...),
is resized the way the card says, normalised with the card's mean/std, and classified.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .checkpoints import load_checkpoint
from .data import normalize, resize_to_square
from .images import open_image


@dataclass
class Prediction:
    top: list[tuple[str, float]]  # (class name, probability), best first

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        return self.top[0][1]


class Predictor:
    """A loaded checkpoint ready for inference (read-only; safe to cache per checkpoint)."""

    def __init__(self, model: torch.nn.Module, card: dict, source: str = ""):
        self.model, self.card, self.source = model.eval(), card, source
        self.class_names: list[str] = list(card["class_names"])
        self.size = int(card["input_size"])
        self.mean = card["normalization"]["mean"]
        self.std = card["normalization"]["std"]

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str]) -> "Predictor":
        model, card = load_checkpoint(path)
        return cls(model, card, str(path))

    @property
    def label(self) -> str:
        """Model name for display; random-init VGG is always marked as such."""
        return self.card.get("label") or self.card["model"]

    def preprocess(self, images: Sequence[Image.Image | bytes | str | os.PathLike[str]]) -> torch.Tensor:
        pil = [img if isinstance(img, Image.Image) else open_image(img) for img in images]
        batch = torch.stack([resize_to_square(img.convert("RGB"), self.size) for img in pil])
        return normalize(batch, self.mean, self.std)

    @torch.no_grad()
    def probabilities(self, images: Sequence) -> torch.Tensor:
        return F.softmax(self.model(self.preprocess(images)).float(), dim=1)

    def predict(self, images: Sequence, k: int = 5) -> list[Prediction]:
        probs = self.probabilities(images)
        k = min(k, len(self.class_names))
        values, indices = probs.topk(k, dim=1)
        return [
            Prediction([(self.class_names[i], float(v)) for v, i in zip(vs.tolist(), ix.tolist())])
            for vs, ix in zip(values, indices)
        ]

    def gradcam(self, image: Image.Image | bytes | str, class_index: int | None = None) -> np.ndarray:
        """Grad-CAM heat map (H×W floats in 0–1, at input size) for ``class_index`` (default: top-1)."""
        layer = self.model.gradcam_layer()
        store: dict[str, torch.Tensor] = {}

        def forward_hook(_m, _i, output):
            store["act"] = output
            output.register_hook(lambda grad: store.__setitem__("grad", grad))

        handle = layer.register_forward_hook(forward_hook)
        try:
            x = self.preprocess([image]).requires_grad_(True)  # grads must flow through a frozen backbone
            with torch.enable_grad():
                logits = self.model(x)
                target = int(logits.argmax(1)) if class_index is None else class_index
                self.model.zero_grad(set_to_none=True)
                logits[0, target].backward()
        finally:
            handle.remove()
        act, grad = store["act"].detach()[0], store["grad"].detach()[0]
        weights = grad.mean(dim=(1, 2), keepdim=True)
        cam = F.relu((weights * act).sum(0))
        cam = F.interpolate(cam[None, None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0, 0]
        cam = cam - cam.min()
        return (cam / cam.max()).numpy() if cam.max() > 0 else cam.numpy()


def overlay_heatmap(image: Image.Image, cam: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Blend a 0–1 heat map (red = important) over ``image`` at the image's own size."""
    heat = Image.fromarray((cam * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR)
    h = np.asarray(heat, dtype=np.float32) / 255.0
    colour = np.stack([h, h * 0.4, 1.0 - h], axis=-1)  # blue → red
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    out = base * (1 - alpha) + colour * alpha
    return Image.fromarray((out * 255).clip(0, 255).astype(np.uint8))


def agreement(a: Prediction, b: Prediction) -> str:
    """Badge text for two models' answers on one photo."""
    if a.label == b.label:
        return "agree"
    if a.label in {n for n, _ in b.top[:3]} or b.label in {n for n, _ in a.top[:3]}:
        return "partly agree"
    return "disagree"


def load_images(paths: Sequence[str | os.PathLike[str]]) -> list[Image.Image]:
    return [open_image(Path(p)) for p in paths]
