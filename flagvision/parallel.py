"""Rendering in worker processes: the built-in scenes and the flag finder's training scenes."""

from __future__ import annotations

import multiprocessing
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def parallel_map(
    fn: Callable[..., T],
    calls: Sequence[tuple[Any, ...]],
    sizes: Sequence[int],
    workers: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[T]:
    """``[fn(*call) for call in calls]``, in up to ``workers`` processes, in order.

    ``sizes`` are the items each call makes, for ``progress(done, total)`` after each finished call
    (called in this process). One worker, or one call, runs here without a pool. The pool forks
    on Linux (the workers share what this process has warmed, and need no importable ``__main__``)
    and spawns elsewhere.
    """
    total, done, out = sum(sizes), 0, []
    workers = min(workers, max(1, len(calls)))
    if workers == 1:
        for call, size in zip(calls, sizes, strict=True):
            out.append(fn(*call))
            done += size
            if progress:
                progress(done, total)
        return out
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_default_sigterm) as pool:
        futures = [pool.submit(fn, *call) for call in calls]
        try:
            for future, size in zip(futures, sizes, strict=True):
                out.append(future.result())
                done += size
                if progress:
                    progress(done, total)
        except BaseException:
            # Stopped (a cancelled job's SIGTERM, Ctrl-C, a failed call): the calls not started yet
            # are dropped, else leaving the pool would wait for all of them to be rendered.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return out


def _default_sigterm() -> None:
    """In a pool process: SIGTERM ends it. A forked child inherits its parent's Python handler (a
    job worker's only sets its stop flag), and a child deaf to SIGTERM would go on writing after
    its parent was cancelled and had cleaned up."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
