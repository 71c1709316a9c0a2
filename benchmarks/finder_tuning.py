"""``python -m benchmarks.finder_tuning --workspace W``: the finder's post-processing, re-scored on a check set.

Loads the workspace's finder and newest CNN run once, writes the check set once
(:func:`flagvision.synthetic.checkset.make_checkset`), caches the finder's probability map and the
CNN's answer per view, and scores each :class:`Variant` of the post-processing (mask threshold,
``min_score``, ``min_cells``, splitting and merging components, the crop margin, how a big or tall
box is read, what answers when nothing is found) with
:func:`flagvision.inference.quality.evaluate_framings`, per framing. The first row is the code's own
:meth:`~flagvision.inference.predict.Predictor.predict_photo` (it must equal the ``adopted`` row);
``old`` is the post-processing before the tuning. How the defaults were chosen: the comments at
``FinderConfig.faint_threshold`` and ``flagvision.inference.predict.CROP_MARGIN``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from flagvision.models.finder import Finder
from flagvision.models.mask_boxes import Box, components, label_components


@dataclass(frozen=True)
class Variant:
    name: str
    threshold: float = 0.5  # FinderConfig.threshold
    min_score: float = 0.6  # FinderConfig.min_score
    min_cells: int = 3  # FinderConfig.min_cells
    margin: float = 0.15  # predict.CROP_MARGIN
    whole_above: float = 0.5  # predict.WHOLE_ABOVE
    tall_above: float = 1.2  # predict.TALL_ABOVE
    tall_below: float = 1.0  # predict.TALL_BELOW
    closeup: str = "fixed"  # fixed: above whole_above the whole photo only; surer: the whole photo or the crop
    surer_above: float = 0.0  # a box over this share is also read whole, the surer answers (0 = off)
    no_flag: str = "whole"  # whole | search (the 13-view scene search) | faint (best component above faint)
    faint: float = 0.15
    split: float = 0.0  # split a component with two or more cores above this probability (0 = off)
    bridge: int = 0  # merge components whose boxes are this many mask cells apart (0 = off)
    pick: str = "score"  # which flag answers: the finder's best score, or the surest classifier reading


OLD = Variant("old")
ADOPTED = replace(OLD, name="adopted", margin=0.2, whole_above=0.4, closeup="surer", surer_above=0.15, no_flag="faint")
VARIANTS = [
    OLD,
    *[replace(OLD, name=f"threshold {t}", threshold=t) for t in (0.3, 0.4, 0.6)],
    *[replace(OLD, name=f"min_score {m}", min_score=m) for m in (0.4, 0.5, 0.55, 0.65, 0.7)],
    *[replace(OLD, name=f"min_cells {c}", min_cells=c) for c in (1, 2, 6, 10)],
    *[replace(OLD, name=f"margin {m}", margin=m) for m in (0.0, 0.05, 0.1, 0.2, 0.3)],
    *[replace(OLD, name=f"whole_above {a}", whole_above=a) for a in (0.3, 0.4, 0.6)],
    *[replace(OLD, name=f"surer whole/crop above {a}", closeup="surer", whole_above=a) for a in (0.3, 0.4, 0.5)],
    *[replace(OLD, name=f"also whole above {s}", closeup="surer", surer_above=s) for s in (0.1, 0.15, 0.2, 0.25)],
    *[replace(OLD, name=f"tall_above {t}", tall_above=t) for t in (1.0, 1.1, 1.4)],
    *[replace(OLD, name=f"tall_below {t}", tall_below=t) for t in (0.8, 0.9)],
    replace(OLD, name="no flag: scene search", no_flag="search"),
    *[replace(OLD, name=f"no flag: faint {f}", no_flag="faint", faint=f) for f in (0.1, 0.15, 0.2, 0.25, 0.3)],
    *[replace(OLD, name=f"split cores {s}", split=s) for s in (0.7, 0.8, 0.9)],
    *[replace(OLD, name=f"merge gap {g}", bridge=g) for g in (1, 2, 3)],
    replace(OLD, name="surest reading answers", pick="confidence"),
    ADOPTED,
    *[replace(ADOPTED, name=f"adopted, faint {f}", faint=f) for f in (0.1, 0.2)],
    *[replace(ADOPTED, name=f"adopted, margin {m}", margin=m) for m in (0.15, 0.25)],
    replace(ADOPTED, name="adopted, tall_above 1.1", tall_above=1.1),
    replace(ADOPTED, name="adopted, whole_above 0.5", whole_above=0.5),
    replace(ADOPTED, name="adopted, also whole above 0.2", surer_above=0.2),
    replace(ADOPTED, name="adopted, surest reading answers", pick="confidence"),
    replace(ADOPTED, name="adopted, threshold 0.4", threshold=0.4),
]


def _box(xs: np.ndarray, ys: np.ndarray, w: int, h: int, mw: int, mh: int) -> Box:
    return (math.floor(xs.min() * w / mw), math.floor(ys.min() * h / mh),
            math.ceil((xs.max() + 1) * w / mw), math.ceil((ys.max() + 1) * h / mh))  # fmt: skip


def _split(prob: np.ndarray, fg: np.ndarray, v: Variant, w: int, h: int) -> list[tuple[Box, float]]:
    """Components, each with two or more cores above ``v.split`` cut in two: a cell to its nearest core."""
    out: list[tuple[Box, float]] = []
    labels, (mh, mw) = label_components(fg), fg.shape
    for value in np.unique(labels[labels >= 0]):
        region = labels == value
        if region.sum() < v.min_cells:
            continue
        cores = label_components(region & (prob >= v.split))
        ids = [c for c in np.unique(cores[cores >= 0]) if (cores == c).sum() >= max(v.min_cells, 4)]
        ys, xs = np.nonzero(region)
        if len(ids) < 2:
            out.append((_box(xs, ys, w, h, mw, mh), float(prob[ys, xs].mean())))
            continue
        centres = [np.nonzero(cores == c) for c in ids]
        dist = np.stack([np.min((ys[:, None] - cy[None]) ** 2 + (xs[:, None] - cx[None]) ** 2, axis=1)
                         for cy, cx in centres])  # fmt: skip
        owner = dist.argmin(0)
        for j in range(len(ids)):
            sy, sx = ys[owner == j], xs[owner == j]
            if len(sx) >= v.min_cells:
                out.append((_box(sx, sy, w, h, mw, mh), float(prob[sy, sx].mean())))
    return out


def _merge(found: list[tuple[Box, float]], gap: float) -> list[tuple[Box, float]]:
    found = list(found)
    merged = True
    while merged:
        merged = False
        for i in range(len(found)):
            for j in range(i + 1, len(found)):
                a, b = found[i][0], found[j][0]
                if max(a[0], b[0]) - min(a[2], b[2]) <= gap and max(a[1], b[1]) - min(a[3], b[3]) <= gap:
                    box = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    found[i] = (box, max(found[i][1], found[j][1]))
                    del found[j]
                    merged = True
                    break
            if merged:
                break
    return found


class Rescorer:
    """The pipeline of a :class:`Variant` over cached probability maps and classifier answers."""

    def __init__(self, predictor: Any, finder: Finder) -> None:
        self.predictor, self.finder = predictor, finder
        self._maps: dict[str, np.ndarray] = {}
        self._answers: dict[tuple, torch.Tensor] = {}

    @staticmethod
    def _key(image: Image.Image) -> str:
        return hashlib.sha1(image.tobytes()).hexdigest()

    def prob_map(self, image: Image.Image) -> np.ndarray:
        key = self._key(image)
        if key not in self._maps:
            self._maps[key] = self.finder.probability_map(image)
        return self._maps[key]

    def answer(self, image: Image.Image, view: tuple) -> torch.Tensor:
        """Class probabilities of a view: ``("whole",)`` or ``("crop", box, margin, upright)``."""
        from flagvision.models.finder import crop_for_classifier

        key = (self._key(image), view)
        if key not in self._answers:
            x = image
            if view[0] == "crop":
                x = crop_for_classifier(image, view[1], view[2], "context")
                x = x.transpose(Image.Transpose.TRANSPOSE) if view[3] else x
            self._answers[key] = self.predictor.probabilities([x])[0]
        return self._answers[key]

    def boxes(self, prob: np.ndarray, v: Variant, w: int, h: int, threshold: float, min_score: float):
        fg = prob >= threshold
        found = _split(prob, fg, v, w, h) if v.split else components(prob, fg, w, h, v.min_cells)
        found = _merge(found, v.bridge * w / fg.shape[1]) if v.bridge else found
        return sorted(((b, s) for b, s in found if s >= min_score), key=lambda bs: -bs[1])[:5]

    def read(self, v: Variant, image: Image.Image, box: Box) -> torch.Tensor:
        w, h = box[2] - box[0], box[3] - box[1]
        area = w * h / (image.width * image.height)
        crop = lambda upright: self.answer(image, ("crop", box, v.margin, upright))  # noqa: E731
        if area > v.whole_above:
            whole = self.answer(image, ("whole",))
            views = [whole] if v.closeup == "fixed" else [whole, crop(False)]
        else:
            if h > v.tall_above * w:
                views = [crop(True)]
            else:
                views = [crop(False), crop(True)] if h > v.tall_below * w else [crop(False)]
            if v.surer_above and area > v.surer_above:
                views.append(self.answer(image, ("whole",)))
        return max(views, key=lambda p: float(p.max()))

    def read_photo(self, v: Variant):
        names = self.predictor.class_names

        def read_photo(image: Image.Image) -> tuple[str, Box | None]:
            prob = self.prob_map(image)
            found = self.boxes(prob, v, image.width, image.height, v.threshold, v.min_score)
            if not found and v.no_flag == "faint":
                found = self.boxes(prob, v, image.width, image.height, v.faint, 0.0)[:1]
            elif not found and v.no_flag == "search":
                ((probs, box),) = self.predictor.search([image])
                return names[int(probs.argmax())], box
            if not found:
                return names[int(self.answer(image, ("whole",)).argmax())], None
            reads = [(self.read(v, image, b), b, s) for b, s in found]
            if v.pick == "confidence":
                reads.sort(key=lambda r: -float(r[0].max()))
            return names[int(reads[0][0].argmax())], reads[0][1]

        return read_photo


def _row(name: str, r: dict[str, Any]) -> str:
    cells = [f"{100 * s['finder']:.1f}" for s in r["framings"].values()]
    o = r["overall"]
    return (
        f"| {name} | "
        + " | ".join(cells)
        + f" | **{100 * o['finder']:.1f}** | {100 * o['iou_hit']:.1f} | {o['not_found']} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finder_tuning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", required=True, help="a workspace with a flag finder and a trained CNN run")
    parser.add_argument("--finder", help="a finder folder to use instead of the workspace's")
    parser.add_argument("--per-class", type=int, default=20, help="check images per class (default 20)")
    parser.add_argument("--checkset-seed", type=int, default=1234, help="the check set's random seed (default 1234)")
    args = parser.parse_args(argv)

    import os

    from flagvision.inference.predict import Predictor
    from flagvision.inference.quality import evaluate_framings
    from flagvision.synthetic.checkset import make_checkset
    from flagvision.workspace import RunPaths, Workspace

    torch.set_num_threads(1)
    ws = Workspace.open(Path(args.workspace))
    runs = sorted((p for p in ws.runs_dir.iterdir() if RunPaths(p).checkpoint.is_dir()), key=os.path.getmtime)
    predictor = Predictor.from_checkpoint(RunPaths(runs[-1]).checkpoint)
    finder = Finder.from_dir(args.finder) if args.finder else Finder.from_workspace(ws)
    rescorer = Rescorer(predictor, finder)
    with tempfile.TemporaryDirectory(prefix="fv-finder-tuning-") as tmp:
        check_dir = Path(tmp) / "checkset"
        make_checkset(check_dir, per_class=args.per_class, seed=args.checkset_seed)

        def code_path(photo: Image.Image) -> tuple[str, Box | None]:
            best = predictor.predict_photo(photo, finder, k=1)[0]
            return best.label, best.box

        first = evaluate_framings(predictor, check_dir, finder, read_photo=code_path)
        print(f"check set: {first['overall']['n']} images, random seed {args.checkset_seed}; pipeline accuracy (%)")
        print("| variant | " + " | ".join(first["framings"]) + " | all | IoU >= 0.5 | no flag found |")
        print("|---|" + "---:|" * (len(first["framings"]) + 3))
        print(_row("the code (predict_photo)", first), flush=True)
        for v in VARIANTS:
            print(_row(v.name, evaluate_framings(predictor, check_dir, finder, read_photo=rescorer.read_photo(v))),
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
