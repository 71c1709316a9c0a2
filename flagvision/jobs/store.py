"""The store: runs, per-epoch metrics and jobs in the workspace's SQLite file.

The same file (``Workspace.db_path``) also holds Optuna's own tables, so every table here is
prefixed ``fv_`` and none of Optuna's names is ever created or touched.

Many processes share the file at once: the Streamlit app polls it every few hundred
milliseconds while worker processes write metrics and heartbeats. The rules that keep this safe:

* **WAL journal**: readers never block writers and writers never block readers.
* **Writes take the lock up front** (``BEGIN IMMEDIATE``). A deferred transaction that reads and
  then upgrades to a write can fail at once with ``SQLITE_BUSY`` without waiting; an immediate
  one waits in the busy handler (``busy_timeout``) instead.
* **Reads are single statements in autocommit mode**, so a reader never holds a transaction open
  and never needs the write lock.
* A retry with backoff on "database is locked/busy" is the last resort behind ``busy_timeout``.

One ``Store`` owns one connection, guarded by a lock so that Streamlit's many script threads can
share an instance (e.g. through ``st.cache_resource``). A child process that inherits a ``Store``
through ``fork`` opens its own connection: SQLite connections must not cross a fork.

Rows come back as plain dicts (timestamps are unix seconds as floats), ready for ``plots``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from flagvision.errors import FlagVisionError
from flagvision.jobs.schema import (
    FINISHED_STATES,
    JOB_FIELDS,
    JOB_KINDS,
    JOB_STATES,
    METRIC_COLUMNS,
    MIGRATIONS,
    RUN_FIELDS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    UNCOUNTED_KINDS,
)

BUSY_TIMEOUT_MS = 30_000  # how long SQLite itself waits for a lock before giving up
_RETRIES = 6  # extra attempts after busy_timeout expired (last resort, with backoff)
_RETRY_BASE_S = 0.05

T = TypeVar("T")


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    """The id of the row an INSERT just made (sqlite3 types ``lastrowid`` optional)."""
    if cursor.lastrowid is None:
        raise StoreError("the database reported no id for the new row")
    return cursor.lastrowid


class StoreError(FlagVisionError, RuntimeError):
    """The database is unusable (not a database, newer schema than this code, or locked past
    every retry); the message names the file and what to do."""


def _check_choice(what: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ValueError(f"{what}={value!r} is not one of {', '.join(valid)}")
    return value


def _check_fields(what: str, given: Iterable[str], valid: Sequence[str]) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"unknown {what} field(s) {', '.join(unknown)}; valid: {', '.join(valid)}")


def _newest_first(
    table: str, column: str, wanted: str | Sequence[str] | None, valid: Sequence[str], limit: int | None
) -> tuple[str, list[Any]]:
    """``SELECT *`` from ``table``, newest first, only rows whose ``column`` is one of ``wanted`` (if given)."""
    sql, params = f"SELECT * FROM {table}", list[Any]()
    if wanted is not None:
        values = [wanted] if isinstance(wanted, str) else list(wanted)
        for value in values:
            _check_choice(column, value, valid)
        sql += f" WHERE {column} IN ({', '.join('?' * len(values))})"
        params += values
    sql += " ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return sql, params


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


class Store:
    """Runs, epoch metrics and jobs in one SQLite file; safe to use from many processes."""

    def __init__(self, db_path: str | os.PathLike[str], *, timeout_s: float = BUSY_TIMEOUT_MS / 1000) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._timeout_s = timeout_s
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._inherited: list[sqlite3.Connection] = []
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:  # garbage bytes, a folder in its place, no permission
            self.close()
            raise StoreError(
                f"{self.db_path} is not a usable FlagVision database ({exc}); move it away to start "
                "a fresh one, or point --workspace / FLAGVISION_HOME at another folder"
            ) from None

    # -- connection -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This process's connection (caller holds ``self._lock``)."""
        if self._conn is None or self._pid != os.getpid():
            if self._conn is not None:
                # Inherited through fork: keep a reference but never use or close it here, since
                # closing would touch the parent's locks and WAL index.
                self._inherited.append(self._conn)
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; we issue BEGIN IMMEDIATE / COMMIT ourselves so that
        # Python's implicit (deferred) transactions never hold a read snapshot open.
        conn = sqlite3.connect(self.db_path, timeout=self._timeout_s, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout_s * 1000)}")
        # Switching to WAL needs a brief exclusive lock; only ask when the file is not WAL yet
        # (the mode is stored in the file, so this happens once per database).
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        # NORMAL is durable across application crashes in WAL mode (only an OS crash may lose the
        # last commits), and avoids an fsync per metric row.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.db_path)!r})"

    # -- transaction helpers ----------------------------------------------------------------

    def _retry(self, fn: Callable[[], T]) -> T:
        """Run ``fn``; on "locked"/"busy" (after busy_timeout already waited) retry with backoff."""
        for attempt in range(_RETRIES + 1):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_lock_error(exc) or attempt == _RETRIES:
                    if _is_lock_error(exc):
                        raise StoreError(f"{self.db_path} stayed locked: {exc}") from exc
                    raise
                time.sleep(_RETRY_BASE_S * 2**attempt)
        raise AssertionError("unreachable")

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside one BEGIN IMMEDIATE transaction (retried as a whole)."""

        def attempt() -> T:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT, so that a retry starts from a clean connection.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        with self._lock:
            return self._retry(attempt)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """One SELECT in autocommit mode: a consistent snapshot without holding a transaction."""
        with self._lock:
            return self._retry(lambda: self._connection().execute(sql, params).fetchall())

    def _migrate(self) -> None:
        def version(conn: sqlite3.Connection) -> int:
            conn.execute("CREATE TABLE IF NOT EXISTS fv_schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM fv_schema_version").fetchone()
            return row[0] or 0

        # Fast path without the write lock: most opens find the schema current.
        with self._lock:
            conn = self._connection()
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'fv_schema_version'"
            ).fetchone()
            current = conn.execute("SELECT MAX(version) FROM fv_schema_version").fetchone()[0] or 0 if exists else 0
        if current == SCHEMA_VERSION:
            return

        def upgrade(conn: sqlite3.Connection) -> None:
            have = version(conn)  # re-read under the lock: another process may have migrated
            if have > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.db_path} has schema version {have}, newer than this code "
                    f"({SCHEMA_VERSION}); upgrade flagvision"
                )
            for step in range(have, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
                conn.execute("DELETE FROM fv_schema_version")
                conn.execute("INSERT INTO fv_schema_version (version) VALUES (?)", (step + 1,))

        self._write(upgrade)  # also raises, under the lock, when the file is newer than the code

    def schema_version(self) -> int:
        return self._read("SELECT MAX(version) FROM fv_schema_version")[0][0] or 0

    def integrity_check(self) -> str:
        """SQLite's own check of the whole file; ``"ok"`` when healthy."""
        rows = self._read("PRAGMA integrity_check")
        return "\n".join(str(r[0]) for r in rows)

    # -- runs -------------------------------------------------------------------------------

    @staticmethod
    def _run_fields(fields: dict[str, Any]) -> dict[str, Any]:
        fields = dict(fields)
        if "config" in fields:  # convenience: a dict is stored as config_json
            fields["config_json"] = _json_or_none(fields.pop("config"))
        _check_fields("run", fields, RUN_FIELDS + ("config",))
        if "status" in fields:
            _check_choice("status", fields["status"], RUN_STATUSES)
        return fields

    @staticmethod
    def _run_row(row: sqlite3.Row) -> dict[str, Any]:
        run = dict(row)
        run["config"] = json.loads(run["config_json"]) if run["config_json"] else {}
        return run

    def create_run(self, **fields: Any) -> int:
        """Insert a run and return its id. ``config=dict`` may be given instead of config_json."""
        fields = self._run_fields(fields)
        fields.setdefault("created_at", time.time())
        fields.setdefault("status", "queued")
        names = list(fields)
        sql = f"INSERT INTO fv_runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        return self._write(lambda c: _inserted_id(c.execute(sql, [fields[n] for n in names])))

    def update_run(self, run_id: int, **fields: Any) -> None:
        self._update("fv_runs", run_id, self._run_fields(fields))

    def _update(self, table: str, row_id: int, fields: dict[str, Any]) -> None:
        """Set ``fields`` (already checked against the table's columns) on one row."""
        if not fields:
            return
        assignments = ", ".join(f"{n} = ?" for n in fields)
        self._write(lambda c: c.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*fields.values(), row_id]))

    def end_run(self, run_id: int, status: str, error: str | None = None, **fields: Any) -> None:
        """Record a run's end (the one way it is written): a finished status, the time, the error's line.

        :func:`flagvision.training.run.execute_run` ends every run it trains; the job queue and the
        reapers end only runs whose process can no longer do it (cancelled before starting, killed).
        """
        _check_choice("status", status, FINISHED_STATES)
        self.update_run(run_id, status=status, finished_at=time.time(), error=error, **fields)

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        """The run as a dict (all columns, plus ``config`` parsed), or None."""
        return next(iter(self._by_id("fv_runs", run_id, self._run_row)), None)

    def list_runs(self, status: str | Sequence[str] | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Runs, newest first, optionally only those with the given status(es)."""
        sql, params = _newest_first("fv_runs", "status", status, RUN_STATUSES, limit)
        return [self._run_row(r) for r in self._read(sql, params)]

    def delete_run(self, run_id: int) -> None:
        """Delete a run and its metrics together (files on disk are the caller's business)."""

        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM fv_metrics WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM fv_runs WHERE id = ?", (run_id,))

        self._write(delete)

    # -- metrics ----------------------------------------------------------------------------

    def log_epoch(self, run_id: int, epoch: int, **metrics: Any) -> None:
        """Record one epoch's metrics, replacing that epoch if it was logged before.

        Replacing (not appending) is what keeps a resumed run from showing an epoch twice. Names
        other than ``METRIC_COLUMNS`` are kept in ``extra_json`` and come back as keys too.
        """
        core = {k: metrics.pop(k) for k in METRIC_COLUMNS if k in metrics}
        extra = json.dumps(metrics, sort_keys=True) if metrics else None
        names = ["run_id", "epoch", *core, "extra_json", "created_at"]
        values = [run_id, int(epoch), *core.values(), extra, time.time()]
        sql = f"INSERT OR REPLACE INTO fv_metrics ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        self._write(lambda c: c.execute(sql, values))

    @staticmethod
    def _metric_row(row: sqlite3.Row) -> dict[str, Any]:
        # Flatten extras so that plots read every metric the same way; core names win.
        out = dict(row)
        extra = out.pop("extra_json")
        if extra:
            for key, value in json.loads(extra).items():
                out.setdefault(key, value)
        return out

    def get_metrics(self, run_id: int) -> list[dict[str, Any]]:
        """Per-epoch metrics of a run, ordered by epoch (one dict per epoch)."""
        rows = self._read("SELECT * FROM fv_metrics WHERE run_id = ? ORDER BY epoch", (run_id,))
        return [self._metric_row(r) for r in rows]

    def get_metrics_many(self, run_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
        """Metrics of several runs in one query; every requested id is a key (maybe empty)."""
        ids = list(dict.fromkeys(int(i) for i in run_ids))
        out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        if not ids:
            return out
        rows = self._read(
            f"SELECT * FROM fv_metrics WHERE run_id IN ({', '.join('?' * len(ids))}) ORDER BY run_id, epoch",
            ids,
        )
        for row in rows:
            out[row["run_id"]].append(self._metric_row(row))
        return out

    def last_epoch(self, run_id: int) -> int | None:
        return self._read("SELECT MAX(epoch) FROM fv_metrics WHERE run_id = ?", (run_id,))[0][0]

    def delete_metrics_after(self, run_id: int, epoch: int) -> None:
        """Drop epochs greater than ``epoch`` (resume from a checkpoint older than the log)."""
        self._write(lambda c: c.execute("DELETE FROM fv_metrics WHERE run_id = ? AND epoch > ?", (run_id, int(epoch))))

    # -- jobs -------------------------------------------------------------------------------

    @staticmethod
    def _job_fields(fields: dict[str, Any]) -> dict[str, Any]:
        fields = dict(fields)
        if "payload" in fields:
            fields["payload_json"] = json.dumps(fields.pop("payload"), sort_keys=True)
        if "result" in fields:
            fields["result_json"] = _json_or_none(fields.pop("result"))
        _check_fields("job", fields, JOB_FIELDS)
        if "state" in fields:
            _check_choice("state", fields["state"], JOB_STATES)
        if "cancel_requested" in fields:
            fields["cancel_requested"] = int(bool(fields["cancel_requested"]))
        return fields

    @staticmethod
    def _job_row(row: sqlite3.Row) -> dict[str, Any]:
        job = dict(row)
        job["cancel_requested"] = bool(job["cancel_requested"])
        job["payload"] = json.loads(job["payload_json"]) if job["payload_json"] else {}
        job["result"] = json.loads(job["result_json"]) if job["result_json"] else None
        return job

    def create_job(self, kind: str, payload: dict[str, Any], **fields: Any) -> int:
        """Queue a job (state 'queued' unless given) and return its id."""
        _check_choice("kind", kind, JOB_KINDS)
        fields = self._job_fields({**fields, "payload": payload})
        fields.setdefault("created_at", time.time())
        fields.setdefault("state", "queued")
        fields["kind"] = kind
        names = list(fields)
        sql = f"INSERT INTO fv_jobs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        return self._write(lambda c: _inserted_id(c.execute(sql, [fields[n] for n in names])))

    def get_job(self, job_id: int) -> dict[str, Any] | None:
        """The job (all columns, plus ``payload``/``result`` parsed), or None."""
        return next(iter(self._by_id("fv_jobs", job_id, self._job_row)), None)

    def _by_id(self, table: str, row_id: int, as_dict: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]]:
        return [as_dict(r) for r in self._read(f"SELECT * FROM {table} WHERE id = ?", (row_id,))]

    def list_jobs(self, states: str | Sequence[str] | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Jobs, newest first, optionally only in the given state(s)."""
        sql, params = _newest_first("fv_jobs", "state", states, JOB_STATES, limit)
        return [self._job_row(r) for r in self._read(sql, params)]

    def latest_job(self, kind: str) -> dict[str, Any] | None:
        """The newest job of ``kind`` (any state), or None."""
        _check_choice("kind", kind, JOB_KINDS)
        rows = self._read("SELECT * FROM fv_jobs WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,))
        return self._job_row(rows[0]) if rows else None

    def update_job(self, job_id: int, **fields: Any) -> None:
        self._update("fv_jobs", job_id, self._job_fields(fields))

    def heartbeat(self, job_id: int, progress: float | None = None, progress_text: str | None = None) -> bool:
        """Mark the job alive (and its progress 0..1); return whether cancel was requested.

        Returning the flag saves the worker a second round trip per beat.
        """
        sets, params = ["heartbeat_at = ?"], list[Any]([time.time()])
        if progress is not None:
            sets.append("progress = ?")
            params.append(min(1.0, max(0.0, float(progress))))
        if progress_text is not None:
            sets.append("progress_text = ?")
            params.append(progress_text)

        def beat(conn: sqlite3.Connection) -> bool:
            conn.execute(f"UPDATE fv_jobs SET {', '.join(sets)} WHERE id = ?", [*params, job_id])
            row = conn.execute("SELECT cancel_requested FROM fv_jobs WHERE id = ?", (job_id,)).fetchone()
            return bool(row and row[0])

        return self._write(beat)

    def request_cancel(self, job_id: int) -> str | None:
        """Flag a job for cancellation; return its state afterwards (None if no such job).

        A queued job is cancelled on the spot (it was never started, so nobody else would);
        a running one keeps running until its worker sees the flag (or the caller's signal).
        """

        def cancel(conn: sqlite3.Connection) -> str | None:
            conn.execute("UPDATE fv_jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            conn.execute(
                "UPDATE fv_jobs SET state = 'cancelled', finished_at = ? WHERE id = ? AND state = 'queued'",
                (time.time(), job_id),
            )
            row = conn.execute("SELECT state FROM fv_jobs WHERE id = ?", (job_id,)).fetchone()
            return row[0] if row else None

        return self._write(cancel)

    def is_cancel_requested(self, job_id: int) -> bool:
        rows = self._read("SELECT cancel_requested FROM fv_jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0][0])

    def claim_next_queued(self, max_running: int, pid: int | None = None) -> dict[str, Any] | None:
        """Atomically start the oldest queued job if fewer than ``max_running`` are running.

        Jobs of :data:`~flagvision.jobs.schema.UNCOUNTED_KINDS` (a download) neither count nor wait
        for a free slot. Count, pick and update happen in one BEGIN IMMEDIATE transaction, so two
        processes calling this at once can never both pass the limit or claim the same job.
        """
        uncounted = ", ".join(f"'{kind}'" for kind in UNCOUNTED_KINDS)  # constants, not user input

        def claim(conn: sqlite3.Connection) -> int | None:
            running = conn.execute(
                f"SELECT COUNT(*) FROM fv_jobs WHERE state = 'running' AND kind NOT IN ({uncounted})"
            ).fetchone()[0]
            row = conn.execute(
                "SELECT id FROM fv_jobs WHERE state = 'queued' AND cancel_requested = 0 "
                f"AND (kind IN ({uncounted}) OR ?) ORDER BY created_at, id LIMIT 1",
                (running < max_running,),
            ).fetchone()
            if row is None:
                return None
            now = time.time()
            conn.execute(
                "UPDATE fv_jobs SET state = 'running', started_at = ?, heartbeat_at = ?, pid = ? WHERE id = ?",
                (now, now, pid, row[0]),
            )
            return row[0]

        job_id = self._write(claim)
        return None if job_id is None else self.get_job(job_id)

    def finish_job(
        self,
        job_id: int,
        state: str,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Move a job to a final state (succeeded/failed/cancelled) with its error or result."""
        _check_choice("state", state, FINISHED_STATES)
        now = time.time()
        sets = "state = ?, finished_at = ?, heartbeat_at = ?, error = ?, result_json = ?"
        params: list[Any] = [state, now, now, error, _json_or_none(result)]
        if state == "succeeded":
            sets += ", progress = 1.0"
        self._write(lambda c: c.execute(f"UPDATE fv_jobs SET {sets} WHERE id = ?", [*params, job_id]))

    def stale_jobs(self, timeout_s: float) -> list[dict[str, Any]]:
        """Running jobs whose last heartbeat (or start) is older than ``timeout_s`` seconds."""
        cutoff = time.time() - timeout_s
        rows = self._read(
            "SELECT * FROM fv_jobs WHERE state = 'running' "
            "AND COALESCE(heartbeat_at, started_at, created_at) < ? ORDER BY id",
            (cutoff,),
        )
        return [self._job_row(r) for r in rows]
