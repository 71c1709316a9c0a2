"""Tests of flagvision.jobs.store on a real SQLite file, including several processes at once."""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.synchronize
import random
import sqlite3
import time
from pathlib import Path

import pytest

from flagvision.jobs import store as store_mod
from flagvision.jobs.schema import SCHEMA_VERSION
from flagvision.jobs.store import Store, StoreError

# spawn, not fork: workers are separate programs in production, and fork + SQLite is unsafe.
SPAWN = mp.get_context("spawn")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "flagvision.db") as s:
        yield s


# -- schema ---------------------------------------------------------------------------------


def test_schema_created_in_wal_mode(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(store.db_path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"fv_schema_version", "fv_runs", "fv_metrics", "fv_jobs"} <= tables
    # Only fv_ tables (and SQLite's own) so Optuna's names can never clash.
    assert all(t.startswith(("fv_", "sqlite_")) for t in tables)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    # Reopening is a no-op.
    Store(store.db_path).close()
    assert store.schema_version() == SCHEMA_VERSION
    assert store.integrity_check() == "ok"


def test_migration_adds_a_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "flagvision.db"
    s = Store(path)
    run_id = s.create_run(name="old")
    s.close()
    migrations = [*store_mod.MIGRATIONS, ["ALTER TABLE fv_runs ADD COLUMN tags TEXT"]]
    monkeypatch.setattr(store_mod, "MIGRATIONS", migrations)
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", len(migrations))
    monkeypatch.setattr(store_mod, "RUN_FIELDS", (*store_mod.RUN_FIELDS, "tags"))
    s = Store(path)
    assert s.schema_version() == len(migrations)
    assert s.get_run(run_id)["name"] == "old"
    s.update_run(run_id, tags="a,b")
    assert s.get_run(run_id)["tags"] == "a,b"
    s.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flagvision.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE fv_schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


# -- runs -----------------------------------------------------------------------------------


def test_run_round_trip(store: Store) -> None:
    run_id = store.create_run(name="r1", model="simple_cnn", dataset="builtin", config={"lr": 1e-3})
    run = store.get_run(run_id)
    assert run["name"] == "r1" and run["status"] == "queued"
    assert run["config"] == {"lr": 1e-3}
    assert isinstance(run["created_at"], float)
    store.update_run(run_id, status="succeeded", best_epoch=3, best_val_acc=0.9, test_acc=0.85)
    run = store.get_run(run_id)
    assert (run["status"], run["best_epoch"], run["best_val_acc"]) == ("succeeded", 3, 0.9)
    assert store.get_run(run_id + 100) is None


def test_list_runs_filters_newest_first(store: Store) -> None:
    statuses = ["running", "failed", "running"]
    ids = [store.create_run(name=f"r{i}", status=s) for i, s in enumerate(statuses)]
    assert [r["id"] for r in store.list_runs()] == ids[::-1]
    assert [r["id"] for r in store.list_runs(status="running")] == [ids[2], ids[0]]
    assert [r["id"] for r in store.list_runs(status=["failed"])] == [ids[1]]
    assert len(store.list_runs(limit=2)) == 2


def test_invalid_names_list_the_valid_ones(store: Store) -> None:
    with pytest.raises(ValueError, match="queued, running, succeeded, failed, cancelled"):
        store.create_run(status="done")
    run_id = store.create_run()
    with pytest.raises(ValueError, match="unknown run field"):
        store.update_run(run_id, colour="red")
    with pytest.raises(ValueError, match="train, study"):
        store.create_job("bake", {})
    job_id = store.create_job("train", {})
    with pytest.raises(ValueError, match="succeeded, failed, cancelled"):
        store.finish_job(job_id, "running")
    with pytest.raises(ValueError, match="not one of"):
        store.list_jobs(states=["paused"])


def test_delete_run_deletes_its_metrics(store: Store) -> None:
    keep, gone = store.create_run(), store.create_run()
    for run_id in (keep, gone):
        store.log_epoch(run_id, 1, val_acc=0.5)
    store.delete_run(gone)
    assert store.get_run(gone) is None
    assert store.get_metrics(gone) == []
    assert len(store.get_metrics(keep)) == 1


# -- metrics --------------------------------------------------------------------------------


def test_metrics_round_trip_with_extras(store: Store) -> None:
    run_id = store.create_run()
    assert store.last_epoch(run_id) is None
    for epoch in (2, 1, 3):  # out of order on purpose
        store.log_epoch(run_id, epoch, train_loss=1.0 / epoch, val_acc=0.3 * epoch, top5=0.99)
    rows = store.get_metrics(run_id)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[0]["train_loss"] == 1.0 and rows[2]["val_acc"] == pytest.approx(0.9)
    assert rows[0]["top5"] == 0.99  # unknown names come back flattened
    assert rows[0]["val_loss"] is None
    assert store.last_epoch(run_id) == 3


def test_same_epoch_replaces(store: Store) -> None:
    run_id = store.create_run()
    store.log_epoch(run_id, 1, val_acc=0.1)
    store.log_epoch(run_id, 2, val_acc=0.2)
    store.log_epoch(run_id, 2, val_acc=0.25)  # resumed run re-logs epoch 2
    rows = store.get_metrics(run_id)
    assert [(r["epoch"], r["val_acc"]) for r in rows] == [(1, 0.1), (2, 0.25)]


def test_delete_metrics_after_and_many(store: Store) -> None:
    a, b, empty = store.create_run(), store.create_run(), store.create_run()
    for epoch in range(1, 6):
        store.log_epoch(a, epoch, val_loss=float(epoch))
        store.log_epoch(b, epoch, val_loss=float(-epoch))
    store.delete_metrics_after(a, 2)
    assert store.last_epoch(a) == 2
    many = store.get_metrics_many([b, a, empty])
    assert set(many) == {a, b, empty}
    assert [r["epoch"] for r in many[a]] == [1, 2]
    assert [r["val_loss"] for r in many[b]] == [-1, -2, -3, -4, -5]
    assert many[empty] == []
    assert store.get_metrics_many([]) == {}


# -- jobs -----------------------------------------------------------------------------------


def test_job_lifecycle(store: Store) -> None:
    job_id = store.create_job("train", {"run_id": 7}, run_id=7, log_path="runs/7/log.txt")
    job = store.get_job(job_id)
    assert (job["kind"], job["state"], job["payload"]) == ("train", "queued", {"run_id": 7})
    assert job["cancel_requested"] is False and job["result"] is None
    claimed = store.claim_next_queued(max_running=1, pid=1234)
    assert claimed["id"] == job_id and claimed["state"] == "running" and claimed["pid"] == 1234
    assert store.heartbeat(job_id, progress=0.5, progress_text="epoch 1/2") is False
    job = store.get_job(job_id)
    assert (job["progress"], job["progress_text"]) == (0.5, "epoch 1/2")
    store.update_job(job_id, progress_text="epoch 2/2")
    store.finish_job(job_id, "succeeded", result={"test_acc": 0.9})
    job = store.get_job(job_id)
    assert job["state"] == "succeeded" and job["result"] == {"test_acc": 0.9}
    assert job["progress"] == 1.0 and job["finished_at"] >= job["started_at"]
    assert store.list_jobs(states="succeeded")[0]["id"] == job_id
    assert store.list_jobs(states=["queued", "running"]) == []


def test_cancel(store: Store) -> None:
    queued = store.create_job("study", {})
    assert store.request_cancel(queued) == "cancelled"  # never started: cancelled at once
    running = store.create_job("train", {})
    assert store.claim_next_queued(max_running=2)["id"] == running  # the cancelled one is skipped
    assert store.request_cancel(running) == "running"  # the worker must notice the flag
    assert store.is_cancel_requested(running)
    assert store.heartbeat(running) is True
    assert store.request_cancel(999) is None


def test_claim_respects_max_running_and_order(store: Store) -> None:
    ids = [store.create_job("train", {"n": i}) for i in range(3)]
    assert store.claim_next_queued(max_running=2)["id"] == ids[0]
    assert store.claim_next_queued(max_running=2)["id"] == ids[1]
    assert store.claim_next_queued(max_running=2) is None
    store.finish_job(ids[0], "failed", error="boom")
    assert store.get_job(ids[0])["error"] == "boom"
    assert store.claim_next_queued(max_running=2)["id"] == ids[2]
    assert store.claim_next_queued(max_running=2) is None  # nothing queued


def test_stale_jobs(store: Store) -> None:
    fresh, old = store.create_job("train", {}), store.create_job("train", {})
    store.claim_next_queued(5)
    store.claim_next_queued(5)
    store.update_job(old, heartbeat_at=time.time() - 120)
    assert [j["id"] for j in store.stale_jobs(60)] == [old]
    store.heartbeat(old)
    assert store.stale_jobs(60) == []
    assert fresh


# -- several processes ------------------------------------------------------------------------


def _claim_loop(db_path: str, barrier: mp.synchronize.Barrier, out: mp.Queue) -> None:
    """Claim jobs one at a time (max_running=1), hold each briefly, finish it."""
    s = Store(db_path)
    rng = random.Random()
    barrier.wait(timeout=60)  # line both processes up so that they really race
    claimed = []
    idle_since = time.time()
    while time.time() - idle_since < 1.0:
        job = s.claim_next_queued(max_running=1)
        if job is None:
            time.sleep(0.0005)
            continue
        idle_since = time.time()
        claimed.append(job["id"])
        running = s.list_jobs(states="running")
        assert [j["id"] for j in running] == [job["id"]], running
        time.sleep(0.005)
        s.finish_job(job["id"], "succeeded")
        # Without a pause the finisher would win every next claim and the other never race.
        time.sleep(rng.uniform(0, 0.004))
    out.put(claimed)


def test_claim_across_two_processes_never_runs_two(tmp_path: Path) -> None:
    path = tmp_path / "flagvision.db"
    s = Store(path)
    ids = [s.create_job("train", {"n": i}) for i in range(30)]
    out, barrier = SPAWN.Queue(), SPAWN.Barrier(2)
    procs = [SPAWN.Process(target=_claim_loop, args=(str(path), barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    assert all(results), results  # both processes won some claims: they did race
    claimed = results[0] + results[1]
    assert sorted(claimed) == ids  # every job once, none twice
    jobs = sorted((s.get_job(i) for i in ids), key=lambda j: j["started_at"])
    assert all(j["state"] == "succeeded" for j in jobs)
    # Intervals [started_at, finished_at] never overlap: at most one job ran at any moment.
    for prev, nxt in zip(jobs, jobs[1:], strict=False):
        assert nxt["started_at"] >= prev["finished_at"]
    assert s.integrity_check() == "ok"


def _busy_writer(db_path: str, run_id: int, job_id: int, seconds: float, out: mp.Queue) -> None:
    s = Store(db_path)
    end, epoch, errors = time.time() + seconds, 0, []
    while time.time() < end:
        epoch += 1
        try:
            s.log_epoch(run_id, epoch, train_loss=1 / epoch, val_acc=0.5, batch=epoch)
            s.heartbeat(job_id, progress=(epoch % 100) / 100, progress_text=f"epoch {epoch}")
            if epoch % 50 == 0:
                s.update_run(run_id, best_epoch=epoch)
                s.create_run(name=f"side {epoch}")
        except Exception as exc:  # noqa: BLE001 - the test counts every kind of error
            errors.append(repr(exc))
        # Still hundreds of commits a second (a real worker writes a few), but the log stays
        # small enough that the reader's full reads remain cheap.
        time.sleep(0.002)
    out.put((epoch, errors))


def test_reader_never_sees_locked_while_worker_writes(tmp_path: Path) -> None:
    path = tmp_path / "flagvision.db"
    s = Store(path)
    run_id = s.create_run(name="busy")
    job_id = s.create_job("train", {})
    out = SPAWN.Queue()
    writer = SPAWN.Process(target=_busy_writer, args=(str(path), run_id, job_id, 8.0, out))
    writer.start()
    errors, reads, seen = [], 0, []
    deadline = time.time() + 60
    while writer.is_alive() and time.time() < deadline:
        try:
            rows = s.get_metrics(run_id)
            s.get_job(job_id)
            s.list_runs(limit=20)
            s.get_metrics_many([run_id])
            if reads % 10 == 0:  # a page rerun opens a fresh Store too
                Store(path).close()
            seen.append(len(rows))
            reads += 1
        except Exception as exc:  # noqa: BLE001 - the test counts every kind of error
            errors.append(repr(exc))
        time.sleep(0.05 if reads % 2 else 0.2)
    epochs, writer_errors = out.get(timeout=30)
    writer.join(timeout=10)
    assert errors == [] and writer_errors == []
    assert reads > 10 and epochs > 100  # loose: the CI machine may be busy
    assert seen == sorted(seen)  # the reader only ever sees the log grow
    assert len(s.get_metrics(run_id)) == epochs
    assert s.integrity_check() == "ok"


def test_shares_the_file_with_optuna(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = tmp_path / "flagvision.db"
    # Optuna first (creates the file in rollback-journal mode), then the store switches it to WAL.
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{path}")
    s = Store(path)
    run_id = s.create_run(study_name="s", trial_number=0)
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)
    s.log_epoch(run_id, 1, val_acc=0.5)
    assert len(optuna.load_study(study_name="s", storage=f"sqlite:///{path}").trials) == 3
    assert s.get_metrics(run_id)[0]["val_acc"] == 0.5
    assert s.integrity_check() == "ok"
