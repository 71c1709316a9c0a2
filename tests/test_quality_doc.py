"""docs/QUALITY.md is current: it records the versions and defaults it was measured with, and they
are the code's. A change to the generator, the check set, the finder or the default preset fails
here until the document is measured again with ``python -m benchmarks.quality``."""

from __future__ import annotations

import json

from benchmarks.quality import measured_with, recorded_with, render
from fv_helpers import REPO

DOC = REPO / "docs" / "QUALITY.md"


def test_quality_doc_was_measured_with_the_current_code():
    recorded = recorded_with(DOC.read_text(encoding="utf-8"))
    assert recorded is not None, "docs/QUALITY.md has no measured-with record: run python -m benchmarks.quality"
    current = measured_with()
    stale = sorted(k for k in current.keys() | recorded.keys() if current.get(k) != recorded.get(k))
    assert not stale, f"docs/QUALITY.md was measured with other {', '.join(stale)}: run python -m benchmarks.quality"


def test_the_record_round_trips_and_a_change_is_seen():
    row = {"n": 2, "whole_photo": 1.0, "finder": 0.5, "iou_mean": 0.7, "iou_hit": 1.0, "not_found": 0}
    results = {
        "framings": {"closeup": row}, "overall": row,
        "confusions": [], "measured_with": measured_with(), "date": "2026-01-01", "machine": "test",
        "load_before": 0.0, "load_after": 0.0, "threads": "1", "command": "python -m benchmarks.quality",
        "per_class": 1, "checkset_seed": 0, "checkset_images": 2, "steps": [], "first_start_s": None,
        "test_split": 0.995,
    }  # fmt: skip
    text = render(results)
    assert recorded_with(text) == measured_with()
    assert "| closeup, default pipeline | 50.0 % | ≥ 99.0 % | missed by 49.0 points |" in text
    close = {**row, "finder": 95 / 96}  # one image short of 99 % of 96: a miss, never "by 0.0 points"
    almost = render({**results, "framings": {"closeup": close}, "overall": close})
    assert "| closeup, default pipeline | 99.0 % | ≥ 99.0 % | missed by 0.04 points |" in almost
    changed = json.loads(json.dumps(measured_with()))
    changed["generator"] = "synth-0"
    assert recorded_with(render({**results, "measured_with": changed})) != measured_with()


def test_the_calibration_section_shows_targets_verdicts_and_the_default_threshold():
    from flagvision.inference.quality import pipeline_calibration

    row = {"n": 4, "whole_photo": 0.5, "finder": 0.5, "iou_mean": 0.7, "iou_hit": 1.0, "not_found": 0}
    after = [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.2, 0.7, 0.1]]
    cal = pipeline_calibration(
        after, after, [["A"], ["B"], ["A", "C"], ["C"]], ["A", "B", "A", "C"], ["closeup"] * 4, ["A", "B", "C"],
        0.8,
    )  # fmt: skip
    results = {
        "framings": {"closeup": row}, "overall": row, "confusions": [], "measured_with": measured_with(),
        "date": "2026-01-01", "machine": "test", "load_before": 0.0, "load_after": 0.0, "threads": "1",
        "command": "python -m benchmarks.quality", "per_class": 1, "checkset_seed": 0, "checkset_images": 4,
        "steps": [], "first_start_s": None, "test_split": 0.995, "calibration": {**cal, "temperature": 0.8},
        "held_out_calibration": {"n": 1200, "temperature": 0.8, "ece_before": 0.02, "ece_after": 0.01,
                                 "answered": 0.97, "answered_accuracy": 0.995},
    }  # fmt: skip
    text = render(results)
    assert "## Calibration and 'not sure' (issue 16)" in text and "T = 0.800" in text
    assert "| ECE after calibration, all check images | 0.275 | ≤ 0.05 | missed by 0.225 |" in text
    # at 0.8 only the 0.9 answer is answered: a quarter of the images, all right
    assert "| answered at 0.8 | 25.0 % | ≥ 90.0 % | missed by 65.0 points |" in text
    assert "| accuracy of the answered part at 0.8 | 100.0 % | ≥ 98.0 % | met |" in text
    assert "| **0.80** |" in text and "| 0.50 | 100.0 % | 50.0 % |" in text
    assert (
        "| built-in held-out split (whole images, the run's evaluation.json) | 1200 | 99.5 % | 0.020 | 0.010 |" in text
    )
    assert "Calibration and" not in render({k: v for k, v in results.items() if k != "calibration"})
    # a run trained under another default threshold says which one its held-out figures are at
    older = {**results, "held_out_calibration": {**results["held_out_calibration"], "threshold": 0.5}}
    assert "| 97.0 % (at 0.5) | 99.5 % (at 0.5) |" in render(older)
