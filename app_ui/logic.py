"""Pure helpers behind the Streamlit pages: widget descriptions, tables, ETA, config assembly.

Nothing here imports Streamlit (the app in ``streamlit_app.py``, ``pages/`` and ``app_ui.py``
does), so every rule a page follows is unit-testable: which widget a hyperparameter gets and with
what range, how widget values become a validated :class:`~flagvision.config.RunConfig`, how runs
and jobs become table rows, how long a running job still needs. Ranges always come from
:data:`flagvision.config.HYPERPARAMS`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flagvision.config import (
    DEFAULT_AUGMENT,
    HYPERPARAMS,
    MODEL_INFOS,
    PARAM_SPECS,
    DataConfig,
    HyperParams,
    ParamSpec,
    RunConfig,
    VGGConfig,
    default_image_size,
    model_info,
)
from flagvision.jobs.schema import ACTIVE_STATES
from flagvision.workspace import BUILTIN_DATASET, CARD_FILE, RunPaths, Workspace

LOG_GRID_PER_DECADE = 12  # values per factor of ten on a log-scale select slider


# -- widgets from specs -------------------------------------------------------------------------


@dataclass(frozen=True)
class WidgetSpec:
    """How a page should draw one hyperparameter (the page maps ``widget`` to an ``st.*`` call)."""

    name: str
    widget: str  # "slider" (int/float, with step), "select_slider" (log grid), "selectbox"
    label: str
    help: str
    options: tuple[Any, ...] = ()  # select_slider / selectbox choices
    low: float | None = None
    high: float | None = None
    step: float | None = None
    default: Any = None


def model_label(name: str, pretrained: bool = True) -> str:
    """The registry's label of ``name``; a name the registry does not know (old stored data) as is."""
    info = MODEL_INFOS.get(name)
    return info.display_label(pretrained) if info else name


def help_text(spec: ParamSpec) -> str:
    default = format_value(spec.name, spec.default)
    effect = f" {spec.effect}" if spec.effect else ""
    if spec.reference is not None:
        reference = format_value(spec.name, spec.reference)
        return (
            f"{spec.help}.{effect} Range: {spec.describe_range()}; default {default}; the reference study's value "
            f"{reference}, {spec.reference_note}."
        )
    return f"{spec.help}.{effect} Range: {spec.describe_range()}; the reference study's value {default}."


def log_grid(spec: ParamSpec, per_decade: int = LOG_GRID_PER_DECADE) -> list[float]:
    """Log-spaced values from ``spec.low`` to ``spec.high`` (both included) plus the default and the
    reference study's value.

    Rounded to three significant digits so the labels stay readable (1.8e-04, not 1.7782794e-04).
    """
    low, high = spec.bounds()
    lo, hi = math.log10(low), math.log10(high)
    n = max(2, round((hi - lo) * per_decade) + 1)
    values = {float(f"{10 ** (lo + (hi - lo) * i / (n - 1)):.3g}") for i in range(n)}
    values.update((float(spec.default), float(spec.reference_value)))
    return sorted(v for v in values if low <= v <= high)


def nearest(options: Sequence[float], value: float) -> float:
    """The option closest to ``value`` (on a log scale when all are positive)."""
    if all(o > 0 for o in options) and value > 0:
        return min(options, key=lambda o: abs(math.log(o) - math.log(value)))
    return min(options, key=lambda o: abs(o - value))


def widget_for(spec: ParamSpec) -> WidgetSpec:
    """The widget a hyperparameter gets: int → stepped slider, log float → select slider over a
    log grid, float → slider in hundredths, categorical → select box."""
    common = dict(name=spec.name, label=spec.name, help=help_text(spec), default=spec.default)
    if spec.kind == "categorical":
        return WidgetSpec(widget="selectbox", options=tuple(spec.choices), **common)
    low, high = spec.bounds()
    if spec.kind == "int":
        return WidgetSpec(widget="slider", low=int(low), high=int(high), step=int(spec.step or 1), **common)
    if spec.log:
        return WidgetSpec(widget="select_slider", options=tuple(log_grid(spec)), **common)
    return WidgetSpec(widget="slider", low=float(low), high=float(high), step=0.01, **common)


def hyperparameter_widgets(exclude: Iterable[str] = ()) -> list[WidgetSpec]:
    skip = set(exclude)
    return [widget_for(s) for s in HYPERPARAMS if s.name not in skip]


def format_value(name: str, value: Any) -> str:
    spec = PARAM_SPECS.get(name)
    if isinstance(value, float) and spec is not None and spec.log:
        return f"{value:.2e}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# -- widget values → config ---------------------------------------------------------------------


def build_run_config(
    model: str,
    hparams: dict[str, Any],
    dataset_path: str | Path,
    image_size: int | None = None,
    augment: float = DEFAULT_AUGMENT,
    vgg: dict[str, Any] | None = None,
    find_flags: bool = True,
    **extra: Any,
) -> RunConfig:
    """A validated RunConfig from widget values; raises ConfigError with the message to show."""
    hp = HyperParams.from_dict({**HyperParams().to_dict(), **hparams})
    size = default_image_size(model) if image_size is None else int(image_size)
    data = DataConfig(path=str(dataset_path), image_size=size, augment=float(augment), find_flags=bool(find_flags))
    vgg_cfg = VGGConfig.from_dict({**VGGConfig().to_dict(), **(vgg or {})})
    return RunConfig(model=model, hparams=hp, data=data, vgg=vgg_cfg, **extra)


# -- datasets -----------------------------------------------------------------------------------


def dataset_choices(ws: Workspace) -> list[str]:
    """Dataset names of the workspace, the built-in one first (even before it is generated)."""
    names = [n for n in ws.list_datasets() if n != BUILTIN_DATASET]
    return [BUILTIN_DATASET, *names]


def dataset_title(name: str) -> str:
    return "Built-in flags (generated)" if name == BUILTIN_DATASET else name


def sample_paths_per_class(path: str | Path, per_class: int = 4, split: str | None = None) -> dict[str, list[Path]]:
    """The first ``per_class`` image files of each class (train split when there is one)."""
    from flagvision.data.folders import scan_dataset

    index = scan_dataset(path)
    samples = index.eval if split == "test" and index.eval else index.train
    out: dict[str, list[Path]] = {name: [] for name in index.class_names}
    for s in samples:
        bucket = out[index.class_names[s.label]]
        if len(bucket) < per_class:
            bucket.append(s.path)
    return out


def image_strip(
    paths: Sequence[str | Path],
    tile: int = 96,
    gap: int = 4,
    slots: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
):
    """One PIL image holding ``paths`` side by side, each squashed to ``tile``×``tile`` px.

    ``slots`` tiles wide (default: one per path), so that strips of classes with fewer images keep
    the same scale. A class's samples travel to the browser as one picture instead of one each:
    the Dataset page shows 24 classes, and seventy-two small images kept the browser busy.
    Unreadable files leave their tile blank.
    """
    from PIL import Image

    from flagvision.data.images import ImageError, open_image

    slots = max(1, len(paths) if slots is None else slots)
    strip = Image.new("RGB", (slots * (tile + gap) - gap, tile), background)
    for i, path in enumerate(paths[:slots]):
        try:
            picture = open_image(path).convert("RGB").resize((tile, tile), Image.Resampling.BILINEAR)
        except (ImageError, OSError):
            continue
        strip.paste(picture, (i * (tile + gap), 0))
    return strip


# -- jobs and runs as rows ----------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m"


def weights_headline(status: dict[str, Any]) -> str:
    """The weights panel's title: whether VGG-16's ImageNet weights are on this machine."""
    state = "found" if status["available"] else "missing"
    return f"VGG-16 ImageNet weights: {state} ({status['size_mb']} MB)"


def weights_job_state(job: dict[str, Any] | None) -> str:
    """What the weights panel shows of the newest download job: "none", "active", "failed", "done"
    ("done" also for a cancelled one: nothing to say but the Download button again)."""
    if job is None:
        return "none"
    if job["state"] in ACTIVE_STATES:
        return "active"
    return "failed" if job["state"] == "failed" else "done"


def job_eta(job: dict[str, Any], now: float | None = None) -> float | None:
    """Seconds left for a running job from its progress (0–1) and time since it started."""
    now = time.time() if now is None else now
    progress, started = job.get("progress"), job.get("started_at")
    if job.get("state") != "running" or not started or not progress or progress <= 0.0:
        return None
    elapsed = max(0.0, now - started)
    return elapsed * (1.0 - progress) / progress


def epochs_eta(metrics: Sequence[dict[str, Any]], total_epochs: int) -> float | None:
    """Seconds left from the mean epoch time so far; None before the first epoch."""
    times = [m["seconds"] for m in metrics if m.get("seconds")]
    if not times:
        return None
    return max(0, total_epochs - len(metrics)) * sum(times) / len(times)


def job_title(job: dict[str, Any], runs_by_id: dict[int, dict[str, Any]] | None = None) -> str:
    if job["kind"] == "study":
        return f"Study {job.get('study_name') or job['id']}"
    if job["kind"] == "weights":
        return "Download of the VGG-16 weights"
    if job["kind"] == "finder":
        return "Training the flag finder"
    if job["kind"] == "builtin":
        return "Building the built-in data"
    if job["kind"] == "compare":
        return "Comparing two runs on the check set"
    run_id = job.get("run_id")
    run = (runs_by_id or {}).get(run_id) if run_id is not None else None
    name = run["name"] if run else f"run {run_id}"
    return f"Train #{job.get('run_id')}: {name}"


def default_part_text(part: str, status: dict[str, Any], now: float | None = None) -> str:
    """What one part of the default models is doing, for a model column or the Home page:
    "training: epoch 3/10 · ETA 2m 10s", "queued: starts when the jobs before it are done",
    "waiting for ImageNet weights: download them below", "trained", "not trained yet"; for the
    built-in data ("data"): "rendering scenes 120/12000 · ETA 40s", "ready", "not built yet"."""
    state = status["state"]
    if state == "running":
        job = status.get("job") or {}
        text = job.get("progress_text") or "starting"
        if part != "data" and not text.startswith("training"):  # the finder's job says "training: epoch 3 of 12"
            text = f"training: {text}"
        eta = job_eta(job, now)
        return text + (f" · ETA {format_duration(eta)}" if eta is not None else "")
    if state == "queued":
        return "queued: starts when the jobs before it are done"
    if state == "waiting for weights":
        return "waiting for ImageNet weights: download them below"
    if state == "waiting for data":
        return "queued after the built-in data"
    if part == "data":
        return "ready" if state == "ready" else "not built yet"
    return "trained" if state == "ready" else "not trained yet"


def waiting_column_text(part: str, status: dict[str, Any], how: str, now: float | None = None) -> str:
    """Under a photo, a model column without a trained model: what it waits for ("queued: …",
    "training: epoch 3/10 · ETA …", the ImageNet weights and where to get them) or ``how`` to train one."""
    state = status["state"]
    if state == "waiting for weights":
        return (
            "no trained model yet: it waits for the ImageNet weights (the 'VGG-16 ImageNet weights' panel at "
            "the top of this page downloads or imports them)"
        )
    if state in ("queued", "running", "waiting for data"):
        return f"no trained model yet, {default_part_text(part, status, now)}"
    return f"no trained model yet. {how}"


def job_row(job: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """One jobs-table row. A training job has no study and a study job no run: those cells are
    empty text, not ``None`` (which a table shows as the word "None")."""
    run_id = job.get("run_id")
    return {
        "job": job["id"],
        "kind": job["kind"],
        "state": job["state"],
        "progress": round(100 * (job.get("progress") or 0.0)),
        "status": job.get("progress_text") or "",
        "eta": format_duration(job_eta(job, now)),
        "run": "" if run_id is None else f"#{run_id}",
        "study": job.get("study_name") or "",
    }


_MARKDOWN_SPECIALS = "\\`*_[]<>|#~$"


def _markdown_cell(value: Any) -> str:
    text = " ".join(str("" if value is None else value).split())
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIALS else c for c in text)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (``columns``: which keys, in order; default all
    keys of the first row). Cells are escaped, so a name cannot start a link, a formula or a new cell.

    For a few rows on a page whose first paint matters: an interactive data frame costs the
    browser a megabyte of JavaScript, a Markdown table nothing more than the text around it.
    """
    if not rows:
        return ""
    columns = list(columns or rows[0])
    lines = [
        "| " + " | ".join(_markdown_cell(c) for c in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(_markdown_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _pct(x: float | None) -> float | None:
    return None if x is None else round(100 * x, 1)


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    """One runs-table row: accuracies in percent, times readable."""
    duration = None
    if run.get("started_at") and run.get("finished_at"):
        duration = run["finished_at"] - run["started_at"]
    cfg = run.get("config") or {}
    return {
        "id": run["id"],
        "name": run.get("name") or "",
        "model": run.get("label") or model_label(run.get("model") or ""),
        "model_key": run.get("model"),
        "status": run.get("status"),
        "dataset": run.get("dataset"),
        "epochs": (cfg.get("hparams") or {}).get("epochs"),
        "best_epoch": run.get("best_epoch"),
        "val_acc_%": _pct(run.get("best_val_acc")),
        "test_acc_%": _pct(run.get("test_acc")),
        "duration": format_duration(duration),
        "study": run.get("study_name") or "",
        "trial": run.get("trial_number"),
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(run["created_at"])) if run.get("created_at") else "",
    }


SORT_KEYS = {
    "newest first": ("id", True),
    "best test accuracy": ("test_acc_%", True),
    "best validation accuracy": ("val_acc_%", True),
    "name": ("name", False),
}


def runs_table(
    runs: Sequence[dict[str, Any]],
    models: Iterable[str] | None = None,
    statuses: Iterable[str] | None = None,
    sort: str = "newest first",
) -> list[dict[str, Any]]:
    """Rows of the runs table, filtered by model key and status, sorted (missing values last)."""
    models = set(models) if models else None
    statuses = set(statuses) if statuses else None
    rows = [
        run_row(r)
        for r in runs
        if (models is None or r.get("model") in models) and (statuses is None or r.get("status") in statuses)
    ]
    if sort not in SORT_KEYS:
        raise ValueError(f"unknown sort {sort!r}; valid: {', '.join(SORT_KEYS)}")
    key, reverse = SORT_KEYS[sort]
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    present.sort(key=lambda r: r[key], reverse=reverse)
    return present + missing


def best_runs_per_model(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each model, the succeeded run with the best test accuracy (then validation accuracy)."""
    best: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r.get("status") != "succeeded":
            continue
        key = r.get("label") or r.get("model") or "?"
        score = (r.get("test_acc") or -1.0, r.get("best_val_acc") or -1.0)
        old = best.get(key)
        if old is None or score > (old.get("test_acc") or -1.0, old.get("best_val_acc") or -1.0):
            best[key] = r
    return [best[k] for k in sorted(best)]


def checkpoint_choices(runs: Sequence[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """Succeeded runs of ``model`` whose checkpoint exists, best test accuracy first."""
    return runs_with_checkpoints(r for r in runs if r.get("model") == model and r.get("status") == "succeeded")


def runs_with_checkpoints(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Those of ``runs`` whose checkpoint exists (``checkpoint_path`` filled in), best test accuracy first."""
    out = []
    for r in runs:
        ckpt = r.get("checkpoint_path") or (str(RunPaths(Path(r["run_dir"])).checkpoint) if r.get("run_dir") else None)
        if ckpt and (Path(ckpt) / CARD_FILE).is_file():
            out.append({**r, "checkpoint_path": ckpt})
    out.sort(key=lambda r: (r.get("test_acc") or -1.0, r["id"]), reverse=True)
    return out


def checkpoint_label(run: dict[str, Any]) -> str:
    acc = run.get("test_acc")
    acc_text = f" · test {acc:.1%}" if acc is not None else ""
    return f"#{run['id']} {run.get('name') or ''} ({run.get('label') or run.get('model')}){acc_text}"


def resumable(run: dict[str, Any], has_state: bool) -> bool:
    return run.get("status") in ("failed", "cancelled") and has_state


# Hyperparameters that only shape the custom CNN; VGG-16 transfer uses the rest (lr, optimizer,
# batch size, dropout in its head, epochs).
CNN_ONLY_PARAMS = (
    "num_filters_conv1",
    "num_filters_conv2",
    "kernel_size_conv1",
    "kernel_size_conv2",
    "fc1_units",
    "activation",
)
IMAGE_SIZES = (32, 40, 48, 64, 96, 128, 160, 192, 224)


def param_applies(model: str, name: str) -> bool:
    return model_info(model).searchable or name not in CNN_ONLY_PARAMS


# -- study search space from widgets ------------------------------------------------------------
