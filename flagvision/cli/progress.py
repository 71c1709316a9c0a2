"""Progress on the terminal: tqdm bars with rate and ETA when stderr is a terminal, nothing otherwise.

Bars are drawn on stderr and only when it is a TTY (tqdm's ``disable=None``), so output that is
piped or logged (CI, a job's log, ``| tee``) carries no carriage returns. What the commands print
on stdout (a line per epoch, a line per study event) stays as it was; on a terminal a bar is
cleared before such a line is written. Torch-free: the light commands may import this module.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flagvision.training.callbacks import Callback

if TYPE_CHECKING:
    from tqdm import tqdm

    from flagvision.training.engine import EpochMetrics, FitState

_open_bars: set[tqdm] = set()  # bars still drawn, closed on Ctrl-C so the message gets its own line
_ctrl_c = False  # set by on_ctrl_c: a Ctrl-C came during this command


def on_ctrl_c(signum: int, frame: object) -> None:
    """The CLI's SIGINT handler: Python's own (raise KeyboardInterrupt), remembered, so that the next
    progress report raises it again if a library swallowed it. Seen: a Ctrl-C landing in numpy's lazy
    first import of ``numpy.random`` (inside a compiled module's set-up) was lost, and ``data checkset``
    went on rendering for minutes, about 1 time in 40 when Ctrl-C came just after the first image."""
    global _ctrl_c
    _ctrl_c = True
    raise KeyboardInterrupt


def reset_ctrl_c() -> None:
    global _ctrl_c
    _ctrl_c = False


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C came and was swallowed on its way (see :func:`on_ctrl_c`)."""
    if _ctrl_c:
        raise KeyboardInterrupt


def bar(desc: str, total: float, unit: str, **kwargs: Any) -> tqdm:
    """A bar on stderr, disabled unless stderr is a terminal (then every call on it is a no-op)."""
    from tqdm import tqdm  # here, not at the top: the light commands (jobs list, --help) never draw a bar

    b = tqdm(desc=desc, total=total, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True, **kwargs)
    if not b.disable:
        _open_bars.add(b)
    return b


def close(b: tqdm | None) -> None:
    if b is not None:
        _open_bars.discard(b)
        b.close()


def close_all() -> None:
    """Close every bar still drawn (after Ctrl-C), so the next line starts on a line of its own."""
    for b in list(_open_bars):
        close(b)


def counter(label: str, unit: str = "image") -> Callable[[int, int], None]:
    """A ``progress(done, total)`` function (what synthesize, ensure_builtin, load_dataset call) drawing a bar."""
    state: dict[str, tqdm] = {}

    def progress(done: int, total: int) -> None:
        raise_if_interrupted()
        if "bar" not in state:
            state["bar"] = bar(label, total, unit)
        b = state["bar"]
        b.update(done - b.n)
        if done >= total:
            close(b)

    return progress


class EpochBars(Callback):
    """A bar per training epoch, advanced per batch; cleared at the epoch's end, before its line is printed."""

    def __init__(self) -> None:
        self._bar: tqdm | None = None

    def on_batch_end(self, state: FitState) -> None:
        raise_if_interrupted()
        if self._bar is None:
            self._bar = bar(
                f"epoch {state.epoch}/{state.cfg.hparams.epochs}", state.batches_per_epoch, "batch", leave=False
            )
        self._bar.update(state.batch - self._bar.n)

    def on_epoch_end(self, state: FitState, metrics: EpochMetrics, improved: bool) -> None:
        self.close()

    def on_fit_end(self, state: FitState) -> None:
        self.close()

    def close(self) -> None:
        close(self._bar)
        self._bar = None


class StudyBar:
    """``report(fraction, text)`` for :func:`flagvision.studies.runner.run_study`: a bar over the
    study's trials on a terminal (the latest news as its postfix, trial events as lines above it);
    elsewhere ``fallback``, the line-per-report output."""

    def __init__(self, name: str, planned: int, fallback: Callable[[float, str], None]) -> None:
        self.name, self.planned, self.fallback = name, planned, fallback
        self._bar: tqdm | None = None

    def __call__(self, fraction: float, text: str) -> None:
        raise_if_interrupted()
        done = fraction * self.planned
        if self._bar is None:
            # initial: a resumed study's finished trials do not count towards the rate and the ETA.
            self._bar = bar(
                f"study {self.name}",
                self.planned,
                "trial",
                initial=done,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} trials "
                "[{elapsed}<{remaining}, {rate_fmt}]{postfix}",
            )
        if self._bar.disable:
            self.fallback(fraction, text)
            return
        if "epoch" not in text:  # a trial started or ended: worth a line that stays
            self._bar.write(f"[{fraction:6.1%}] {text}", file=sys.stdout)
        self._bar.set_postfix_str(text.split(" · ", 1)[-1], refresh=False)  # the count is the bar's own
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        close(self._bar)
        self._bar = None
