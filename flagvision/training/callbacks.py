"""The hooks :func:`flagvision.training.engine.fit` calls: the base class every training callback extends.

Torch-free, so that modules which only define callbacks (e.g. :mod:`flagvision.studies.runner`) can be
imported, and their read side used, without importing torch; ``flagvision.training.engine.Callback`` is
this same class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flagvision.training.engine import EpochMetrics, FitState


class Callback:
    """Hooks called by :func:`flagvision.training.engine.fit`; override what you need."""

    def on_fit_start(self, state: FitState) -> None: ...

    def on_batch_end(self, state: FitState) -> None: ...

    def on_epoch_end(self, state: FitState, metrics: EpochMetrics, improved: bool) -> None: ...

    def on_fit_end(self, state: FitState) -> None: ...
