"""``python -m benchmarks.finder_cost --workspace W``: what the flag finder adds on the Predict path.

Issue 14's acceptance: "the finder adds at most 1 s to 20 photos through both models on the Predict
path". The photos: 20 check-set scenes (:func:`flagvision.synthetic.checkset.render_check_scene`,
every framing in turn, one flag class each) of ``--size`` px as JPEG bytes, what a user drops on
the Predict page. Each pass reads all of them with :func:`flagvision.inference.photos.analyse_photo`
through both models (the workspace's newest CNN run and a VGG-16 transfer with the default transfer
config, random init: no ImageNet weights are needed for a timing, its answers mean nothing),
Grad-CAM off, a fresh :class:`~flagvision.inference.photos.PhotoCache` per pass: once with the
workspace's finder, once without (``finder=None``: the whole photo). Passes are interleaved so that a
load spike hits both; the figure is the difference of the medians, and their ratio, from one run.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import time
from pathlib import Path


def photos(count: int, size: int) -> list[tuple[str, bytes]]:
    from flagvision.synthetic.checkset import FRAMINGS, render_check_scene
    from flagvision.synthetic.flags import FLAG_NAMES

    out = []
    for i in range(count):
        name, framing = FLAG_NAMES[i % len(FLAG_NAMES)], FRAMINGS[i % len(FRAMINGS)]
        scene = render_check_scene(name, random.Random(f"finder-cost/{i}"), size, framing)
        buf = io.BytesIO()
        scene.image.save(buf, format="JPEG", quality=90)
        out.append((f"{i:02d}-{framing}.jpg", buf.getvalue()))
    return out


def vgg_predictor(class_names: list[str]):
    """A VGG-16 transfer predictor of the default transfer config, random init (timing only)."""
    from flagvision.config import VGG_IMAGE_SIZE, DataConfig, RunConfig, VGGConfig
    from flagvision.inference.predict import Predictor
    from flagvision.models.networks import get_model
    from flagvision.runtime import seed_everything
    from flagvision.training.checkpoints import make_card

    cfg = RunConfig(model="vgg16_transfer", data=DataConfig(image_size=VGG_IMAGE_SIZE), vgg=VGGConfig(pretrained=False))
    seed_everything(0)
    model = get_model("vgg16_transfer", len(class_names), cfg)
    return Predictor(model, make_card(model, cfg, class_names, "timing-only", epoch=0, metrics={}), "vgg-random-init")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finder_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", required=True, help="a workspace with a flag finder and a trained CNN run")
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--size", type=int, default=512, help="side of the photos in px (default 512)")
    parser.add_argument("--passes", type=int, default=7, help="passes of each kind (default 7), interleaved")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's own, all cores)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from flagvision.inference.photos import PhotoCache, analyse_photo
    from flagvision.inference.predict import Predictor
    from flagvision.models.finder import Finder
    from flagvision.workspace import RunPaths, Workspace

    ws = Workspace.open(Path(args.workspace))
    runs = sorted((p for p in ws.runs_dir.iterdir() if RunPaths(p).checkpoint.is_dir()), key=os.path.getmtime)
    cnn = Predictor.from_checkpoint(RunPaths(runs[-1]).checkpoint)
    predictors = {"cnn": cnn, "vgg": vgg_predictor(cnn.class_names)}
    finder = Finder.from_workspace(ws)
    shots = photos(args.photos, args.size)
    load_before = os.getloadavg()[0]

    def one_pass(with_finder: bool) -> tuple[float, int]:
        cache, found = PhotoCache(), 0
        start = time.perf_counter()
        for name, data in shots:
            result = analyse_photo(name, data, predictors, k=5, gradcam=False, finder=finder if with_finder else None,
                                   cache=cache)  # fmt: skip
            found += len(result.boxes)
        return time.perf_counter() - start, found

    one_pass(True)  # warm the allocator and the lazy imports, as a running app would be
    times: dict[bool, list[float]] = {True: [], False: []}
    boxes = 0
    for _ in range(args.passes):
        for with_finder in (False, True):
            seconds, found = one_pass(with_finder)
            times[with_finder].append(seconds)
            boxes = found if with_finder else boxes
    load_after = os.getloadavg()[0]
    without, with_ = statistics.median(times[False]), statistics.median(times[True])
    threads = torch.get_num_threads()
    print(f"{args.photos} photos of {args.size} px x both models (CNN {runs[-1].name}, VGG-16 random init), "
          f"Grad-CAM off, {threads} torch threads, median of {args.passes} interleaved passes")  # fmt: skip
    print(f"  without the finder: {without:.2f} s ({min(times[False]):.2f}-{max(times[False]):.2f})")
    print(f"  with the finder:    {with_:.2f} s ({min(times[True]):.2f}-{max(times[True]):.2f}), {boxes} boxes found")
    pairs = [b - a for a, b in zip(times[False], times[True], strict=True)]  # each pass beside its twin
    ratios = [b / a for a, b in zip(times[False], times[True], strict=True)]
    print(f"  the finder adds:    {with_ - without:.2f} s ({with_ / without:.2f}x); target <= 1 s")
    print(f"  paired passes:      {statistics.median(pairs):.2f} s added, {statistics.median(ratios):.2f}x (medians)")
    print(f"  1-minute load average: {load_before:.2f} before, {load_after:.2f} after, on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
