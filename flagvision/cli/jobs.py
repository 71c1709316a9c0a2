"""``python -m flagvision jobs …``: list, show, cancel, follow the logs of and resume background jobs.

Picked up by :func:`flagvision.cli.main.build_parser` through ``register``. Every command first moves the
queue on (``jobs.tick``: reap dead workers, start queued jobs), so a shell user needs no app open.
Unknown ids and impossible requests raise :class:`flagvision.jobs.queue.JobError` (one line, exit 2).
Nothing here imports torch or Optuna: these commands read the store and print a table.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from flagvision.strict_json import dumps as json_dumps


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="background jobs: list, show, cancel, logs, resume")
    jsub = p.add_subparsers(dest="jobs_command", required=True)

    j = jsub.add_parser("list", help="recent jobs, newest first")
    j.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    j.add_argument("--json", action="store_true")

    j = jsub.add_parser("show", help="one job: state, progress, run, error")
    j.add_argument("job_id", type=int)
    j.add_argument("--json", action="store_true")

    j = jsub.add_parser("cancel", help="stop a job (queued: at once; running: after the current batch)")
    j.add_argument("job_id", type=int)
    j.add_argument("--force", action="store_true", help="kill the worker outright (SIGKILL)")

    j = jsub.add_parser("logs", help="the job's log (training: the run's log.txt)")
    j.add_argument("job_id", type=int)
    j.add_argument("--tail", type=int, metavar="N", help="only the last N lines")

    j = jsub.add_parser("resume", help="continue a failed or cancelled run from its last saved epoch")
    j.add_argument("--run", type=int, required=True, dest="run_id", metavar="RUN_ID")

    p.set_defaults(func=cmd_jobs)


def _age(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0.0, time.time() - ts)
    if s < 90:
        return f"{s:.0f}s ago"
    if s < 5400:
        return f"{s / 60:.0f}m ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _progress(job: dict[str, Any]) -> str:
    return "-" if job["progress"] is None else f"{job['progress']:.0%}"


def _public(job: dict[str, Any]) -> dict[str, Any]:
    """The job without its raw JSON columns (already parsed into payload/result)."""
    return {k: v for k, v in job.items() if k not in ("payload_json", "result_json")}


def cmd_jobs(args: argparse.Namespace) -> int:
    from flagvision.jobs import queue as jobs
    from flagvision.jobs.schema import FINISHED_STATES
    from flagvision.workspace import Workspace

    ws = Workspace.open(args.workspace)
    jobs.tick(ws)
    store = jobs.open_store(ws)
    command = args.jobs_command

    if command == "list":
        rows = store.list_jobs(limit=max(1, args.limit))
        if args.json:
            print(json_dumps([_public(j) for j in rows], indent=2, default=str))
            return 0
        if not rows:
            print("no jobs yet; start one with: python -m flagvision train --background")
            return 0
        print(f"{'id':>4}  {'kind':5}  {'state':9}  {'progress':>8}  {'run':>4}  {'created':>12}  status")
        for j in rows:
            note = j["error"].splitlines()[0] if j["state"] == "failed" and j["error"] else (j["progress_text"] or "")
            run_text = "-" if j["run_id"] is None else str(j["run_id"])
            print(
                f"{j['id']:>4}  {j['kind']:5}  {j['state']:9}  {_progress(j):>8}  "
                f"{run_text:>4}  {_age(j['created_at']):>12}  {note}"
            )
        return 0

    if command == "show":
        job = jobs.get_job(ws, args.job_id)
        run = store.get_run(job["run_id"]) if job["run_id"] is not None else None
        metrics = store.get_metrics(job["run_id"]) if run else []
        if args.json:
            print(json_dumps({"job": _public(job), "run": run, "metrics": metrics}, indent=2, default=str))
            return 0
        print(
            f"job {job['id']} ({job['kind']}): {job['state']}"
            + (" — cancel requested" if job["cancel_requested"] and job["state"] == "running" else "")
        )
        print(f"  progress: {_progress(job)}  {job['progress_text'] or ''}".rstrip())
        print(
            f"  created {_age(job['created_at'])}, started {_age(job['started_at'])}, "
            f"finished {_age(job['finished_at'])}, last heartbeat {_age(job['heartbeat_at'])}"
        )
        if job["pid"]:
            print(f"  pid: {job['pid']}")
        print(f"  log: {jobs.job_log_path(ws, job)}")
        if run:
            best = "-" if run["best_val_acc"] is None else f"{run['best_val_acc']:.1%} (epoch {run['best_epoch']})"
            test = "" if run["test_acc"] is None else f", held-out accuracy {run['test_acc']:.1%}"
            print(
                f"  run {run['id']}: {run['name']} on {run['dataset']}, {run['status']}, "
                f"{len(metrics)}/{run['config'].get('hparams', {}).get('epochs', '?')} epochs, "
                f"best val acc {best}{test}"
            )
        if job["result"]:
            print(f"  result: {json_dumps(job['result'], sort_keys=True, default=str)}")
        if job["error"]:
            print("  error: " + job["error"].replace("\n", "\n    "))
        return 0

    if command == "cancel":
        before = jobs.get_job(ws, args.job_id)["state"]
        state = jobs.cancel(ws, args.job_id, force=args.force)
        if before in FINISHED_STATES:
            print(f"job {args.job_id} already {before}; nothing to cancel")
        elif state == "running":
            print(
                f"job {args.job_id}: cancel requested; it stops after the current batch and keeps its best checkpoint"
            )
        else:
            print(f"job {args.job_id} {state}")
        return 0

    if command == "logs":
        job = jobs.get_job(ws, args.job_id)
        path = jobs.job_log_path(ws, job)
        if not path.is_file():
            raise jobs.JobError(f"job {args.job_id} has no log yet ({path}); it is {job['state']}")
        if args.tail is not None:
            print(jobs.read_log_tail(path, max(1, args.tail)))
        else:
            print(path.read_text(errors="replace"), end="")
        return 0

    if command == "resume":
        job_id = jobs.resume_run(ws, args.run_id)
        print(
            f"job {job_id} queued to resume run {args.run_id}; follow it with: python -m flagvision jobs show {job_id}"
        )
        return 0

    raise AssertionError(f"unhandled jobs command {command!r}")
