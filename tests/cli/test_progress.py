"""CLI progress: tqdm bars with rate and ETA on a real terminal (a pseudo-terminal), none without one."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from fv_helpers import REPO, make_pattern_dataset, run_cli

TINY = ["--epochs", "2", "--image-size", "32", "--num-filters-conv1", "8", "--num-filters-conv2", "16"]
TINY += ["--fc1-units", "64", "--batch-size", "16", "--augment", "0", "--threads", "1"]
# Draw on every update: a tiny run's batches come faster than tqdm's 0.1 s between redraws.
EVERY_UPDATE = {"TQDM_MININTERVAL": "0", "TQDM_MINITERS": "0"}
# "3/3 [00:01<00:00, 2.47batch/s]" (or "s/batch" when slower than one a second): count, elapsed<ETA, rate.
RATE_AND_ETA = r"\d+/{total} \[\d\d:\d\d<\d\d:\d\d, +\d+\.\d\d ?(?:{unit}/s|s/{unit})"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "flagvision", *args]


def _run_in_terminal(command: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run ``command`` with stdout and stderr on a pseudo-terminal; return (exit status, all it wrote)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a 160-column terminal
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        cwd=REPO,
        env={**os.environ, **EVERY_UPDATE},
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:  # read as it comes, or the child blocks on a full terminal
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return rc, b"".join(chunks).decode("utf-8", errors="replace")


def test_train_on_a_terminal_draws_bars_with_rate_and_eta(tmp_path):
    # A dataset of its own: the shared one may already be decoded (and cached) by another test.
    data = make_pattern_dataset(tmp_path / "data")
    rc, out = _run_in_terminal(_cli("--workspace", str(tmp_path / "ws"), "train", "--data", str(data), *TINY))
    assert rc == 0, out
    # The images decoded: 36, rate in images per second.
    assert re.search("decoding images: +100%.*" + RATE_AND_ETA.format(total=36, unit="image"), out), out
    # One bar per epoch, advanced per batch: 29 training images in batches of 16.
    for epoch in (1, 2):
        assert re.search(rf"epoch {epoch}/2: .*" + RATE_AND_ETA.format(total=2, unit="batch"), out), out
    assert "\r" in out
    # The line per epoch still comes, each on a line of its own (the bar was cleared first).
    lines = [line.split("\r")[-1] for line in out.replace("\r\n", "\n").split("\n")]
    assert sum(1 for line in lines if re.match(r"\s*epoch +[12]/2 +train loss", line)) == 2, out


def test_train_without_a_terminal_prints_lines_and_no_bar(tmp_path, tiny_dataset):
    out = run_cli("--workspace", str(tmp_path / "ws"), "train", "--data", str(tiny_dataset), *TINY, env=EVERY_UPDATE)
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stdout + out.stderr and "batch/s" not in out.stderr and "|" not in out.stderr
    assert re.search(r"^epoch +1/2 +train loss [\d.]+ acc [\d.]+ +val loss", out.stdout, re.M), out.stdout
    assert re.search(r"^epoch +2/2 ", out.stdout, re.M) and "checkpoint: " in out.stdout


TUNE = ["tune", "--name", "bars", "--n-trials", "2", "--epochs-per-trial", "2", "--image-size", "32"]
TUNE += ["--augment", "0", "--threads", "1", "--fix", "activation=ReLU", "--fix", "batch_size=16"]


def test_tune_on_a_terminal_draws_a_bar_over_trials(tmp_path, tiny_dataset):
    rc, out = _run_in_terminal(_cli("--workspace", str(tmp_path / "ws"), *TUNE, "--data", str(tiny_dataset)))
    assert rc == 0, out
    # Trials done (a fraction while one runs), elapsed<ETA and rate, the latest news after it.
    assert re.search(r"study bars: +\d+%\|.*\| 1\.5/2 trials \[\d\d:\d\d<\d\d:\d\d, .*trial 1 epoch 1/2", out), out
    assert re.search(r"study bars: 100%.*\| 2\.0/2 trials", out), out
    lines = [line.split("\r")[-1] for line in out.replace("\r\n", "\n").split("\n")]
    # A trial's end stays as a line; its epochs show only in the bar.
    assert any(re.match(r"\[ 50\.0%\] 1/2 trials · best .* · trial 0 (complete|pruned)$", line) for line in lines), out
    assert not any(line.startswith("[ 25.0%]") for line in lines), out
    assert "2 trial(s) run" in out and "best: trial" in out


def test_tune_without_a_terminal_prints_its_lines_and_no_bar(tmp_path, tiny_dataset):
    out = run_cli("--workspace", str(tmp_path / "ws"), *TUNE, "--data", str(tiny_dataset), env=EVERY_UPDATE)
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stdout + out.stderr and "trial/s" not in out.stderr
    lines = out.stdout.splitlines()  # (epoch lines come at most every 0.5 s: how many depends on the machine)
    assert "[  0.0%] 0/2 trials · no finished trial yet · starting" in lines, out.stdout
    assert any(re.fullmatch(r"\[100\.0%\] 2/2 trials · best .* · trial 1 (complete|pruned)", x) for x in lines), lines


def test_a_ctrl_c_swallowed_on_its_way_is_raised_at_the_next_progress_report(tmp_path):
    """A library that loses a KeyboardInterrupt (seen: one raised during numpy's lazy import of
    numpy.random) must not lose the user's Ctrl-C: the next progress report raises it again."""
    import signal

    from flagvision.cli import main as cli_main
    from flagvision.cli import progress

    report = progress.counter("rendering")
    report(1, 10)
    try:
        try:  # a Ctrl-C arriving inside code that swallows every exception
            progress.on_ctrl_c(signal.SIGINT, None)
        except BaseException:  # noqa: BLE001 - what the library does
            pass
        with pytest.raises(KeyboardInterrupt):
            report(2, 10)
    finally:
        progress.reset_ctrl_c()
    report(3, 10)  # a new command's reports go on
    # main() installs the handler for a command's run and puts Python's back after it (pytest may run
    # with Ctrl-C ignored, as a shell's background job: give it Python's handler for this check).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert cli_main.main(["--workspace", str(tmp_path / "ws"), "jobs", "list"]) == 0
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
