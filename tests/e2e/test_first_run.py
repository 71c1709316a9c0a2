"""The first run in a real browser (headless Chromium against ``streamlit run``), without the CLI:
Home → "Train the default models" → the CNN's job with its progress bar in the sidebar → Predict →
an example photo → the CNN's answer beside the photo with the flag finder's box drawn on it, and
the VGG-16 column saying that its ImageNet weights are missing.

The workspace is the one ``make run`` leaves before any model is trained: the built-in data (small
here: 24 classes x 11 images at 64 px), the example photos, and a flag finder. ``make run`` builds
the finder before the app opens; its full training takes minutes, so a small one is built here
through the library (300 scenes, 10 epochs, width 12: about half a minute on one core). Smaller
ones (60 scenes, 2 or 4 epochs) box none of the example photos, and the journey must show a box.
No run, no VGG-16 weights: the weights cache is an empty folder (``TORCH_HOME``) and
``FLAGVISION_WEIGHTS_URL`` points at a refused local port, so nothing can reach the internet.
The tiny models' answers may be wrong: the test checks what the page shows, not that it is right.
"""

from __future__ import annotations

import re
import socket
import time

import pytest
from e2e_helpers import failure_snapshot
from playwright.sync_api import expect

from flagvision.jobs import queue as jobs
from flagvision.jobs.schema import FINISHED_STATES
from fv_helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRAIN_TIMEOUT_S = 240  # the default CNN: 10 epochs on 192 images at 40 px, well under a minute when quiet
EXAMPLE = "France, a small flag on a pole"  # a whole scene with a small flag, which the small finder boxes
_SIDEBAR = '[data-testid="stSidebar"]'
_MAIN = '[data-testid="stMain"]'


def _refused_url() -> str:
    """A local URL nobody listens on: a download from it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/vgg16-397923af.pth"


@pytest.fixture
def first_run_ws(tmp_path, monkeypatch):
    """The workspace as ``make run`` leaves it before any model: data, example photos, the finder."""
    from flagvision.models.finder import FinderConfig, build_finder
    from flagvision.models.weights import weights_status
    from flagvision.synthetic.builtin import builtin_path, builtin_ready
    from flagvision.synthetic.examples import ensure_examples
    from flagvision.synthetic.scenes import SynthConfig, synthesize
    from flagvision.workspace import Workspace

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # the weights cache: empty
    monkeypatch.setenv("FLAGVISION_WEIGHTS_URL", _refused_url())
    ws = Workspace.open(tmp_path / "ws")
    synthesize(builtin_path(ws), SynthConfig(train_per_class=8, test_per_class=3, size=64, workers=1))
    ensure_examples(ws)
    finder_cfg = FinderConfig(input_size=128, width=12, scenes=300, val_scenes=0, epochs=10, workers=1, threads=1)
    build_finder(ws, finder_cfg)
    assert builtin_ready(ws) and not weights_status()["available"]
    yield ws
    for job in jobs.open_store(ws).list_jobs(("queued", "running")):  # as conftest.stop_workers
        jobs.cancel(ws, job["id"], force=True)


@pytest.mark.timeout(600)
def test_first_run(first_run_ws, fresh_server, page, artifacts):
    ws = first_run_ws
    server = fresh_server(ws.root, artifacts.root / "streamlit_first_run.log")
    t0 = time.monotonic()
    with failure_snapshot(page, artifacts, "first_run_failure"):
        _first_run(ws, server, page, artifacts)
    print(f"\nfirst-run journey: {time.monotonic() - t0:.1f}s (artifacts: {artifacts.root})")


def _first_run(ws, server, page, artifacts) -> None:
    main, sidebar = page.locator(_MAIN), page.locator(_SIDEBAR)

    # -- Home: the default models, only the CNN to train -------------------------------------------
    page.goto(server.page_url(), wait_until="commit")
    expect(main.locator("h1").filter(has_text="FlagVision")).to_be_visible(timeout=60_000)
    button = main.get_by_role("button", name="Train the default models")
    expect(button).to_be_visible(timeout=60_000)
    parts = main.locator('[data-testid="stMarkdownContainer"]').filter(has_text="Built-in data:")
    expect(parts).to_contain_text("Built-in data: ready")
    expect(parts).to_contain_text("Custom CNN: not trained yet")
    expect(parts).to_contain_text("Flag finder: trained")
    expect(parts).to_contain_text("VGG-16 transfer: waiting for ImageNet weights")
    artifacts.screenshot(page, "first_run_home")
    button.click()

    # -- the sidebar: the CNN's job with its progress bar -----------------------------------------
    store = jobs.open_store(ws)
    train = wait_for(
        lambda: next((j for j in store.list_jobs() if j["kind"] == "train"), None), 60, "the button to queue the CNN"
    )
    assert [j["kind"] for j in store.list_jobs()] == ["train"], "only the CNN was missing"
    expect(sidebar.get_by_text(f"Train #{train['run_id']}: default custom CNN")).to_be_visible(timeout=30_000)
    bar = sidebar.locator('[data-testid="stProgress"]').first
    expect(bar).to_be_visible(timeout=30_000)
    # For the picture: the bar once it counts epochs (a fast machine may be done before a poll shows one).
    wait_for(
        lambda: "epoch" in (bar.text_content() or "") or store.get_job(train["id"])["state"] in FINISHED_STATES,
        TRAIN_TIMEOUT_S,
        "the sidebar's bar to count epochs",
        every=0.2,
    )
    artifacts.screenshot(page, "first_run_training")

    done = wait_for(
        lambda: (j := store.get_job(train["id"]))["state"] in FINISHED_STATES and j,
        TRAIN_TIMEOUT_S,
        lambda: f"the default CNN's training (now: {store.get_job(train['id'])['progress_text']})",
    )
    assert done["state"] == "succeeded", f"{done['error']}\n{jobs.read_log_tail(jobs.job_log_path(ws, done), 30)}"
    expect(main.get_by_text("Custom CNN: trained")).to_be_visible(timeout=30_000)

    # -- Predict through the sidebar: an example photo ----------------------------------------------
    sidebar.locator('[data-testid="stPageLink-NavLink"]').filter(has_text="Predict").click()
    expect(main.locator("h1").filter(has_text="Predict")).to_be_visible(timeout=60_000)
    expect(main.locator('[data-testid="stSelectbox"]').filter(has_text="Custom CNN checkpoint")).to_be_visible(
        timeout=60_000
    )
    # The VGG-16 column (no checkpoint): what it waits for, in pages/predict.py's _missing_model words.
    vgg_status = main.locator('[data-testid="stAlert"]').filter(
        has_text="VGG-16 transfer: no trained model yet, waiting for ImageNet weights: download them below."
    )
    expect(vgg_status).to_be_visible(timeout=30_000)
    main.get_by_role("button", name=EXAMPLE).click()

    # The photo with the finder's box drawn on it, and one flag's answers beside it.
    result = main.locator('[data-testid="stVerticalBlock"]').filter(
        has=page.get_by_text(f"example: {EXAMPLE}", exact=True)
    )
    # (the small test finder may box a second, false flag: the first is its best)
    found = re.compile(r"^(1 flag|\d+ flags) found: 1 \(\d+, \d+\)–\(\d+, \d+\)(; .*)?$")
    expect(main.get_by_text(found)).to_be_visible(timeout=120_000)
    expect(main.get_by_text(re.compile(r"^Flag 1 · box \(\d+, \d+\)–\(\d+, \d+\) · finder score"))).to_be_visible()
    answer = result.last.get_by_text(re.compile(r"^(Answer: .+ \(\d+%\)|🤔 not sure — closest: .+)$"))
    expect(answer.first).to_be_visible(timeout=60_000)
    expect(result.last.locator(".js-plotly-plot .barlayer .point").first).to_be_visible(timeout=60_000)
    caption = main.get_by_text(re.compile(r"^(1 flag|\d+ flags) found: "))  # mid-way down the result: all of it in view
    caption.evaluate("(el) => el.scrollIntoView({block: 'center'})")
    artifacts.screenshot(page, "first_run_predict")
