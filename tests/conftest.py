"""Shared fixtures: tiny generated ImageFolder datasets and an isolated workspace."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fv_helpers import make_pattern_dataset


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's AppTest runs a page as ``__main__`` and leaves it there; a later test in the same
    worker that starts a "spawn" process would then make the child re-run that page script. Put
    the real ``__main__`` back after every test, so no test depends on which ran before it."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """3 classes × 12 images, 40 px, separable by layout."""
    return make_pattern_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    from flagvision.workspace import Workspace

    monkeypatch.setenv("FLAGVISION_HOME", str(tmp_path / "ws"))
    return Workspace.open(tmp_path / "ws")


@pytest.fixture
def venv_python() -> str:
    return sys.executable
