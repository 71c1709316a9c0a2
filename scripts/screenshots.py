"""Refresh the README's tour from trained default models: screenshots of every page in docs/tour/.

    .venv/bin/python scripts/screenshots.py --workspace WS            # → docs/tour/*.png
    .venv/bin/python scripts/screenshots.py --workspace WS --out DIR  # somewhere else (relative to the repo)

``WS`` is a workspace after the first start and the default models, for instance the one
``python -m benchmarks.quality --workspace WS`` builds (built-in data, flag finder, default CNN).
The script works on a copy of it (``WS`` is left as it is): it runs a short Optuna study there for
the Study page (``--study-trials``, two epochs each on a subset of the built-in data; 0 skips
it), starts ``streamlit run`` on the
copy, and drives headless Chromium through the pages: Home, Dataset, Train, Study, Runs, and
Predict on example photos (a small flag on a pole, a flag hung vertically), with the finder's boxes
and both models' columns as this machine has them (VGG-16 needs ImageNet weights: without them its
column says so). Needs Debian's Chromium at /usr/bin/chromium (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "tests"), str(REPO)]

# The example photos shown on Predict, by the start of their title (flagvision.synthetic.examples).
PREDICT_EXAMPLES = {
    "predict": "France, a small flag on a pole",
    "predict_vertical": "Sweden, hoisted vertically",
    "predict_two_flags": "Two flags",
}


def _study(ws: Path, trials: int, per_class: int) -> None:
    """A short study for the Study page, on ``per_class`` images per class of the built-in data (a
    study on all of it takes a quarter of an hour or more here)."""
    subset = ws / "datasets" / "tour-subset"
    for split, n in (("train", per_class), ("test", max(2, per_class // 4))):
        for folder in sorted((ws / "datasets" / "builtin" / split).iterdir()):
            dst = subset / split / folder.name
            dst.mkdir(parents=True)
            for image in sorted(folder.iterdir())[:n]:
                shutil.copy2(image, dst / image.name)
    cmd = [sys.executable, "-m", "flagvision", "--workspace", str(ws), "tune", "--name", "tour-study"]
    cmd += ["--n-trials", str(trials), "--epochs-per-trial", "2", "--data", str(subset)]
    print(f"a {trials}-trial study on {per_class} images per class, for the Study page…", flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def _tour(ws: Path, shots: Path, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright
    from test_journey import _goto, _scroll_to, _settle

    from conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, Artifacts, start_server, stop_workers
    from flagvision.workspace import Workspace

    artifacts = Artifacts(shots, out)
    server = start_server(ws, shots / "streamlit.log")
    taken: list[Path] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            page = browser.new_context(viewport=VIEWPORT, device_scale_factor=1).new_page()
            page.set_default_timeout(120_000)
            for name in ("home", "dataset", "train", "study", "runs"):
                _goto(page, server, name)
                _settle(page)
                if name == "dataset":
                    _scroll_to(page, page.get_by_text("Samples per class", exact=True))
                    name = "dataset_samples"
                elif name == "train":
                    _scroll_to(page, page.get_by_text("Live training", exact=True))
                elif name == "study":
                    _scroll_to(page, page.locator('[data-testid="stSelectbox"]').filter(has_text="Study"))
                    name = "study_trials"
                elif name == "runs":
                    page.wait_for_selector(".st-key-runs_compare_loss .js-plotly-plot .main-svg")
                _settle(page)
                taken.append(artifacts.screenshot(page, name))
            _goto(page, server, "predict")
            _settle(page)
            render = page.locator(".st-key-predict_examples_render button")
            if render.count():  # a workspace from before the example photos: render them once
                render.click()
                page.wait_for_selector('[class*="st-key-predict_example_"] button')
                _settle(page)
            for shot, title in PREDICT_EXAMPLES.items():
                page.locator('[class*="st-key-predict_example_"] button').filter(has_text=title).first.click()
                page.wait_for_selector('[class*="st-key-predict_topk_cnn_"] .js-plotly-plot .barlayer .point')
                _settle(page, 120_000)
                _scroll_to(page, page.locator('[class*="st-key-predict_topk_cnn_"]').first)
                page.mouse.wheel(0, -260)  # the photo's heading and its boxes above the answers
                _settle(page)
                taken.append(artifacts.screenshot(page, shot))
            browser.close()
    finally:
        server.stop()
        stop_workers(Workspace.open(ws))
    return taken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True, help="a workspace with the default models trained")
    parser.add_argument(
        "--out", default="docs/tour", help="folder for the PNGs, relative to the repository (default docs/tour)"
    )
    parser.add_argument("--study-trials", type=int, default=6, help="trials of the Study page's study (default 6)")
    parser.add_argument(
        "--study-per-class", type=int, default=40, help="built-in images per class the study trains on (default 40)"
    )
    args = parser.parse_args(argv)
    if not Path("/usr/bin/chromium").is_file():
        print("needs /usr/bin/chromium: apt-get install -y chromium", file=sys.stderr)
        return 2
    source = Path(args.workspace).resolve()
    if not (source / "runs").is_dir():
        print(f"{source} has no trained runs: train the default models first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="flagvision-tour-") as tmp:
        ws = Path(tmp) / "ws"
        shutil.copytree(source, ws)
        if args.study_trials > 0:
            _study(ws, args.study_trials, args.study_per_class)
        shots = Path(tmp) / "shots"
        try:
            taken = _tour(ws, shots, (REPO / args.out).resolve())
        except Exception as exc:  # noqa: BLE001 - keep the server log for the reader
            kept = Path(tempfile.mkdtemp(prefix="flagvision-tour-failed-"))
            shutil.copytree(shots, kept, dirs_exist_ok=True)
            print(f"the tour failed ({exc}); its log and screenshots are in {kept}", file=sys.stderr)
            return 1
    for png in taken:
        dst = (REPO / args.out / png.name).resolve()
        print(f"{dst}  {dst.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
