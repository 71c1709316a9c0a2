"""Helpers shared by the tests (importable by name; conftest modules are not)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def make_pattern_dataset(root: Path, per_class: int = 12, size: int = 40, classes: int = 3, seed: int = 0) -> Path:
    """Classes that differ by layout, not colour: stripes in different orientations/positions."""
    rng = np.random.default_rng(seed)
    layouts = ["horizontal", "vertical", "diagonal", "cross", "box"][:classes]
    for name in layouts:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = np.full((size, size, 3), 200, np.uint8)
            c = rng.integers(0, 120, 3)
            if name == "horizontal":
                a[size // 3 : 2 * size // 3] = c
            elif name == "vertical":
                a[:, size // 3 : 2 * size // 3] = c
            elif name == "diagonal":
                yy, xx = np.mgrid[:size, :size]
                a[np.abs(yy - xx) < size // 6] = c
            elif name == "cross":
                a[size // 2 - 3 : size // 2 + 3] = c
                a[:, size // 2 - 3 : size // 2 + 3] = c
            else:
                a[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = c
            noise = rng.integers(-20, 20, a.shape)
            Image.fromarray(np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run ``python -m flagvision`` as a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flagvision", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=timeout,
    )


def zip_bytes(
    entries: dict[str, bytes], symlinks: dict[str, str] | None = None, compression: int = zipfile.ZIP_DEFLATED
) -> bytes:
    """A zip archive in memory; ``symlinks`` maps entry names to link targets (stored as links)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def wait_for(
    predicate, timeout: float = 60.0, what: str | Callable[[], str] = "the condition", ws=None, every: float = 0.1
):
    """Poll ``predicate`` until it returns a truthy value, which is returned; fail after ``timeout`` s.

    The one way the tests wait on another process, a server, a file or the clock: a deadline poll on
    the condition itself, never a sleep followed by one read. With ``ws`` it also calls
    ``jobs.tick`` each round, as the app's poller does; ``what`` may be a callable, for a message
    that shows the last state seen. The predicate is always called once more
    after the deadline, so a slow machine fails only when the condition is really not met.
    """
    deadline = time.monotonic() + timeout
    while True:
        if ws is not None:
            from flagvision.jobs import queue as jobs

            jobs.tick(ws)
        last_round = time.monotonic() > deadline
        value = predicate()
        if value:
            return value
        if last_round:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(every)


def app(page: str | None = None, timeout: float = 60):
    """An AppTest of the whole app (navigation + sidebar), switched to ``page`` and run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=timeout)
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    return at


def no_exceptions(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


# -- VGG-16 weights: a stand-in file and a real HTTP server that serves it ---------------------------


def standin_vgg_weights(path: Path, seed: int = 0) -> str:
    """Write a stand-in for VGG-16's ImageNet file at ``path``; return its sha256 (hex).

    Every ``features.*`` tensor with its real shape, as the weights check requires, in about 1 MB
    instead of 59: four of them hold random numbers (so the download streams several chunks and
    each seed gives another hash), the rest are zeros broadcast from one element (stride 0), which
    ``torch.save`` stores as that one element and ``torch.load`` restores at the full shape.
    """
    import hashlib

    import torch

    from flagvision.models import weights

    gen = torch.Generator().manual_seed(seed)
    real = {"features.0.weight", "features.2.weight", "features.5.weight", "features.7.weight"}
    state = {
        key: torch.randn(shape, generator=gen) if key in real else torch.zeros(1).expand(shape)
        for key, shape in weights._reference_shapes().items()
        if key.startswith("features.")
    }
    torch.save(state, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


class WeightsServer:
    """A real HTTP server on 127.0.0.1 (its own thread) serving ``body`` at ``/vgg16-397923af.pth``.

    ``cut_after``: announce the whole length but send only that many bytes, then close the
    connection (a broken download). ``stall_after``: send that many bytes, then wait without a
    word until the server is closed (a stalled one). ``status``: answer with that HTTP error.
    """

    def __init__(self, body: bytes, cut_after: int | None = None, stall_after: int | None = None, status: int = 200):
        import http.server
        import threading

        self.body, self.cut_after, self.stall_after, self.status = body, cut_after, stall_after, status
        self.requests = 0
        self._closing = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                server.requests += 1
                if server.status != 200:
                    self.send_error(server.status)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                limit = next((n for n in (server.cut_after, server.stall_after) if n is not None), len(server.body))
                self.wfile.write(server.body[:limit])
                self.wfile.flush()
                if server.stall_after is not None:
                    server._closing.wait(60)
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="weights-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/vgg16-397923af.pth"

    def close(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> WeightsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 whose port nobody listens on (bound, then closed): a refused connection."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/vgg16-397923af.pth"


# -- a flag finder whose answer is known: it marks red cloth ----------------------------------------


def red_cloth_finder(folder: Path | None = None):
    """A real :class:`~flagvision.models.finder.Finder` with hand-set weights: a 4 x 4 cell is flag
    where it is clearly red (red well above green and blue), nothing else. Its boxes are known in
    advance (a red rectangle on grey → that rectangle; a flat grey photo → no flag), so tests of the
    find → crop → classify path need no training. Saved into ``folder`` (a workspace's
    ``finder_dir``) when given."""
    import torch

    from flagvision.models.finder import FINDER_FORMAT, Finder, FinderConfig, FinderNet

    cfg = FinderConfig(input_size=64, width=4, scenes=16, val_scenes=0, epochs=1)
    net = FinderNet(cfg.width)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()
        stem = net.local[0][0]  # input x - 0.5: red (1, 0, 0) → 0.5 + 0.25 + 0.25 = 1, grey → 0
        stem.weight[0, 0], stem.weight[0, 1], stem.weight[0, 2] = 1 / 16, -0.5 / 16, -0.5 / 16
        for block in (net.local[1], net.local[2]):  # channel 0 passes through (BatchNorm is identity)
            block[0].weight[0, 0, 1, 1] = 1.0
        net.head[0].weight[0, 0] = 1.0
        net.head[2].weight[0, 0] = 20.0
        net.head[2].bias.fill_(-8.0)  # logit +12 on red, -8 elsewhere
    card = {"format": FINDER_FORMAT, "config": cfg.to_dict(), "input_size": cfg.input_size,
            "mask_size": cfg.mask_size, "generator": "test", "created_at": time.time(), "metrics": {}}  # fmt: skip
    finder = Finder(net, card)
    if folder is not None:
        finder.save(folder)
    return finder


def red_patch_photo(box=(60, 40, 140, 90), size=(200, 150)) -> bytes:
    """A grey PNG photo with one red rectangle at ``box``: what :func:`red_cloth_finder` finds."""
    img = Image.new("RGB", size, (128, 128, 128))
    img.paste((230, 20, 20), box)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def count_calls(monkeypatch, cls, names) -> dict[str, int]:
    """Count calls of the methods ``names`` of ``cls`` (they still run): {name: calls so far}."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        original = getattr(cls, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, counted)
    return calls
