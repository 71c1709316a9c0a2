"""``python -m benchmarks.quality``: measure the default pipeline and write docs/QUALITY.md.

What a new user gets, measured as they would get it: in a fresh workspace, the first-start
commands are run and timed (``data builtin``: the built-in dataset, then the flag finder with its
defaults; ``train``: the default CNN preset on the built-in data), a check set is
drawn by the second route (:mod:`flagvision.synthetic.checkset`), and every check image is read
twice: the whole photo, and the default pipeline (:meth:`Predictor.predict_photo`: find → crop →
classify, as ``predict`` does). The document records, per framing, both accuracies, the finder's
box IoU, the commonest confusions, the built-in test split's accuracy, the timings, the machine
and the command; and how far the answering flag's confidence can be trusted (issue 16): the ECE
before and after the card's temperature, per framing, and what the "not sure" threshold does.

It also records the versions it was measured with (:func:`measured_with`: the generator, the
check set, the finder's format and defaults, the default preset); ``tests/test_quality_doc.py``
compares them with the code, so a change to any of them without measuring again fails the suite.

``--workspace DIR`` keeps the workspace (and reuses what it already holds, untimed): for iterating
on one part; the document is only complete from a fresh workspace.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "QUALITY.md"
MEASURED_WITH_RE = re.compile(r"<!-- measured-with: (\{.*?\}) -->", re.S)
# The acceptance figures (issue 14): framing -> the default pipeline's target accuracy.
TARGETS = {"closeup": 0.99, "scene_small": 0.90, "vertical": 0.85}
IOU_TARGET = 0.90  # share of check images whose best box has IoU >= 0.5
TEST_SPLIT_TARGET = 0.99
FIRST_START_TARGET_S = 360.0
# Issue 16's targets for confidence on the check set through the default pipeline.
ECE_TARGET = 0.05
ANSWERED_TARGET = 0.90  # share answered at the default threshold
ANSWERED_ACCURACY_TARGET = 0.98  # accuracy of the answered part

# What was tried on the way to these figures (kept with the command, so the document says it).
NOTES = (
    "- Built-in scenes (synth-3): 70 % over the photo-like backgrounds of `flagvision.synthetic.backgrounds`, "
    "drawn at the output resolution and upsampled (at the 2x supersampled size they cost 30-50 ms a scene, "
    "at 1x about 2 ms); stronger folds, highlights and cast shadows.",
    "- How the finder's answer is read (`flagvision.inference.predict.readings`), measured with "
    "`python -m benchmarks.finder_tuning` on this check set (seed 1234, 480 images) and confirmed on another "
    "(seed 4321, 240 images), the previous finder and CNN: baseline 79.6 / 81.7 %; crop margin 0.2 (0, 0.1, "
    "0.3: 78.5, 79.6, 79.4 %) 80.2 %; a box over 15 % of the photo also read whole, the surer reading "
    "answering, 80.6 % (close-ups 85.4 -> 90.6 %); nothing above the mask threshold -> the best fainter "
    "component above 0.15 (`faint_threshold`; 0.1, 0.2, 0.3: 82.7, 82.3, 81.0 %) 82.9 %; together 84.6 / 84.2 %. "
    "Tried and not kept: mask thresholds 0.3-0.6, `min_score` 0.5, `min_cells` 1-10, tall-box rules 1.0-1.4, "
    "the 13-crop search when nothing is found, splitting two-flag components, merging fragments.",
    "- The finder's training scenes, with those rules (seed 1234 / 4321, IoU >= 0.5 hits): the previous "
    "scenes 84.6 / 84.2 % (79.6 / 78.8 %); 35 % small flags and 35 % scenes of two or three flags 85.2 / 84.6 % "
    "(81.0 / 82.9 %); 2000 scenes x 12 epochs instead of 1200 x 20 (the same optimizer steps) 86.0 / 86.7 % "
    "(81.9 / 84.2 %); 35 % hung vertically (the default now) 87.7 / 86.7 % (83.1 / 86.2 %).",
    "- Session 7 (synth-4), each step measured on this check set and confirmed on seed 4321 (240 images), "
    "whole set: the previous pipeline 87.9 %. Close-ups that overflow the frame in the classifier's scenes "
    "(35 % of them, up to 1.45x the frame's width, a long flag zoomed until its height fills the frame; "
    "`flagvision.synthetic.cloth.CLOSEUP_SHARE`): close-ups given their true box 91.7 -> 100 %, the "
    "pipeline 89.8 %. A vertical box read upright from both sides of the flag (`readings`: a vertical "
    "flag's back turns upside down under a plain transpose) 90.8 / 92.5 %. The finder trained on 4000 scenes "
    "x 10 epochs (`FinderConfig.scenes`, `epochs`; 3000 x 12: 93.5 / 94.6 %, width 32: 91.9 / 92.5 %) 93.5 / "
    "94.2 %, IoU >= 0.5 hits 83.1 -> 90.6 % (seed 4321 86.3 -> 90.0 %). A flag filling the frame found as one "
    "box (`FinderConfig.fill_share` 0.3; 0.25, 0.4, 0.5 did no better on both) 93.8 / 95.0 %. Tried and not "
    "kept: a second finder pass on each box zoomed in (89.0 %), tall-box rules 0.7-0.9 (vertical up to +6 "
    "points, scenes and buildings -2 to -8), 14 classifier epochs instead of 10 (built-in test 98.3 -> "
    "98.4 %, check images 93.5 -> 91.9 %).",
    "- A box read less than 0.99 sure is answered by the whole photo when that is at least 0.99 sure "
    "(`predict.WHOLE_SURE`; 0.999: no gain): close-ups 96.9 -> 99.0 % (seed 4321: 91.7 -> 95.8 %), no other "
    "framing changed, 93.8 -> 94.2 % (95.0 -> 95.8 %).",
    "- Given the true box (the crop the pipeline would take, a vertical flag turned upright), the default CNN "
    "reads 100 % of the close-ups, 97.9 % of the small flags, 100 % on buildings, 92.7 % of the vertical flags "
    "and 99.0 % of the two-flag scenes: what the close-ups miss is the finder's reading of a frame-filling "
    "flag (a shield or a stripe boxed alone, before `WHOLE_SURE`), not the classifier.",
    "- The default 'not sure' threshold (`CONFIDENCE_THRESHOLD`, 0.8 before) is 0.95: of this table's steps, the "
    "highest that leaves over 90 % answered on both check sets (session 7's CNN, trained at a constant rate; "
    "seed 1234 / 4321: 92.1 / 93.8 % answered, 97.1 / "
    "98.2 % right; 0.97: 90.6 / 92.1 % at 97.5 / 98.6 %, too near the floor). Ranking the answers by other "
    "signals did not reach 98 % at 90 % answered (before `WHOLE_SURE`): the finder's score, the probability "
    "times the score (to the power 0.25-1), the margin over the second class, the mean of the crop and its "
    "mirror image: 95.6-97.9 % against 97.7 % for the calibrated probability.",
    "- Session 8: the classifier's learning rate falls along a cosine to zero over the run "
    "(`RunConfig.lr_schedule`), from 9e-4 (the reference study's 1.8e-4 at a constant rate before). Each run "
    "trained on session 7's built-in data and read through its finder; built-in test split, then the check "
    "images of seed 1234 / 4321: constant 1.8e-4 98.3 %, 94.2 / 95.8 % (random seed 1: 98.8 %, 93.5 / 94.2 %); "
    "cosine from 1.8e-4 98.4 %, 93.5 / 94.2 %; from 3.6e-4 98.7 %, 94.2 / 95.4 %; from 5.4e-4 99.1 %, 94.4 / "
    "95.8 % (constant 5.4e-4: 98.7 %, 93.3 / 94.2 %); from 9e-4 99.0 %, 94.6 / 95.8 % (random seed 1: 99.2 %, "
    "94.8 / 95.8 %). At 0.95 the cosine runs answer 94.6 / 93.3 % (seed 1: 94.4 / 93.8 %) of the check images, "
    "97.4 / 98.7 % right (96.2 / 98.7 %); a higher threshold leaves the accuracy of the answered part where it "
    "is on seed 1234 (0.99: 91.0 % answered, 97.5 % right): its misses are sure ones, at 0.95 or more 6 vertical "
    "flags, 4 on buildings, one small flag and one of two flags.",
)


def measured_with() -> dict[str, Any]:
    """The versions and defaults the figures depend on (what a re-measurement is needed for)."""
    from flagvision.config import CONFIDENCE_THRESHOLD, DataConfig, HyperParams, RunConfig
    from flagvision.models.finder import FINDER_FORMAT, FinderConfig
    from flagvision.synthetic.checkset import CHECKSET_VERSION
    from flagvision.synthetic.scenes import GENERATOR_VERSION, SynthConfig

    finder = FinderConfig().to_dict()
    finder.pop("workers")  # how fast, never what
    finder.pop("threads")
    synth = SynthConfig().to_dict()
    synth.pop("workers")
    data = DataConfig().to_dict()
    data.pop("path", None)
    return {
        "generator": GENERATOR_VERSION,
        "synth_config": synth,
        "checkset": CHECKSET_VERSION,
        "finder_format": FINDER_FORMAT,
        "finder_config": finder,
        "preset": HyperParams().to_dict(),
        "lr_schedule": RunConfig().lr_schedule,
        "data_config": data,
        "confidence_threshold": CONFIDENCE_THRESHOLD,
    }


def doc_head(title: str, command: str, measured: dict[str, Any]) -> list[str]:
    """The first lines of a generated document: its title, which command writes it, and the
    ``measured-with`` record (:func:`recorded_with` reads it back)."""
    return [
        f"# {title}",
        "",
        f"<!-- generated by `{command}`; do not edit by hand -->",
        f"<!-- measured-with: {json.dumps(measured, sort_keys=True)} -->",
    ]


def preset_phrase(measured: dict[str, Any]) -> str:
    """The default CNN preset a ``measured-with`` record was measured with, in words (a record from before
    the learning-rate schedule existed was measured at a constant rate)."""
    hp = measured["preset"]
    return (
        f"the default preset ({hp['optimizer']}, learning rate {hp['lr']:g} on a "
        f"{measured.get('lr_schedule', 'constant')} schedule, batch {hp['batch_size']}, {hp['epochs']} epochs)"
    )


def recorded_with(doc: str) -> dict[str, Any] | None:
    """The ``measured-with`` record of a QUALITY.md text, or None when it has none."""
    found = MEASURED_WITH_RE.search(doc)
    return json.loads(found.group(1)) if found else None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(ws: Path, *args: str) -> tuple[float, float, str]:
    """Run one CLI command as a user does; its wall time, its CPU time (all its processes) and stdout."""
    cmd = [sys.executable, "-m", "flagvision", "--workspace", str(ws), *args]
    print("$", shlex.join(["python", "-m", "flagvision", *cmd[3:]]), flush=True)
    start, cpu = time.perf_counter(), _children_cpu()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{shlex.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return wall, _children_cpu() - cpu, out.stdout


def _latest_run(ws: Path) -> Path | None:
    from flagvision.workspace import RunPaths, Workspace

    runs = sorted(
        (p for p in Workspace(ws).runs_dir.iterdir() if RunPaths(p).checkpoint.is_dir()), key=os.path.getmtime
    )
    return runs[-1] if runs else None


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _verdict(value: float | None, target: float) -> str:
    if value is None:
        return "–"
    if value >= target:
        return "met"
    gap = 100 * (target - value)
    return f"missed by {gap:.1f} points" if gap >= 0.05 else f"missed by {gap:.2f} points"  # never "by 0.0"


def _machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    versions = f"Linux {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}"
    return f"{cpu}, {os.cpu_count()} cores, {versions}"


class _Found:
    """A finder that answers with detections found before: both readings of a photo share one search."""

    def __init__(self, detections: list[Any]) -> None:
        self.detections = detections

    def find_flags(self, image: Any) -> list[Any]:
        return self.detections


def read_checkset(predictor: Any, finder: Any, check_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:func:`evaluate_framings` of the default pipeline (``Predictor.predict_photo(photo, finder, k=1)``,
    as ``predict`` runs it), and per check image (in the manifest's order) the answering flag's class
    probabilities calibrated (the card's temperature) and before (T = 1), read from the same boxes."""
    import copy

    import torch

    from flagvision.inference.quality import evaluate_framings

    uncalibrated = copy.copy(predictor)
    uncalibrated.temperature = 1.0
    k = len(predictor.class_names)
    readings: list[dict[str, Any]] = []

    def as_vector(top: list[tuple[str, float]]) -> list[float]:
        probs = dict(top)
        return [probs[name] for name in predictor.class_names]

    def read_photo(photo):
        found = _Found(finder.find_flags(photo))
        best = predictor.predict_photo(photo, found, k=k)[0]
        plain = uncalibrated.predict_photo(photo, found, k=k)[0]
        readings.append({"label": best.label, "after": as_vector(best.top), "before": as_vector(plain.top)})
        return best.label, best.box

    with torch.no_grad():
        results = evaluate_framings(predictor, check_dir, finder, read_photo=read_photo)
    return results, readings


def checkset_calibration(predictor: Any, check_dir: Path, readings: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`flagvision.inference.quality.pipeline_calibration` of :func:`read_checkset`'s readings."""
    from flagvision.config import CONFIDENCE_THRESHOLD
    from flagvision.inference.quality import pipeline_calibration
    from flagvision.synthetic.checkset import read_checkset_manifest

    entries = read_checkset_manifest(check_dir)["images"]
    out = pipeline_calibration(
        [r["before"] for r in readings],
        [r["after"] for r in readings],
        [e["flags"] for e in entries],
        [e["class"] for e in entries],
        [e["framing"] for e in entries],
        predictor.class_names,
        CONFIDENCE_THRESHOLD,
    )
    return {**out, "temperature": predictor.temperature}


def per_class_accuracy(check_dir: Path, readings: list[dict[str, Any]]) -> dict[str, float]:
    """Per flag (the check image's class), the share of its check images the default pipeline reads right."""
    from flagvision.synthetic.checkset import read_checkset_manifest

    hits: dict[str, list[bool]] = {}
    for entry, reading in zip(read_checkset_manifest(check_dir)["images"], readings, strict=True):
        hits.setdefault(entry["class"], []).append(reading["label"] in entry["flags"])
    return {name: sum(v) / len(v) for name, v in hits.items()}


def _held_out_calibration(evaluation: dict[str, Any]) -> dict[str, Any] | None:
    cal = evaluation.get("calibration")
    if not cal:
        return None
    return {
        "n": evaluation.get("n_images"),
        "temperature": cal.get("temperature"),
        "ece_before": cal.get("ece_before"),
        "ece_after": cal.get("ece_after"),
        "answered": (cal.get("selective") or {}).get("coverage"),
        "answered_accuracy": (cal.get("selective") or {}).get("accuracy"),
        "threshold": (cal.get("selective") or {}).get("threshold"),
    }


def _ece(x: float | None) -> str:
    return "–" if x is None or x != x else f"{x:.3f}"


def _render_calibration(r: dict[str, Any]) -> list[str]:
    """The section "Calibration and 'not sure' (issue 16)" of docs/QUALITY.md."""
    cal = r["calibration"]
    t, o = cal["threshold"], cal["overall"]
    lines = [
        "",
        "## Calibration and 'not sure' (issue 16)",
        "",
        "The confidence of the answering flag (the default pipeline's answer on each check image): its class "
        f"probabilities with the card's temperature (T = {cal['temperature']:.3f}, fitted on the held-out split at "
        "the end of training; *after*) and with T = 1 (*before*), read from the same boxes. ECE: "
        f"`flagvision.training.calibration.expected_calibration_error`, {cal['bins']} equal-width bins. Below the "
        f'default threshold (`CONFIDENCE_THRESHOLD` = {t}) the answer is "not sure"; *answered* is the share '
        "at or above it, and its accuracy the share of those answers that are right.",
        "",
        "| figure | measured | target | verdict |",
        "|---|---:|---:|---|",
    ]
    ece = o["ece_after"]
    met = "–" if ece is None or ece != ece else "met" if ece <= ECE_TARGET else f"missed by {ece - ECE_TARGET:.3f}"
    lines.append(f"| ECE after calibration, all check images | {_ece(ece)} | ≤ {ECE_TARGET:.2f} | {met} |")
    lines.append(
        f"| answered at {t} | {_pct(o['answered'])} | ≥ {_pct(ANSWERED_TARGET)} "
        f"| {_verdict(o['answered'], ANSWERED_TARGET)} |"
    )
    lines.append(
        f"| accuracy of the answered part at {t} | {_pct(o['answered_accuracy'])} | ≥ {_pct(ANSWERED_ACCURACY_TARGET)} "
        f"| {_verdict(o['answered_accuracy'], ANSWERED_ACCURACY_TARGET)} |"
    )
    lines += [
        "",
        "| images | n | accuracy | ECE before | ECE after | answered at " + f"{t} | accuracy of answered |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    held = r.get("held_out_calibration")
    if held:
        # the run's own threshold, when it was trained under another default
        at = "" if held.get("threshold") in (None, t) else f" (at {held['threshold']})"
        lines.append(
            f"| built-in held-out split (whole images, the run's evaluation.json) | {held['n']} "
            f"| {_pct(r.get('test_split'))} | {_ece(held['ece_before'])} | {_ece(held['ece_after'])} "
            f"| {_pct(held['answered'])}{at} | {_pct(held['answered_accuracy'])}{at} |"
        )
    else:
        lines.append(
            "| built-in held-out split | – | – | not in the run's evaluation.json (an older run) | – | – | – |"
        )
    for name, s in [*cal["framings"].items(), ("**all check images**", o)]:
        lines.append(
            f"| {name} | {s['n']} | {_pct(s['accuracy'])} | {_ece(s['ece_before'])} | {_ece(s['ece_after'])} "
            f"| {_pct(s['answered'])} | {_pct(s['answered_accuracy'])} |"
        )
    lines += [
        "",
        "What each threshold does to the calibrated answers on all check images (the default in bold):",
        "",
        "| threshold | answered | accuracy of answered |",
        "|---:|---:|---:|",
    ]
    for row in cal["thresholds"]:
        mark = "**" if abs(row["threshold"] - t) < 1e-9 else ""
        lines.append(f"| {mark}{row['threshold']:.2f}{mark} | {_pct(row['coverage'])} | {_pct(row['accuracy'])} |")
    lines += [
        "",
        "Risk-coverage: answering only the surest share of the check images (calibrated confidence):",
        "",
        "| surest share answered | threshold it takes | accuracy of answered |",
        "|---:|---:|---:|",
    ]
    for row in cal["risk_coverage"]:
        lines.append(f"| {_pct(row['share'])} | {row['threshold']:.3f} | {_pct(row['accuracy'])} |")
    return lines


def render(r: dict[str, Any]) -> str:
    """The Markdown of docs/QUALITY.md from the measured results ``r`` (see :func:`main`)."""
    fr = r["framings"]
    lines = [
        *doc_head("Quality of the default pipeline", "python -m benchmarks.quality", r["measured_with"]),
        "",
        "What a new user gets: the built-in data, the flag finder with its defaults and the default CNN preset, "
        "each built by its first-start command in a fresh workspace, then read on a check set drawn by a second "
        "route (`flagvision.synthetic.checkset`, which shares only the flag definitions with the training data's "
        "generator). *Whole photo*: the photo squashed to the network's input. *Default pipeline*: "
        "`Predictor.predict_photo`, as `predict` runs it: the finder's boxes, the crop around each "
        "(tall boxes read upright, a box covering most of the photo reads the whole photo), the best-scoring flag "
        "answers; no flag found: the whole photo. An image counts as right when the answer is one of the flags "
        "it shows.",
        "",
        f"- **Measured:** {r['date']} on {r['machine']}; load average {r['load_before']:.1f} before, "
        f"{r['load_after']:.1f} after (other work shared the machine), torch threads: {r['threads']}.",
        f"- **Command:** `{r['command']}`",
        f"- **Versions:** generator `{r['measured_with']['generator']}`, check set `{r['measured_with']['checkset']}` "
        f"({r['checkset_images']} images, {r['per_class']} per class, random seed {r['checkset_seed']}), finder "
        f"`{r['measured_with']['finder_format']}`, {preset_phrase(r['measured_with'])}.",
        "",
        "## Acceptance figures (issue 14)",
        "",
        "| figure | measured | target | verdict |",
        "|---|---:|---:|---|",
    ]
    for framing, target in TARGETS.items():
        value = fr.get(framing, {}).get("finder")
        lines.append(f"| {framing}, default pipeline | {_pct(value)} | ≥ {_pct(target)} | {_verdict(value, target)} |")
    iou = r["overall"].get("iou_hit")
    lines.append(
        f"| finder IoU ≥ 0.5, all check images | {_pct(iou)} | ≥ {_pct(IOU_TARGET)} | {_verdict(iou, IOU_TARGET)} |"
    )
    acc = r.get("test_split")
    lines.append(
        f"| built-in test split (default CNN) | {_pct(acc)} | ≥ {_pct(TEST_SPLIT_TARGET)} "
        f"| {_verdict(acc, TEST_SPLIT_TARGET)} |"
    )
    total = r.get("first_start_s")
    cpu_total = r.get("first_start_cpu_s")
    if cpu_total is not None:
        quiet = cpu_total / 2
        met = "met" if quiet <= FIRST_START_TARGET_S else f"missed by {quiet - FIRST_START_TARGET_S:.0f} s"
        lines.append(
            f"| first start, CPU time / 2 (a quiet 2-core machine) | {quiet:.0f} s | ≤ {FIRST_START_TARGET_S:.0f} s "
            f"| {met} |"
        )
    if total is None:
        lines.append(
            f"| first start (data + finder + CNN) | not timed (reused workspace) | ≤ {FIRST_START_TARGET_S:.0f} s | – |"
        )
    else:
        met = "met" if total <= FIRST_START_TARGET_S else f"missed by {total - FIRST_START_TARGET_S:.0f} s"
        lines.append(
            f"| first start (data + finder + CNN), wall | {total:.0f} s | ≤ {FIRST_START_TARGET_S:.0f} s | {met} |"
        )
    lines += [
        "",
        "## The time to build everything on first start",
        "",
        "Wall time as measured, and the CPU time of the command's processes: on a machine shared with other work "
        "the wall time is longer than a user's, and CPU time / 2 is about what a quiet 2-core machine takes "
        "(every step keeps both cores busy).",
        "",
        "| step | command | wall time | CPU time | load average after |",
        "|---|---|---:|---:|---:|",
    ]
    for step in r["steps"]:
        wall = "not timed (reused workspace)" if step["seconds"] is None else f"{step['seconds']:.0f} s"
        cpu = f"{step['cpu_seconds']:.0f} s" if step.get("cpu_seconds") is not None else ""
        load = f"{step['load']:.1f}" if step.get("load") is not None else ""
        command = f"`{step['command']}`" if step["command"] else ""
        lines.append(f"| {step['name']} | {command} | {wall} | {cpu} | {load} |")
    lines += [
        "",
        "## Per framing",
        "",
        "| framing | images | whole photo | default pipeline | finder IoU (mean) | IoU ≥ 0.5 | no flag found |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for framing, s in [*fr.items(), ("**all**", r["overall"])]:
        iou_mean = "–" if s.get("iou_mean") is None else f"{s['iou_mean']:.2f}"
        lines.append(
            f"| {framing} | {s['n']} | {_pct(s['whole_photo'])} | {_pct(s.get('finder'))} | {iou_mean} "
            f"| {_pct(s.get('iou_hit'))} | {s.get('not_found', '–')} |"
        )
    lines += ["", "## Commonest confusions", ""]
    if r["confusions"]:
        lines += ["| route | true flag | answered | images |", "|---|---|---|---:|"]
        lines += [f"| {c['route']} | {c['true']} | {c['predicted']} | {c['count']} |" for c in r["confusions"]]
    else:
        lines.append("none.")
    if r.get("calibration"):
        lines += _render_calibration(r)
    if r.get("notes"):
        lines += ["", "## Notes", "", *r["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", help="keep and reuse this workspace (default: a fresh temporary one)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where to write the document (default docs/QUALITY.md)")
    parser.add_argument("--per-class", type=int, default=20, help="check images per class (default 20)")
    parser.add_argument("--checkset-seed", type=int, default=1234, help="the check set's random seed (default 1234)")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)

    from flagvision.inference.predict import Predictor
    from flagvision.models.finder import Finder, finder_ready
    from flagvision.synthetic.builtin import builtin_ready
    from flagvision.synthetic.checkset import make_checkset
    from flagvision.workspace import Workspace

    tmp = tempfile.TemporaryDirectory(prefix="fv-quality-")
    ws_path = Path(args.workspace) if args.workspace else Path(tmp.name) / "ws"
    ws_path.mkdir(parents=True, exist_ok=True)
    ws = Workspace.open(ws_path)
    load_before = os.getloadavg()[0]
    steps: list[dict[str, Any]] = []

    # The timings of the workspace's first build, kept in it, so that a reused workspace reports them.
    timings_file = ws_path / "quality-first-start.json"
    first_build = json.loads(timings_file.read_text(encoding="utf-8")) if timings_file.is_file() else {}

    def step(name: str, done: bool, *cmd: str) -> str:
        shown = shlex.join(["python", "-m", "flagvision", *cmd])
        if done:
            kept = first_build.get(name) or {"name": name, "command": shown, "seconds": None}
            steps.append({k: v for k, v in kept.items() if k != "stdout"})
            return str(kept.get("stdout", ""))
        wall, cpu, out = _run(ws_path, *cmd)
        steps.append({"name": name, "command": shown, "seconds": wall, "cpu_seconds": cpu, "load": os.getloadavg()[0]})
        first_build[name] = {**steps[-1], "stdout": out[-4000:]}
        timings_file.write_text(json.dumps(first_build, indent=2) + "\n", encoding="utf-8")
        print(f"  {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
        return out

    built = step("built-in dataset and flag finder", builtin_ready(ws) and finder_ready(ws), "data", "builtin")
    for name, pattern in (("  of which the dataset", r"built-in dataset ready at .* \((\d+)s\)"),
                          ("  of which the flag finder", r"flag finder built at .* \((\d+)s\)")):  # fmt: skip
        found = re.search(pattern, built)
        if found:
            steps.append({"name": name, "command": "", "seconds": float(found.group(1)), "part": True})
    step("default CNN", _latest_run(ws_path) is not None, "train", "--name", "default")
    run = _latest_run(ws_path)
    assert run is not None
    from flagvision.workspace import RunPaths

    evaluation = json.loads(RunPaths(run).evaluation.read_text())
    predictor = Predictor.from_checkpoint(RunPaths(run).checkpoint)
    finder = Finder.from_workspace(ws)

    check_dir = Path(tmp.name) / "checkset"
    print(f"check set: {args.per_class} per class…", flush=True)
    make_checkset(check_dir, per_class=args.per_class, seed=args.checkset_seed, overwrite=True)

    print("reading the check set…", flush=True)
    results, readings = read_checkset(predictor, finder, check_dir)
    calibration = checkset_calibration(predictor, check_dir, readings)
    timed = [s["seconds"] for s in steps if not s.get("part")]
    cpus = [s.get("cpu_seconds") for s in steps if not s.get("part")]
    doc = {
        **results,
        "measured_with": measured_with(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": _machine(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "threads": os.environ.get("OMP_NUM_THREADS", "torch's default (all cores)"),
        "command": shlex.join(["python", "-m", "benchmarks.quality", *(argv if argv is not None else sys.argv[1:])]),
        "per_class": args.per_class,
        "checkset_seed": args.checkset_seed,
        "checkset_images": results["overall"]["n"],
        "steps": steps,
        "first_start_s": None if None in timed else sum(t for t in timed if t is not None),
        "first_start_cpu_s": None if None in cpus else sum(c for c in cpus if c is not None),
        "test_split": evaluation.get("accuracy"),
        "calibration": calibration,
        "held_out_calibration": _held_out_calibration(evaluation),
        "notes": list(NOTES),
    }
    write_document(doc, render, args.out, args.json)
    return 0


def write_document(
    doc: dict[str, Any], render_doc: Callable[[dict[str, Any]], str], out: str, json_path: str | None
) -> None:
    """Write the raw results (``json_path``, if given) and the rendered document, then print it."""
    if json_path:
        Path(json_path).write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_doc(doc)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
