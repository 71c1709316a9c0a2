"""How well a classifier reads the check set, framing by framing: the figures of docs/QUALITY.md.

:func:`evaluate_framings` classifies every image of a check set (:func:`flagvision.synthetic.checkset.make_checkset`,
version checkset-2, whose manifest gives each image's framing, flags and boxes) twice when a flag
finder is given: the whole photo, and the crop around the finder's best box. An image counts as
right when the answer is one of the flags it shows (a two-flag image: either). It returns plain
data (accuracy per framing and overall, the finder's box IoU against the truth, the commonest
confusions); :func:`write_quality_md` renders it as Markdown.

The finder is anything with ``find_flags(image) -> list[Detection]`` where a detection has
``.box`` (x0, y0, x1, y1 in the image's pixels) and ``.score``; the classifier anything with
``predict(images, k) -> list`` of answers with ``.label`` (:class:`flagvision.inference.predict.Predictor`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from flagvision.config import ConfigError
from flagvision.models.mask_boxes import box_iou as iou  # one IoU for the finder and the check set
from flagvision.synthetic.checkset import read_checkset_manifest

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels
IOU_HIT = 0.5  # a found box this close to the truth counts as found


class Detection(Protocol):
    @property
    def box(self) -> Sequence[float]: ...

    @property
    def score(self) -> float: ...


class FlagFinder(Protocol):
    def find_flags(self, image: Image.Image) -> Sequence[Detection]: ...


class Answer(Protocol):
    @property
    def label(self) -> str: ...


class Classifier(Protocol):
    def predict(self, images: Sequence[Any], k: int = 5) -> Sequence[Answer]: ...


def square_crop(image: Image.Image, box: Sequence[float], margin: float = 0.15) -> Image.Image:
    """The square around ``box`` (its longer side plus ``margin`` on each side), kept inside the
    photo where it fits: the flag keeps its aspect ratio when the classifier resizes to a square."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    side = min(side, max(image.size))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(cx - side / 2, 0.0), max(image.width - side, 0.0))
    top = min(max(cy - side / 2, 0.0), max(image.height - side, 0.0))
    return image.crop((round(left), round(top), round(left + side), round(top + side)))


def _predict_labels(predictor: Classifier, images: list[Image.Image], batch: int) -> list[str]:
    labels: list[str] = []
    for i in range(0, len(images), batch):
        labels += [answer.label for answer in predictor.predict(images[i : i + batch], k=1)]
    return labels


def _share(hits: Sequence[bool]) -> float | None:
    return sum(hits) / len(hits) if hits else None


def evaluate_framings(
    predictor: Classifier,
    checkset_dir: str | os.PathLike[str],
    finder: FlagFinder | None = None,
    crop: Callable[[Image.Image, Sequence[float]], Image.Image] = square_crop,
    *,
    batch: int = 64,
    top_confusions: int = 10,
    read_photo: Callable[[Image.Image], tuple[str, Sequence[float] | None]] | None = None,
) -> dict[str, Any]:
    """Accuracy per framing of ``predictor`` on a check set, whole photo and (with ``finder``) on
    ``crop`` of the finder's best box; the finder's IoU; the commonest confusions.

    ``read_photo`` (photo -> (answer, best box or None)) replaces finder + ``crop`` on the finder's
    route: the default pipeline as ``predict`` runs it (:meth:`Predictor.predict_photo`).
    No box found: the whole photo answers (counted in ``not_found``). Returns plain, JSON-ready data.
    """
    manifest = read_checkset_manifest(checkset_dir)
    entries = manifest.get("images")
    if not entries:
        raise ConfigError(
            f"{checkset_dir} is an older check set without framings and boxes; "
            "write a new one with: python -m flagvision data checkset --force"
        )
    root = Path(checkset_dir)
    photos = []
    for entry in entries:
        with Image.open(root / entry["file"]) as im:
            photos.append(im.convert("RGB"))
    whole = _predict_labels(predictor, photos, batch)
    found: list[list[float] | None] = [None] * len(photos)
    crops = []
    cropped: list[str] = []
    if read_photo is not None:
        for i, photo in enumerate(photos):
            label, best = read_photo(photo)
            cropped.append(label)
            found[i] = None if best is None else [float(c) for c in best]
    elif finder is not None:
        for i, photo in enumerate(photos):
            detections = sorted(finder.find_flags(photo), key=lambda d: d.score, reverse=True)
            if detections:
                found[i] = [float(c) for c in detections[0].box]
            box = found[i]
            crops.append(crop(photo, box) if box is not None else photo)
        cropped = _predict_labels(predictor, crops, batch)
    with_finder = finder is not None or read_photo is not None

    per_framing: dict[str, dict[str, list]] = {}
    confusions: Counter[tuple[str, str, str]] = Counter()
    for i, entry in enumerate(entries):
        row = per_framing.setdefault(entry["framing"], {"whole": [], "finder": [], "iou": [], "not_found": []})
        flags = entry["flags"]
        row["whole"].append(whole[i] in flags)
        if whole[i] not in flags:
            confusions[("whole photo", entry["class"], whole[i])] += 1
        if with_finder:
            row["finder"].append(cropped[i] in flags)
            if cropped[i] not in flags:
                confusions[("finder", entry["class"], cropped[i])] += 1
            box = found[i]
            row["not_found"].append(box is None)
            row["iou"].append(0.0 if box is None else max(iou(box, truth) for truth in entry["boxes"]))

    def summary(rows: list[dict[str, list]]) -> dict[str, Any]:
        pick = [v for r in rows for v in r["whole"]]
        out: dict[str, Any] = {"n": len(pick), "whole_photo": _share(pick)}
        if with_finder:
            ious = [v for r in rows for v in r["iou"]]
            out["finder"] = _share([v for r in rows for v in r["finder"]])
            out["iou_mean"] = sum(ious) / len(ious) if ious else None
            out["iou_hit"] = _share([v >= IOU_HIT for v in ious])
            out["not_found"] = sum(v for r in rows for v in r["not_found"])
        return out

    order = [f for f in manifest.get("framings", []) if f in per_framing] + sorted(
        f for f in per_framing if f not in manifest.get("framings", [])
    )
    return {
        "checkset": str(checkset_dir),
        "checkset_version": manifest.get("version"),
        "seed": manifest.get("seed"),
        "size": manifest.get("size"),
        "model": str(getattr(predictor, "label", type(predictor).__name__)),
        "finder": type(finder).__name__ if finder is not None else "read_photo" if with_finder else None,
        "iou_hit": IOU_HIT,
        "framings": {f: summary([per_framing[f]]) for f in order},
        "overall": summary(list(per_framing.values())),
        "confusions": [
            {"route": route, "true": true, "predicted": pred, "count": n}
            for (route, true, pred), n in confusions.most_common(top_confusions)
        ],
    }


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def write_quality_md(results: dict[str, Any], path: str | os.PathLike[str], title: str = "Quality") -> Path:
    """Write :func:`evaluate_framings`' results as a Markdown report (no dates: the same results
    give the same file, so a test can check the report is current)."""
    with_finder = results.get("finder") is not None
    lines = [
        f"# {title}",
        "",
        f"Model `{results['model']}` on the check set `{results['checkset']}` "
        f"({results['checkset_version']}, random seed {results['seed']}, {results['size']} px): "
        "images drawn by a second route (`flagvision.synthetic.checkset`), not by the training data's generator. "
        "An image counts as right when the answer is one of the flags it shows.",
        "",
    ]
    head = "| framing | images | whole photo |"
    rule = "|---|---:|---:|"
    if with_finder:
        head += f" finder's crop | finder IoU (mean) | IoU ≥ {results['iou_hit']} | no flag found |"
        rule += "---:|---:|---:|---:|"
        lines.append(f"Finder: `{results['finder']}`; the classifier reads the square around its best box.")
        lines.append("")
    lines += [head, rule]
    rows = [*results["framings"].items(), ("**all**", results["overall"])]
    for framing, s in rows:
        line = f"| {framing} | {s['n']} | {_pct(s['whole_photo'])} |"
        if with_finder:
            iou_mean = "–" if s["iou_mean"] is None else f"{s['iou_mean']:.2f}"
            line += f" {_pct(s['finder'])} | {iou_mean} | {_pct(s['iou_hit'])} | {s['not_found']} |"
        lines.append(line)
    lines += ["", "Commonest confusions:", ""]
    if results["confusions"]:
        lines += ["| route | true flag | answered | images |", "|---|---|---|---:|"]
        lines += [f"| {c['route']} | {c['true']} | {c['predicted']} | {c['count']} |" for c in results["confusions"]]
    else:
        lines.append("none.")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


# Thresholds of the "not sure" table (docs/QUALITY.md): 0.5, 0.55, …, 0.95.
THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
COVERAGES = (1.0, 0.95, 0.9, 0.8, 0.7, 0.6)  # the risk-coverage table: the surest share answered


def answer_labels(
    probs: Any, flags: Sequence[Sequence[str]], classes: Sequence[str], class_names: Sequence[str]
) -> Any:
    """Per image, the label an answer counts as right against: the answer itself (the top of
    ``probs``) when it is one of the image's ``flags`` (a two-flag image: either), else its
    ``class``; so ``argmax(probs) == label`` exactly when the answer is right."""
    import torch

    index = {name: i for i, name in enumerate(class_names)}
    top = torch.as_tensor(probs).argmax(dim=1).tolist()
    return torch.tensor(
        [t if class_names[t] in f else index[c] for t, f, c in zip(top, flags, classes, strict=True)], dtype=torch.long
    )


def pipeline_calibration(
    before: Any,
    after: Any,
    flags: Sequence[Sequence[str]],
    classes: Sequence[str],
    framings: Sequence[str],
    class_names: Sequence[str],
    threshold: float,
    thresholds: Sequence[float] = THRESHOLDS,
    coverages: Sequence[float] = COVERAGES,
) -> dict[str, Any]:
    """How far the answering flag's confidence can be trusted on a check set: per image its class
    probabilities ``before`` (T = 1) and ``after`` calibration (N, C), the flags it shows, its class
    and framing. Returns plain data: overall and per framing the accuracy, the ECE before and after
    (:func:`flagvision.training.calibration.expected_calibration_error`, 15 bins) and what
    ``threshold`` does (answered share and its accuracy); the calibrated answers at each of
    ``thresholds``; the risk-coverage curve read at ``coverages`` (the surest share answered)."""
    import torch

    from flagvision.training.calibration import ECE_BINS, expected_calibration_error, risk_coverage, selective

    before, after = torch.as_tensor(before).float(), torch.as_tensor(after).float()
    labels_before = answer_labels(before, flags, classes, class_names)
    labels_after = answer_labels(after, flags, classes, class_names)

    def summary(mask: torch.Tensor) -> dict[str, Any]:
        b, a, lb, la = before[mask], after[mask], labels_before[mask], labels_after[mask]
        sel = selective(a, la, threshold)
        return {
            "n": int(mask.sum()),
            "accuracy": float((a.argmax(dim=1) == la).float().mean()) if len(la) else None,
            "ece_before": expected_calibration_error(b, lb),
            "ece_after": expected_calibration_error(a, la),
            "answered": sel["coverage"],
            "answered_accuracy": sel["accuracy"],
        }

    order = list(dict.fromkeys(framings))
    curve = risk_coverage(after, labels_after)
    at_coverage = []
    for share in coverages:
        # The first point of the curve (surest first) that answers at least ``share`` of the images.
        point = next((p for p in curve if p["coverage"] >= share - 1e-9), curve[-1] if curve else None)
        if point is not None:
            at_coverage.append({"share": share, **point})
    return {
        "threshold": threshold,
        "bins": ECE_BINS,
        "overall": summary(torch.ones(len(framings), dtype=torch.bool)),
        "framings": {f: summary(torch.tensor([g == f for g in framings])) for f in order},
        "thresholds": [selective(after, labels_after, t) for t in thresholds],
        "risk_coverage": at_coverage,
    }
