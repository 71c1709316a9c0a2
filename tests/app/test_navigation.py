"""The app's navigation: Streamlit's multipage layout (streamlit_app.py is Home, pages/ the rest),
every page drawing the shared frame, and the sidebar listing app_ui.PAGES."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest

from app_helpers import REPO, app, no_exceptions


def test_pages_folder_holds_exactly_the_pages():
    """Streamlit runs every .py file in pages/ as a page: nothing else may live there, and every page
    of app_ui.PAGES has its file."""
    import app_ui

    files = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "pages").glob("*.py"))
    assert files == sorted(path for path, _, _ in app_ui.PAGES.values() if path.startswith("pages/"))
    assert app_ui.PAGES["home"][0] == "streamlit_app.py"
    for path, _, _ in app_ui.PAGES.values():
        source = (REPO / path).read_text()
        assert "ui.run_page(main, " in source, f"{path} does not draw the shared frame"


def test_streamlit_list_of_pages_is_hidden_for_ours():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showSidebarNavigation"] is False


def test_every_page_has_the_shared_sidebar(app_ws):
    import app_ui

    for name, (_, title, _) in app_ui.PAGES.items():
        at = app(None if name == "home" else name)
        no_exceptions(at)
        assert at.title[0].value == ("FlagVision" if name == "home" else title)
        assert any("FlagVision" in m.value for m in at.sidebar.markdown)
        labels = [link.label for link in at.sidebar.get("page_link")]
        assert labels == [t for _, t, _ in app_ui.PAGES.values()], labels


_PAINT_WITHOUT_TORCH = """
import sys
sys.path[:0] = [{tests!r}]
import app_ui
app_ui.WARM_MODULES = ()  # the warm-up thread imports torch on purpose, a second after the first paint
from fv_helpers import app, no_exceptions
at = app({page!r})
no_exceptions(at)
heavy = sorted(m for m in ("torch", "torchvision") if m in sys.modules)
print(f"HEAVY={{heavy}}")
"""


def _paints_without_torch(page: str | None, ws_root) -> None:
    code = _PAINT_WITHOUT_TORCH.format(tests=str(REPO / "tests"), page=page)
    env = {**os.environ, "FLAGVISION_HOME": str(ws_root)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "HEAVY=[]" in out.stdout, out.stdout[-500:]


@pytest.mark.parametrize("page", [None, "dataset", "train", "study", "runs", "predict"])
def test_a_page_paints_without_importing_torch(page, tmp_path):
    """A page's first paint must not wait for torch (seconds on a cold server): what a page needs
    before it can show itself (lists, tables, specs) is read without it; torch is imported only by
    the work a user starts (training, predicting). Each page runs in a fresh interpreter, as on a
    freshly started server, on an empty workspace."""
    _paints_without_torch(page, tmp_path / "ws")


@pytest.mark.parametrize("page", [None, "train", "study", "runs", "predict"])
def test_a_page_with_runs_paints_without_importing_torch(page, trained_root):
    """The same on a workspace with finished runs and a study: a run's figures, curves and card are
    read from its files (the Runs page once imported torch to read ``evaluation.json``)."""
    _paints_without_torch(page, trained_root)
