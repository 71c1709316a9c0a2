"""The one definition of a user's error, read by the CLI, the app and the job worker.

Every error the library raises for bad input (a config value, a dataset, a checkpoint, an image, a
path) or a bad environment (missing weights, an unusable database) derives from
:class:`FlagVisionError`; its message is written for the person who caused it and names the fix.
Such an error is shown as one line: ``error: <message>`` and exit 2 in the CLI, a plain
``st.error`` in the app, the message itself in a job's row. Anything else is a bug and keeps its
traceback.

This module imports nothing heavy: the CLI parser and every library module import it.
"""

from __future__ import annotations

__all__ = ["FlagVisionError", "USER_OS_ERRORS", "describe", "is_user_error", "user_message"]


class FlagVisionError(Exception):
    """Base of every error the library raises for bad input or a bad environment.

    Subclasses keep a second base where callers catch them by it (``ConfigError`` is also a
    ``ValueError``, ``StoreError`` a ``RuntimeError``), so deriving from this changes no behaviour.
    """


# Errors of the operating system that a user causes by naming a path: shown as theirs, not as a bug.
USER_OS_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def is_user_error(exc: BaseException) -> bool:
    """True for a :class:`FlagVisionError` or an OS error about a path the user gave."""
    return isinstance(exc, (FlagVisionError, *USER_OS_ERRORS))


def user_message(exc: BaseException) -> str:
    """The text shown for a user error: its own message ("[Errno 2]" prefixes dropped)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc).strip() or type(exc).__name__


def describe(exc: BaseException) -> str:
    """One line for a log or a job row: a user error's message, else the exception type too."""
    if is_user_error(exc):
        return user_message(exc)
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
