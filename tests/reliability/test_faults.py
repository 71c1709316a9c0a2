"""Faults lose nothing: a killed app server, failing or full disks under a checkpoint write, and
(slow) three minutes of a study, a training run, the app's polling and optuna-dashboard at once.

Covered elsewhere and not repeated here (see docs/RELIABILITY.md): a SIGKILLed training worker
(tests/jobs/test_jobs.py::test_killed_worker_is_reaped_then_resumed_without_duplicate_epochs) and a
SIGKILLed study worker (tests/studies/test_study.py::test_killed_worker_trial_fails_by_heartbeat_and_is_retried).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from flagvision.config import DataConfig, HyperParams, RunConfig
from flagvision.jobs import queue as jobs
from flagvision.jobs.schema import FINISHED_STATES
from fv_helpers import make_pattern_dataset, wait_for
from reliability_kit import REPO, app, no_exceptions


def small_config(data: Path, epochs: int, **hp) -> RunConfig:
    return RunConfig(
        data=DataConfig(path=str(data), image_size=32),
        hparams=HyperParams(epochs=epochs, lr=1e-3, num_filters_conv1=8, num_filters_conv2=16, fc1_units=64, **hp),
        threads=1,
    )


@pytest.fixture
def ws(workspace, monkeypatch):
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "2")
    yield workspace
    for job in jobs.open_store(workspace).list_jobs(("queued", "running")):
        try:
            jobs.cancel(workspace, job["id"], force=True)
        except Exception:  # noqa: BLE001 - best-effort teardown: one failed cancel must not skip the rest
            pass


# -- the app server dies, the job does not ------------------------------------------------------


def _start_server(ws, port: int) -> subprocess.Popen:
    env = {**os.environ, "FLAGVISION_HOME": str(ws.root)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "streamlit_app.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def healthy():
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(healthy, 90, "the Streamlit server")
    return proc


def test_killing_the_app_server_loses_no_job(ws, tmp_path):
    from flagvision.studies.dashboard import free_port

    data = make_pattern_dataset(tmp_path / "data", per_class=30)
    server = _start_server(ws, free_port())
    try:
        job_id, run_id = jobs.submit_training(ws, small_config(data, 12), name="outlives the app")
        store = jobs.open_store(ws)
        wait_for(lambda: store.last_epoch(run_id), 90, "the first epoch")
        pid = store.get_job(job_id)["pid"]
        os.killpg(server.pid, signal.SIGKILL)  # the server and anything in its process group
        server.wait(timeout=10)
        assert jobs._is_worker(pid, job_id, ws), "the worker died with the app server"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    job = wait_for(lambda: (j := jobs.get_job(ws, job_id))["state"] in FINISHED_STATES and j, 180, "the job", ws)
    assert job["state"] == "succeeded", job["error"]
    assert [m["epoch"] for m in store.get_metrics(run_id)] == list(range(1, 13))

    port = free_port()
    server = _start_server(ws, port)  # a new server on the same workspace
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200
        # What that server renders for a visitor: the same script, run here by AppTest.
        at = app("runs")
        no_exceptions(at)
        table = at.dataframe[0].value
        row = table[table["name"] == "outlives the app"].iloc[0]
        assert row["status"] == "succeeded" and row["test_acc_%"] is not None
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


# -- a checkpoint write that fails half-way -----------------------------------------------------


def _tiny_model(classes: int = 3):
    from flagvision.models.networks import get_model

    cfg = RunConfig(data=DataConfig(image_size=32)).with_hparams(
        num_filters_conv1=8, num_filters_conv2=16, fc1_units=64
    )
    return get_model("flag_cnn", classes, cfg), cfg


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _half_then_enospc(path):
    with open(path, "wb") as f:
        f.write(b"half a file")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_failing_writer_keeps_every_previous_file(tmp_path, monkeypatch):
    """Weights, card, resume weights, optimizer state and resume card each fail in turn: every
    previous file stays byte for byte, loads, and no temporary file is left. (A failing weights
    write alone is tests/training/test_checkpoints.py::test_failing_writer_keeps_previous_checkpoint.)"""
    import torch

    from flagvision.training import checkpoints as ck
    from flagvision.training.engine import History, make_optimizer

    model, cfg = _tiny_model()
    folder = tmp_path / "ck"
    opt = make_optimizer("Adam", model.parameters(), 1e-3)
    ck.save_checkpoint(folder, model, ck.make_card(model, cfg, ["a", "b", "c"], "fp", epoch=1))
    ck.save_last_state(folder, model, opt, History(), epoch=1)
    before = _snapshot(folder)
    newer, _ = _tiny_model()
    new_card = ck.make_card(newer, cfg, ["a", "b", "c"], "fp", epoch=2)
    real_json_writer = ck._json_writer

    failures = {
        "weights": ("save_file", lambda tensors, path: _half_then_enospc(path)),
        "optimizer state": ("torch", type("T", (), {"save": staticmethod(lambda obj, path: _half_then_enospc(path))})),
        "card": ("_json_writer", lambda data: lambda p: _half_then_enospc(p)),
    }
    for what, (name, fake) in failures.items():
        with monkeypatch.context() as m:
            m.setattr(ck, name, fake)
            if what != "optimizer state":
                with pytest.raises(OSError, match="No space left"):
                    ck.save_checkpoint(folder, newer, new_card)
            with pytest.raises(OSError, match="No space left"):
                ck.save_last_state(folder, newer, make_optimizer("Adam", newer.parameters(), 1e-3), History(), epoch=2)
        assert _snapshot(folder) == before, f"a failing {what} write changed a previous file"
    assert ck._json_writer is real_json_writer
    loaded, card = ck.load_checkpoint(folder)
    assert card["epoch"] == 1
    state = ck.load_last_state(folder, _tiny_model()[0])
    assert state.next_epoch == 2
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(loaded(x), model.eval()(x))


def test_full_tmpfs_keeps_the_previous_checkpoint(tmp_path):
    """A real full filesystem: a tmpfs with room for one checkpoint but not for a second copy."""
    from safetensors import SafetensorError

    from flagvision.training import checkpoints as ck

    model, cfg = _tiny_model()
    probe = tmp_path / "probe"
    ck.save_checkpoint(probe, model, ck.make_card(model, cfg, ["a", "b", "c"], "fp"))
    needed = sum(p.stat().st_size for p in probe.iterdir())
    mnt = tmp_path / "full"
    mnt.mkdir()
    size_kb = (needed * 3 // 2) // 1024 + 8  # one checkpoint fits, two do not
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        folder = mnt / "ck"
        ck.save_checkpoint(folder, model, ck.make_card(model, cfg, ["a", "b", "c"], "fp", epoch=1))
        before = _snapshot(folder)
        newer, _ = _tiny_model()
        # safetensors reports the full disk as its own SafetensorError, not as an OSError.
        with pytest.raises((OSError, SafetensorError), match="No space left on device"):
            ck.save_checkpoint(folder, newer, ck.make_card(newer, cfg, ["a", "b", "c"], "fp", epoch=2))
        assert _snapshot(folder) == before
        assert ck.load_checkpoint(folder)[1]["epoch"] == 1
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# -- everything at once, for three minutes (slow) -----------------------------------------------


@pytest.mark.slow
def test_three_minutes_of_everything_at_once(ws, tmp_path):
    """A study job and a training job side by side (K=2), the app's poll (jobs.tick plus the store
    reads of the sidebar and the Train page) every 200 ms, and optuna-dashboard answering its API,
    for three minutes: no "database is locked" anywhere, integrity_check ok."""
    from flagvision.studies.config import StudyConfig
    from flagvision.studies.dashboard import start_dashboard

    seconds = float(os.environ.get("FLAGVISION_STRESS_S", 180))
    data = make_pattern_dataset(tmp_path / "data", per_class=40)
    base = RunConfig(data=DataConfig(path=str(data), image_size=32), threads=1)
    study = StudyConfig.from_dict(
        {
            "name": "stress",
            "n_trials": 1000,
            "epochs_per_trial": 2,
            "sampler": "random",
            "pruner": "none",
            "space": [{"name": "num_filters_conv1", "low": 8, "high": 16}, {"name": "fc1_units", "fixed": 64}],
            "base": base.to_dict(),
            "heartbeat_interval_s": 2,
            "grace_period_s": 10,
        }
    )
    study_job = jobs.submit_study(ws, study.to_dict(), study_name="stress")
    studies = [study_job]
    train_job, run_id = jobs.submit_training(ws, small_config(data, 100), name="stress training")
    trainings = [train_job]
    store = jobs.open_store(ws)
    problems: list[str] = []
    polls = {"app": 0, "dashboard": 0, "listed": 0}
    stop = threading.Event()

    def app_poller():
        while not stop.is_set():
            try:
                jobs.tick(ws)
                store.list_jobs(("queued", "running"))
                store.list_runs(limit=100)
                store.get_metrics(run_id)
                store.get_run(run_id)
                polls["app"] += 1
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                problems.append(f"app poll: {exc!r}")
            stop.wait(0.2)

    with start_dashboard(ws.storage_url) as dash:
        assert dash.url.startswith("http://127.0.0.1:")

        def dashboard_poller():
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(dash.url + "api/studies", timeout=10) as r:
                        body = r.read().decode()
                    if r.status != 200:
                        problems.append(f"dashboard status {r.status}")
                    polls["listed"] += '"stress"' in body  # once the study job has created it
                    polls["dashboard"] += 1
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    problems.append(f"dashboard: {exc!r}")
                stop.wait(1.0)

        threads = [threading.Thread(target=app_poller), threading.Thread(target=dashboard_poller)]
        for t in threads:
            t.start()
        try:
            wait_for(
                lambda: (
                    store.get_job(study_job)["state"] == "running" and store.get_job(train_job)["state"] == "running"
                ),
                60,
                "both jobs running",
            )
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                for j in (study_job, train_job):
                    job = store.get_job(j)
                    if j == train_job and job["state"] == "succeeded":  # faster than 3 minutes: train again
                        train_job, run_id = jobs.submit_training(ws, small_config(data, 100), name="stress training")
                        trainings.append(train_job)
                    elif j == study_job and job["state"] == "succeeded":  # a fast machine ends the study: another
                        name = f"stress-{len(studies)}"
                        again = study.to_dict() | {"name": name}
                        study_job = jobs.submit_study(ws, again, study_name=name)
                        studies.append(study_job)
                    elif job["state"] in FINISHED_STATES:
                        problems.append(f"job {j} ended early: {job['state']} {job['error']}")
                if problems:
                    break
                time.sleep(1)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        dash_log = dash.log_tail(100_000)
    for j in (study_job, train_job):
        jobs.cancel(ws, j)
    for j in (study_job, train_job):
        job = wait_for(
            lambda j=j: jobs.get_job(ws, j)["state"] in FINISHED_STATES and jobs.get_job(ws, j), 60, "the cancel", ws
        )
        assert job["state"] in ("cancelled", "succeeded"), job["error"]
    logs = "".join(Path(store.get_job(j)["log_path"]).read_text(errors="replace") for j in (*studies, *trainings))
    assert all(store.get_job(j)["state"] in ("succeeded", "cancelled") for j in (*studies, *trainings))
    for text, where in ((logs, "worker logs"), (dash_log, "dashboard log"), ("\n".join(problems), "pollers")):
        assert "database is locked" not in text.lower(), where
    assert not problems, problems[:5]
    assert polls["app"] > seconds * 2 and polls["dashboard"] > seconds / 4 and polls["listed"] > 0, polls
    assert sum(len(store.get_metrics(store.get_job(j)["run_id"])) for j in trainings) >= 20
    import sqlite3

    with sqlite3.connect(ws.db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    import optuna

    trials = optuna.load_study(study_name="stress", storage=ws.storage_url).trials
    assert sum(t.state.name == "COMPLETE" for t in trials) >= 3
