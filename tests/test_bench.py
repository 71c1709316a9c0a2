"""The benchmark's smoke run: every section runs end to end at tiny sizes and writes its report."""

import pytest

from benchmarks import bench
from benchmarks.bench import main


def test_quick_bench_runs_every_section_and_writes_markdown(tiny_dataset, workspace, tmp_path, capsys):
    out = tmp_path / "BENCH.md"
    code = main(["--workspace", str(workspace.root), "--quick", "--data", str(tiny_dataset), "--out", str(out)])
    assert code == 0
    text = out.read_text()
    assert "--quick" in text and "| section | measure | value | target | met |" in text
    for title in (
        "Targets missed: distance and reason",
        "Training epoch",
        "What was tried",
        "Where the time goes",
        "Time to 90 %",
        "VGG-16 feature cache",
        "Inference",
        "Studies with pruning",
        "Memory",
    ):
        assert f"## {title}" in text
    assert "random init" in text  # no ImageNet weights in the test environment: labelled, never "pretrained"
    assert "falls back to streaming | yes" in text
    printed = capsys.readouterr().out
    assert "speed-up, whole epoch" in printed


def test_quick_preset_section_trains_through_the_cli(tiny_dataset, workspace, tmp_path):
    out = tmp_path / "PRESET.md"
    code = main(
        [
            "--workspace",
            str(workspace.root),
            "--quick",
            "--data",
            str(tiny_dataset),
            "--sections",
            "preset",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    text = out.read_text()
    assert "--sections preset" in text and "## The default preset on the data" in text
    assert "`train`, every default: wall time from start to exit (1 epochs" in text
    assert "| 1 | " in text  # the epoch table, parsed from the CLI's own output
    assert "skipped: the data's classes are not the 24 flags" in text
    assert "## Training epoch" not in text  # only the section asked for


def test_sections_are_validated():
    assert bench.parse_sections("memory,epoch") == ("epoch", "memory")  # run in the canonical order
    assert "preset" not in bench.DEFAULT_SECTIONS and bench.parse_sections("preset") == ("preset",)
    with pytest.raises(Exception, match="valid: epoch"):
        bench.parse_sections("epoch,warp")
