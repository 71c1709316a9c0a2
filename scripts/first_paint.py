"""``.venv/bin/python scripts/first_paint.py --workspace WS``: every page's first paint on a freshly started server.

Each page is opened by deep link as the first request of a new ``streamlit run`` (headless
Chromium, the browser test's fixtures and its paint condition: the page's title and main content
visible, no skeleton), in two browser states:

- *first visit*: a new browser context, nothing cached: the browser also fetches and compiles the
  app's scripts (Plotly's and the table's are the big ones);
- *returning visit*: the same browser after one earlier visit of every page, the server restarted on
  the same port: the scripts come from the browser's cache, as for a user who has opened the app before.

``WS`` needs runs and a study, so that every page has its content (the browser journey's workspace,
or one from ``scripts/screenshots.py``). Needs Debian's Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = ("home", "dataset", "train", "study", "runs", "predict")


def measure(ws: Path, repeats: int, log_dir: Path) -> dict[str, dict[str, list[float]]]:
    sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "tests")]
    from playwright.sync_api import sync_playwright
    from test_journey import _goto

    import conftest

    port = conftest.free_port()
    conftest.free_port = lambda: port  # the same origin every time: the returning visit's cache applies
    out: dict[str, dict[str, list[float]]] = {"first visit": {}, "returning visit": {}}

    def fresh(name: str):
        return conftest.start_server(ws, log_dir / f"streamlit_{name}.log")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(conftest.CHROMIUM), args=conftest.CHROMIUM_ARGS, headless=True)
        returning = browser.new_context(viewport=conftest.VIEWPORT).new_page()
        server = fresh("earlier_visit")
        try:
            for name in PAGES:  # the returning user's earlier visit
                _goto(returning, server, name)
        finally:
            server.stop()
        for _ in range(repeats):
            for name in PAGES:
                for state in out:
                    server = fresh(name)
                    try:
                        if state == "first visit":
                            context = browser.new_context(viewport=conftest.VIEWPORT)
                            out[state].setdefault(name, []).append(_goto(context.new_page(), server, name))
                            context.close()
                        else:
                            out[state].setdefault(name, []).append(_goto(returning, server, name))
                    finally:
                        server.stop()
        browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True, help="a workspace with runs and a study")
    parser.add_argument("--repeats", type=int, default=3, help="fresh servers per page and state (default 3)")
    args = parser.parse_args(argv)
    if not Path("/usr/bin/chromium").is_file():
        print("needs /usr/bin/chromium: apt-get install -y chromium", file=sys.stderr)
        return 2
    os.chdir(REPO)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fv-first-paint-") as logs:
        figures = measure(Path(args.workspace).resolve(), args.repeats, Path(logs))
    print(f"first paint on a freshly started server, median of {args.repeats} (s); target 2.5 s")
    print(f"| page | {' | '.join(figures)} |")
    print(f"|---|{'---:|' * len(figures)}")
    for name in PAGES:
        cells = [f"{statistics.median(figures[state][name]):.2f} s" for state in figures]
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    print(json.dumps({s: {p: [round(x, 3) for x in v] for p, v in d.items()} for s, d in figures.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
