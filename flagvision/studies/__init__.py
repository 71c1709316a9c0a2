"""Optuna studies: a study's configuration and search space (``config``), where studies live (``storage``),
the objective and the study loop (``runner``), what a finished study says (``results``), its Plotly figures
(``figures``), sampler and pruner names (``options``) and optuna-dashboard beside the app (``dashboard``).
"""
