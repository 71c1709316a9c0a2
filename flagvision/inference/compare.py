"""Two classifiers on the same footing: on one photo (which is surer, do they agree) and over the
check set (where their answers differ).

One photo, or one flag the finder found in it: :func:`compare` reads the two models' answers
(:class:`~flagvision.inference.predict.Prediction`, calibrated probabilities), says which is surer
(higher top-1 confidence; within :data:`TIE` they are "as sure"), whether they give the same answer,
and if not where each one's answer stands in the other's top :data:`TOP`. :func:`comparison_text`
says it in a sentence for the Predict page, "not sure" answers (below the threshold,
:func:`~flagvision.inference.predict.is_sure`) named as such; :func:`agreement` is the short badge
("agree", "partly agree", "disagree") of the batch table.

The check set: :func:`disagreements` runs both models on the same images (through the flag finder
when one is given, as Predict does) and lists the images whose answers differ, with who is right;
:func:`checkset_disagreements` does it on a check set folder (its manifest gives each image's flags
and framing), and :func:`compare_on_checkset` on the workspace's check set, the result kept in
``<workspace>/comparisons/`` per (checkpoint, checkpoint, finder, check set) so that it is computed once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flagvision.config import CONFIDENCE_THRESHOLD
from flagvision.errors import FlagVisionError
from flagvision.workspace import CARD_FILE, FINDER_DIR, WEIGHTS_FILE, Workspace

if TYPE_CHECKING:  # predict imports torch: the Runs page reads a kept comparison without it
    from PIL import Image

    from flagvision.inference.predict import Prediction, Predictor

TIE = 0.01  # calibrated top-1 confidences closer than this (one point): the two models are "as sure"
TOP = 3  # "is the other's answer in its top 3"
ORDINALS = ("first", "second", "third")
COMPARISONS_DIR = "comparisons"  # in the workspace: cached check-set comparisons, one JSON file each
COMPARISON_FORMAT = "flagvision-comparison/1"


class CompareError(FlagVisionError, ValueError):
    """Two models that cannot be compared (different classes), or a check set they cannot read."""


@dataclass(frozen=True)
class Comparison:
    """Two answers of one photo or flag: ``a`` and ``b`` in the order they were given."""

    same_answer: bool
    surer: int | None  # 0: ``a`` is surer, 1: ``b``, None: as sure (within TIE)
    b_in_a: int | None  # where b's answer is in a's top TOP (1 = a's own answer); None: not there
    a_in_b: int | None  # where a's answer is in b's top TOP

    @property
    def verdict(self) -> str:
        """ "agree" (same answer), "partly agree" (one's answer in the other's top 3) or "disagree"."""
        if self.same_answer:
            return "agree"
        return "partly agree" if self.b_in_a or self.a_in_b else "disagree"


def _rank(label: str, pred: Prediction) -> int | None:
    names = [name for name, _ in pred.top[:TOP]]
    return names.index(label) + 1 if label in names else None


def compare(a: Prediction, b: Prediction) -> Comparison:
    """Which of two answers is surer, and how far they agree (see :class:`Comparison`)."""
    gap = a.confidence - b.confidence
    surer = None if abs(gap) < TIE else (0 if gap > 0 else 1)
    return Comparison(a.label == b.label, surer, _rank(b.label, a), _rank(a.label, b))


def agreement(a: Prediction, b: Prediction) -> str:
    """Badge text for two models' answers on one photo: :attr:`Comparison.verdict`."""
    return compare(a, b).verdict


def comparison_text(
    a: Prediction, b: Prediction, names: tuple[str, str], threshold: float = CONFIDENCE_THRESHOLD
) -> str:
    """The two answers in plain words: who is surer (calibrated confidence), whether they agree, and
    if not whether each has the other's answer in its top 3. ``names`` are the models' labels.

    E.g. "Both answer Holland. VGG-16 transfer is surer (92% vs 61%)." or "They disagree: Custom CNN
    answers Holland, VGG-16 transfer answers Croatia. VGG-16 transfer is surer (92% vs 61%). Custom CNN
    has Croatia second; Holland is not in the top 3 of VGG-16 transfer."
    """
    from flagvision.inference.predict import is_sure

    c = compare(a, b)
    (name_a, name_b), preds = names, (a, b)
    sure = (is_sure(a, threshold), is_sure(b, threshold))
    if c.surer is None:
        surer = f"They are as sure ({a.confidence:.0%} and {b.confidence:.0%})."
    else:
        hi, lo = preds[c.surer], preds[1 - c.surer]
        surer = f"{names[c.surer]} is surer ({hi.confidence:.0%} vs {lo.confidence:.0%})."
    if c.same_answer:
        if all(sure):
            head = f"Both answer {a.label}."
        elif not any(sure):
            head = f"Neither is sure; both lean to {a.label}."
        else:
            head = f"Both lean to {a.label}, but {names[sure.index(False)]} is not sure."
        return f"{head} {surer}"

    def says(name: str, pred: Prediction, is_sure_: bool) -> str:
        return f"{name} answers {pred.label}" if is_sure_ else f"{name} is not sure (closest: {pred.label})"

    head = f"They disagree: {says(name_a, a, sure[0])}, {says(name_b, b, sure[1])}."
    if c.b_in_a and c.a_in_b:
        cross = f"{name_a} has {b.label} {ORDINALS[c.b_in_a - 1]}, {name_b} has {a.label} {ORDINALS[c.a_in_b - 1]}."
    elif c.b_in_a:
        cross = f"{name_a} has {b.label} {ORDINALS[c.b_in_a - 1]}; {a.label} is not in the top {TOP} of {name_b}."
    elif c.a_in_b:
        cross = f"{name_b} has {a.label} {ORDINALS[c.a_in_b - 1]}; {b.label} is not in the top {TOP} of {name_a}."
    else:
        cross = f"Neither has the other's answer in its top {TOP}."
    return f"{head} {surer} {cross}"


# -- the check set: where two models' answers differ ---------------------------------------------


class _FoundOnce:
    """A finder's detections of one image, computed once for both models."""

    def __init__(self, finder: Any) -> None:
        self.finder, self.detections = finder, None

    def find_flags(self, image: Any) -> Any:
        if self.detections is None:
            self.detections = self.finder.find_flags(image)
        return self.detections


def classes_differ(names: tuple[str, str], classes_a: Sequence[str], classes_b: Sequence[str]) -> str | None:
    """The line that says two models cannot be compared (they know different classes), or None."""
    if set(classes_a) == set(classes_b):
        return None
    return (
        f"{names[0]} knows {len(classes_a)} classes and {names[1]} {len(classes_b)}, not the same ones: "
        "compare two runs trained on the same flags."
    )


def check_same_classes(a: Predictor, b: Predictor) -> None:
    """CompareError (one line) unless the two models know the same classes."""
    problem = classes_differ((a.label, b.label), a.class_names, b.class_names)
    if problem:
        raise CompareError(problem)


def _answers(predictor: Predictor, images: list[Image.Image], finder: Any, found: list[Any]) -> list[Prediction]:
    if finder is None:
        return predictor.predict(images, k=TOP)
    return [predictor.predict_photo(img, once, k=TOP)[0] for img, once in zip(images, found, strict=True)]


def disagreements(
    predictor_a: Predictor,
    predictor_b: Predictor,
    images: Sequence[str | os.PathLike[str]],
    labels: Sequence[str | Sequence[str]],
    finder: Any = None,
    *,
    framings: Sequence[str | None] | None = None,
    batch: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Both models on the same images; the images where their top-1 answers differ.

    ``labels``: per image its true class, or the flags it shows (an answer naming any of them is
    right, as :func:`~flagvision.inference.quality.evaluate_framings` counts). With ``finder``, each
    image is read as Predict reads it (:meth:`Predictor.predict_photo`: the crop of its best flag,
    the finder run once for both models). Returns JSON-ready data: ``n_images``, each model's
    ``right`` count over all images, ``rows`` (image, true, framing, each answer and confidence,
    ``right``: "a", "b", "both" or "neither") and, over those rows, ``differ_right`` per model.
    """
    check_same_classes(predictor_a, predictor_b)
    if len(labels) != len(images) or (framings is not None and len(framings) != len(images)):
        raise CompareError(f"{len(images)} images need as many labels (and framings), got {len(labels)}")
    from flagvision.data.images import open_image

    if not (predictor_a.finds_flags and predictor_b.finds_flags):
        finder = None  # a model trained on photos that are not flags reads the whole photo, as on Predict
    truths = [[t] if isinstance(t, str) else list(t) for t in labels]
    right = {"a": 0, "b": 0}
    rows: list[dict[str, Any]] = []
    for start in range(0, len(images), batch):
        chunk = [open_image(Path(p)).convert("RGB") for p in images[start : start + batch]]
        found = [_FoundOnce(finder) for _ in chunk]
        answers_a = _answers(predictor_a, chunk, finder, found)
        answers_b = _answers(predictor_b, chunk, finder, found)
        for i, (pa, pb) in enumerate(zip(answers_a, answers_b, strict=True), start):
            ok_a, ok_b = pa.label in truths[i], pb.label in truths[i]
            right["a"] += ok_a
            right["b"] += ok_b
            if pa.label != pb.label:
                rows.append(
                    {
                        "image": str(images[i]),
                        "true": " + ".join(truths[i]),
                        "framing": framings[i] if framings is not None else None,
                        "answer_a": pa.label,
                        "confidence_a": pa.confidence,
                        "answer_b": pb.label,
                        "confidence_b": pb.confidence,
                        "right": {(True, True): "both", (True, False): "a", (False, True): "b"}.get(
                            (ok_a, ok_b), "neither"
                        ),
                    }
                )
        if progress:
            progress(min(start + batch, len(images)), len(images))
    return {
        "model_a": predictor_a.label,
        "model_b": predictor_b.label,
        "finder": finder is not None,
        "n_images": len(images),
        "right": right,
        "differ_right": {
            "a": sum(r["right"] in ("a", "both") for r in rows),
            "b": sum(r["right"] in ("b", "both") for r in rows),
            "neither": sum(r["right"] == "neither" for r in rows),
        },
        "rows": rows,
    }


def checkset_disagreements(
    predictor_a: Predictor,
    predictor_b: Predictor,
    checkset_dir: str | os.PathLike[str],
    finder: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """:func:`disagreements` on a check set folder (:func:`flagvision.synthetic.checkset.make_checkset`):
    its images whose flag the models know, each with its flags and framing from the manifest."""
    from flagvision.synthetic.checkset import read_checkset_manifest

    check_same_classes(predictor_a, predictor_b)
    manifest = read_checkset_manifest(checkset_dir)
    known = set(predictor_a.class_names)
    entries = [e for e in manifest.get("images") or [] if e["class"] in known]
    if not entries:
        raise CompareError(
            f"{predictor_a.label} and {predictor_b.label} know none of the check set's flags "
            f"({', '.join(manifest.get('class_names') or []) or 'an older check set without its list of images'})."
        )
    root = Path(checkset_dir)
    report = disagreements(
        predictor_a,
        predictor_b,
        [root / e["file"] for e in entries],
        [e["flags"] for e in entries],
        finder,
        framings=[e.get("framing") for e in entries],
        progress=progress,
    )
    report["checkset"] = {k: manifest.get(k) for k in ("version", "seed", "per_class", "size")}
    return report


def disagreement_summary(report: dict[str, Any], names: tuple[str, str] | None = None) -> str:
    """ "12 of 240 check images differ; run #1 is right on 5, run #2 on 6 (neither on 1). Over all
    240: run #1 80.4 % right, run #2 84.2 %." ``names`` default to the models' labels."""
    name_a, name_b = names or (report["model_a"], report["model_b"])
    n, rows, dr, right = report["n_images"], report["rows"], report["differ_right"], report["right"]
    if not rows:
        head = f"The two models give the same answer on all {n} check images."
    else:
        neither = f" (neither on {dr['neither']})" if dr["neither"] else ""
        head = (
            f"{len(rows)} of {n} check images differ; {name_a} is right on {dr['a']}, {name_b} on {dr['b']}{neither}."
        )
    return f"{head} Over all {n}: {name_a} {right['a'] / n:.1%} right, {name_b} {right['b'] / n:.1%}."


# -- the workspace's check set, each comparison computed once -------------------------------------


def _files_key(folder: str | os.PathLike[str], names: Sequence[str]) -> list[Any]:
    out: list[Any] = [str(Path(folder).resolve())]
    for name in names:
        path = Path(folder) / name
        stat = path.stat() if path.is_file() else None
        out.append([name, stat.st_size, stat.st_mtime_ns] if stat else [name, None])
    return out


def comparison_path(
    ws: Workspace, checkpoint_a: str | os.PathLike[str], checkpoint_b: str | os.PathLike[str], with_finder: bool
) -> Path | None:
    """Where the comparison of two checkpoints on the workspace's check set is kept (it changes with
    either checkpoint, the finder and the check set); None while the workspace has no check set."""
    from flagvision.synthetic.checkset import checkset_dir, checkset_ready

    if not checkset_ready(ws):
        return None
    key = [
        COMPARISON_FORMAT,
        _files_key(checkpoint_a, (CARD_FILE, WEIGHTS_FILE)),
        _files_key(checkpoint_b, (CARD_FILE, WEIGHTS_FILE)),
        _files_key(ws.root / FINDER_DIR, (CARD_FILE, WEIGHTS_FILE)) if with_finder else None,
        _files_key(checkset_dir(ws), ("checkset.json",)),
    ]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
    return ws.root / COMPARISONS_DIR / f"{digest}.json"


def load_comparison(
    ws: Workspace, checkpoint_a: str | os.PathLike[str], checkpoint_b: str | os.PathLike[str], with_finder: bool
) -> dict[str, Any] | None:
    """The kept comparison of these two checkpoints, or None (not computed yet, or unreadable)."""
    path = comparison_path(ws, checkpoint_a, checkpoint_b, with_finder)
    if path is None or not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and report.get("format") == COMPARISON_FORMAT else None


def compare_on_checkset(
    ws: Workspace,
    predictor_a: Predictor,
    predictor_b: Predictor,
    finder: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """:func:`checkset_disagreements` on the workspace's check set (built first if missing,
    :func:`~flagvision.synthetic.checkset.ensure_checkset`), ``finder`` being the workspace's;
    kept under :data:`COMPARISONS_DIR` and read back the next time (:func:`load_comparison`)."""
    from flagvision.synthetic.checkset import ensure_checkset
    from flagvision.training.checkpoints import write_json_atomic

    check_same_classes(predictor_a, predictor_b)  # before drawing a check set for nothing
    folder = ensure_checkset(ws)
    with_finder = finder is not None
    kept = load_comparison(ws, predictor_a.source, predictor_b.source, with_finder)
    if kept is not None:
        return kept
    report = checkset_disagreements(predictor_a, predictor_b, folder, finder, progress)
    report["format"] = COMPARISON_FORMAT
    path = comparison_path(ws, predictor_a.source, predictor_b.source, with_finder)
    if path is not None and predictor_a.source and predictor_b.source:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, report)
    return report
