"""Which process trains a run, and ending runs whose process was killed.

A foreground `train`, a study trial or a job's worker writes ``runs/<id>/owner.json`` (its pid and
the process's start time, so a recycled pid is not taken for it) when training starts. If that
process is killed, nothing records the end; :func:`reap_orphan_runs` (called by ``jobs.reap``, so
by every poll of the app and the jobs CLI) finds "running" runs whose owner is gone and marks them
failed, keeping their checkpoint for a resume. No torch here: the app's poll imports it.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Collection
from pathlib import Path
from typing import Any

from flagvision.jobs.store import Store
from flagvision.workspace import OWNER_FILE


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/PID/stat`` field 22); None if gone
    or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def mark_owner(run_dir: Path) -> None:
    """Record this process as the one training the run in ``run_dir``."""
    pid = os.getpid()
    info = {"pid": pid, "start": _process_start(pid), "host": socket.gethostname()}
    tmp = run_dir / f".{OWNER_FILE}.{pid}.tmp"
    try:
        tmp.write_text(json.dumps(info), encoding="utf-8")
        os.replace(tmp, run_dir / OWNER_FILE)
    except OSError:  # best effort: without it the run can only be reaped through its job
        tmp.unlink(missing_ok=True)


def owner_alive(run_dir: Path) -> bool | None:
    """Whether the process recorded in ``run_dir/owner.json`` still runs; None when unknown (no
    file, another host, no /proc)."""
    try:
        info = json.loads((run_dir / OWNER_FILE).read_text(encoding="utf-8"))
        pid, start, host = int(info["pid"]), info.get("start"), info.get("host")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname() or not Path("/proc/self/stat").exists():
        return None
    now = _process_start(pid)
    return now is not None and (start is None or now == start)


def reap_orphan_runs(store: Store, active_jobs: Collection[int] = ()) -> list[int]:
    """Mark "running" runs whose training process is gone as failed; return their ids.

    Runs of a job in ``active_jobs`` are left to the job reaper (it knows the worker and its log).
    """
    reaped = []
    for run in store.list_runs("running"):
        if run.get("job_id") in active_jobs or not run.get("run_dir"):
            continue
        owner = _owner_pid(Path(run["run_dir"]))
        if owner is None or owner_alive(Path(run["run_dir"])) is not False:
            continue
        current = store.get_run(run["id"])
        if not current or current["status"] != "running":  # it recorded its own end meanwhile
            continue
        store.end_run(
            run["id"],
            "failed",
            (
                f"the process training it (pid {owner}) ended without recording a result (killed?); its last "
                f"checkpoint is kept: continue with `python -m flagvision jobs resume --run {run['id']}`"
            ),
        )
        reaped.append(run["id"])
    return reaped


def _owner_pid(run_dir: Path) -> Any:
    try:
        return json.loads((run_dir / OWNER_FILE).read_text(encoding="utf-8"))["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
