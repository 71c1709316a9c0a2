"""The names a study's sampler and pruner may take.

Kept apart from :mod:`flagvision.study` (which imports Optuna) so that the CLI parser can offer them
as choices without importing Optuna or torch; ``study.StudyConfig`` checks against the same tuples.
"""

from __future__ import annotations

SAMPLERS = ("random", "tpe")
PRUNERS = ("none", "median", "hyperband")
