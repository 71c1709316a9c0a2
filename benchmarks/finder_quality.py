"""Measure the flag finder: box IoU and the classifier's accuracy whole photo vs found crop.

``python -m benchmarks.finder_quality --finder DIR [--checkpoint DIR] [--scenes N] [--per-class N]``

Two sets: held-out generated scenes (:func:`flagvision.synth.render_annotated`, a random-seed
stream the finder never trains on) and second-route check images (:mod:`flagvision.checkset`),
whose true box is the check image's own flag mask with the pole taken off (a 5 px opening).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from flagvision.checkset import FRAMINGS, _backdrop, _mesh_flag, _palette_cached, render_check_image
from flagvision.finder import CROP_MODES, Finder, box_iou
from flagvision.flags import FLAG_NAMES
from flagvision.synth import render_annotated


def _check_image_with_box(name: str, seed: str, size: int, framing: str):
    image = render_check_image(name, random.Random(seed), size, framing)
    r = random.Random(seed)  # the same draws up to the flag's mask
    _backdrop(r, size, _palette_cached())
    _, mask = _mesh_flag(r, name, size, framing)
    if r.random() < 0.2:
        mask = ImageOps.mirror(mask)
    mask = mask.filter(ImageFilter.MinFilter(5)).filter(ImageFilter.MaxFilter(5))  # the pole is <= 3 px wide
    box = mask.getbbox() or (0, 0, size, size)
    return image, box


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finder_quality")
    parser.add_argument("--finder", required=True, help="a finder folder (<workspace>/finder)")
    parser.add_argument("--checkpoint", help="a classifier checkpoint: also measure accuracy")
    parser.add_argument("--scenes", type=int, default=300, help="held-out generated scenes")
    parser.add_argument("--per-class", type=int, default=6, help="check images per class")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    finder = Finder.from_dir(args.finder)
    predictor = None
    if args.checkpoint:
        from flagvision.predict import Predictor

        predictor = Predictor.from_checkpoint(args.checkpoint)

    # (set, group) -> counters
    iou: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    seconds: list[float] = []

    def classify(key: str, image: Image.Image, label: str) -> None:
        if predictor is None:
            return
        answers = {
            "whole": predictor.predict([image], k=1)[0].label,
            "search": predictor.predict([image], k=1, search=True)[0].label,
        }
        for mode in CROP_MODES:
            answers[f"finder_{mode}"] = predictor.predict_photo(image, finder, 1, mode)[0].label
        import flagvision.predict as predict_module

        keep, predict_module.TALL_BELOW = predict_module.TALL_BELOW, float("inf")  # a tall box read as it is
        try:
            answers["finder_context_not_upright"] = predictor.predict_photo(image, finder, 1, "context")[0].label
        finally:
            predict_module.TALL_BELOW = keep
        for how, answer in answers.items():
            counter = acc[f"{key}/{how}"]
            counter[0] += answer == label
            counter[1] += 1

    # Held-out generated scenes: stream 2 (the finder trains on 0 and is validated on 1).
    empty_right = empties = 0
    for i in range(args.scenes):
        scene = render_annotated(np.random.default_rng([finder.cfg.seed, 0xF1, 2, i]), args.size)
        started = time.perf_counter()
        found = [d.box for d in finder.find_flags(scene.image)]
        seconds.append(time.perf_counter() - started)
        if not scene.boxes:
            empties += 1
            empty_right += not found
            continue
        for (_name, box), vertical in zip(scene.boxes, scene.vertical, strict=True):
            share = (box[2] - box[0]) / args.size
            groups = ["all", "vertical" if vertical else "upright", "small<35%" if share < 0.35 else "big>=35%"]
            if len(scene.boxes) > 1:
                groups.append("several")
            hit = any(box_iou(box, f) >= 0.5 for f in found)
            for g in groups:
                iou[f"scenes/{g}"][0] += hit
                iou[f"scenes/{g}"][1] += 1
        if len(scene.boxes) == 1:
            name = scene.boxes[0][0]
            classify("scenes/" + ("vertical" if scene.vertical[0] else "upright"), scene.image, name)

    # Second-route check images.
    for name in FLAG_NAMES:
        for i in range(args.per_class):
            framing = FRAMINGS[i % len(FRAMINGS)]
            image, box = _check_image_with_box(name, f"finder/{name}/{i}", args.size, framing)
            found = [d.box for d in finder.find_flags(image)]
            hit = any(box_iou(box, f) >= 0.5 for f in found)
            for g in ("all", framing):
                iou[f"checkset/{g}"][0] += hit
                iou[f"checkset/{g}"][1] += 1
            classify(f"checkset/{framing}", image, name)
            classify("checkset/all", image, name)

    out: dict[str, Any] = {
        "iou50_share": {k: _rate(*v) for k, v in sorted(iou.items())},
        "iou50_counts": {k: v[1] for k, v in sorted(iou.items())},
        "no_flag_scenes_right": _rate(empty_right, empties),
        "no_flag_scenes": empties,
        "ms_per_photo_find": round(1000 * float(np.median(seconds)), 2),
        "finder_metrics": finder.card.get("metrics"),
    }
    if predictor is not None:
        out["accuracy"] = {k: _rate(*v) for k, v in sorted(acc.items())}
        out["accuracy_counts"] = {k: v[1] for k, v in sorted(acc.items())}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
