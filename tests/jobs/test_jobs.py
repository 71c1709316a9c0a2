"""Background jobs with real worker processes and a real SQLite file.

Each worker pays a few seconds of torch import, so the process tests are few and each checks a
whole story: queue order with a live reader; a killed worker reaped and resumed; a failure; the CLI
(background train, list/show/logs, cancel of a running and of a starting job). The unit tests at the
top use fake processes and cost milliseconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flagvision.cli import main as cli
from flagvision.config import DataConfig, HyperParams, RunConfig
from flagvision.jobs import queue as jobs
from flagvision.jobs.schema import FINISHED_STATES
from flagvision.workspace import Workspace
from fv_helpers import make_pattern_dataset, run_cli, wait_for


@pytest.fixture(scope="module")
def medium_dataset(tmp_path_factory) -> Path:
    """3 classes × 40 images: ~0.25 s per epoch at 32 px on one thread, so jobs last long enough
    to be observed, cancelled and killed mid-run."""
    return make_pattern_dataset(tmp_path_factory.mktemp("medium"), per_class=40)


@pytest.fixture
def ws(workspace: Workspace, monkeypatch: pytest.MonkeyPatch):
    """The isolated workspace, one job at a time; any worker still alive at the end is killed."""
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "1")
    yield workspace
    for job in jobs.open_store(workspace).list_jobs("running"):
        if job["pid"] and jobs._is_worker(job["pid"], job["id"], workspace):
            os.killpg(job["pid"], signal.SIGKILL)


def small_config(data: Path, epochs: int) -> RunConfig:
    # One torch thread: leaves the second core to the test, the reader and the next worker.
    return RunConfig(
        data=DataConfig(path=str(data), image_size=32), hparams=HyperParams(epochs=epochs, lr=1e-3), threads=1
    )


def job_finished(ws: Workspace, job_id: int):
    job = jobs.get_job(ws, job_id)
    return job if job["state"] in FINISHED_STATES else None


def fake_worker(ws: Workspace, job_id: int, seconds: float = 60) -> subprocess.Popen:
    """A process whose command line looks like the worker of ``job_id`` in ``ws`` (for the reaper's checks)."""
    return subprocess.Popen(
        [sys.executable, "-c", f"import time; time.sleep({seconds})", *jobs.worker_command(ws, job_id)[2:]],
        start_new_session=True,
    )


# -- unit tests (no torch in a subprocess) ---------------------------------------------------------


def test_max_running_jobs_from_argument_env_and_default(monkeypatch):
    monkeypatch.delenv(jobs.MAX_JOBS_ENV, raising=False)
    assert jobs.max_running_jobs() == 1
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "3")
    assert jobs.max_running_jobs() == 3
    assert jobs.max_running_jobs(2) == 2
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "many")
    with pytest.raises(jobs.JobError, match="FLAGVISION_MAX_JOBS='many'"):
        jobs.max_running_jobs()


def test_unknown_ids_and_impossible_requests_are_job_errors(ws, tiny_dataset):
    assert issubclass(jobs.JobError, ValueError)
    with pytest.raises(jobs.JobError, match="no job 42"):
        jobs.cancel(ws, 42)
    with pytest.raises(jobs.JobError, match="no run 7"):
        jobs.resume_run(ws, 7)
    with pytest.raises(jobs.JobError, match="does not exist"):
        jobs.submit_training(ws, small_config(tiny_dataset / "missing", 1))
    store = jobs.open_store(ws)
    run_id = store.create_run(name="foreground", status="running", run_dir=str(ws.run_dir(1)))
    with pytest.raises(jobs.JobError, match="is running"):
        jobs.resume_run(ws, run_id)
    store.update_run(run_id, status="failed")
    with pytest.raises(jobs.JobError, match="no completed epoch"):
        jobs.resume_run(ws, run_id)


def test_queued_job_is_cancelled_at_once_with_its_run(ws, tiny_dataset):
    store = jobs.open_store(ws)
    # Hold the only slot with a job that is being started elsewhere (no pid yet, fresh heartbeat).
    store.create_job("study", {}, state="running", started_at=time.time(), heartbeat_at=time.time())
    job_id, run_id = jobs.submit_training(ws, small_config(tiny_dataset, 2), name="waits")
    assert store.get_job(job_id)["state"] == "queued"
    assert store.get_run(run_id)["status"] == "queued" and store.get_run(run_id)["job_id"] == job_id
    assert jobs.cancel(ws, job_id) == "cancelled"
    assert store.get_run(run_id)["status"] == "cancelled"
    assert jobs.cancel(ws, job_id) == "cancelled"  # idempotent
    assert jobs.dispatch(ws) == []


def test_tick_is_cheap_when_nothing_changes(ws):
    """The app calls tick every couple of seconds: with nothing to do it reads a few rows and writes
    nothing (counted as SQL statements, not timed), however many jobs and runs have finished."""
    store = jobs.open_store(ws)
    for _ in range(20):
        store.create_job("study", {}, state="succeeded")
        store.create_run(name="old", model="flag_cnn", status="succeeded")
    jobs.tick(ws)
    statements: list[str] = []
    with store._lock:
        store._connection().set_trace_callback(statements.append)
    try:
        for _ in range(10):
            jobs.tick(ws)
    finally:
        with store._lock:
            store._connection().set_trace_callback(None)
    per_tick = len(statements) / 10
    assert 0 < per_tick <= 6, statements[:12]
    assert all(st.lstrip().upper().startswith(("SELECT", "PRAGMA")) for st in statements), statements


def _wait_exec_done(pid: int) -> None:
    """Until a just-started process has its command line: inside exec it has none yet, and the reaper
    rightly leaves such a process alone for that round (it cannot tell whose it is)."""
    wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes(), 30, "the new process's command line", every=0.01)


def test_reap_dead_unstarted_and_hung_workers(ws):
    store = jobs.open_store(ws)
    now = time.time()
    # A worker that died: its pid belongs to a finished process; the log tail goes into the error.
    dead_id = store.create_job("study", {}, state="running", started_at=now, heartbeat_at=now)
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    log = ws.root / "jobs" / f"{dead_id}.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(50)) + "MemoryError: out of memory\n")
    store.update_job(dead_id, pid=done.pid, log_path=str(log))
    # Being started right now by another process: no pid yet, but a fresh claim. Left alone.
    starting_id = store.create_job("study", {}, state="running", started_at=now, heartbeat_at=now)
    # Claimed long ago and never got a pid: its start failed.
    lost_id = store.create_job("study", {}, state="running", started_at=now - 60, heartbeat_at=now - 60)
    # Alive but silent for long: wedged, killed and failed. A live, beating worker is left alone.
    hung_id = store.create_job("study", {}, state="running", started_at=now - 999, heartbeat_at=now - 999)
    live_id = store.create_job("study", {}, state="running", started_at=now, heartbeat_at=now)
    hung, live = fake_worker(ws, hung_id), fake_worker(ws, live_id)
    store.update_job(hung_id, pid=hung.pid)
    store.update_job(live_id, pid=live.pid)
    try:
        reaped = jobs.reap(ws, stale_after_s=15, hung_after_s=300)
        assert sorted(reaped) == sorted([dead_id, lost_id, hung_id])
        dead = store.get_job(dead_id)
        assert dead["state"] == "failed" and dead["error"].startswith("worker died")
        assert "MemoryError: out of memory" in dead["error"] and "line 31" in dead["error"]
        assert "line 30" not in dead["error"]  # only the last 20 lines
        assert "never started" in store.get_job(lost_id)["error"]
        assert "stopped responding" in store.get_job(hung_id)["error"]
        assert hung.wait(timeout=5) == -signal.SIGKILL
        assert store.get_job(starting_id)["state"] == "running"
        assert store.get_job(live_id)["state"] == "running" and live.poll() is None
        # A pid reused by an unrelated program is not taken for the worker (and never signalled).
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        store.update_job(live_id, pid=other.pid)
        _wait_exec_done(other.pid)
        assert jobs.reap(ws) == [live_id] and other.poll() is None
        other.kill()
        other.wait()
        # Nor is the worker of a job with the same number in another workspace (job ids start at 1
        # in every workspace): after a pid is reused, this reaper must not kill that one.
        elsewhere = fake_worker(Workspace.open(ws.root.parent / "elsewhere"), starting_id)
        store.update_job(starting_id, pid=elsewhere.pid)
        _wait_exec_done(elsewhere.pid)
        assert jobs.reap(ws) == [starting_id] and elsewhere.poll() is None
        assert "worker died" in store.get_job(starting_id)["error"]
        elsewhere.kill()
        elsewhere.wait()
    finally:
        live.kill()
        live.wait()


def test_log_tail_of_missing_and_long_files(tmp_path):
    assert jobs.read_log_tail(tmp_path / "none.log") == ""
    path = tmp_path / "log.txt"
    path.write_text("x" * 100_000 + "\n" + "\n".join(f"epoch {i}" for i in range(1, 31)) + "\n")
    assert jobs.read_log_tail(path, 3).splitlines() == ["epoch 28", "epoch 29", "epoch 30"]


# -- real worker processes -------------------------------------------------------------------------

READER = r"""
import json, sys, time
from flagvision.jobs.store import Store

db, out, deadline = sys.argv[1], sys.argv[2], time.time() + float(sys.argv[3])
run_ids, last_job = [int(x) for x in sys.argv[4].split(",")], int(sys.argv[5])
store = Store(db)
reads, errors, regressions, seen = 0, [], 0, {r: 0 for r in run_ids}
counts = {r: set() for r in run_ids}  # the distinct epoch counts read: proof of reading *during* training
while time.time() < deadline:
    try:
        for run_id in run_ids:
            n = len(store.get_metrics(run_id))
            regressions += n < seen[run_id]  # an epoch once visible must stay visible
            seen[run_id] = max(seen[run_id], n)
            counts[run_id].add(n)
        store.list_jobs()
        job = store.get_job(last_job)
        store.get_run(run_ids[-1])
        reads += 1
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
    except Exception as exc:
        errors.append(repr(exc))
    time.sleep(0.2)
json.dump({"reads": reads, "errors": errors, "regressions": regressions, "seen": seen,
           "distinct": {r: len(c) for r, c in counts.items()}}, open(out, "w"))
"""


def start_reader(
    ws: Workspace, tmp_path: Path, run_ids: list[int], last_job: int, seconds: float
) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "reader.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            READER,
            str(ws.db_path),
            str(out),
            str(seconds),
            ",".join(map(str, run_ids)),
            str(last_job),
        ],
    )
    return proc, out


def finish_reader(proc: subprocess.Popen, out: Path) -> dict:
    assert proc.wait(timeout=60) == 0
    return json.loads(out.read_text())


def test_queue_runs_one_at_a_time_while_a_reader_polls(ws, medium_dataset, tmp_path):
    """Two jobs with K=1: the second waits queued, then runs; both succeed. Meanwhile another
    process reads the store every 200 ms for the whole run (~25 s) and never sees an error."""
    store = jobs.open_store(ws)
    job_a, run_a = jobs.submit_training(ws, small_config(medium_dataset, 20), name="first")
    job_b, run_b = jobs.submit_training(ws, small_config(medium_dataset, 20), name="second")
    reader, out = start_reader(ws, tmp_path, [run_a, run_b], job_b, seconds=120)

    # Poll without tick: the queue must move on by itself (the first worker starts the second).
    wait_for(lambda: store.last_epoch(run_a) and store.get_job(job_a)["progress"], 60, "the first job's progress")
    a, b = store.get_job(job_a), store.get_job(job_b)
    assert a["state"] == "running" and a["pid"] and 0 < a["progress"] < 1 and a["progress_text"].startswith("epoch")
    assert b["state"] == "queued" and b["started_at"] is None
    assert store.get_run(run_a)["status"] == "running" and store.get_run(run_b)["status"] == "queued"

    b = wait_for(lambda: job_finished(ws, job_b), 90, "the second job")
    a = store.get_job(job_a)
    assert (a["state"], b["state"]) == ("succeeded", "succeeded"), (a["error"], b["error"])
    assert b["started_at"] >= a["finished_at"]
    for job, run_id in ((a, run_a), (b, run_b)):
        run = store.get_run(run_id)
        assert run["status"] == "succeeded" and run["test_acc"] is not None and run["job_id"] == job["id"]
        assert [m["epoch"] for m in store.get_metrics(run_id)] == list(range(1, 21))
        assert job["progress"] == 1.0 and job["result"]["epochs"] == 20
        assert Path(job["log_path"]) == ws.run_dir(run_id) / "log.txt"
        assert "succeeded" in Path(job["log_path"]).read_text()

    seen = finish_reader(reader, out)
    assert seen["errors"] == [] and seen["regressions"] == 0
    # Read all along (not only before and after), however fast this machine trains: several
    # distinct epoch counts of each run were seen, not a number of reads, which depends on speed.
    assert seen["seen"] == {str(run_a): 20, str(run_b): 20}
    assert min(seen["distinct"].values()) >= 3, seen


def test_killed_worker_is_reaped_then_resumed_without_duplicate_epochs(ws, medium_dataset):
    store = jobs.open_store(ws)
    epochs = 12
    job_id, run_id = jobs.submit_training(ws, small_config(medium_dataset, epochs))
    wait_for(lambda: (store.last_epoch(run_id) or 0) >= 3, 60, "three epochs", ws, every=0.05)
    os.killpg(store.get_job(job_id)["pid"], signal.SIGKILL)
    job = wait_for(lambda: job_finished(ws, job_id), 30, "the reaper", ws)
    assert job["state"] == "failed" and job["error"].startswith("worker died")
    assert f"training run {run_id}" in job["error"]  # the log tail
    assert store.get_run(run_id)["status"] == "failed"
    saved = json.loads((ws.run_dir(run_id) / "checkpoint" / "last.json").read_text())["next_epoch"] - 1
    assert saved >= 3

    resume_id = jobs.resume_run(ws, run_id)
    assert store.get_run(run_id)["job_id"] == resume_id
    resumed = wait_for(lambda: job_finished(ws, resume_id), 60, "the resumed job", ws)
    assert resumed["state"] == "succeeded", resumed["error"]
    assert store.get_run(run_id)["status"] == "succeeded"
    metrics = store.get_metrics(run_id)
    assert [m["epoch"] for m in metrics] == list(range(1, epochs + 1))  # no gap, no duplicate
    # The epochs up to the checkpoint were not trained again: logged before the resume started.
    assert all(m["created_at"] < resumed["started_at"] for m in metrics if m["epoch"] < saved)
    assert all(m["created_at"] > resumed["started_at"] for m in metrics if m["epoch"] > saved)
    assert "resuming run" in Path(resumed["log_path"]).read_text()


def test_killed_foreground_training_is_failed_by_the_next_poll_and_resumable(ws, medium_dataset, tmp_path):
    """`python -m flagvision train` (no job) killed mid-run: nothing records its end itself, so the
    app's poll (jobs.tick) must: the run turns failed naming the pid and the resume command; a run
    whose owner is alive, or a process that merely reuses nothing, is left alone."""
    from flagvision.jobs.owners import owner_alive

    store = jobs.open_store(ws)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(small_config(medium_dataset, 40).to_json())
    proc = subprocess.Popen(
        [sys.executable, "-m", "flagvision", "--workspace", str(ws.root), "train", "--config", str(cfg_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: store.list_runs() and (store.last_epoch(store.list_runs()[0]["id"]) or 0) >= 2,
            90,
            "two foreground epochs",
            every=0.05,
        )
        run_id = store.list_runs()[0]["id"]
        jobs.tick(ws)
        assert store.get_run(run_id)["status"] == "running" and owner_alive(ws.run_dir(run_id)) is True
        assert store.get_run(run_id)["dataset"] == str(medium_dataset)  # --config's data path, not the built-in
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert owner_alive(ws.run_dir(run_id)) is False
    jobs.tick(ws)
    run = store.get_run(run_id)
    assert run["status"] == "failed" and f"pid {proc.pid}" in run["error"]
    assert f"jobs resume --run {run_id}" in run["error"]
    resumed = jobs.resume_run(ws, run_id)
    job = wait_for(lambda: job_finished(ws, resumed), 90, "the resumed run", ws)
    assert job["state"] == "succeeded", job["error"]
    assert [m["epoch"] for m in store.get_metrics(run_id)] == list(range(1, 41))


def test_exception_in_the_worker_fails_the_job_with_its_message(ws, tmp_path):
    data = make_pattern_dataset(tmp_path / "doomed", per_class=4)
    store = jobs.open_store(ws)
    holder = store.create_job("study", {}, state="running", started_at=time.time(), heartbeat_at=time.time())
    job_id, run_id = jobs.submit_training(ws, small_config(data, 2))
    shutil.rmtree(data)  # deleted after submit, before the worker starts
    store.finish_job(holder, "succeeded")
    job = wait_for(lambda: job_finished(ws, job_id), 60, "the failure", ws)
    assert job["state"] == "failed"
    assert str(data) in job["error"] and "not a folder" in job["error"]
    run = store.get_run(run_id)
    assert run["status"] == "failed" and run["error"] == job["error"]
    assert "Traceback" in Path(job["log_path"]).read_text()


def test_cli_background_train_cancel_and_jobs_commands(ws, medium_dataset, capsys):
    t0 = time.monotonic()
    out = run_cli(
        "--workspace",
        str(ws.root),
        "train",
        "--background",
        "--data",
        str(medium_dataset),
        "--epochs",
        "100",
        "--image-size",
        "32",
        "--lr",
        "1e-3",
        "--threads",
        "1",
        env={"FLAGVISION_HOME": str(ws.root)},
    )
    cli_s = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("job 1 queued (run 1)")
    store = jobs.open_store(ws)
    assert store.get_job(1)["state"] == "running"  # returned at once, the worker goes on

    def jobs_cli(*args: str) -> tuple[int, str, str]:
        code = cli.main(["--workspace", str(ws.root), "jobs", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    # The epoch rows and the job's progress text are written one after the other: wait for both.
    wait_for(
        lambda: (store.last_epoch(1) or 0) >= 2 and (store.get_job(1)["progress_text"] or "").startswith("epoch"),
        60,
        "two epochs",
    )
    code, text, _ = jobs_cli("list")
    assert code == 0 and "   1  train  running" in text and "epoch" in text
    code, text, _ = jobs_cli("show", "1")
    assert code == 0 and text.startswith("job 1 (train): running") and "run 1:" in text
    code, text, _ = jobs_cli("show", "1", "--json")
    assert json.loads(text)["job"]["run_id"] == 1 and json.loads(text)["metrics"]
    code, text, _ = jobs_cli("logs", "1", "--tail", "2")
    assert code == 0 and len(text.splitlines()) <= 2
    code, text, _ = jobs_cli("logs", "1")
    assert "job 1: training run 1" in text
    # Cancel the running job: it stops (the latency is printed, not asserted: timings here are noisy)
    # and keeps its best checkpoint.
    t0 = time.monotonic()
    code, text, _ = jobs_cli("cancel", "1")
    assert code == 0 and ("cancel requested" in text or "cancelled" in text)
    job = wait_for(lambda: job_finished(ws, 1), 60, "the cancel to land", ws, every=0.05)
    cancel_s = time.monotonic() - t0
    assert job["state"] == "cancelled", job["error"]
    assert job["result"]["stop_reason"] == "cancelled" and 2 <= job["result"]["epochs"] < 100
    run = store.get_run(1)
    assert run["status"] == "cancelled" and 1 <= run["best_epoch"] < 100 and run["test_acc"] is not None
    ckpt = ws.run_dir(1) / "checkpoint"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "card.json").is_file()
    assert "received SIGTERM" in Path(job["log_path"]).read_text()
    code, text, _ = jobs_cli("cancel", "1")
    assert "already cancelled" in text

    # Resume through the CLI, then cancel the new job while its worker is still importing torch:
    # nothing to keep yet, so it stops at once and the run is cancelled again.
    code, text, _ = jobs_cli("resume", "--run", "1")
    assert code == 0 and text.startswith("job 2 queued to resume run 1")
    code, text, _ = jobs_cli("cancel", "2")
    job = wait_for(lambda: job_finished(ws, 2), 60, "the early cancel", ws)
    # Recorded by the worker ("cancelled before it started"), or by the reaper if SIGTERM landed
    # before Python had installed the worker's handler.
    assert job["state"] == "cancelled", job["error"]
    assert store.get_run(1)["status"] == "cancelled"

    for args, message in (
        (("show", "99"), "error: no job 99"),
        (("logs", "99"), "error: no job 99"),
        (("cancel", "99"), "error: no job 99"),
        (("resume", "--run", "99"), "error: no run 99"),
        (("resume", "--run", "1"), None),  # accepted again: cancelled with a checkpoint
    ):
        code, text, err = jobs_cli(*args)
        if message:
            assert code == 2 and err.startswith(message) and len(err.strip().splitlines()) == 1, err
    jobs.cancel(ws, 3)
    wait_for(lambda: job_finished(ws, 3), 60, "the last cancel", ws)
    print(f"\nCLI train --background returned in {cli_s:.1f}s; cancel landed in {cancel_s:.1f}s", file=sys.stderr)


@pytest.mark.slow
def test_reader_never_fails_during_a_two_minute_job(ws, medium_dataset, tmp_path):
    """The issue's acceptance run: two minutes of real training (cancelled then, if it is still
    going, so the test lasts the same on any machine), a reader every 200 ms throughout."""
    store = jobs.open_store(ws)
    cfg = small_config(medium_dataset, 100).with_changes(data=DataConfig(path=str(medium_dataset), image_size=64))
    job_id, run_id = jobs.submit_training(ws, cfg)
    reader, out = start_reader(ws, tmp_path, [run_id], job_id, seconds=300)
    wait_for(lambda: store.last_epoch(run_id), 60, "the first epoch", ws)
    started = store.get_job(job_id)["started_at"]
    wait_for(lambda: job_finished(ws, job_id) or time.time() - started > 120, 200, "two minutes", ws, every=1.0)
    jobs.cancel(ws, job_id)
    job = wait_for(lambda: job_finished(ws, job_id), 60, "the end", ws)
    assert job["state"] in ("succeeded", "cancelled"), job["error"]
    seen = finish_reader(reader, out)
    epochs = len(store.get_metrics(run_id))
    assert seen["errors"] == [] and seen["regressions"] == 0 and seen["seen"] == {str(run_id): epochs}
    # Read all along: one distinct epoch count per epoch it saw (a count of reads would depend on speed).
    assert epochs >= 10 and seen["distinct"][str(run_id)] >= 10, seen


# -- study jobs (in-process worker with a stand-in study module: no subprocess, no torch) ----------


@pytest.fixture
def keep_signal_handlers():
    """The worker installs SIGTERM/SIGINT handlers; give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def run_worker_in_process(ws: Workspace, job_id: int) -> int:
    from flagvision.jobs import worker

    job = jobs.open_store(ws).claim_next_queued(1)
    assert job is not None and job["id"] == job_id
    return worker._Worker(ws, jobs.open_store(ws), job).run()


def test_study_job_reports_progress_stops_on_cancel_and_returns_its_result(ws, monkeypatch, keep_signal_handlers):
    import types

    store = jobs.open_store(ws)
    calls = {}

    def run_study_job(ws_, store_, job, should_stop, report):
        calls["payload"] = job["payload"]
        report(0.5, "trial 3/6")
        # The next heartbeat carries the progress out: wait for it to reach the store.
        calls["progress"] = wait_for(
            lambda: (
                (p := (store_.get_job(job["id"])["progress"], store_.get_job(job["id"])["progress_text"]))
                == (0.5, "trial 3/6")
                and p
            ),
            30,
            "the heartbeat to carry the progress",
        )
        store_.request_cancel(job["id"])  # as jobs.cancel does, minus the signal
        deadline = time.monotonic() + 5
        while not should_stop() and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"best_value": 0.9, "trials": 3}

    monkeypatch.setitem(sys.modules, "flagvision.studies.runner", types.SimpleNamespace(run_study_job=run_study_job))
    holder = store.create_job("study", {}, state="running", heartbeat_at=time.time())  # keeps dispatch off
    job_id = jobs.submit_study(ws, {"study_name": "s1", "n_trials": 6})
    store.finish_job(holder, "succeeded")
    assert run_worker_in_process(ws, job_id) == 0
    job = store.get_job(job_id)
    assert calls["payload"] == {"study_name": "s1", "n_trials": 6} and job["study_name"] == "s1"
    assert calls["progress"] == (0.5, "trial 3/6")
    assert job["state"] == "cancelled" and job["result"] == {"best_value": 0.9, "trials": 3}


def test_study_job_without_the_study_module_fails_clearly(ws, monkeypatch, keep_signal_handlers):
    monkeypatch.setitem(sys.modules, "flagvision.studies.runner", None)  # import raises ImportError
    store = jobs.open_store(ws)
    holder = store.create_job("study", {}, state="running", heartbeat_at=time.time())
    job_id = jobs.submit_study(ws, {"study_name": "s2"})
    store.finish_job(holder, "succeeded")
    assert run_worker_in_process(ws, job_id) == 1
    job = store.get_job(job_id)
    assert job["state"] == "failed" and "flagvision.studies.runner.run_study_job" in job["error"]


def test_the_worker_has_work_for_every_job_kind_and_only_those(ws):
    from flagvision.jobs import worker
    from flagvision.jobs.schema import JOB_KINDS

    job = {"id": 1, "kind": "train", "payload": {}}
    assert sorted(worker._Worker(ws, jobs.open_store(ws), job).handlers()) == sorted(JOB_KINDS)
