"""The store's tables and states: the job and run states, the columns of a run and a job, and the
migrations that build the SQLite schema, one list of statements per version.
"""

from __future__ import annotations

# A run's status and a job's state take the same values: waiting or under way, then one final state.
ACTIVE_STATES = ("queued", "running")
FINISHED_STATES = ("succeeded", "failed", "cancelled")
RUN_STATUSES = (*ACTIVE_STATES, *FINISHED_STATES)
JOB_STATES = (*ACTIVE_STATES, *FINISHED_STATES)
JOB_KINDS = ("train", "study", "weights", "finder", "builtin", "compare")
# Kinds that take no slot of FLAGVISION_MAX_JOBS: a weights download waits on the network, not the
# CPU, and must not queue behind a training of many minutes.
UNCOUNTED_KINDS = ("weights",)

# Core metric columns; any other name given to log_epoch goes into extra_json.
METRIC_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")

# Columns a caller may set (id and created_at are assigned by the store; created_at may be given).
RUN_FIELDS = (
    "name",
    "model",
    "dataset",
    "config_json",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "best_epoch",
    "best_val_acc",
    "best_val_loss",
    "test_acc",
    "checkpoint_path",
    "run_dir",
    "job_id",
    "study_name",
    "trial_number",
    "label",
    "notes",
    "error",
)
JOB_FIELDS = (
    "payload_json",
    "state",
    "pid",
    "created_at",
    "started_at",
    "finished_at",
    "heartbeat_at",
    "progress",
    "progress_text",
    "cancel_requested",
    "error",
    "log_path",
    "run_id",
    "study_name",
    "result_json",
)

# Schema migrations: index i upgrades version i to i + 1. Append, never edit a released step;
# a new column is one more entry such as ``["ALTER TABLE fv_runs ADD COLUMN tags TEXT"]``.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE fv_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT,
            model TEXT,
            dataset TEXT,
            config_json TEXT,
            status TEXT NOT NULL DEFAULT 'queued',
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            best_epoch INTEGER,
            best_val_acc REAL,
            best_val_loss REAL,
            test_acc REAL,
            checkpoint_path TEXT,
            run_dir TEXT,
            job_id INTEGER,
            study_name TEXT,
            trial_number INTEGER,
            label TEXT,
            notes TEXT,
            error TEXT
        )""",
        "CREATE INDEX fv_runs_status ON fv_runs (status)",
        "CREATE INDEX fv_runs_study ON fv_runs (study_name, trial_number)",
        """CREATE TABLE fv_metrics (
            run_id INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            train_loss REAL,
            train_acc REAL,
            val_loss REAL,
            val_acc REAL,
            lr REAL,
            seconds REAL,
            extra_json TEXT,
            created_at REAL NOT NULL,
            PRIMARY KEY (run_id, epoch)
        )""",
        """CREATE TABLE fv_jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued',
            payload_json TEXT NOT NULL DEFAULT '{}',
            pid INTEGER,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            heartbeat_at REAL,
            progress REAL,
            progress_text TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            log_path TEXT,
            run_id INTEGER,
            study_name TEXT,
            result_json TEXT
        )""",
        "CREATE INDEX fv_jobs_state ON fv_jobs (state, created_at)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
