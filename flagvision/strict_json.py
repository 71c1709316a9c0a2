"""Strict JSON for everything a user or another program reads: no ``NaN`` or ``Infinity``.

Python's ``json.dumps`` writes float NaN/inf as the bare words ``NaN``/``Infinity``, which are not
JSON: ``jq``, browsers and most parsers refuse the whole document. :func:`dumps` writes them as
``null`` (a missing value, which is what they mean here: e.g. the accuracy of a class with no
images) and fails loudly on anything else that is not JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

__all__ = ["dumps", "finite_or_none"]


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float, at any depth of dicts/lists/tuples, made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def dumps(obj: Any, *, default: Callable[[Any], Any] | None = None, **kwargs: Any) -> str:
    """``json.dumps`` that writes non-finite floats as ``null`` and never emits NaN/Infinity.

    ``default`` (e.g. ``str`` for paths) is applied as in ``json.dumps``, and its result is made
    finite too.
    """
    fallback = None if default is None else (lambda o: finite_or_none(default(o)))
    return json.dumps(finite_or_none(obj), allow_nan=False, default=fallback, **kwargs)
