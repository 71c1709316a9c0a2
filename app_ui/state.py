"""Checks of what the browser session remembers: a widget value kept in ``st.session_state`` from an
earlier run (or an older version of the app) is checked against what the widget accepts now, and a
value that no longer fits is dropped, said on the page in one line, instead of crashing the page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from flagvision.config import ConfigError, ParamSpec


def value_check(spec: ParamSpec) -> Callable[[Any], Any]:
    """A check for a widget value of ``spec`` (a number where the spec is numeric, inside its range)."""

    def check(value: Any) -> Any:
        if spec.kind != "categorical" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{spec.name}={value!r} is not a number")
        return spec.check(value)

    return check


def one_of(name: str, options: Any) -> Callable[[Any], Any]:
    """A check that a widget value is one of ``options``."""
    allowed = list(options)

    def check(value: Any) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(str, allowed))}")
        return value

    return check


def in_range(name: str, low: float, high: float, integer: bool = False) -> Callable[[Any], Any]:
    """A check that a widget value is a number in ``low``–``high`` (a whole one with ``integer``)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ConfigError(f"{name}={value!r} is outside its range {low:g}–{high:g}")
        if integer and value != int(value):
            raise ConfigError(f"{name}={value!r} must be a whole number")
        return value

    return check


def is_text(name: str) -> Callable[[Any], Any]:
    """A check that a text widget's value is a string."""

    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise ConfigError(f"{name}={value!r} is not text")
        return value

    return check


def pair_of(name: str, check_one: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A check for a range widget's ``(low, high)``: two values that each pass ``check_one``, in order."""

    def check(value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(f"{name}={value!r} is not a (low, high) pair")
        low, high = (check_one(v) for v in value)
        if low > high:
            raise ConfigError(f"{name}=({low!r}, {high!r}) has its low end above its high end")
        return value

    return check


def each_of(name: str, check_one: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A check for a multiselect's value: a list whose items each pass ``check_one``."""

    def check(value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}={value!r} is not a list of choices")
        for item in value:
            check_one(item)
        return value

    return check


def drop_invalid_state(checks: dict[str, Callable[[Any], Any]]) -> list[str]:
    """Remove widget values from session state that their widget could never hold (set by a script,
    a stale session or a tampered client), so the widgets fall back to their defaults instead of
    failing; return one message per value removed, for the page to show."""
    problems = []
    for key, check in checks.items():
        if key not in st.session_state:
            continue
        try:
            check(st.session_state[key])
        except (ConfigError, TypeError, ValueError) as exc:
            problems.append(str(exc))
            del st.session_state[key]
    return problems


def reset_invalid_state(checks: dict[str, Callable[[Any], Any]]) -> bool:
    """:func:`drop_invalid_state`, said on the page in one ``st.error``; True if anything was reset.

    Call it before any widget is drawn. A page should submit nothing in the run that reset values:
    a click that arrived with them must not start work on the defaults instead.
    """
    problems = drop_invalid_state(checks)
    if problems:
        st.error("Reset to their defaults, nothing was submitted: " + "; ".join(problems), icon=":material/error:")
    return bool(problems)


# -- figures ------------------------------------------------------------------------------------
