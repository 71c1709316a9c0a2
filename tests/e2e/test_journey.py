"""One real-browser journey through the app (headless Chromium against ``streamlit run``).

Setup: a small generated built-in dataset, a tiny VGG-16 transfer model (random init) and a
three-trial Optuna study, both from the CLI, so that Predict has two models and Study has data.
Journey: train a custom CNN for 2 epochs on the Train page and watch its curve gain points; visit
every page (screenshot and first paint of each); classify two photos with both models on Predict.

First paint (navigation start → the page's title and main content visible, no skeletons) is
printed and written to ``first_paint.json`` beside the screenshots; it is recorded, not asserted
(the target is 2.5 s per page on a quiet machine; a shared CI machine is too noisy to gate on).
Every page is also opened by deep link as the first request of a freshly started server.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import failure_snapshot
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from flagvision.jobs import queue as jobs
from fv_helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUN_NAME = "e2e-journey"
EPOCHS = 2
TRAIN_TIMEOUT_S = 180

# page → (url path, title in its h1, selectors of its main content, all required)
PAGES = {
    "home": ("", "FlagVision", ['[data-testid="stMetric"]']),
    "dataset": ("dataset", "Dataset", [".js-plotly-plot .main-svg"]),
    "train": ("train", "Train", ['[data-testid="stSlider"]', ".js-plotly-plot .main-svg"]),
    "study": ("study", "Study", ['[data-testid="stDataFrame"]', ".js-plotly-plot .main-svg"]),
    "runs": ("runs", "Runs", ['[data-testid="stDataFrame"]', ".js-plotly-plot .main-svg"]),
    "predict": ("predict", "Predict", ['[data-testid="stFileUploader"]']),
}
NAV_LABELS = {
    "home": "Home",
    "dataset": "Dataset",
    "train": "Train",
    "study": "Study",
    "runs": "Runs",
    "predict": "Predict",
}

# True once the page's h1 says `title` and every selector matches a visible element that is not
# left over from the previous page (Streamlit marks those data-stale) and no skeleton is showing.
_PAINTED_JS = """
([title, selectors]) => {
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main) return false;
  const live = (el) => el.getClientRects().length > 0 && !el.closest('[data-stale="true"]');
  const h1 = [...main.querySelectorAll('h1')].find((h) => live(h) && h.textContent.trim().startsWith(title));
  if (!h1) return false;
  if ([...main.querySelectorAll('[data-testid="stSkeleton"]')].some(live)) return false;
  return selectors.every((sel) => [...main.querySelectorAll(sel)].some(live)) ? performance.now() : false;
}
"""

# Number of epochs drawn in the live loss chart: markers of its first trace (train loss).
_POINTS_JS = """
(runId) => {
  const chart = document.querySelector(`.st-key-train_loss_${runId} .js-plotly-plot`);
  if (!chart) return 0;
  const trace = chart.querySelector('.scatterlayer .trace');
  return trace ? trace.querySelectorAll('.points path').length : 0;
}
"""


# -- helpers ---------------------------------------------------------------------------------------


def _photos(folder: Path) -> list[Path]:
    """Two photos to drop on Predict: a photo-like scene of Germany (JPEG), a flat French flag (PNG)."""
    from PIL import Image

    from flagvision.synthetic.flags import render_flag
    from flagvision.synthetic.scenes import render_scene

    folder.mkdir(parents=True, exist_ok=True)
    scene = folder / "germany_scene.jpg"
    render_scene("Germany", np.random.default_rng(7), 256).save(scene, quality=90)
    flat = folder / "france_flag.png"
    canvas = Image.new("RGB", (260, 200), (135, 180, 225))
    canvas.paste(render_flag("France", 200), (30, 33))
    canvas.save(flat)
    return [scene, flat]


# -- browser helpers ---------------------------------------------------------------------------------


def _painted(page, name: str, timeout_ms: float = 60_000) -> float:
    """Wait until page ``name`` shows its title and main content; return performance.now() then (ms)."""
    _, title, selectors = PAGES[name]
    handle = page.wait_for_function(_PAINTED_JS, arg=[title, selectors], polling=50, timeout=timeout_ms)
    return float(handle.json_value())


def _settle(page, timeout_ms: float = 20_000) -> None:
    """Let the script run finish (no 'Running…' status) and charts draw, for a clean screenshot."""
    try:
        page.wait_for_function(
            """() => !document.querySelector('[data-testid="stStatusWidget"]')
                  && ![...document.querySelectorAll('[data-testid="stSkeleton"]')]
                       .some((e) => e.getClientRects().length)""",
            polling=100,
            timeout=timeout_ms,
        )
    except Exception:  # noqa: BLE001 - a screenshot of a busy page is still worth taking
        pass
    page.wait_for_timeout(400)


def _goto(page, server, name: str) -> float:
    """Load page ``name`` afresh; return its first paint in seconds from navigation start."""
    page.goto(server.page_url(PAGES[name][0]), wait_until="commit")
    return _painted(page, name) / 1000.0


def _click_nav(page, name: str) -> float:
    """Go to page ``name`` through the sidebar; return seconds from the click to its first paint."""
    t0 = page.evaluate("performance.now()")
    page.locator(_NAV_LINKS).filter(has_text=NAV_LABELS[name]).first.click()
    return (_painted(page, name) - t0) / 1000.0


def _slider(page, label: str):
    return page.locator('[data-testid="stSlider"]').filter(
        has=page.locator(f'input[type="range"][aria-label="{label}"]')
    )


def _slider_shows(page, label: str, expect: str, timeout_ms: float = 10_000) -> None:
    """Wait until the slider ``label`` shows ``expect`` as its value."""
    value = _slider(page, label).locator('[data-testid="stSliderThumbValue"]')
    page.wait_for_function(
        "([el, v]) => el.textContent.trim() === v", arg=[value.element_handle(), expect], timeout=timeout_ms
    )


def _set_slider(page, label: str, keys: list[str], expect: str) -> None:
    """Move a slider by keyboard (Home/End/arrows commit like a drag) and check its shown value."""
    thumb = _slider(page, label).locator('input[type="range"]')
    thumb.focus()
    for key in keys:
        thumb.press(key)
    _slider_shows(page, label, expect)


_NAV_LINKS = '[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]'


def _has_app_navigation(page) -> bool:
    """The app's own sidebar: its six pages (and nothing else), the FlagVision title, and no list of
    Streamlit's own (hidden by the app's config)."""
    # A link's text is its icon's ligature name, then its label: keep the label.
    links = [t.split()[-1] if t.split() else "" for t in page.locator(_NAV_LINKS).all_inner_texts()]
    return (
        links == list(NAV_LABELS.values())
        and page.locator('[data-testid="stSidebar"] h3:has-text("FlagVision")').count() == 1
        and page.locator('[data-testid="stSidebarNav"]').count() == 0
    )


def _scroll_to(page, locator, timeout_s: float = 30.0) -> None:
    """Scroll ``locator``'s first match to the top. A rerun can replace the element while Playwright waits
    for it to stand still ("not attached to the DOM"): then the locator is resolved again, until a deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            locator.first.scroll_into_view_if_needed()
            locator.first.evaluate("(el) => el.scrollIntoView({block: 'start'})")
            return
        except PlaywrightError as exc:
            if "not attached" not in str(exc) or time.monotonic() > deadline:
                raise
            page.wait_for_timeout(200)


# -- the journey -----------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_journey(journey, page, artifacts, tmp_path, fresh_server):
    print(f"\nartifacts: {artifacts.root}")
    with failure_snapshot(page, artifacts, "failure"):
        _journey(journey, page, artifacts, tmp_path, fresh_server)


def _journey(journey, page, artifacts, tmp_path, fresh_server) -> None:
    server, ws = journey.server, journey.ws
    t_start = time.monotonic()
    first_paint: dict[str, dict[str, float]] = {}

    # A deep link on a server nobody has visited yet must show the whole app: the page itself, the
    # app's navigation and the jobs panel (each file in pages/ draws the shared frame).
    page.goto(server.page_url("train"), wait_until="commit")
    page.wait_for_selector('[data-testid="stMain"] h1:has-text("Train")')
    _settle(page)
    deep_link_ok = _has_app_navigation(page)
    assert deep_link_ok, (
        "a deep link (/train) on a fresh server does not show the app's navigation: "
        + page.locator('[data-testid="stSidebar"]').inner_text()
    )

    # The README's entry point (it also warms the server's imports while setup trains).
    page.goto(server.page_url(), wait_until="commit")
    page.wait_for_selector('[data-testid="stMain"] h1:has-text("FlagVision")')
    _settle(page)
    assert _has_app_navigation(page), page.locator('[data-testid="stSidebar"]').inner_text()
    journey.wait_setup()

    # -- Train: 2 epochs at 32 px, watch the curve gain points -------------------------------------
    page.goto(server.page_url("train"), wait_until="commit")
    page.wait_for_selector('input[type="range"][aria-label="epochs"]')
    _settle(page)
    # The preset buttons move the widgets the browser shows: the reference study's rate, then ours again.
    _slider_shows(page, "lr", "9.00e-04")
    page.get_by_role("button", name="The reference study's preset").click()
    _slider_shows(page, "lr", "1.80e-04", 30_000)
    page.get_by_role("button", name="FlagVision's defaults").click()
    _slider_shows(page, "lr", "9.00e-04", 30_000)
    _settle(page)
    _set_slider(page, "epochs", ["Home", "ArrowRight"], str(EPOCHS))
    _set_slider(page, "Image size", ["Home"], "32")
    name_box = page.locator('input[aria-label="Run name"]')
    name_box.fill(RUN_NAME)
    name_box.press("Enter")
    _settle(page)
    page.get_by_role("button", name="Start training").click()

    store = jobs.open_store(ws)
    run = wait_for(
        lambda: next((r for r in store.list_runs(limit=20) if r.get("name") == RUN_NAME), None),
        60,
        "pressing Start training to create a run",
        every=0.2,
    )
    run_id = run["id"]
    assert run["config"]["hparams"]["epochs"] == EPOCHS and run["config"]["data"]["image_size"] == 32, run["config"]

    # Poll the live chart: the count of epochs drawn, each time it changes, while the run is active.
    seen: list[tuple[int, str]] = []  # (points, run status when seen)
    shot_taken = False
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        points = int(page.evaluate(_POINTS_JS, run_id))
        status = store.get_run(run_id)["status"]
        if not seen or points != seen[-1][0]:
            seen.append((points, status))
        if points >= 1 and not shot_taken:
            _scroll_to(page, page.get_by_text("Live training", exact=True))
            page.wait_for_timeout(200)
            artifacts.screenshot(page, "train")
            shot_taken = True
        if status not in ("queued", "running") and points >= EPOCHS:
            break
        page.wait_for_timeout(150)
    final = store.get_run(run_id)
    log = Path(final.get("run_dir") or "") / "log.txt"
    assert final["status"] == "succeeded", (
        f"run #{run_id} {final['status']}: {final.get('error')}\n{log.read_text()[-2000:] if log.is_file() else ''}"
    )
    counts = [p for p, _ in seen if p]
    print(f"\nlive chart points as seen: {seen}")
    assert counts and counts[-1] == EPOCHS, f"the loss chart never showed {EPOCHS} epochs: {seen}"
    assert counts == sorted(counts), f"the chart lost points: {seen}"
    assert shot_taken
    metrics = store.get_metrics(run_id)
    gap = metrics[-1]["created_at"] - metrics[0]["created_at"]
    if gap > 2.5:  # epoch 2 took longer than a poll of the page (1 s) with margin: 1 point must show
        assert counts[0] == 1 and any(s in ("queued", "running") for p, s in seen if p == 1), (
            f"the curve did not grow live (epoch 2 took {gap:.1f}s): {seen}"
        )
    else:  # a fast machine can finish both epochs between two polls of the page: nothing to see live
        print(f"epoch 2 took only {gap:.1f}s: the 1-point state may fall between two polls")

    # -- every page: first paint on a fresh load, screenshot ----------------------------------------
    for name in ("home", "dataset", "train", "study", "runs", "predict"):
        first_paint[name] = {"load_s": round(_goto(page, server, name), 3)}
        _settle(page)
        if name == "train":
            continue  # its screenshot is the one taken during training
        if name == "runs":
            page.wait_for_selector(".st-key-runs_compare_loss .js-plotly-plot .main-svg")
        if name != "predict":
            artifacts.screenshot(page, name)
        if name == "dataset":
            _scroll_to(page, page.get_by_text("Samples per class", exact=True))
            _settle(page)
            artifacts.screenshot(page, "dataset_samples")
        if name == "study":
            _scroll_to(page, page.locator('[data-testid="stSelectbox"]').filter(has_text="Study"))
            _settle(page)
            artifacts.screenshot(page, "study_trials")
    # ... and through the sidebar (same session, warm): Predict → Home → … → Predict
    for name in ("home", "dataset", "train", "study", "runs", "predict"):
        first_paint[name]["nav_s"] = round(_click_nav(page, name), 3)
        _settle(page)

    # -- Predict: both models, two photos ------------------------------------------------------------
    page.goto(server.page_url("predict"), wait_until="commit")
    _painted(page, "predict")
    _settle(page)
    cnn_box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Custom CNN checkpoint")
    vgg_box = page.locator('[data-testid="stSelectbox"]').filter(has_text="VGG-16 transfer checkpoint")
    assert vgg_box.count() == 1, "Predict offers no VGG-16 checkpoint"
    cnn_choice, vgg_choice = cnn_box.get_by_role("combobox"), vgg_box.get_by_role("combobox")
    if RUN_NAME not in cnn_choice.input_value():  # the study's trials compete for the top spot
        cnn_choice.click()
        page.get_by_role("option").filter(has_text=RUN_NAME).first.click()
        expect(cnn_choice).to_have_value(re.compile(re.escape(RUN_NAME)), timeout=10_000)
        _settle(page)
    assert "vgg-tiny" in vgg_choice.input_value(), vgg_choice.input_value()
    photos = _photos(tmp_path / "photos")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([str(p) for p in photos])
    # Per photo i, one top-5 chart per model (keys predict_topk_<slot>_<i>), each with its bars drawn
    # and the model's name above it.
    expected = {
        f"predict_topk_{slot}_{i}": label for i in (1, 2) for slot, label in (("cnn", "Custom CNN"), ("vgg", "VGG-16"))
    }
    page.wait_for_function(
        "(keys) => keys.every((k) => document.querySelector(`.st-key-${k} .js-plotly-plot .barlayer .point`))",
        arg=list(expected),
        timeout=120_000,
    )
    _settle(page, 60_000)
    assert page.locator('[class*="st-key-predict_topk_"] .js-plotly-plot').count() == 4
    for key, label in expected.items():
        bars = page.locator(f".st-key-{key} .js-plotly-plot .barlayer .point").count()
        assert bars == 5, f"{key}: {bars} bars, expected the top 5"
        column = page.locator(f".st-key-{key}").evaluate(
            "(el) => el.closest('[data-testid=\"stColumn\"]')"
            ".parentElement.closest('[data-testid=\"stColumn\"]').innerText"
        )
        assert label in column, f"{key}: no '{label}' beside the chart: {column!r}"
    results = page.locator('[data-testid="stMain"]').inner_text()
    for photo in photos:
        assert photo.name in results
    _scroll_to(page, page.get_by_text(photos[0].name).first)
    page.wait_for_timeout(300)
    artifacts.screenshot(page, "predict")

    # -- every page by deep link, each the first request of a freshly started server ----------------
    # The page itself, its main content and the app's navigation must show; the time from navigation
    # start to the painted page (the server's first script run included) is recorded, not asserted.
    for name in PAGES:
        cold = fresh_server(ws.root, artifacts.root / f"streamlit_cold_{name}.log")
        first_paint[name]["cold_s"] = round(_goto(page, cold, name), 3)
        assert _has_app_navigation(page), f"/{PAGES[name][0]} on a fresh server: no app navigation"
        cold.stop()

    # -- figures ---------------------------------------------------------------------------------------
    report = {
        "first_paint": first_paint,
        "target_s": 2.5,
        "note": "load_s: fresh page load (navigation start → title + main content visible); "
        "nav_s: sidebar click → the same, in a warm session; cold_s: a deep link as the first request "
        "of a freshly started server. Recorded, not asserted.",
        "live_chart_points_seen": seen,
        "deep_link_shows_app_navigation": deep_link_ok,
        "journey_s": round(time.monotonic() - t_start, 1),
        "machine": f"{os.cpu_count()} CPUs",
    }
    (artifacts.root / "first_paint.json").write_text(json.dumps(report, indent=2))
    print(f"first paint (s): {json.dumps(first_paint)}")
    print(f"artifacts: {artifacts.root}")
