"""Background jobs: queue a training run, a study, a weights download, the flag finder's
training or the built-in data's rendering, start worker processes, cancel, reap.

A job is a row in the store (``fv_jobs``) plus, once it runs, one OS process::

    python -m flagvision.jobs.worker <job-id>

started detached (own session and process group, stdin closed, stdout and stderr appended to the
run's ``log.txt`` or to ``<workspace>/jobs/<id>.log``), so it outlives page reruns, closed tabs and
a restarted Streamlit server. At most ``K`` jobs run at once (``FLAGVISION_MAX_JOBS``, default 1:
two trainings on two cores are each slower than one after the other); a weights download
(``UNCOUNTED_KINDS``) waits on the network, takes no slot and starts at once.

Nobody owns the queue. Whoever looks at it moves it on: the app calls :func:`tick` (reap, then
dispatch) every couple of seconds, ``jobs list`` does it once, and every worker calls
:func:`dispatch` as it finishes, so the queue advances with no app open. The claim is atomic in
the store (``claim_next_queued``), so two callers can never start the same job or pass ``K``.

Cancel is a flag in the store plus SIGTERM to the worker's process group; the worker stops after
the current batch and keeps the best checkpoint. A worker that dies without a word (SIGKILL, OOM
killer, power cut) is found by :func:`reap`: its pid is gone while the row still says running.

This module stays cheap to import and to call (no torch): the app polls it.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from flagvision.config import RunConfig
from flagvision.errors import FlagVisionError
from flagvision.jobs.owners import reap_orphan_runs
from flagvision.jobs.schema import ACTIVE_STATES, FINISHED_STATES, UNCOUNTED_KINDS
from flagvision.jobs.store import Store
from flagvision.workspace import RunPaths, Workspace

MAX_JOBS_ENV = "FLAGVISION_MAX_JOBS"
DEFAULT_MAX_JOBS = 1  # one training at a time: on two cores, parallel runs only share the CPUs
STALE_AFTER_S = 15.0  # no heartbeat for this long, pid unknown → the worker never started
HUNG_AFTER_S = 300.0  # alive but silent this long → killed (workers beat every ~1 s from a thread)
LOG_TAIL_LINES = 20
WORKER_MODULE = "flagvision.jobs.worker"


class JobError(FlagVisionError, ValueError):
    """A job request that cannot be honoured (unknown id, wrong state); the message says why."""


# -- store access -------------------------------------------------------------------------------

_stores: dict[Path, Store] = {}
_stores_lock = threading.Lock()


def open_store(ws: Workspace) -> Store:
    """One shared :class:`Store` per database file and process (the app polls many times a second).

    ``Store`` reopens its connection by itself after a fork, so the cache is fork-safe.
    """
    with _stores_lock:
        store = _stores.get(ws.db_path)
        if store is None:
            store = _stores[ws.db_path] = Store(ws.db_path)
        return store


def _get_job(store: Store, job_id: int) -> dict[str, Any]:
    job = store.get_job(int(job_id))
    if job is None:
        raise JobError(f"no job {job_id}; `python -m flagvision jobs list` shows the jobs")
    return job


def max_running_jobs(max_running: int | None = None) -> int:
    """``max_running`` if given, else ``$FLAGVISION_MAX_JOBS``, else 1."""
    if max_running is not None:
        value: Any = max_running
    else:
        value = os.environ.get(MAX_JOBS_ENV) or DEFAULT_MAX_JOBS
    try:
        k = int(value)
    except (TypeError, ValueError):
        k = 0
    if k < 1:
        raise JobError(f"{MAX_JOBS_ENV}={value!r}: the number of parallel jobs must be a whole number ≥ 1")
    return k


# -- submitting ---------------------------------------------------------------------------------


def submit_training(ws: Workspace, cfg: RunConfig, name: str = "") -> tuple[int, int]:
    """Queue a training run; return ``(job_id, run_id)``. It starts at once if a slot is free."""
    from flagvision.training.run import create_run  # imports torch; only submitting pays for it, not polling

    if not cfg.data.path or not Path(cfg.data.path).is_dir():
        # Refused here so the user sees it now, not as a failed job a few seconds later.
        raise JobError(f"dataset folder {cfg.data.path or '(none given)'} does not exist")
    store = open_store(ws)
    run_id, _ = create_run(ws, store, cfg, name=name, status="queued")
    job_id = store.create_job("train", {"run_id": run_id, "config": cfg.to_dict()}, run_id=run_id)
    store.update_run(run_id, job_id=job_id)
    dispatch(ws)
    return job_id, run_id


def submit_study(ws: Workspace, payload: dict[str, Any], study_name: str | None = None) -> int:
    """Queue a study job; ``payload`` is read only by ``flagvision.studies.runner.run_study_job``."""
    store = open_store(ws)
    name = study_name if study_name is not None else payload.get("study_name")
    job_id = store.create_job("study", payload, study_name=name)
    dispatch(ws)
    return job_id


def submit_weights_download(ws: Workspace, url: str | None = None) -> int:
    """Queue the download of VGG-16's ImageNet weights (``flagvision.models.weights.download_weights``
    in a worker); return its job id. A download already queued or running is returned instead of a
    second one. ``url`` defaults to the worker's ``weights_url()`` (``$FLAGVISION_WEIGHTS_URL``)."""
    store = open_store(ws)
    latest = store.latest_job("weights")
    if latest is not None and latest["state"] in ACTIVE_STATES:
        return int(latest["id"])
    job_id = store.create_job("weights", {"url": url})
    dispatch(ws)
    return job_id


def submit_finder(ws: Workspace, config: dict[str, Any] | None = None) -> int:
    """Queue the training of the workspace's flag finder (``flagvision.models.finder.build_finder``
    in a worker); ``config`` is a ``FinderConfig.to_dict()`` (default: its defaults, as ``finder
    train``). Return the job id; one already queued or running is returned instead of a second one."""
    store = open_store(ws)
    latest = store.latest_job("finder")
    if latest is not None and latest["state"] in ACTIVE_STATES:
        return int(latest["id"])
    job_id = store.create_job("finder", {"config": config} if config else {})
    dispatch(ws)
    return job_id


THEN_DEFAULT_MODELS = "default_models"  # a builtin job's "then": queue the default models when it succeeds


def submit_builtin(
    ws: Workspace,
    synth: dict[str, Any] | None = None,
    then: str | None = None,
    finder_config: dict[str, Any] | None = None,
) -> int:
    """Queue the rendering of the built-in dataset and the example photos
    (``flagvision.synthetic.builtin.ensure_builtin`` in a worker); return the job id.

    ``synth`` overrides ``SynthConfig`` fields (default: none, the full built-in set; a smaller one
    is for tests). ``then=THEN_DEFAULT_MODELS``: when it succeeds, the job queues the default models
    (``jobs.defaults``), the finder with ``finder_config``. One already queued or running is
    returned instead of a second one; asked with ``then``, it is told to queue them too (the worker
    reads its ``then`` again when the data is written)."""
    if then not in (None, THEN_DEFAULT_MODELS):
        raise JobError(f"then={then!r}: a builtin job can only be followed by {THEN_DEFAULT_MODELS!r}")
    store = open_store(ws)
    latest = store.latest_job("builtin")
    if latest is not None and latest["state"] in ACTIVE_STATES:
        if then and latest["payload"].get("then") != then:
            updated = {**latest["payload"], "then": then}
            if finder_config:
                updated["finder_config"] = finder_config
            store.update_job(latest["id"], payload=updated)
        return int(latest["id"])
    payload: dict[str, Any] = {"synth": synth or {}}
    if then:
        payload["then"] = then
    if finder_config:
        payload["finder_config"] = finder_config
    job_id = store.create_job("builtin", payload)
    dispatch(ws)
    return job_id


def latest_weights_job(ws: Workspace) -> dict[str, Any] | None:
    """The newest weights download job (any state), or None: what the app's weights panel shows."""
    return open_store(ws).latest_job("weights")


def resume_run(ws: Workspace, run_id: int) -> int:
    """Queue a job that continues a failed or cancelled run from its last saved epoch."""

    store = open_store(ws)
    run = store.get_run(int(run_id))
    if run is None:
        raise JobError(f"no run {run_id}")
    active = [j for j in store.list_jobs(ACTIVE_STATES) if j["run_id"] == run["id"] and j["kind"] == "train"]
    if active:
        raise JobError(f"run {run_id} already has job {active[0]['id']} {active[0]['state']}; cancel it first")
    if run["status"] not in ("failed", "cancelled"):
        hint = " (it may be training in the foreground)" if run["status"] == "running" else ""
        raise JobError(f"run {run_id} is {run['status']}{hint}; only a failed or cancelled run can be resumed")
    run_dir = Path(run["run_dir"] or ws.run_dir(run["id"]))
    if not RunPaths(Path(run_dir)).has_resumable_state:
        raise JobError(f"run {run_id} saved no completed epoch to resume from; start a new run instead")
    job_id = store.create_job("train", {"run_id": run["id"], "config": run["config"], "resume": True}, run_id=run["id"])
    store.update_run(run["id"], job_id=job_id, status="queued", error=None, finished_at=None)
    dispatch(ws)
    return job_id


# -- cancelling ---------------------------------------------------------------------------------


def cancel(ws: Workspace, job_id: int, force: bool = False) -> str:
    """Ask a job to stop; return its state afterwards.

    A queued job is cancelled on the spot. A running one gets the store flag and SIGTERM; its
    worker finishes the current batch, keeps the best checkpoint and records ``cancelled``
    (usually within a second or two). ``force`` kills the process group outright (SIGKILL) and
    records ``cancelled`` here; use it only for a worker that ignores the polite request.
    A finished job is left as it is.
    """
    store = open_store(ws)
    job = _get_job(store, job_id)
    if job["state"] in FINISHED_STATES:
        return job["state"]
    state = store.request_cancel(job["id"])
    if state == "cancelled":  # it was still queued: nobody else will touch its run
        _finish_run_row(store, job, "cancelled", "cancelled before it started")
        return state
    pid = job["pid"]
    if pid and _is_worker(pid, job["id"], ws):
        _signal_group(pid, signal.SIGKILL if force else signal.SIGTERM)
    if force:
        _wait_gone(pid, job["id"], ws, timeout_s=5.0)
        if _still_running(store, job["id"]):
            store.finish_job(job["id"], "cancelled", error="killed on request (force)")
            _finish_run_row(store, job, "cancelled", "killed on request (force)")
        dispatch(ws)
    return _get_job(store, job["id"])["state"]


# -- dispatching --------------------------------------------------------------------------------

# Workers this process started: polled so that finished ones do not linger as zombies (a zombie
# still "exists" for kill(pid, 0)). Nothing else is done with them: workers are detached.
_children: list[subprocess.Popen] = []
_children_lock = threading.Lock()


_exit_codes: dict[int, int] = {}  # pid → exit status of a worker this process started and saw end


def _poll_children() -> None:
    with _children_lock:
        for p in _children:
            if p.poll() is not None:
                _exit_codes[p.pid] = p.returncode
        _children[:] = [p for p in _children if p.returncode is None]


def _exit_status(pid: int) -> str:
    """``, exit status N`` (negative: killed by signal -N) when this process started the worker."""
    with _children_lock:
        for p in _children:
            if p.pid == pid and p.returncode is None:
                try:  # it is gone or going: its status comes within moments
                    _exit_codes[pid] = p.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
    code = _exit_codes.get(pid)
    return "" if code is None else f", exit status {code}"


def dispatch(ws: Workspace, max_running: int | None = None) -> list[int]:
    """Start queued jobs while fewer than K run; return the ids started."""
    store = open_store(ws)
    k = max_running_jobs(max_running)
    started: list[int] = []
    while True:
        # Two cheap reads first: the app calls this every couple of seconds, and the claim below
        # takes the write lock.
        queued = store.list_jobs("queued")
        if not queued:
            break
        slots_full = sum(j["kind"] not in UNCOUNTED_KINDS for j in store.list_jobs("running")) >= k
        if slots_full and not any(j["kind"] in UNCOUNTED_KINDS for j in queued):
            break
        job = store.claim_next_queued(k)
        if job is None:
            break
        _start_worker(ws, store, job)
        started.append(job["id"])
    return started


def job_log_path(ws: Workspace, job: dict[str, Any]) -> Path:
    """Where a job's output goes: the run's ``log.txt`` for training, else ``jobs/<id>.log``."""
    if job.get("log_path"):
        return Path(job["log_path"])
    if job["kind"] == "train" and job.get("run_id") is not None:
        return ws.run_paths(job["run_id"]).log
    return ws.root / "jobs" / f"{job['id']}.log"


def worker_command(ws: Workspace, job_id: int) -> list[str]:
    """The worker's command line: this interpreter, the worker module, the job and its workspace."""
    return [sys.executable, "-m", WORKER_MODULE, str(job_id), str(ws.root)]


def _start_worker(ws: Workspace, store: Store, job: dict[str, Any]) -> None:
    log_path = job_log_path(ws, job)
    env = dict(os.environ)
    env["FLAGVISION_HOME"] = str(ws.root)
    env["PYTHONUNBUFFERED"] = "1"  # the log shows progress as it happens
    # The worker imports the very flagvision this process runs, installed or not.
    package_parent = str(Path(__file__).resolve().parents[2])  # the folder holding flagvision/
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- job {job['id']} ({job['kind']}) started {stamp} ---\n".encode())
            log.flush()
            proc = subprocess.Popen(
                worker_command(ws, job["id"]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: survives the app, killable as a group
                close_fds=True,
            )
    except OSError as exc:
        error = f"could not start the worker: {exc}"
        store.finish_job(job["id"], "failed", error=error)
        _finish_run_row(store, job, "failed", error)
        return
    store.update_job(job["id"], pid=proc.pid, log_path=str(log_path))
    with _children_lock:
        _children.append(proc)


# -- reaping ------------------------------------------------------------------------------------


def reap(ws: Workspace, stale_after_s: float = STALE_AFTER_S, hung_after_s: float = HUNG_AFTER_S) -> list[int]:
    """Mark running jobs whose worker is gone as failed (cancelled if so asked); return their ids.

    * pid recorded but the process is gone (or is a zombie, or the pid now belongs to another
      program) → failed at once: a worker always records its final state before it exits.
    * no pid yet and no heartbeat for ``stale_after_s`` → the start itself failed.
    * alive but no heartbeat for ``hung_after_s`` → wedged (the heartbeat thread is independent of
      training, so silence means the whole process hangs): its group is killed, then failed.

    The error holds the last lines of the worker's log, where the reason usually is.
    """
    _poll_children()
    store = open_store(ws)
    now = time.time()
    reaped: list[int] = []
    for job in store.list_jobs("running"):
        last_sign = job["heartbeat_at"] or job["started_at"] or job["created_at"]
        silent_s = now - last_sign
        pid = job["pid"]
        if pid is None:
            if silent_s <= stale_after_s:
                continue  # being started right now by another process
            why = f"worker never started (no pid, no heartbeat for {silent_s:.0f}s)"
        elif (instead := _not_worker_because(pid, job["id"], ws)) is None:
            if silent_s <= hung_after_s:
                continue
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, job["id"], ws, timeout_s=5.0)
            why = f"worker stopped responding (no heartbeat for {silent_s:.0f}s); killed"
        else:
            why = f"worker died (pid {pid}, last heartbeat {silent_s:.0f}s ago: {instead}{_exit_status(pid)})"
        # Re-read: the worker may have recorded its own end between our read and its exit. Once
        # its process is gone it can write nothing more, so this check is final.
        if not _still_running(store, job["id"]):
            continue
        # A worker that was asked to stop and is gone has stopped, however it ended (e.g. SIGTERM
        # before Python had installed the worker's handler): that is a cancel, not a failure.
        state = "cancelled" if store.is_cancel_requested(job["id"]) else "failed"
        if state == "cancelled":
            why = f"cancelled; the worker ended before recording it ({why})"
        tail = read_log_tail(job_log_path(ws, job), LOG_TAIL_LINES)
        error = why + (f"; last log lines:\n{tail}" if tail else "")
        store.finish_job(job["id"], state, error=error)
        _finish_run_row(store, job, state, why)
        reaped.append(job["id"])
    # Runs trained outside a live job (a foreground `train`, a trial of a foreground `tune`) whose
    # process was killed: nothing else would ever end them.
    reap_orphan_runs(store, {j["id"] for j in store.list_jobs(ACTIVE_STATES)})
    return reaped


def tick(ws: Workspace) -> None:
    """Reap dead workers, then start queued jobs: what a poller calls every couple of seconds.

    Costs a few single-row reads when nothing changes (no write lock, no process started).
    """
    reap(ws)
    dispatch(ws)


# -- reading ------------------------------------------------------------------------------------


def get_job(ws: Workspace, job_id: int) -> dict[str, Any]:
    """The job row, or :class:`JobError` naming the unknown id."""
    return _get_job(open_store(ws), job_id)


def read_log_tail(path: str | os.PathLike[str], lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log ("" when there is none), reading only the end of the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            # Enough bytes for the wanted lines in practice; long progress lines only shorten the tail.
            f.seek(max(0, size - max(4096, 400 * lines)))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    return "\n".join(deque((ln for ln in text.splitlines() if ln.strip()), maxlen=lines))


# -- process helpers ----------------------------------------------------------------------------


def _finish_run_row(store: Store, job: dict[str, Any], status: str, error: str | None) -> None:
    """Mirror a job's end on its run row (train jobs only)."""
    if job["kind"] != "train" or job.get("run_id") is None:
        return
    store.end_run(job["run_id"], status, error)


def _still_running(store: Store, job_id: int) -> bool:
    job = store.get_job(job_id)
    return job is not None and job["state"] == "running"


def _is_worker(pid: int, job_id: int, ws: Workspace) -> bool:
    """Whether ``pid`` is a live (not zombie) worker process of this job in this workspace.

    Checking the command line guards against pid reuse: after a worker died, its pid may belong
    to an unrelated program, or to the worker of a job with the same number in another workspace
    (job ids start at 1 in each), that must be neither signalled nor taken for the worker.
    """
    return _not_worker_because(pid, job_id, ws) is None


def _not_worker_because(pid: int, job_id: int, ws: Workspace) -> str | None:
    """None when ``pid`` is this job's live worker; else what it is instead (for the job's error)."""
    proc = Path("/proc") / str(pid)
    if Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return "no such process"
        state = stat.rpartition(")")[2].split()[0] if ")" in stat else "?"
        if state in ("Z", "X"):
            return "it has exited"
        if all(arg.encode() in cmdline for arg in worker_command(ws, job_id)[2:]):
            return None
        shown = b" ".join(cmdline).decode(errors="replace").strip()[:200]
        if not shown:
            # No command line yet: the worker is still inside exec (Popen returns once the old
            # program's files are closed, before the new one has its arguments in place; on a busy
            # machine that lasts long enough to be seen). It is the process dispatch just started.
            return None
        return f"the pid now runs another program: {shown}"
    # No /proc (macOS): existence is all we can know.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "no such process"
    except PermissionError:
        return None
    return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the worker's process group (the worker leads it: ``start_new_session``).

    A worker started by hand from a shell leads no group of its own; it gets the signal alone.
    """
    for send in (os.killpg, os.kill):
        try:
            send(pid, sig)
            return
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                if exc.errno == errno.EPERM:
                    return
                raise


def _wait_gone(pid: int | None, job_id: int, ws: Workspace, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid and _is_worker(pid, job_id, ws):
        _poll_children()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
