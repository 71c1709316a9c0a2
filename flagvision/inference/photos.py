"""One dropped photo through every chosen model: top-k, the Grad-CAM overlay, and whether two models agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PhotoResult:
    """One photo through every chosen model: top-k, Grad-CAM overlay, agreement of two models."""

    name: str
    image: Any  # PIL RGB
    predictions: dict[str, Any]  # model slot ("cnn"/"vgg") → predict.Prediction
    overlays: dict[str, Any]  # model slot → PIL overlay
    agreement: str | None  # predict.agreement(...) when two models answered


def analyse_photo(
    name: str, data: bytes, predictors: dict[str, Any], k: int = 5, gradcam: bool = True, search: bool = False
) -> PhotoResult:
    """Decode ``data`` and run each predictor on it; ImageError (naming ``name``) if unreadable."""
    from flagvision.data.images import ImageError, open_image
    from flagvision.inference.predict import agreement, overlay_heatmap

    try:
        image = open_image(data)
    except ImageError as exc:
        raise ImageError(str(exc).replace("uploaded image", name, 1)) from None
    predictions, overlays = {}, {}
    for slot, predictor in predictors.items():
        pred = predictions[slot] = predictor.predict([image], k=k, search=search)[0]
        if gradcam:  # on the view that answered: the whole photo, or the crop around the flag
            view = image.crop(pred.box) if pred.box else image
            overlays[slot] = overlay_heatmap(view, predictor.gradcam(view))
    badge = None
    if len(predictions) == 2:
        a, b = predictions.values()
        badge = agreement(a, b)
    return PhotoResult(name, image, predictions, overlays, badge)
