"""Real-browser fixtures: a small workspace, a ``streamlit run`` server, headless Chromium.

The browser is Debian's Chromium at ``/usr/bin/chromium`` (``.ci/run`` installs it); Playwright
never downloads one. Without that binary the e2e tests are skipped, and only then.

Artifacts (screenshots, ``first_paint.json``, the server log) go to ``$FLAGVISION_E2E_ARTIFACTS``
or a pytest temporary folder; with ``FLAGVISION_SCREENSHOTS=DIR`` the screenshots are also written
there, optimised. (The README's tour is taken by ``scripts/screenshots.py`` from trained default
models, with these fixtures.)
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}
SERVER_START_TIMEOUT_S = 60


def pytest_collection_modifyitems(config, items):
    if CHROMIUM.is_file():
        return
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does)"
    )
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


# -- artifacts ----------------------------------------------------------------------------------


class Artifacts:
    """Where a journey's screenshots and figures go (and, optionally, the README's copies)."""

    def __init__(self, root: Path, tour: Path | None) -> None:
        self.root = root
        self.tour = tour
        root.mkdir(parents=True, exist_ok=True)
        if tour is not None:
            tour.mkdir(parents=True, exist_ok=True)

    def screenshot(self, page, name: str) -> Path:
        path = self.root / f"{name}.png"
        # No hover effects in the picture (Plotly's mode bar, the sidebar's collapse button).
        page.mouse.move(VIEWPORT["width"] - 30, 10)
        page.wait_for_timeout(150)
        page.screenshot(path=str(path))
        if self.tour is not None:
            optimise_png(path, self.tour / f"{name}.png")
        return path


def optimise_png(src: Path, dst: Path, max_bytes: int = 300_000) -> Path:
    """A palette PNG (adaptive 256 colours, lossless-looking for UI screenshots), under ``max_bytes``."""
    from PIL import Image

    image = Image.open(src).convert("RGB")
    for colours in (256, 128, 64):
        buf = io.BytesIO()
        image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, format="PNG", optimize=True
        )
        if buf.tell() <= max_bytes:
            break
    dst.write_bytes(buf.getvalue())
    return dst


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Artifacts:
    root = os.environ.get("FLAGVISION_E2E_ARTIFACTS")
    tour = os.environ.get("FLAGVISION_SCREENSHOTS")
    return Artifacts(
        Path(root).resolve() if root else tmp_path_factory.mktemp("e2e_artifacts"),
        (REPO / tour).resolve() if tour else None,
    )


# -- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"streamlit not healthy after {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")


def stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group that ``proc`` leads (``start_new_session``), then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the leader's stragglers, or a leader deaf to SIGTERM
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(5)


def stop_workers(ws) -> None:
    """Kill every worker the app started (they run in their own process groups) and mark them."""
    from flagvision.jobs import queue as jobs

    store = jobs.open_store(ws)
    for job in store.list_jobs(("queued", "running")):
        try:
            jobs.cancel(ws, job["id"], force=True)
        except Exception as exc:  # noqa: BLE001 - teardown goes on with the next one
            print(f"could not stop job {job['id']}: {exc}", file=sys.stderr)


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log

    def page_url(self, path: str = "") -> str:
        return f"{self.url}/{path}"

    def stop(self) -> None:
        stop_group(self.proc)


def start_server(ws_root: Path, log: Path) -> Server:
    port = free_port()
    env = {**os.environ, "FLAGVISION_HOME": str(ws_root), "FLAGVISION_MAX_JOBS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "streamlit_app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        # No file watcher: nothing is edited during the test, and on a busy machine inotify overflows.
        "--server.fileWatcherType",
        "none",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_healthy(server.url, proc, log)
    except BaseException:
        stop_group(proc)
        raise
    return server


@pytest.fixture
def fresh_server():
    """``start(ws_root, log)`` starts another ``streamlit run``; whatever is still running is stopped after."""
    started: list[Server] = []

    def start(ws_root: Path, log: Path) -> Server:
        started.append(start_server(ws_root, log))
        return started[-1]

    yield start
    for server in started:
        server.stop()


# -- setup -----------------------------------------------------------------------------------------


def _cli(ws: Path, *args: str, log: Path) -> subprocess.Popen:
    out = open(log, "wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "flagvision", "--workspace", str(ws), *args],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "FLAGVISION_HOME": str(ws)},
            start_new_session=True,
        )
    finally:
        out.close()


class Journey:
    def __init__(self, ws, server: Server, setup: list[tuple[str, subprocess.Popen, Path]]) -> None:
        self.ws, self.server, self.setup = ws, server, setup

    def wait_setup(self, timeout_s: float = 240) -> None:
        """Wait for the CLI runs (VGG-16, study); fail with their log if one failed."""
        deadline = time.monotonic() + timeout_s
        for name, proc, log in self.setup:
            try:
                rc = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"setup '{name}' still running after {timeout_s:.0f}s:\n{log.read_text()[-2000:]}")
            assert rc == 0, f"setup '{name}' failed ({rc}):\n{log.read_text()[-3000:]}"


@pytest.fixture
def journey(tmp_path, artifacts):
    """A workspace with data, the setup CLI runs started, and the app server; all stopped after."""
    from flagvision.synthetic.scenes import SynthConfig, synthesize
    from flagvision.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    synthesize(ws.dataset_dir("builtin"), SynthConfig(train_per_class=8, test_per_class=3, size=64, workers=1))
    assert (ws.dataset_dir("builtin") / "manifest.json").is_file()
    setup: list[tuple[str, subprocess.Popen, Path]] = []
    server = None
    try:
        # Both on one thread each, beside the server's start-up: setup costs ~30 s, not ~45.
        commands = {
            "vgg16": [
                "train",
                "--model",
                "vgg16_transfer",
                "--no-pretrained",
                "--vgg-blocks",
                "2",
                "--image-size",
                "32",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--name",
                "vgg-tiny",
            ],
            "study": [
                "tune",
                "--name",
                "e2e-study",
                "--n-trials",
                "3",
                "--epochs-per-trial",
                "1",
                "--image-size",
                "32",
                "--threads",
                "1",
            ],
        }
        for name, args in commands.items():
            log = artifacts.root / f"setup_{name}.log"
            setup.append((name, _cli(ws.root, *args, log=log), log))
        server = start_server(ws.root, artifacts.root / "streamlit.log")
        yield Journey(ws, server, setup)
    finally:
        if server is not None:
            stop_group(server.proc)
        for _, proc, _ in setup:
            stop_group(proc, grace_s=2)
        stop_workers(ws)


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    try:
        yield pg
    finally:
        context.close()
