"""Pure Plotly figure builders: plain data in, ``plotly.graph_objects.Figure`` out.

No Streamlit and no I/O here, so every chart is unit-testable without a browser; pages only call
``st.plotly_chart(fig)``.

Conventions shared by all builders:

* Accuracies and probabilities arrive as **fractions in 0..1** (as the engine and the store keep
  them) and are **shown as percent**, on a fixed 0–100 axis so that charts compare at a glance.
* Horizontal bar charts list their bars in reading order, top to bottom: the data order of the
  trace is the on-screen order (the y axis is reversed), so tests and readers agree.
* Metric rows are the dicts of ``Store.get_metrics``: ``epoch``, ``train_loss``, ``train_acc``,
  ``val_loss``, ``val_acc`` (missing or ``None`` values leave a gap, not a fake zero).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import plotly.graph_objects as go
from plotly.colors import qualitative

METRICS = ("loss", "acc")
_TITLES = {"loss": "Loss", "acc": "Accuracy"}
_SPLITS = (("train", "Train", "dash"), ("val", "Validation", "solid"))
_ROW_PX = 22  # height per bar or heatmap row: keeps 24 flag names legible
_PERCENT_AXIS = dict(range=[0, 100], ticksuffix="%")


def _palette(n: int) -> list[str]:
    # Plotly's default 10 colours are the most distinct; beyond that, a 26-colour set.
    return list(qualitative.Plotly if n <= len(qualitative.Plotly) else qualitative.Alphabet)


def _percent(value: Any) -> float | None:
    return None if value is None else 100.0 * float(value)


def _by_epoch(metrics: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One row per epoch, in epoch order; a later row for the same epoch wins (resumed runs)."""
    rows: dict[int, Mapping[str, Any]] = {}
    for row in metrics:
        rows[int(row["epoch"])] = row
    return [rows[e] for e in sorted(rows)]


def _epoch_step(last_epoch: int, max_ticks: int = 12) -> int:
    """A whole tick step for an epoch axis (1, 2, 5, 10, 20, 50...) giving at most ``max_ticks`` ticks:
    Plotly's own choice for a few epochs is 0.5, and 1, 1.5, 2 is no way to count epochs."""
    step, factors = 1, (2, 2.5, 2)  # 1 → 2 → 5 → 10 → 20 → 50 → 100...
    i = 0
    while last_epoch / step > max_ticks:
        step = int(step * factors[i % 3])
        i += 1
    return step


def _empty_note(fig: go.Figure, text: str) -> None:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)


def training_curves(
    metrics: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]],
    metric: Literal["loss", "acc"] = "loss",
) -> go.Figure:
    """Train (dashed) and validation (solid) curves per epoch.

    ``metrics`` is one run's rows (two traces) or ``{label: rows}`` for several runs overlaid
    (two traces per run, one colour per run, legend grouped by run so a click hides both).
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not one of {', '.join(METRICS)}")
    single = not isinstance(metrics, Mapping)
    runs: Mapping[str, Sequence[Mapping[str, Any]]] = metrics if isinstance(metrics, Mapping) else {"": metrics}
    colours = _palette(len(runs))
    convert = _percent if metric == "acc" else (lambda v: None if v is None else float(v))

    fig = go.Figure()
    last_epoch = 0
    for i, (label, rows) in enumerate(runs.items()):
        rows = _by_epoch(rows)
        epochs = [int(r["epoch"]) for r in rows]
        last_epoch = max([last_epoch, *epochs])
        colour = colours[i % len(colours)]
        for j, (split, split_name, dash) in enumerate(_SPLITS):
            values = [convert(r.get(f"{split}_{metric}")) for r in rows]
            name = split_name if single else f"{label} · {split_name.lower()}"
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=values,
                    name=name,
                    mode="lines+markers",
                    # In a single run the two splits get two colours; overlaid runs share one
                    # colour per run and tell the splits apart by the dash only.
                    line=dict(color=colours[j] if single else colour, dash=dash),
                    marker=dict(size=6),
                    legendgroup=None if single else label,
                    hovertemplate=(
                        f"{name}<br>epoch %{{x}}<br>{_TITLES[metric].lower()} "
                        + ("%{y:.1f}%" if metric == "acc" else "%{y:.4f}")
                        + "<extra></extra>"
                    ),
                )
            )
    fig.update_xaxes(
        title_text="Epoch",
        tickformat="d",
        rangemode="tozero",
        tickmode="linear",
        tick0=0,
        dtick=_epoch_step(last_epoch),
    )
    fig.update_yaxes(title_text=_TITLES[metric])
    if metric == "acc":
        fig.update_yaxes(**_PERCENT_AXIS)
    else:
        fig.update_yaxes(rangemode="tozero")
    fig.update_layout(
        hovermode="x unified" if single else "closest",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
        margin=dict(l=60, r=20, t=40, b=50),
    )
    if not any(_by_epoch(rows) for rows in runs.values()):
        _empty_note(fig, "No epochs yet")
    return fig


def confusion_heatmap(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], normalize: bool = True
) -> go.Figure:
    """Confusion matrix: true class on y (top to bottom), predicted class on x.

    ``confusion[i][j]`` counts images of class ``i`` predicted as ``j``. With ``normalize`` the
    colour is the share of each true class (row, so the diagonal reads as per-class recall and
    rare classes are as visible as common ones); the hover always gives the raw count too.
    """
    n = len(class_names)
    counts = [[int(c) for c in row] for row in confusion]
    if len(counts) != n or any(len(row) != n for row in counts):
        raise ValueError(f"confusion must be {n}x{n} to match {n} class names")

    if normalize:
        z = [[100.0 * c / sum(row) if sum(row) else 0.0 for c in row] for row in counts]
    else:
        z = [[float(c) for c in row] for row in counts]
    share = [[100.0 * c / sum(row) if sum(row) else 0.0 for c in row] for row in counts]
    # Cell text only where something landed: 576 zeros would drown the errors.
    text = [[str(c) if c else "" for c in row] for row in counts]
    names = [str(c) for c in class_names]

    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            text=text,
            texttemplate="%{text}",
            textfont=dict(size=9 if n > 12 else 12),
            customdata=[
                [[c, s] for c, s in zip(crow, srow, strict=True)] for crow, srow in zip(counts, share, strict=True)
            ],
            hovertemplate=(
                "true: %{y}<br>predicted: %{x}<br>count: %{customdata[0]}"
                "<br>share of true class: %{customdata[1]:.1f}%<extra></extra>"
            ),
            colorscale="Blues",
            zmin=0,
            zmax=100 if normalize else None,
            colorbar=dict(
                title=dict(text="% of row" if normalize else "count"),
                ticksuffix="%" if normalize else "",
            ),
            xgap=1,
            ygap=1,
        )
    )
    side = max(420, 140 + _ROW_PX * n)
    fig.update_xaxes(title_text="Predicted", tickangle=-45, side="bottom", constrain="domain")
    # Reversed y puts class 0 at the top like a printed matrix; scaleanchor keeps cells square.
    fig.update_yaxes(title_text="True", autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_layout(height=side, width=side + 80, margin=dict(l=120, r=20, t=30, b=120))
    return fig


def _hbars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    x_title: str,
    percent: bool,
    title: str | None = None,
    colour: str | None = None,
) -> go.Figure:
    """Horizontal bars in reading order (first item on top)."""
    shown = [_percent(v) for v in values] if percent else [float(v) for v in values]
    fig = go.Figure(
        go.Bar(
            x=shown,
            y=list(labels),
            orientation="h",
            marker_color=colour or qualitative.Plotly[0],
            text=[f"{v:.1f}%" if percent else f"{v:g}" for v in shown],
            textposition="auto",
            textangle=0,  # "auto" turns a label that does not fit its bar sideways; keep it readable
            hovertemplate="%{y}: " + ("%{x:.1f}%" if percent else "%{x}") + "<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(title_text=x_title, **(_PERCENT_AXIS if percent else {"rangemode": "tozero"}))
    fig.update_layout(
        title=dict(text=title) if title else None,
        height=max(220, 90 + _ROW_PX * len(labels)),
        margin=dict(l=10, r=20, t=40 if title else 20, b=50),
        showlegend=False,
    )
    return fig


def per_class_bars(per_class: Mapping[str, float | None], title: str | None = None) -> go.Figure:
    """Per-class accuracy (fractions), worst class on top: the ones to look at first.

    A class without images in the split (None) has no accuracy and no bar."""
    items = sorted(((k, v) for k, v in per_class.items() if v is not None), key=lambda kv: (kv[1], kv[0]))
    return _hbars([k for k, _ in items], [v for _, v in items], x_title="Accuracy", percent=True, title=title)


def topk_bars(probs: Sequence[tuple[str, float]], title: str = "") -> go.Figure:
    """Top-k predicted classes with probabilities (fractions), most likely on top."""
    items = sorted(probs, key=lambda kv: -kv[1])
    return _hbars(
        [k for k, _ in items],
        [v for _, v in items],
        x_title="Probability",
        percent=True,
        title=title or None,
    )


def class_counts_bars(counts: Mapping[str, int], title: str | None = None) -> go.Figure:
    """Images per class in the order given (e.g. the dataset's class order), to spot imbalance."""
    return _hbars(
        list(counts),
        [int(v) for v in counts.values()],
        x_title="Images",
        percent=False,
        title=title,
        colour=qualitative.Plotly[2],
    )


def reliability_diagram(
    before: Sequence[Mapping[str, Any]] | None, after: Sequence[Mapping[str, Any]] | None = None
) -> go.Figure:
    """Reliability diagram: per bin of confidence, how often the answers in it were right.

    ``before`` and ``after`` are the bins of ``flagvision.training.calibration.reliability_bins``
    (``lower``, ``upper``, ``count``, ``confidence``, ``accuracy``; fractions) before and after
    calibration; either may be None. A well-calibrated model's bars reach the diagonal; bars below
    it are over-confident. An empty bin has no bar; the hover gives each bin's count.
    """
    fig = go.Figure()
    series = [
        (rows, name, colour)
        for rows, name, colour in (
            (before, "before calibration", qualitative.Plotly[1]),
            (after, "after calibration", qualitative.Plotly[0]),
        )
        if rows
    ]
    for rows, name, colour in series:
        filled = [r for r in rows if r.get("count")]
        fig.add_trace(
            go.Bar(
                x=[50.0 * (float(r["lower"]) + float(r["upper"])) for r in filled],
                y=[_percent(r["accuracy"]) for r in filled],
                width=[100.0 * (float(r["upper"]) - float(r["lower"])) / max(1, len(series)) for r in filled],
                name=name,
                marker_color=colour,
                customdata=[[r["count"], _percent(r["confidence"])] for r in filled],
                hovertemplate=(
                    name + "<br>confidence %{customdata[1]:.1f}%<br>accuracy %{y:.1f}%"
                    "<br>%{customdata[0]} images<extra></extra>"
                ),
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[0, 100], y=[0, 100], mode="lines", name="perfectly calibrated", line=dict(color="grey", dash="dot")
        )
    )
    fig.update_xaxes(title_text="Confidence (top probability)", **_PERCENT_AXIS)
    fig.update_yaxes(title_text="Accuracy", **_PERCENT_AXIS)
    fig.update_layout(barmode="group", height=380, margin=dict(l=10, r=20, t=30, b=50), legend=dict(x=0.01, y=0.99))
    if not series or not any(r.get("count") for rows, _, _ in series for r in rows):
        _empty_note(fig, "No evaluation images")
    return fig
