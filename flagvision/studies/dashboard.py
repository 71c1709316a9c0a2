"""optuna-dashboard as a child process, next to the app and the CLI, on the same storage.

The dashboard is started with the interpreter running FlagVision, as a child that calls
optuna-dashboard's public ``run_server``, bound to 127.0.0.1 on a free port, and waited for until it
answers HTTP.

It must not disturb a study that is running: the child opens RDB storages with
``skip_table_creation`` and ``skip_compatibility_check``, so it never migrates the schema; we create
the storage once beforehand (a no-op when a study already did), and from then on it only reads.
SQLite runs in WAL mode, where readers never block writers.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from flagvision.studies.config import StudyError, journal_path, redact_url, storage_kind
from flagvision.studies.storage import open_storage

STARTUP_TIMEOUT_S = 60.0  # first start imports optuna, sqlalchemy and plotly: a few seconds on CPU

# The child: a watchdog (it runs in its own session, so if its parent dies without calling stop(),
# e.g. SIGKILL, it notices that it was re-parented and exits instead of serving forever), then
# optuna-dashboard's public `run_server` on a storage opened read-mostly: no table creation or
# schema migration (the storage was created beforehand by `start_dashboard`).
_LAUNCH = """
import os, sys, threading, time
parent = os.getppid()
def _watch():
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
import optuna, optuna_dashboard
target, kind, host, port = sys.argv[1:5]
if kind == "journal":
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(target))
else:
    storage = optuna.storages.RDBStorage(target, skip_compatibility_check=True, skip_table_creation=True)
optuna_dashboard.run_server(storage, host=host, port=int(port))
"""


class DashboardError(StudyError):
    """optuna-dashboard did not start (missing package, unusable storage, no free port)."""


@dataclass
class DashboardHandle:
    """A running optuna-dashboard: ``.url``, ``.stop()``; also a context manager."""

    url: str
    process: subprocess.Popen
    log_path: Path
    storage: str  # redacted storage URL it shows
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the dashboard (SIGTERM, then SIGKILL) and remove its log file."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self.log_path.unlink(missing_ok=True)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> DashboardHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def start_dashboard(storage_url: str, port: int | None = None, host: str = "127.0.0.1") -> DashboardHandle:
    """Start optuna-dashboard on ``storage_url``; return once it answers ``/api/studies`` with 200."""
    # find_spec, not import: fail clearly here rather than in the child, without loading the
    # package (it ships a Streamlit integration, and this library never imports Streamlit).
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise DashboardError("optuna-dashboard is not installed; pip install optuna-dashboard")
    kind = storage_kind(storage_url)
    if kind == "journal":
        path = journal_path(storage_url)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)  # an empty journal is a valid, empty storage
        target, storage_class = str(path), "journal"
    else:
        open_storage(storage_url)  # create Optuna's tables and version rows once (no-op if present)
        target, storage_class = storage_url, "rdb"
    if port:
        # A busy port would let the readiness probe below reach *another* server and report success.
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, port))
        except OSError as exc:
            raise DashboardError(
                f"port {port} on {host} is not available ({exc.strerror}); choose another --port or leave it out"
            ) from None
    port = port or free_port(host)
    fd, log_name = tempfile.mkstemp(prefix="optuna-dashboard-", suffix=".log")
    os.close(fd)
    log_file = open(log_name, "wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _LAUNCH,
            target,
            storage_class,
            host,
            str(port),
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        # Own session: Ctrl-C in the terminal reaches only our CLI, which then stops the child.
        start_new_session=True,
    )
    handle = DashboardHandle(f"http://{host}:{port}/", process, Path(log_name), redact_url(storage_url), log_file)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = handle.log_tail()
            handle.stop()
            raise DashboardError(f"optuna-dashboard exited at start (code {process.returncode}): {tail.strip()[-800:]}")
        if _answers(handle.url + "api/studies") and process.poll() is None:
            return handle
        time.sleep(0.2)
    tail = handle.log_tail()
    handle.stop()
    raise DashboardError(
        f"optuna-dashboard did not answer on {handle.url} within {STARTUP_TIMEOUT_S:.0f}s: {tail[-800:]}"
    )
