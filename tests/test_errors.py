"""One error taxonomy: every user error is a FlagVisionError, shown as one line by the CLI, the app
and the worker alike; a broken environment, a closed pipe and Ctrl-C end without a traceback."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import signal
import sqlite3
import subprocess
import sys

import pytest

import flagvision
from flagvision.errors import FlagVisionError, describe, is_user_error, user_message
from fv_helpers import REPO, make_pattern_dataset, run_cli, wait_for


def _one_clean_line(out, fragment: str) -> None:
    """Exit 2, nothing on stdout's side of the story but one ``error:`` line naming ``fragment``."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], out.stderr


# -- the definition ------------------------------------------------------------------------------


def test_every_error_class_of_the_library_is_a_flagvision_error():
    """Found by walking the package, so a new module's error class cannot be forgotten."""
    classes = {}
    for info in pkgutil.walk_packages(flagvision.__path__, prefix="flagvision."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Exception)
                and obj.__module__ == module.__name__
                and not name.startswith("_")
            ):  # private control flow (e.g. a surplus trial), never shown
                classes[f"{info.name.removeprefix('flagvision.')}.{name}"] = obj
    assert {
        "config.ConfigError",
        "jobs.store.StoreError",
        "models.weights.WeightsMissingError",
        "studies.config.StudyError",
        "workspace.WorkspaceError",
        "jobs.queue.JobError",
    } <= set(classes)
    assert [n for n, c in classes.items() if not issubclass(c, FlagVisionError)] == []
    # Their old bases stay, for callers that catch them by those.
    from flagvision.config import ConfigError
    from flagvision.jobs.store import StoreError
    from flagvision.models.weights import WeightsError

    assert issubclass(ConfigError, ValueError) and issubclass(StoreError, RuntimeError)
    assert issubclass(WeightsError, RuntimeError)


def test_user_error_definition_and_messages():
    from flagvision.models.weights import WeightsMissingError

    missing = WeightsMissingError("VGG-16 ImageNet weights are not in the local cache")
    assert is_user_error(missing) and describe(missing) == str(missing)
    assert is_user_error(FileNotFoundError(2, "No such file or directory", "/x/y"))
    assert user_message(FileNotFoundError(2, "No such file or directory", "/x/y")) == "No such file or directory: /x/y"
    assert not is_user_error(ValueError("a bug")) and describe(KeyError("k")) == "KeyError: 'k'"


def test_worker_records_a_flagvision_errors_own_message():
    """A RuntimeError subclass (missing weights) used to be recorded as "WeightsMissingError: ..."."""
    from flagvision.jobs.worker import _describe
    from flagvision.models.weights import WeightsMissingError

    assert _describe(WeightsMissingError("no weights here")) == "no weights here"
    assert _describe(ZeroDivisionError("division by zero")) == "ZeroDivisionError: division by zero"


def _page_showing_errors():
    import sys

    from fv_helpers import REPO

    sys.path.insert(0, str(REPO))
    from app_ui import show_error
    from flagvision.models.weights import WeightsMissingError

    show_error(WeightsMissingError("VGG-16 ImageNet weights are not in the local cache"))
    show_error(ZeroDivisionError("division by zero"))


def test_app_shows_a_flagvision_error_as_the_users_error():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_page_showing_errors, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert errors[0] == "VGG-16 ImageNet weights are not in the local cache"
    assert errors[1].startswith("unexpected error (ZeroDivisionError")


# -- the CLI, as a shell user meets it -----------------------------------------------------------


def test_workspace_that_is_a_plain_file(tmp_path):
    (tmp_path / "ws").write_text("not a folder")
    _one_clean_line(run_cli("--workspace", str(tmp_path / "ws"), "jobs", "list"), "is a file, not a folder")
    _one_clean_line(run_cli("--workspace", str(tmp_path / "ws" / "below"), "jobs", "list"), "Not a directory")


@pytest.fixture
def garbage_db(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "flagvision.db").write_bytes(b"\x13\x37 these bytes are no SQLite file " * 200)
    return ws


@pytest.mark.parametrize("command", [["jobs", "list"], ["study", "list"], ["train", "--epochs", "1"]])
def test_corrupt_database(garbage_db, tiny_dataset, command):
    if command[0] == "train":
        command = [*command, "--data", str(tiny_dataset)]
    out = run_cli("--workspace", str(garbage_db), *command)
    _one_clean_line(out, "flagvision.db")
    assert "not a database" in out.stderr
    assert not (garbage_db / "runs" / "1").exists()


@pytest.mark.parametrize("command", [["jobs", "list"], ["train", "--epochs", "1"]])
def test_store_written_by_a_newer_version(tmp_path, tiny_dataset, command):
    from flagvision.jobs.schema import SCHEMA_VERSION
    from flagvision.jobs.store import Store

    ws = tmp_path / "ws"
    Store(ws / "flagvision.db").close()
    with sqlite3.connect(ws / "flagvision.db") as conn:
        conn.execute("UPDATE fv_schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    if command[0] == "train":
        command = [*command, "--data", str(tiny_dataset)]
    _one_clean_line(run_cli("--workspace", str(ws), *command), "newer than this code")


def test_closed_pipe_ends_quietly(tmp_path):
    """`predict --json … | head -c 10`: here the reader closes before the first byte, so the write
    surely fails (a small output could otherwise fit the pipe's buffer before head exits)."""
    data = make_pattern_dataset(tmp_path / "data", per_class=6)
    out = run_cli(
        "--workspace", str(tmp_path / "ws"), "train", "--data", str(data), "--epochs", "1", "--image-size", "32"
    )
    assert out.returncode == 0, out.stderr
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flagvision",
            "predict",
            "--checkpoint",
            str(tmp_path / "ws" / "runs" / "1"),
            *map(str, sorted(data.glob("*/*.png"))),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err.decode()  # failed to write, as `cat` or `grep` would report
    assert err.decode().strip() == ""  # no traceback, no "Exception ignored ... BrokenPipeError"


def _terminal_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flagvision",
                "data",
                "checkset",
                "--out",
                str(tmp_path / "check"),
                "--per-class",
                "2000",
                "--size",
                "32",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=REPO,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT below prints where it hangs
            # A shell without job control starts background commands with Ctrl-C ignored, and
            # Python keeps an ignored SIGINT: give the child a terminal's default (and no blocked
            # signals), as a user has.
            preexec_fn=_terminal_signals,
        )
        try:
            # stderr is a file, not a terminal, so no progress bar: wait for the first image written.
            wait_for(lambda: any(tmp_path.rglob("*.jpg")), timeout=120, what="the first rendered image")
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)  # faulthandler dumps every thread's stack to stderr
                proc.wait(timeout=30)
                pytest.fail(f"still running 120 s after Ctrl-C; its stderr:\n{err_path.read_text()[-5000:]}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = err_path.read_text()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and text.splitlines()[-1] == "interrupted"  # on a line of its own


def test_bad_values_for_data_and_device_are_user_errors():
    """Errors a person causes with a value (a flag name, a generator setting, a GPU that is not
    there) are FlagVisionErrors, so the app shows them as theirs, not as a bug."""
    import torch

    from flagvision.errors import is_user_error
    from flagvision.runtime import resolve_device
    from flagvision.synthetic.checkset import make_checkset
    from flagvision.synthetic.flags import check_flag_name
    from flagvision.synthetic.scenes import SynthConfig

    attempts = [
        lambda: SynthConfig(size=3),
        lambda: check_flag_name("Atlantis"),
        lambda: make_checkset("/nonexistent-dir/x", per_class=0),
    ]
    if not torch.cuda.is_available():
        attempts.append(lambda: resolve_device("cuda"))
    for attempt in attempts:
        with pytest.raises(Exception) as info:
            attempt()
        assert is_user_error(info.value), repr(info.value)
