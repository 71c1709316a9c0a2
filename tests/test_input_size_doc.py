"""docs/INPUT_SIZE.md (``python -m benchmarks.input_size``): its table is well formed, its chosen input
size is the code's default for the custom CNN, and it was measured with the current generator and
default preset (what the trainings depend on). No training here: the decision rule runs on given rows."""

from __future__ import annotations

import re

from benchmarks.input_size import TABLE_HEAD, choose, render
from benchmarks.quality import measured_with, recorded_with
from flagvision.config import CUSTOM_CNN, default_image_size
from fv_helpers import REPO

DOC = REPO / "docs" / "INPUT_SIZE.md"


def _table(text: str) -> list[list[str]]:
    lines = text.splitlines()
    start = lines.index(TABLE_HEAD)
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_document_chose_the_codes_default_and_its_table_is_well_formed():
    text = DOC.read_text(encoding="utf-8")
    chosen = re.search(r"<!-- chosen: (\d+) -->", text)
    assert chosen, "docs/INPUT_SIZE.md chose no input size: run python -m benchmarks.input_size"
    assert int(chosen.group(1)) == default_image_size(CUSTOM_CNN)
    assert f"**Default input size: {chosen.group(1)} px.**" in text
    head, rule, *rows = _table(text)
    assert len(rule) == len(head) and all(len(row) == len(head) for row in rows)
    sizes = [row[0] for row in rows]
    assert "40 px" in sizes and f"{chosen.group(1)} px" in sizes and len(set(sizes)) == len(sizes)
    assert all(re.fullmatch(r"\d+\.\d %", row[head.index("all check images")]) for row in rows)


def test_the_document_was_measured_with_the_current_generator_and_preset():
    recorded = recorded_with(DOC.read_text(encoding="utf-8"))
    assert recorded is not None
    current = measured_with()
    stale = [k for k in ("generator", "synth_config", "preset", "lr_schedule") if recorded.get(k) != current.get(k)]
    assert not stale, f"docs/INPUT_SIZE.md was measured with other {', '.join(stale)}: measure it again"


def _row(size: int, accuracy: float, cpu: float | None) -> dict:
    framing = {"n": 10, "finder": accuracy}
    calibration = {"overall": {"ece_after": 0.1}, "temperature": 1.0}
    return {
        "size": size, "run": str(size), "test_split": 0.99, "framings": {"closeup": framing}, "accuracy": accuracy,
        "per_class": {"Spain": 1.0}, "emblem": 1.0, "calibration": calibration, "seconds": cpu, "cpu_seconds": cpu,
    }  # fmt: skip


def test_the_rule_takes_the_best_accuracy_per_minute_within_the_first_start_target():
    # 64 px: most per minute overall, but its first start ((440 + 300) / 2 = 370 s) is over 360 s
    rows = [_row(40, 0.60, 240), _row(48, 0.70, 250), _row(64, 0.99, 300), _row(80, 0.95, None)]
    chosen, why = choose(rows, data_cpu_s=440)
    assert chosen == 48 and "48 px" in why and "64 px" in why
    assert choose(rows, data_cpu_s=None)[0] == 64  # no data step timed: every timed size counts
    assert choose([_row(40, 0.8, None)], 200) == (None, "no size was timed")
    # nothing within the target: the best per minute of all, said so
    assert choose([_row(40, 0.8, 900), _row(48, 0.9, 1200)], 200)[1].count("none keeps the first start") == 1


def test_the_rendered_table_has_one_well_formed_row_per_size():
    rows = [_row(40, 0.80, 480), _row(64, 0.90, 600)]
    chosen, why = choose(rows, 200)
    text = render({
        "rows": rows, "chosen": chosen, "why": why, "data_cpu_s": 200, "measured_with": measured_with(),
        "date": "2026-01-01", "machine": "test", "load_before": 0.0, "load_after": 0.0,
        "command": "python -m benchmarks.input_size", "per_class": 1, "checkset_seed": 0, "checkset_images": 10,
    })  # fmt: skip
    head, rule, *table = _table(text)
    assert [row[0] for row in table] == ["40 px", "64 px"] and all(len(r) == len(head) == len(rule) for r in table)
    assert recorded_with(text) == measured_with() and f"<!-- chosen: {chosen} -->" in text
