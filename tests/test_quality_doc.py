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
    changed = json.loads(json.dumps(measured_with()))
    changed["generator"] = "synth-0"
    assert recorded_with(render({**results, "measured_with": changed})) != measured_with()
