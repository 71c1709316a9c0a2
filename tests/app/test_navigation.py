"""The app's navigation: Streamlit's multipage layout (streamlit_app.py is Home, pages/ the rest),
every page drawing the shared frame, and the sidebar listing app_ui.PAGES."""

from __future__ import annotations

import tomllib

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
