"""Tests of flagvision.plots on plain data: traces, axes, shapes and orders, no browser."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import pytest

from flagvision import plots


def _rows(epochs: int, offset: float = 0.0) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 2.0 / e + offset,
            "val_loss": 2.2 / e + offset,
            "train_acc": min(1.0, 0.2 * e),
            "val_acc": min(1.0, 0.18 * e),
        }
        for e in range(1, epochs + 1)
    ]


@pytest.mark.parametrize("metric, title", [("loss", "Loss"), ("acc", "Accuracy")])
def test_training_curves_single_run(metric: str, title: str) -> None:
    fig = plots.training_curves(_rows(5), metric)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 2
    assert [t.name for t in fig.data] == ["Train", "Validation"]
    assert fig.layout.xaxis.title.text == "Epoch"
    assert fig.layout.yaxis.title.text == title
    for trace in fig.data:
        assert list(trace.x) == [1, 2, 3, 4, 5]  # one point per epoch
        assert len(trace.y) == 5
        assert trace.mode == "lines+markers"
    assert fig.data[0].line.dash == "dash" and fig.data[1].line.dash == "solid"


@pytest.mark.parametrize("epochs, step", [(1, 1), (2, 1), (5, 1), (12, 1), (30, 5), (100, 10)])
def test_epoch_axis_has_whole_ticks(epochs: int, step: int) -> None:
    """Epochs are counted 1, 2, 3 (never 0.5 steps); a long run gets a coarser whole step."""
    xaxis = plots.training_curves(_rows(epochs), "loss").layout.xaxis
    assert xaxis.tickmode == "linear" and xaxis.tick0 == 0 and xaxis.dtick == step
    overlaid = plots.training_curves({"short": _rows(2), "long": _rows(epochs)}, "acc").layout.xaxis
    assert overlaid.dtick == step  # the longest run decides
    assert plots.training_curves([], "loss").layout.xaxis.dtick == 1


def test_accuracy_is_percent_on_fixed_axis() -> None:
    fig = plots.training_curves(_rows(3), "acc")
    assert list(fig.layout.yaxis.range) == [0, 100]
    assert fig.data[1].y[0] == pytest.approx(18.0)  # 0.18 shown as 18 %


def test_training_curves_overlaid_runs() -> None:
    runs = {"run 1": _rows(4), "run 2": _rows(6, 0.1), "run 3": _rows(2, 0.2)}
    fig = plots.training_curves(runs, "loss")
    assert len(fig.data) == 2 * len(runs)
    for (label, rows), (train, val) in zip(runs.items(), zip(fig.data[::2], fig.data[1::2], strict=True), strict=True):
        assert len(train.x) == len(val.x) == len(rows)
        assert train.line.color == val.line.color  # same colour per run
        assert (train.line.dash, val.line.dash) == ("dash", "solid")
        assert train.legendgroup == val.legendgroup == label
        assert label in train.name and label in val.name
    assert len({t.line.color for t in fig.data}) == len(runs)


def test_training_curves_duplicates_gaps_and_empty() -> None:
    rows = _rows(3) + [{"epoch": 2, "train_loss": 9.0, "val_loss": None}]  # epoch 2 re-logged
    fig = plots.training_curves(rows, "loss")
    assert list(fig.data[0].x) == [1, 2, 3]
    assert fig.data[0].y[1] == 9.0 and fig.data[1].y[1] is None  # a gap, not a zero
    empty = plots.training_curves([], "acc")
    assert len(empty.data) == 2 and len(empty.data[0].x) == 0
    assert empty.layout.annotations[0].text == "No epochs yet"
    with pytest.raises(ValueError, match="loss, acc"):
        plots.training_curves(_rows(2), "f1")


def test_confusion_heatmap_24_classes() -> None:
    names = [f"flag {i}" for i in range(24)]
    rng = np.random.default_rng(0)
    cm = (rng.integers(0, 3, (24, 24)) + np.eye(24, dtype=int) * 20).tolist()
    cm[5] = [0] * 24  # a class with no test images must not divide by zero
    fig = plots.confusion_heatmap(cm, names)
    heat = fig.data[0]
    assert isinstance(heat, go.Heatmap)
    assert np.array(heat.z).shape == (24, 24)
    assert list(heat.x) == names and list(heat.y) == names
    assert fig.layout.xaxis.title.text == "Predicted" and fig.layout.yaxis.title.text == "True"
    row = np.array(heat.z)[0]
    assert row.sum() == pytest.approx(100.0)  # normalised per true class, in percent
    assert np.array(heat.z)[5].sum() == 0
    assert heat.customdata[0][0][0] == cm[0][0]  # raw counts in the hover
    assert fig.layout.yaxis.scaleanchor == "x"  # square cells
    raw = plots.confusion_heatmap(cm, names, normalize=False)
    assert np.array(raw.data[0].z)[0].tolist() == cm[0]
    with pytest.raises(ValueError, match="24x24"):
        plots.confusion_heatmap(cm[:-1], names)


def test_per_class_bars_sorted_ascending() -> None:
    fig = plots.per_class_bars({"France": 0.9, "Austria": 0.4, "Italy": 1.0, "Spain": 0.7})
    bar = fig.data[0]
    assert bar.orientation == "h"
    assert list(bar.x) == sorted(bar.x)
    assert list(bar.y) == ["Austria", "Spain", "France", "Italy"]
    assert fig.layout.yaxis.autorange == "reversed"  # first bar (worst) on top
    assert fig.layout.xaxis.title.text == "Accuracy" and list(fig.layout.xaxis.range) == [0, 100]


def test_topk_bars_highest_on_top() -> None:
    fig = plots.topk_bars([("Italy", 0.1), ("France", 0.7), ("Ireland", 0.2)], "photo.jpg")
    bar = fig.data[0]
    assert list(bar.y) == ["France", "Ireland", "Italy"]
    assert list(bar.x) == pytest.approx([70.0, 20.0, 10.0])
    assert fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.title.text == "photo.jpg"


def test_class_counts_bars() -> None:
    counts = {"Austria": 40, "Belgium": 38, "Bulgaria": 41}
    fig = plots.class_counts_bars(counts)
    assert list(fig.data[0].y) == list(counts)
    assert list(fig.data[0].x) == [40, 38, 41]
    assert fig.layout.xaxis.title.text == "Images"


def _bins(filled: dict[int, tuple[int, float, float]]) -> list[dict]:
    """15 reliability bins; ``filled`` maps a bin index to (count, confidence, accuracy)."""
    rows = []
    for m in range(15):
        count, conf, acc = filled.get(m, (0, None, None))
        rows.append({"lower": m / 15, "upper": (m + 1) / 15, "count": count, "confidence": conf, "accuracy": acc})
    return rows


def test_reliability_diagram_before_and_after() -> None:
    before = _bins({14: (90, 0.99, 0.8), 9: (10, 0.62, 0.5)})
    after = _bins({13: (60, 0.9, 0.88), 10: (40, 0.7, 0.68)})
    fig = plots.reliability_diagram(before, after)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [b.name for b in bars] == ["before calibration", "after calibration"]
    # Empty bins have no bar; each bar stands at its bin's centre, its height the bin's accuracy in percent.
    assert list(bars[0].x) == pytest.approx([100 * 9.5 / 15, 100 * 14.5 / 15])
    assert list(bars[0].y) == pytest.approx([50.0, 80.0])
    assert list(bars[1].y) == pytest.approx([68.0, 88.0])
    diagonal = [t for t in fig.data if t.type == "scatter"][0]
    assert list(diagonal.x) == [0, 100] and list(diagonal.y) == [0, 100]
    assert tuple(fig.layout.xaxis.range) == (0, 100) and fig.layout.yaxis.ticksuffix == "%"
    assert not fig.layout.annotations
    only_after = plots.reliability_diagram(None, after)
    assert [t.name for t in only_after.data if t.type == "bar"] == ["after calibration"]
    assert plots.reliability_diagram(_bins({}), None).layout.annotations[0].text == "No evaluation images"


@pytest.mark.parametrize(
    "fig",
    [
        plots.per_class_bars({"France": 0.9, "Austria": 0.04}),
        plots.topk_bars([("Italy", 0.01), ("France", 0.99)]),
        plots.class_counts_bars({"Austria": 40, "Belgium": 3}),
    ],
    ids=["per_class", "topk", "class_counts"],
)
def test_bar_labels_stay_horizontal(fig: go.Figure) -> None:
    """A label that does not fit inside its bar is not turned sideways (Plotly's default)."""
    assert fig.data[0].textangle == 0


def test_library_modules_do_not_import_streamlit() -> None:
    code = "import sys, flagvision.plots, flagvision.jobs.store; assert 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
