"""``evaluate``, ``predict`` and ``export``: a checkpoint read on photos (through the flag finder when the
workspace has one and the checkpoint's card allows it), scored on a dataset (calibration and "not sure"
included), or exported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flagvision.cli.common import EXIT_USER_ERROR, print_json
from flagvision.config import (
    CONFIDENCE_THRESHOLD,
)


def _finder_for(args, card: dict | None = None):
    """The workspace's flag finder for ``predict`` and ``evaluate``: None with ``--whole-photo``,
    ``--search``, for a checkpoint trained on photos that are not flags (its ``card`` says
    find_flags=False) or when none is built (a damaged one is a user error: one line saying to rebuild it)."""
    from flagvision.training.checkpoints import card_finds_flags

    if getattr(args, "whole_photo", False) or getattr(args, "search", False):
        return None
    if card is not None and not card_finds_flags(card):
        return None
    from flagvision.models.finder import CARD_FILE, Finder, finder_dir
    from flagvision.workspace import Workspace, default_root

    ws = Workspace(Path(args.workspace).resolve() if args.workspace else default_root())  # opened, not created
    return Finder.from_workspace(ws) if (finder_dir(ws) / CARD_FILE).is_file() else None


def cmd_evaluate(args) -> int:
    from flagvision.data.dataset import load_eval_images
    from flagvision.inference.photos import WHOLE_PHOTO_MODEL
    from flagvision.training.calibration import calibration_report, probability_report
    from flagvision.training.checkpoints import card_finds_flags, card_temperature, load_checkpoint
    from flagvision.training.engine import eval_from_logits, predict_logits

    model, card = load_checkpoint(args.checkpoint)
    split = load_eval_images(args.data, card["class_names"], int(card["input_size"]))
    finder = _finder_for(args, card)
    temperature = card_temperature(card)
    if args.search or finder is not None:  # what Predict answers: each photo read again
        import torch

        from flagvision.inference.predict import Predictor

        calibrated, uncalibrated = Predictor(model, card), Predictor(model, card)
        uncalibrated.temperature = 1.0  # what the answers were before calibration (views chosen anew)
        if finder is not None:  # an image is scored by its highest-scoring flag (the whole photo if none)
            probs = _finder_probabilities(calibrated, split.paths, finder)
            raw = _finder_probabilities(uncalibrated, split.paths, finder)
        else:
            probs = torch.stack([p for p, _ in calibrated.search(split.paths)])
            raw = torch.stack([p for p, _ in uncalibrated.search(split.paths)])
        result = eval_from_logits(probs.clamp_min(1e-12).log(), split.labels, card["class_names"])
        calibration = probability_report(raw, probs, split.labels, temperature, args.confidence_threshold)
    else:
        logits = predict_logits(model, split.images)
        result = eval_from_logits(logits, split.labels, card["class_names"])
        calibration = calibration_report(logits, split.labels, temperature, args.confidence_threshold)
    out = result.to_dict()
    out["model"] = card.get("label", card["model"])
    out["scene_search"] = bool(args.search)
    out["finder"] = finder is not None
    out["find_flags"] = card_finds_flags(card)  # False: a model of photos that are not flags, read whole
    out["calibration"] = calibration
    out["skipped"] = split.skipped
    if args.json:
        print_json(out)
    else:
        how = " (scene search: whole photo and 13 crops)" if args.search else ""
        how = " (the flag finder's crop of each photo's best flag)" if finder is not None else how
        if not (out["find_flags"] or args.search or args.whole_photo):
            how = f" ({WHOLE_PHOTO_MODEL})"
        print(f"{out['model']}: accuracy {result.accuracy:.2%} on {result.n_images} images{how}")
        # Worst class first; classes the folder has no images of come last, said so.
        ranked = sorted(result.per_class.items(), key=lambda kv: (kv[1] is None, kv[1] or 0.0, kv[0]))
        for name, acc in ranked:
            print(f"  {name:20s} {'no images' if acc is None else f'{acc:.2%}'}")
        print(_calibration_lines(calibration, "temperature" in card))
        for path, why in split.skipped:
            print(f"skipped {path}: {why}", file=sys.stderr)
    return 0


def _finder_probabilities(predictor, paths, finder):
    """Per image, the class probabilities of its highest-scoring found flag (the whole photo if none)."""
    import torch

    names = predictor.class_names
    rows = []
    for path in paths:
        row = torch.zeros(len(names))
        for name, prob in predictor.predict_photo(path, finder, k=len(names))[0].top:
            row[names.index(name)] = prob
        rows.append(row)
    return torch.stack(rows)


def _top(pred) -> list[dict[str, Any]]:
    return [{"class": c, "probability": p} for c, p in pred.top]


def cmd_predict(args) -> int:
    from flagvision.data.images import ImageError, open_image
    from flagvision.inference.photos import WHOLE_PHOTO_MODEL
    from flagvision.inference.predict import Predictor, answer_fields
    from flagvision.models.finder import NO_FLAG_FOUND

    predictor = Predictor.from_checkpoint(args.checkpoint)
    finder = _finder_for(args, predictor.card)
    whole = args.whole_photo or not predictor.finds_flags  # no finder and no crop search either
    results, failures = [], 0
    for path in args.images:
        try:
            image = open_image(path)
            if finder is not None:
                preds = predictor.predict_photo(image, finder, k=args.top_k)
                found = [p for p in preds if p.box is not None]
                how = f"{len(found)} flag{'s' if len(found) != 1 else ''} found" if found else NO_FLAG_FOUND
            else:
                preds = predictor.predict([image], k=args.top_k, search=not whole)
                found = []
                how = "not built (scene search answered)" if not whole else WHOLE_PHOTO_MODEL
                how = "off (--whole-photo)" if args.whole_photo else how
            pred = preds[0]
            results.append(
                {
                    "image": path,
                    "top": _top(pred),
                    "box": list(pred.box) if pred.box else None,
                    "score": pred.score,
                    "finder": how,
                    "flags": [{"box": list(p.box), "score": p.score, "top": _top(p)} for p in found if p.box],
                    **answer_fields(pred, args.confidence_threshold),
                }
            )
        except ImageError as exc:
            failures += 1
            results.append({"image": path, "error": str(exc)})
    if args.json:
        print_json(
            {
                "model": predictor.label,
                "temperature": predictor.temperature,
                "confidence_threshold": args.confidence_threshold,
                "predictions": results,
            }
        )
    else:
        print(f"model: {predictor.label}")
        for r in results:
            if "error" in r:
                print(f"{r['image']}: ERROR {r['error']}")
            elif len(r["flags"]) > 1:
                print(f"{r['image']}: {r['finder']}")
                for flag in r["flags"]:
                    tops = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in flag["top"])
                    print(f"  box {tuple(flag['box'])} (finder score {flag['score']:.2f}): {tops}")
            else:
                shown = r["top"] if r["sure"] else r["closest"]
                answer = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in shown)
                answer = answer if r["sure"] else f"not sure — closest: {answer}"
                where = f" [box {tuple(r['box'])}]" if r["box"] and finder is not None else ""
                note = f" ({NO_FLAG_FOUND})" if finder is not None and not r["flags"] else ""
                print(f"{r['image']}: {answer}{where}{note}")
    return EXIT_USER_ERROR if failures == len(args.images) else 0


def _calibration_lines(calibration: dict, calibrated: bool) -> str:
    """The evaluate command's lines on confidence: ECE before and after, and the "not sure" share."""
    before = calibration["ece_before"]
    ece = f"ECE {before:.1%} before, {calibration['ece_after']:.1%} after" if before is not None else ""
    how = (
        f"calibration: temperature {calibration['temperature']:.3g}; {ece} ({calibration['bins']} bins)"
        if calibrated
        else f"calibration: none (a checkpoint from before calibration); ECE {calibration['ece_after']:.1%}"
    )
    sel = calibration["selective"]
    answered = "none" if sel["accuracy"] is None else f"{sel['accuracy']:.2%} of them right"
    return (
        f"{how}\nnot sure below {sel['threshold']:.0%}: answered {sel['answered']} of {sel['n_images']} images "
        f"({sel['coverage']:.1%}), {answered}"
    )


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (e.g. 0.5 for 50 %)")
    return value


def _add_threshold_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--confidence-threshold",
        type=_threshold,
        default=CONFIDENCE_THRESHOLD,
        help=f"below this calibrated confidence (0–1) the answer is 'not sure' (default {CONFIDENCE_THRESHOLD})",
    )


# --- weights ----------------------------------------------------------------------------------


def cmd_export(args) -> int:
    from flagvision.inference.export import export_checkpoint, export_filename

    data = export_checkpoint(args.checkpoint, args.format)
    out = Path(args.out) if args.out else Path(export_filename(args.checkpoint, args.format))
    if out.is_dir():
        out = out / export_filename(args.checkpoint, args.format)
    out.write_bytes(data)
    print(f"wrote {out} ({len(data) / 2**20:.1f} MB); input size, mean/std and class names inside as card.json")
    return 0


# --- parser -----------------------------------------------------------------------------------


def _reading_flags(p: argparse.ArgumentParser, whole_photo_help: str) -> None:
    """The flags ``evaluate`` and ``predict`` share: how each photo is read, and how sure is sure."""
    p.add_argument("--checkpoint", required=True, help="checkpoint or run folder")
    p.add_argument("--whole-photo", action="store_true", help=whole_photo_help)
    _add_threshold_flag(p)
    p.add_argument("--json", action="store_true")


def register(sub: argparse._SubParsersAction) -> None:
    from flagvision.inference.export import FORMATS as EXPORT_FORMATS

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on a dataset")
    _reading_flags(p, "classify each whole photo (default: the flag finder's crop)")
    p.add_argument("--data", required=True, help="ImageFolder (its test/ split if it has one)")
    p.add_argument(
        "--search",
        action="store_true",
        help="the old scene search: the most confident of the whole photo and 13 crops (no flag finder)",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify images with a checkpoint")
    _reading_flags(
        p, "classify the whole photo only (default: each flag the flag finder finds; without a finder, 13 crops)"
    )
    p.add_argument("images", nargs="+")
    p.add_argument("--top-k", type=int, default=5)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a checkpoint to ONNX or torch.export, to run outside FlagVision")
    p.add_argument("--checkpoint", required=True, help="checkpoint or run folder")
    p.add_argument(
        "--format",
        choices=tuple(EXPORT_FORMATS),
        default="onnx",
        help="onnx: any ONNX runtime (default); torch_export: a torch.export program (.pt2)",
    )
    p.add_argument("--out", help="file or folder to write (default: flagvision-<run>.<suffix> here)")
    p.set_defaults(func=cmd_export)
