"""Prediction from a checkpoint: the card's exact eval preprocessing, top-k, Grad-CAM.

A dropped photo goes through :func:`flagvision.data.images.open_image` (EXIF rotation, alpha, CMYK...),
is resized the way the card says, normalised with the card's mean/std, and classified.

Scene search (``search=True``: ``predict``'s default, a toggle on the Predict page): a flag that fills a small
part of a photo is a few pixels at the network's input size, so the photo is also classified in 13
overlapping crops (2×2 at 75 % of its sides, 3×3 at 55 %), and the most confident view answers; the
whole photo gets :data:`WHOLE_PHOTO_BONUS` of confidence on top, so a close-up keeps its answer, and
a whole photo at least :data:`SEARCH_BELOW` sure answers without crops.
Measured on the default model (docs/BUILTIN_DATA.md): check images 83.8 % → 91.2 % (small flags
in whole scenes 51 % → 75 %), the built-in test split 99.3 % → 99.5 %.

With a flag finder (:mod:`flagvision.models.finder`; ``predict`` and ``evaluate`` use the workspace's by
default), :meth:`Predictor.predict_photo` classifies the crop of each flag it finds instead, one
answer per flag, best score first; no flag found: the whole photo, said so.

Probabilities are calibrated: the logits are divided by the card's temperature (fitted on the
held-out split at the end of training, :mod:`flagvision.training.calibration`; 1 for an older card).
Below a confidence threshold (:data:`flagvision.config.CONFIDENCE_THRESHOLD` by default) an answer
is "not sure" and names its two closest classes (:func:`is_sure`, :func:`answer_text`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from flagvision.config import CONFIDENCE_THRESHOLD
from flagvision.data.dataset import normalize, resize_to_square
from flagvision.data.images import open_image
from flagvision.models.finder import CropMode, crop_for_classifier
from flagvision.training.calibration import calibrated_softmax
from flagvision.training.checkpoints import card_finds_flags, card_temperature, load_checkpoint

if TYPE_CHECKING:
    from flagvision.models.finder import Finder
    from flagvision.models.networks import FlagModel  # models imports torchvision, heavy: only for the type

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in the photo's pixels

# Crops of a scene search: (share of the photo's sides, crops per side).
SEARCH_GRID: tuple[tuple[float, int], ...] = ((0.75, 2), (0.55, 3))
WHOLE_PHOTO_BONUS = 0.1  # confidence added to the whole photo's view when views compete
SEARCH_SIDE_PER_INPUT = 8  # a searched photo is first shrunk to at most 8x the input size
SEARCH_BELOW = 0.9  # crops are searched only when the whole photo's answer is less sure than this
# How a found box is read (:func:`readings`). Measured on the check set (480 images, random seed 1234;
# confirmed on 240 of random seed 4321) with the default finder and CNN, whole set: 79.6 % -> 84.6 %
# (seed 4321: 81.7 % -> 84.2 %) together with the finder's faint-flag fallback (FinderConfig.faint_threshold).
CROP_MARGIN = 0.2  # around a found flag, a share of its width and height on each side (0.15 before: vertical
# 68.8 -> 72.9 %, seed 4321 62.5 -> 64.6 %; 0.25 lost on both check sets)
CROP_MODE: CropMode = "context"  # widen the shorter side with the photo: measured best of three (predict_photo)
TALL_BELOW = 1.0  # a found box taller than wide is read upright as well (every flag is wider than tall)
TALL_ABOVE = 1.2  # a box this much taller than wide is a vertical flag: read upright only (1.1: +1 image per check set)
WHOLE_ABOVE = 0.4  # a box covering this share of the photo's area is a close-up: the whole photo or the crop as
# it is, the surer (only the whole photo above 0.5 before: close-ups 85.4 -> 90.6 % with SURER_ABOVE)
SURER_ABOVE = 0.15  # a smaller box covering this share is also read as the whole photo, the surer reading answers
# The whole photo read at least this sure (calibrated) answers for any box whose readings are all less sure: a
# close-up the finder boxed only in fragments (a stripe, a shield). Check images of random seed 1234 / 4321:
# close-ups 96.9 -> 99.0 % / 91.7 -> 95.8 %, no other framing changed (0.999: 96.9 / 93.8 %).
WHOLE_SURE = 0.99


# A vertical flag's crop turned back upright (:func:`view_of`). Hoisted vertically, a flag's front is the
# transpose of the upright flag and its back the mirror image of that: a transpose turns the back upside down,
# the other diagonal's transpose turns it into the upright flag's mirror image, which every classifier here
# reads like the front (half its training images are mirrored). Reading both and keeping the surer:
# vertical check images 76.0 -> 81.2 % (480 images, random seed 1234).
_TURNS = {"upright": Image.Transpose.TRANSPOSE, "upright_back": Image.Transpose.TRANSVERSE}


def view_of(crop: Image.Image, view: str) -> Image.Image:
    """The image a reading of :func:`readings` classifies: the crop, or the crop turned upright."""
    return crop.transpose(_TURNS[view]) if view in _TURNS else crop


def readings(box: Box, photo_size: tuple[int, int]) -> tuple[str, ...]:
    """The views :meth:`Predictor.predict_photo` reads of a found flag's box; the surest answers.

    ``"crop"`` (the box's crop as it is), ``"upright"`` and ``"upright_back"`` (the crop turned back
    upright: a flag hoisted vertically, seen from the front or the back; :func:`view_of`) and
    ``"whole"`` (the whole photo: the finder's box can cut off part of a flag that fills the frame).
    A box over :data:`WHOLE_ABOVE` of the photo is a close-up: whole or crop; a box
    clearly taller than wide (:data:`TALL_ABOVE`) is read upright only, a little taller than wide
    both ways; a box over :data:`SURER_ABOVE` of the photo is read whole as well.
    """
    w, h = box[2] - box[0], box[3] - box[1]
    area = w * h / max(1, photo_size[0] * photo_size[1])
    if area > WHOLE_ABOVE:
        return ("whole", "crop")
    upright = ("upright", "upright_back")
    views: tuple[str, ...] = upright if h > TALL_ABOVE * w else ("crop", *upright) if h > TALL_BELOW * w else ("crop",)
    return (*views, "whole") if area > SURER_ABOVE else views


def scene_views(image: Image.Image) -> list[tuple[Box | None, Image.Image]]:
    """The whole photo (box None), then the overlapping crops of :data:`SEARCH_GRID`."""
    w, h = image.size
    views: list[tuple[Box | None, Image.Image]] = [(None, image)]
    for share, steps in SEARCH_GRID:
        cw, ch = max(1, round(w * share)), max(1, round(h * share))
        for i in range(steps):
            for j in range(steps):
                left, top = round((w - cw) * i / (steps - 1)), round((h - ch) * j / (steps - 1))
                box = (left, top, left + cw, top + ch)
                views.append((box, image.crop(box)))
    return views


def choose_view(probs: torch.Tensor) -> int:
    """Index of the answering view: the most confident, the whole photo (row 0) given a bonus."""
    confidence = probs.max(dim=1).values.clone()
    confidence[0] += WHOLE_PHOTO_BONUS
    return int(confidence.argmax())


@dataclass
class Prediction:
    top: list[tuple[str, float]]  # (class name, probability), best first
    box: Box | None = None  # the crop that answered (the finder's box or scene search); None = the whole photo
    score: float | None = None  # the flag finder's score for ``box``; None = not from the finder

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        return self.top[0][1]


class Predictor:
    """A loaded checkpoint ready for inference (read-only; safe to cache per checkpoint)."""

    def __init__(self, model: FlagModel, card: dict, source: str = ""):
        self.model, self.card, self.source = model.eval(), card, source
        self.class_names: list[str] = list(card["class_names"])
        self.size = int(card["input_size"])
        self.mean = card["normalization"]["mean"]
        self.std = card["normalization"]["std"]
        self.temperature = card_temperature(card)  # logits / T: calibrated probabilities

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str]) -> Predictor:
        model, card = load_checkpoint(path)
        return cls(model, card, str(path))

    @property
    def label(self) -> str:
        """Model name for display; random-init VGG is always marked as such."""
        return self.card.get("label") or self.card["model"]

    @property
    def finds_flags(self) -> bool:
        """Whether a photo is read through the flag finder (False: the model was trained on photos
        that are not flags and reads the whole photo; its card's ``find_flags``)."""
        return card_finds_flags(self.card)

    def preprocess(self, images: Sequence[Image.Image | bytes | str | os.PathLike[str]]) -> torch.Tensor:
        pil = [img if isinstance(img, Image.Image) else open_image(img) for img in images]
        batch = torch.stack([resize_to_square(img.convert("RGB"), self.size) for img in pil])
        return normalize(batch, self.mean, self.std)

    @torch.no_grad()
    def logits(self, images: Sequence) -> torch.Tensor:
        return self.model(self.preprocess(images)).float()

    def probabilities(self, images: Sequence) -> torch.Tensor:
        """Calibrated class probabilities: ``softmax(logits / T)`` with the card's temperature."""
        return calibrated_softmax(self.logits(images), self.temperature)

    def predict(
        self, images: Sequence, k: int = 5, search: bool = False, finder: Finder | None = None
    ) -> list[Prediction]:
        """Top-``k`` per image; ``search`` answers from the best of :func:`scene_views` instead;
        ``finder`` answers from the crop of the flag it scores highest (:meth:`predict_photo`)."""
        k = min(k, len(self.class_names))
        if finder is not None:
            return [self.predict_photo(img, finder, k)[0] for img in images]
        if not search:
            return [self._top(p, k) for p in self.probabilities(images)]
        return [self._top(probs, k, box) for probs, box in self.search(images)]

    def predict_photo(self, image: Image.Image | bytes | str | os.PathLike[str], finder: Finder, k: int = 5,
                      crop_mode: CropMode = CROP_MODE) -> list[Prediction]:  # fmt: skip
        """One answer per flag the finder finds, by its score (best first), ``box`` and ``score`` set;
        no flag found: one answer for the whole photo (``box`` and ``score`` None, :data:`NO_FLAG_FOUND`).

        Each box is read in the views :func:`readings` gives (its crop, upright for a box taller than
        wide, the whole photo for a big box), and the surest reading answers; a box read less than
        :data:`WHOLE_SURE` sure is answered by the whole photo when that is at least as sure.
        """
        k = min(k, len(self.class_names))
        pil = (image if isinstance(image, Image.Image) else open_image(image)).convert("RGB")
        detections = finder.find_flags(pil)
        if not detections:
            return [self._top(self.probabilities([pil])[0], k)]
        views: list[Image.Image] = [pil]  # row 0: the whole photo
        spans = []  # per detection: the rows of its views
        for d in detections:
            crop, rows = crop_for_classifier(pil, d.box, CROP_MARGIN, crop_mode), []
            for view in readings(d.box, pil.size):
                if view == "whole":
                    rows.append(0)
                else:
                    rows.append(len(views))
                    views.append(view_of(crop, view))
            spans.append(rows)
        probs = self.probabilities(views)
        whole_sure = float(probs[0].max()) >= WHOLE_SURE
        out = []
        for d, rows in zip(detections, spans, strict=True):
            p = max((probs[r] for r in rows), key=lambda q: float(q.max()))
            if whole_sure and float(p.max()) < WHOLE_SURE:  # a sure whole photo over an unsure box
                p = probs[0]
            values, indices = p.topk(k)
            top = [(self.class_names[c], float(v)) for v, c in zip(values.tolist(), indices.tolist(), strict=True)]
            out.append(Prediction(top, d.box, d.score))
        return out

    def search(self, images: Sequence) -> list[tuple[torch.Tensor, Box | None]]:
        """Scene search: per image, the answering view's class probabilities and its box (in the
        image's own pixels)."""
        out: list[tuple[torch.Tensor, Box | None]] = []
        for img in images:
            pil = (img if isinstance(img, Image.Image) else open_image(img)).convert("RGB")
            # Shrink a big photo once: its smallest crop still holds over 4x the input size, and
            # 14 antialiased resizes of a phone photo would cost more than the network.
            limit, scale = SEARCH_SIDE_PER_INPUT * self.size, 1.0
            if max(pil.size) > limit:
                scale = max(pil.size) / limit
                pil = pil.resize(
                    (max(1, round(pil.width / scale)), max(1, round(pil.height / scale))), Image.Resampling.BOX
                )
            # The search decides on the uncalibrated probabilities (SEARCH_BELOW and the bonus were
            # measured on them; a temperature below 1 would search fewer photos, and answer small
            # flags worse) and answers with the calibrated ones.
            whole = self.logits([pil])[0]
            if float(F.softmax(whole, dim=0).max()) >= SEARCH_BELOW:  # a confident whole photo stands
                out.append((calibrated_softmax(whole, self.temperature), None))
                continue
            views = scene_views(pil)
            logits = self.logits([view for _, view in views])
            best = choose_view(F.softmax(logits, dim=1))
            box = views[best][0]
            if box is not None and scale != 1.0:
                left, top, right, bottom = box
                box = (round(left * scale), round(top * scale), round(right * scale), round(bottom * scale))
            out.append((calibrated_softmax(logits[best], self.temperature), box))
        return out

    def _top(self, probs: torch.Tensor, k: int, box: Box | None = None) -> Prediction:
        values, indices = probs.topk(k)
        return Prediction(
            [(self.class_names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)], box
        )

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


def is_sure(pred: Prediction, threshold: float = CONFIDENCE_THRESHOLD) -> bool:
    """Whether ``pred`` is sure enough to answer: its calibrated top probability reaches ``threshold``."""
    return pred.confidence >= threshold


def answer_text(pred: Prediction, threshold: float = CONFIDENCE_THRESHOLD) -> str:
    """``"Holland 92%"``, or below the threshold ``"not sure — closest: Holland 41%, Croatia 38%"``."""
    if is_sure(pred, threshold):
        return f"{pred.label} {pred.confidence:.0%}"
    return "not sure — closest: " + ", ".join(f"{name} {p:.0%}" for name, p in pred.top[:2])


def answer_fields(pred: Prediction, threshold: float = CONFIDENCE_THRESHOLD) -> dict:
    """The answer as ``predict --json`` gives it: ``sure``, ``answer`` (the class, or None when not
    sure) and the two ``closest`` classes with their probabilities."""
    sure = is_sure(pred, threshold)
    return {
        "sure": sure,
        "answer": pred.label if sure else None,
        "closest": [{"class": name, "probability": p} for name, p in pred.top[:2]],
    }


def overlay_heatmap(image: Image.Image, cam: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Blend a 0–1 heat map (red = important) over ``image`` at the image's own size."""
    heat = Image.fromarray((cam * 255).astype(np.uint8)).resize(image.size, Image.Resampling.BILINEAR)
    h = np.asarray(heat, dtype=np.float32) / 255.0
    colour = np.stack([h, h * 0.4, 1.0 - h], axis=-1)  # blue → red
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    out = base * (1 - alpha) + colour * alpha
    return Image.fromarray((out * 255).clip(0, 255).astype(np.uint8))


def load_images(paths: Sequence[str | os.PathLike[str]]) -> list[Image.Image]:
    return [open_image(Path(p)) for p in paths]
