"""``python -m benchmarks.input_size``: the default CNN preset at several input sizes; writes docs/INPUT_SIZE.md.

Issue 16, item 3: the default preset trained on the built-in data at each input size (40, 48, 64,
80 px: the built-in images are 80 px), each read on the check set through the workspace's flag
finder exactly as docs/QUALITY.md reads it (:func:`benchmarks.quality.read_checkset`:
``Predictor.predict_photo(photo, finder, k=1)``): accuracy per framing, per class for the flags
with emblems, the built-in test split, the training time and the accuracy per training minute.
The default is the size with the best accuracy per training minute among those whose first start
stays within :data:`benchmarks.quality.FIRST_START_TARGET_S`.

``--runs 40=1 64=2``: runs already trained in ``--workspace`` (size=run id); ``--train 48 80``:
train those sizes first (``python -m flagvision train --image-size N``, timed: wall time and the CPU
time of its processes). The timings are kept in the workspace's ``input-size-timings.json`` by run
id, so a later call reports them; a run without a timing is shown as not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.quality import (
    FIRST_START_TARGET_S,
    _machine,
    _pct,
    _run,
    checkset_calibration,
    doc_head,
    measured_with,
    per_class_accuracy,
    preset_phrase,
    read_checkset,
    recorded_with,
    write_document,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "INPUT_SIZE.md"
TIMINGS_FILE = "input-size-timings.json"
EMBLEM_FLAGS = ("Croatia", "Slovakia", "Slovenia", "Spain", "Malta", "South Cyprus")
FRAMING_COLUMNS = ("closeup", "scene_small", "building", "vertical", "two_flags")
# The first-start step before the CNN (``data builtin``: dataset + finder) when the workspace has no timing.
DATA_STEP = "built-in dataset and flag finder"
TABLE_HEAD = (
    "| input size | run | built-in test split | closeup | scene_small | building | vertical | two_flags "
    "| all check images | emblem flags | ECE after (T) | training wall | training CPU "
    "| all check images per CPU minute |"
)
# How these figures were taken, and what else was seen (kept with the command, so the document says it).
NOTES: tuple[str, ...] = (
    "- Session 8 (generator synth-4, the finder of 4000 scenes, the preset's learning rate falling along a "
    "cosine from 9e-4): the 40 px run is docs/QUALITY.md's default CNN (`train --name default`, timed by "
    "`python -m benchmarks.quality` on a fresh workspace, load average 2.4 before); 48, 64 and 80 px were trained "
    "one after another in that workspace by `--train 48 64 80`, with torch's default threads (both cores); the "
    "48 px training and the first minute of the 64 px one shared the machine with check scripts and tests, the "
    "rest ran on a quiet one.",
    "- The CPU time grows faster than the pixels: 48, 64 and 80 px cost 1.8, 3.2 and 6.8 times the 40 px "
    "training (session 7, constant rate: 1.7, 3.2 and 5.6). The first fully connected layer reads the 96 feature "
    "maps of side 7, 9, 13 and 17 px: 1.8, 3.0, 6.2 and 10.7 million weights.",
    "- 40 px is the most accurate on the check set again, if only just: against it, 48, 64 and 80 px lose 2, 3 "
    "and 2 images net of 480. Larger inputs help the built-in test split a little (99.0 % at 40 px, 99.3-99.5 % "
    "above); the emblem flags are within a few images of each other at every size. The check set's misses are "
    "mostly boxes (the same finder for every size), which a larger input cannot mend.",
    "- Session 7's table (the same data and finder, the reference study's constant 1.8e-4) chose 40 px too: 94.2 % "
    "of the check images, 92.1-92.9 % above it; session 6's (synth-3, the finder of 2000 scenes) as well: 78.5 % "
    "against 79.0-80.0 %.",
)
__all__ = ["main", "render", "choose", "recorded_with", "TABLE_HEAD"]


def _parse_runs(items: list[str]) -> dict[int, str]:
    runs: dict[int, str] = {}
    for item in items:
        size, sep, run = item.partition("=")
        if not sep or not size.isdigit() or not run:
            raise SystemExit(f"--runs takes SIZE=RUN_ID pairs such as 40=1, got {item!r}")
        runs[int(size)] = run
    return runs


def choose(rows: list[dict[str, Any]], data_cpu_s: float | None) -> tuple[int | None, str]:
    """The input size with the best check-set accuracy per CPU minute of training among the sizes whose
    first start stays within the target; with the reason in words. None when no size was timed.

    First start on a quiet 2-core machine: half the CPU time of the data step and of the CNN's
    training (each keeps both cores busy: torch's default threads, as a user's first start runs;
    docs/QUALITY.md's "CPU time / 2")."""
    timed = [r for r in rows if r.get("cpu_seconds") and r.get("accuracy") is not None]
    if not timed:
        return None, "no size was timed"
    for r in timed:
        r["per_minute"] = r["accuracy"] / (r["cpu_seconds"] / 60)
        r["first_start_s"] = None if data_cpu_s is None else (data_cpu_s + r["cpu_seconds"]) / 2
    within = [r for r in timed if r["first_start_s"] is None or r["first_start_s"] <= FIRST_START_TARGET_S]
    pool = within or timed
    best = max(pool, key=lambda r: r["per_minute"])
    most = max(timed, key=lambda r: r["accuracy"])
    why = (
        f"{best['size']} px reads {_pct(best['accuracy'])} of the check images for {best['cpu_seconds'] / 60:.1f} "
        f"CPU minutes of training: {100 * best['per_minute']:.1f} points per CPU minute, the best of the sizes"
    )
    why += " whose first start stays within the target" if within else " (none keeps the first start within the target)"
    if most is not best:
        extra = most["cpu_seconds"] - best["cpu_seconds"]
        gain = 100 * (most["accuracy"] - best["accuracy"])
        why += (
            f". The most accurate, {most['size']} px ({_pct(most['accuracy'])}), gains {gain:.1f} points for "
            f"{extra / 60:+.1f} CPU minutes"
        )
    return best["size"], why + "."


def _s(x: float | None, unit: str = "s") -> str:
    return "not timed" if x is None else f"{x:.0f} {unit}"


def render(r: dict[str, Any]) -> str:
    """The Markdown of docs/INPUT_SIZE.md from the measured results ``r`` (see :func:`main`)."""
    rows = r["rows"]
    lines = [
        *doc_head("Input size of the default CNN (issue 16)", "python -m benchmarks.input_size", r["measured_with"]),
        f"<!-- chosen: {r['chosen']} -->",
        "",
        f"The default CNN, {preset_phrase(r['measured_with'])}, trained on the built-in data (80 px images) "
        "at each input size, then read on the check set through the workspace's flag finder, exactly as "
        "docs/QUALITY.md reads it (`Predictor.predict_photo(photo, finder, k=1)`: the finder's crops at the "
        "network's input size). *Emblem flags*: the check images of " + ", ".join(EMBLEM_FLAGS) + " together. "
        "Training time: the `train` command's wall time and the CPU time of its processes; the accuracy per "
        "training minute divides the accuracy on all check images by the CPU minutes.",
        "",
        f"- **Measured:** {r['date']} on {r['machine']}; load average {r['load_before']:.1f} before, "
        f"{r['load_after']:.1f} after (other work shared the machine).",
        f"- **Command:** `{r['command']}`",
        f"- **Versions:** generator `{r['measured_with']['generator']}`, check set `{r['measured_with']['checkset']}` "
        f"({r['checkset_images']} images, {r['per_class']} per class, random seed {r['checkset_seed']}), finder "
        f"`{r['measured_with']['finder_format']}`.",
        "",
        "## The table",
        "",
        TABLE_HEAD,
        "|" + "---:|" * TABLE_HEAD.count(" | ") + "---:|",
    ]
    for row in rows:
        fr = row["framings"]
        cal = row["calibration"]["overall"]
        per_minute = row.get("per_minute")
        lines.append(
            f"| {row['size']} px | {row['run']} | {_pct(row['test_split'])} | "
            + " | ".join(_pct(fr.get(f, {}).get("finder")) for f in FRAMING_COLUMNS)
            + f" | {_pct(row['accuracy'])} | {_pct(row['emblem'])} "
            f"| {cal['ece_after']:.3f} ({row['calibration']['temperature']:.2f}) "
            f"| {_s(row.get('seconds'))} | {_s(row.get('cpu_seconds'))} "
            f"| {'–' if per_minute is None else f'{100 * per_minute:.1f} points'} |"
        )
    lines += [
        "",
        "## Flags with emblems, per flag (all framings, default pipeline)",
        "",
        "| input size | " + " | ".join(EMBLEM_FLAGS) + " |",
        "|---:|" + "---:|" * len(EMBLEM_FLAGS),
    ]
    for row in rows:
        lines.append(f"| {row['size']} px | " + " | ".join(_pct(row["per_class"].get(f)) for f in EMBLEM_FLAGS) + " |")
    base = rows[0]
    if len(rows) > 1 and all(row.get("hits") for row in rows):
        lines += [
            "",
            f"## Image by image against {base['size']} px",
            "",
            f"The same {len(base['hits'])} check images: a difference of a point is about "
            f"{len(base['hits']) / 100:.0f} images; the net change is what the accuracies differ by.",
            "",
            f"| input size | right here, wrong at {base['size']} px | wrong here, right at {base['size']} px | net |",
            "|---:|---:|---:|---:|",
        ]
        for row in rows[1:]:
            gained = sum(h and not b for h, b in zip(row["hits"], base["hits"], strict=True))
            lost = sum(b and not h for h, b in zip(row["hits"], base["hits"], strict=True))
            lines.append(f"| {row['size']} px | {gained} | {lost} | {gained - lost:+d} |")
    lines += [
        "",
        "## Training time",
        "",
        "| input size | command | wall time | CPU time | load average after | first start on a quiet machine |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        command = f"`{row['command']}`" if row.get("command") else ""
        load = f"{row['load']:.1f}" if row.get("load") is not None else ""
        first = row.get("first_start_s")
        lines.append(
            f"| {row['size']} px | {command} | {_s(row.get('seconds'))} | {_s(row.get('cpu_seconds'))} | {load} "
            f"| {_s(first)} |"
        )
    data_cpu = r.get("data_cpu_s")
    lines += [
        "",
        f"First start on a quiet 2-core machine: half the CPU time of the data step (`data builtin`: dataset and "
        f"finder, {_s(data_cpu)} CPU) and of the CNN's training, as docs/QUALITY.md counts it (each keeps both "
        f"cores busy with torch's default threads); the target is {FIRST_START_TARGET_S:.0f} s.",
        "",
        "## Decision",
        "",
        f"**Default input size: {r['chosen']} px.** {r['why']}",
    ]
    if r.get("notes"):
        lines += ["", "## Notes", "", *r["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.input_size", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", required=True, help="the workspace with the built-in data, finder and runs")
    parser.add_argument("--runs", nargs="*", default=[], help="SIZE=RUN_ID of runs already trained, e.g. 40=1")
    parser.add_argument("--train", nargs="*", type=int, default=[], help="input sizes to train first, e.g. 48 80")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the document (default docs/INPUT_SIZE.md)")
    parser.add_argument("--per-class", type=int, default=20, help="check images per class (default 20)")
    parser.add_argument("--checkset-seed", type=int, default=1234, help="the check set's random seed (default 1234)")
    parser.add_argument("--checkset", help="reuse this check set folder (written there if missing)")
    parser.add_argument("--note", action="append", default=[], help="a line for the Notes section")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)

    from flagvision.inference.predict import Predictor
    from flagvision.models.finder import Finder
    from flagvision.synthetic.checkset import make_checkset
    from flagvision.workspace import RunPaths, Workspace

    ws_path = Path(args.workspace)
    ws = Workspace.open(ws_path)
    load_before = os.getloadavg()[0]
    timings_file = ws_path / TIMINGS_FILE
    timings: dict[str, Any] = json.loads(timings_file.read_text(encoding="utf-8")) if timings_file.is_file() else {}
    runs = _parse_runs(args.runs)
    for size in args.train:
        cmd = ["train", "--name", f"input-{size}", "--image-size", str(size)]
        wall, cpu, stdout = _run(ws_path, *cmd)
        run_id = stdout.split(":", 1)[0].removeprefix("run ").strip()
        shown = shlex.join(["python", "-m", "flagvision", *cmd])
        timings[run_id] = {"command": shown, "seconds": wall, "cpu_seconds": cpu, "load": os.getloadavg()[0]}
        timings_file.write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
        runs[size] = run_id
        print(f"  {size} px: run {run_id}, {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
    if not runs:
        raise SystemExit("nothing to measure: give --runs SIZE=RUN_ID or --train SIZE")

    tmp = tempfile.TemporaryDirectory(prefix="fv-input-size-")
    check_dir = Path(args.checkset) if args.checkset else Path(tmp.name) / "checkset"
    if not (check_dir / "checkset.json").is_file():
        print(f"check set: {args.per_class} per class…", flush=True)
        make_checkset(check_dir, per_class=args.per_class, seed=args.checkset_seed, overwrite=True)
    finder = Finder.from_workspace(ws)
    rows = []
    for size, run_id in sorted(runs.items()):
        paths = RunPaths(ws.runs_dir / run_id)
        predictor = Predictor.from_checkpoint(paths.checkpoint)
        if predictor.size != size:
            raise SystemExit(f"run {run_id} reads {predictor.size} px, not {size} px")
        print(f"reading the check set with run {run_id} ({size} px)…", flush=True)
        results, readings = read_checkset(predictor, finder, check_dir)
        per_class = per_class_accuracy(check_dir, readings)
        emblem = [r["label"] in e["flags"] for r, e in zip(readings, _entries(check_dir), strict=True)
                  if e["class"] in EMBLEM_FLAGS]  # fmt: skip
        evaluation = json.loads(paths.evaluation.read_text(encoding="utf-8"))
        rows.append({
            "size": size, "run": run_id, "test_split": evaluation.get("accuracy"),
            "framings": results["framings"], "accuracy": results["overall"]["finder"],
            "per_class": per_class, "emblem": sum(emblem) / len(emblem) if emblem else None,
            "calibration": checkset_calibration(predictor, check_dir, readings),
            "hits": [r["label"] in e["flags"] for r, e in zip(readings, _entries(check_dir), strict=True)],
            **timings.get(run_id, {}),
        })  # fmt: skip
    first = json.loads((ws_path / "quality-first-start.json").read_text(encoding="utf-8")) if (
        ws_path / "quality-first-start.json").is_file() else {}  # fmt: skip
    data_cpu = (first.get(DATA_STEP) or {}).get("cpu_seconds")
    chosen, why = choose(rows, data_cpu)
    doc = {
        "rows": rows,
        "chosen": chosen,
        "why": why,
        "data_cpu_s": data_cpu,
        "measured_with": measured_with(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": _machine(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "command": shlex.join(["python", "-m", "benchmarks.input_size", *(argv if argv is not None else sys.argv[1:])]),
        "per_class": args.per_class,
        "checkset_seed": args.checkset_seed,
        "checkset_images": sum(f["n"] for f in rows[0]["framings"].values()),
        "notes": [*NOTES, *(f"- {n}" for n in args.note)],
    }
    write_document(doc, render, args.out, args.json)
    return 0


def _entries(check_dir: Path) -> list[dict[str, Any]]:
    from flagvision.synthetic.checkset import read_checkset_manifest

    return list(read_checkset_manifest(check_dir)["images"])


if __name__ == "__main__":
    raise SystemExit(main())
