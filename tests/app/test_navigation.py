"""The app's navigation: st.navigation over app_pages/, and nothing Streamlit would run on its own."""

from __future__ import annotations

from app_helpers import REPO, app, no_exceptions


def test_no_pages_folder_beside_the_entry_script():
    """A folder named pages/ beside streamlit_app.py is Streamlit's old automatic multipage mode: a
    deep link (/train) to a fresh server showed that folder's navigation, without st.navigation's
    titles or the shared sidebar, until the entry script had run once (tests/e2e checks it live)."""
    assert not (REPO / "pages").exists()
    assert sorted(p.stem for p in (REPO / "app_pages").glob("[!_]*.py")) == [
        "dataset", "home", "predict", "runs", "study", "train"]


def test_train_page_has_the_shared_sidebar(app_ws):
    at = app("train")
    no_exceptions(at)
    assert at.title[0].value == "Train"
    assert any("FlagVision" in m.value for m in at.sidebar.markdown)
