"""Refresh the README's tour: run the real-browser journey and keep its screenshots in docs/tour/.

    .venv/bin/python scripts/screenshots.py            # → docs/tour/*.png (optimised, < 300 KB each)
    .venv/bin/python scripts/screenshots.py --out DIR  # somewhere else (relative to the repository)

It runs ``tests/e2e/test_journey.py`` with ``FLAGVISION_SCREENSHOTS`` set, so the pictures show
exactly what the test checked: a small generated dataset, a custom CNN trained live on the Train
page, a VGG-16 (random init) and a three-trial study from the CLI, two photos on Predict. Needs
Debian's Chromium at /usr/bin/chromium (``apt-get install -y chromium``; for the emoji on Predict,
``fonts-noto-color-emoji``). The journey's first-paint figures are printed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="docs/tour", help="folder for the PNGs, relative to the repository (default docs/tour)"
    )
    args = parser.parse_args(argv)
    if not Path("/usr/bin/chromium").is_file():
        print("needs /usr/bin/chromium: apt-get install -y chromium", file=sys.stderr)
        return 2
    artifacts = tempfile.mkdtemp(prefix="flagvision-tour-")
    env = {**os.environ, "FLAGVISION_SCREENSHOTS": args.out, "FLAGVISION_E2E_ARTIFACTS": artifacts}
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/e2e/test_journey.py"]
    rc = subprocess.call(cmd, cwd=REPO, env=env)
    report = Path(artifacts) / "first_paint.json"
    if report.is_file():
        print(report.read_text())
    if rc == 0:
        shutil.rmtree(artifacts, ignore_errors=True)
    else:
        print(f"the journey failed: its logs and screenshots are in {artifacts}", file=sys.stderr)
    out = (REPO / args.out).resolve()
    for png in sorted(out.glob("*.png")):
        print(f"{png.relative_to(REPO)}  {png.stat().st_size / 1024:.0f} KB")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
