"""One dropped photo through every chosen model: top-k, the Grad-CAM overlay, and whether two models agree.

With a flag finder, the photo is read through it (:meth:`~flagvision.inference.predict.Predictor.predict_photo`):
the finder runs once per photo, and every found flag gets its own answer from each model, its box
and the Grad-CAM of the crop the models read; no flag found → the whole photo, said so
(:data:`~flagvision.models.finder.NO_FLAG_FOUND`). :func:`draw_boxes` draws the boxes on a copy.
A model trained on photos that are not flags (its card's ``find_flags`` is false) reads the whole
photo: the finder is used only when every chosen model allows it (:func:`finder_off_by` names the others).

``cache`` (a :class:`PhotoCache`) keeps each model's answers per (photo bytes, checkpoint, options)
and each overlay per (photo, checkpoint, box): toggling Grad-CAM or switching one model recomputes
only what changed.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

Box = tuple[int, int, int, int]
OVERLAY_SIDE = 512  # px, the longest side of a Grad-CAM overlay (the heat map itself is at input size)
BOX_COLOURS = ((255, 221, 0), (0, 200, 255), (255, 80, 200), (120, 255, 80), (255, 140, 0))
# Said where the finder's line would be, for a model whose card says find_flags=False.
WHOLE_PHOTO_MODEL = "this model reads the whole photo: it was trained on photos that are not flags"


@dataclass
class FlagResult:
    """One found flag (or the whole photo when ``box`` is None): each model's answer on its crop."""

    box: Box | None  # in the photo's pixels; None = the whole photo was classified
    score: float | None  # the finder's score for the box
    predictions: dict[str, Any]  # model slot → predict.Prediction
    overlays: dict[str, Any]  # model slot → PIL Grad-CAM overlay of the view that model read
    agreement: str | None  # compare.agreement(...) when two models answered


@dataclass
class PhotoResult:
    """One photo through every chosen model: top-k, Grad-CAM overlay, agreement of two models.

    ``predictions``/``overlays``/``agreement`` are those of the best flag (the first of ``flags``).
    """

    name: str
    image: Any  # PIL RGB
    predictions: dict[str, Any]  # model slot ("cnn"/"vgg") → predict.Prediction
    overlays: dict[str, Any]  # model slot → PIL overlay
    agreement: str | None  # compare.agreement(...) when two models answered
    flags: list[FlagResult] = field(default_factory=list)  # every found flag, best score first
    finder_used: bool = False  # the photo went through a flag finder
    note: str | None = None  # NO_FLAG_FOUND when the finder found nothing

    @property
    def boxes(self) -> list[Box]:
        return [f.box for f in self.flags if f.box is not None]


class PhotoCache:
    """A bounded mapping (least recently used out) of computed answers and overlays."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, key: tuple, compute: Any) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._items[key] = compute()
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


def photo_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _FinderOnce:
    """The finder's detections for one photo, computed once however many models read it."""

    def __init__(self, finder: Any, detections: list[Any] | None = None) -> None:
        self.finder, self.detections = finder, detections

    def find_flags(self, image: Any) -> list[Any]:
        if self.detections is None:
            self.detections = self.finder.find_flags(image)
        return self.detections


def _model_key(predictor: Any) -> tuple[str, int]:
    # The app caches one Predictor per checkpoint path and mtime, so its identity names the weights.
    return (str(getattr(predictor, "source", "")), id(predictor))


def finder_off_by(predictors: dict[str, Any]) -> list[str]:
    """The labels of the predictors that read the whole photo (trained on photos that are not flags):
    with any of them chosen, no photo goes through the flag finder."""
    return [p.label for p in predictors.values() if not getattr(p, "finds_flags", True)]


def whole_photo_text(labels: list[str]) -> str:
    """ "Custom CNN reads the whole photo: it was trained on photos that are not flags" (one or two models)."""
    if len(labels) == 1:
        return f"{labels[0]} reads the whole photo: it was trained on photos that are not flags"
    return f"{' and '.join(labels)} read the whole photo: they were trained on photos that are not flags"


def draw_boxes(image: Any, boxes: list[Box], labels: list[str] | None = None) -> Any:
    """A copy of ``image`` with each box outlined (numbered, or ``labels``), for display."""
    from PIL import ImageDraw

    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    line = max(2, round(max(out.size) / 160))
    for i, box in enumerate(boxes):
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        draw.rectangle(box, outline=colour, width=line)
        text = labels[i] if labels else str(i + 1)
        x = box[0] + line
        y = box[1] - 12 - line if box[1] >= 12 + line else box[1] + line  # above the box if there is room
        draw.rectangle(draw.textbbox((x, y), text), fill=(0, 0, 0))
        draw.text((x, y), text, fill=colour)
    return out


def analyse_photo(
    name: str,
    data: bytes,
    predictors: dict[str, Any],
    k: int = 5,
    gradcam: bool = True,
    search: bool = False,
    finder: Any = None,
    cache: PhotoCache | None = None,
) -> PhotoResult:
    """Decode ``data`` and run each predictor on it; ImageError (naming ``name``) if unreadable.

    With ``finder``, each found flag is classified on its crop (``search`` is then not used) and
    gets its own :class:`FlagResult`; none found → one result for the whole photo, ``note`` says so.
    The finder is not used when a predictor reads the whole photo (:func:`finder_off_by`).
    """
    from flagvision.data.images import ImageError, open_image
    from flagvision.inference.compare import agreement
    from flagvision.inference.predict import CROP_MARGIN, CROP_MODE, overlay_heatmap
    from flagvision.models.finder import NO_FLAG_FOUND, crop_for_classifier

    try:
        image = open_image(data)
    except ImageError as exc:
        raise ImageError(str(exc).replace("uploaded image", name, 1)) from None
    if finder_off_by(predictors):
        finder = None
    cache = cache if cache is not None else PhotoCache()
    digest = photo_digest(data)
    finder_key = id(finder) if finder is not None else None
    once: _FinderOnce | None = None
    if finder is not None:
        detections = cache.get((digest, "finder", finder_key), lambda: finder.find_flags(image.convert("RGB")))
        once = _FinderOnce(finder, detections)

    answers: dict[str, list[Any]] = {}  # slot → one Prediction per flag (or one for the whole photo)
    for slot, predictor in predictors.items():
        key = (digest, "predict", _model_key(predictor), k, search, finder_key)
        if once is not None:
            answers[slot] = cache.get(key, lambda p=predictor: p.predict_photo(image, once, k))
        else:
            answers[slot] = cache.get(key, lambda p=predictor: p.predict([image], k=k, search=search))

    count = max((len(a) for a in answers.values()), default=1)
    flags: list[FlagResult] = []
    for i in range(count):
        preds = {slot: a[i] for slot, a in answers.items() if i < len(a)}
        overlays = {}
        if gradcam:
            for slot, pred in preds.items():
                predictor = predictors[slot]

                def cam(p=predictor, box=pred.box, from_finder=pred.score is not None) -> Any:
                    # on the view that answered: the whole photo, the finder's crop or the search's crop
                    if box is None:
                        view = image
                    elif from_finder:
                        view = crop_for_classifier(image, box, CROP_MARGIN, CROP_MODE)
                    else:
                        view = image.crop(box)
                    shown = view.copy()
                    shown.thumbnail((OVERLAY_SIDE, OVERLAY_SIDE))  # what a page shows; a cached 12 MP copy would not
                    return overlay_heatmap(shown, p.gradcam(view))

                overlays[slot] = cache.get((digest, "gradcam", _model_key(predictor), pred.box), cam)
        badge = agreement(*preds.values()) if len(preds) == 2 else None
        box = next((p.box for p in preds.values()), None)
        score = next((p.score for p in preds.values()), None)
        flags.append(FlagResult(box, score, preds, overlays, badge))
    best = flags[0] if flags else FlagResult(None, None, {}, {}, None)
    note = NO_FLAG_FOUND if once is not None and not once.detections else None
    return PhotoResult(name, image, best.predictions, best.overlays, best.agreement, flags, once is not None, note)
