"""The names a study's sampler and pruner may take.

Kept apart from :mod:`flagvision.studies.runner` (which imports Optuna) so that the CLI parser can offer them
as choices without importing Optuna or torch; ``study.StudyConfig`` checks against the same tuples.
"""

from __future__ import annotations

SAMPLERS = ("random", "tpe")
PRUNERS = ("none", "median", "hyperband", "percentile")
# What pruning trades, in one sentence for `tune --help` and the Study page.
PRUNING_TRADE = (
    "Pruning stops a trial after an epoch in which its validation accuracy is behind the best earlier "
    "trials at the same epoch: the study finishes in a fraction of the time, but a trial that starts slowly "
    "and would have ended best can be stopped, so the best model found may be a little worse."
)
# What the sampler choice means, for `tune --help` and the Study page.
SAMPLER_HELP = (
    "How the next trial's values are chosen: random draws each value independently (a fair baseline); "
    "TPE (tree-structured Parzen estimator) learns from the finished trials and tries more values near the "
    "good ones, so it usually finds a better model in the same number of trials."
)
