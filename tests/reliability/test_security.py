"""Security defaults: the app and optuna-dashboard listen on localhost only, with XSRF protection
and an upload limit; user paths stay inside the workspace; nothing is ever unpickled. Plus the
check that docs/RELIABILITY.md is the table the tests check."""

from __future__ import annotations

import ast
import inspect
import tomllib

import pytest

from reliability_kit import REPO, render_markdown

LIBRARY = REPO / "flagvision"


def test_streamlit_config_is_local_and_xsrf_protected():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    server = config["server"]
    assert server["address"] == "127.0.0.1"
    assert server["enableXsrfProtection"] is True
    assert isinstance(server["maxUploadSize"], int) and 0 < server["maxUploadSize"] <= 1024
    assert config["browser"]["gatherUsageStats"] is False
    assert "--server.address 127.0.0.1" in (REPO / "Makefile").read_text()


def test_confine_refuses_paths_out_of_the_workspace(workspace, tmp_path):
    from flagvision.workspace import WorkspaceError

    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace.datasets_dir / "link-out").symlink_to(outside)
    (workspace.datasets_dir / "link-in").symlink_to(workspace.runs_dir)
    for bad in (
        "../outside",
        "datasets/../../outside",
        str(outside),
        "/etc/passwd",
        "datasets/link-out",
        "datasets/link-out/anything",
    ):
        with pytest.raises(WorkspaceError, match="is outside the workspace"):
            workspace.confine(bad)
    for bad in ("../x", "..", "../runs", "a/../../etc"):  # would reach the root or a sibling folder
        with pytest.raises(WorkspaceError, match="is not a folder name"):
            workspace.dataset_dir(bad)
    with pytest.raises(WorkspaceError, match="is outside the workspace"):
        workspace.dataset_dir("link-out")
    with pytest.raises(WorkspaceError, match="is not a folder name"):
        workspace.run_dir("../../1")
    assert workspace.confine("datasets/link-in") == workspace.runs_dir
    assert workspace.confine("datasets/new/sub") == workspace.datasets_dir / "new" / "sub"


def _text_input_keys() -> dict[str, str]:
    """key → page of every st.text_input / st.text_area / st.chat_input in the app."""
    keys = {}
    app_files = [REPO / "streamlit_app.py", *sorted((REPO / "pages").glob("*.py"))]
    app_files += sorted((REPO / "app_ui").glob("*.py"))
    for path in app_files:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("text_input", "text_area", "chat_input")
            ):
                value = next((k.value for k in node.keywords if k.arg == "key"), None)
                key = value.value if isinstance(value, ast.Constant) else ast.unparse(value) if value else None
                keys[str(key)] = path.name
    return keys


def test_page_text_inputs_take_no_paths(guarded_ws):
    """No page asks for a path but one: the free texts are names, and the VGG-16 weights import,
    whose path is only read, hashed and installed when it is the published file (a wrong file
    installs nothing: tests/models/test_weights.py). A dataset name (the one that becomes a folder)
    is sanitised, so even "../../x" lands inside datasets/."""
    from PIL import Image

    from flagvision.data.importer import import_dataset
    from reliability_kit import encode, zip_bytes

    assert _text_input_keys() == {
        "dataset_import_name": "dataset.py",
        "train_run_name": "train.py",
        "study_new_name": "study.py",
        "f'{key}_weights_path'": "weights.py",
    }, "a new text input: if it takes a path, pass it through Workspace.confine and add it here"
    ws, check = guarded_ws
    png = encode(Image.new("RGB", (8, 8)), "PNG")
    dest, report = import_dataset(ws, zip_bytes({"a/x.png": png, "b/x.png": png}), name="../../sentinel/x")
    assert dest.parent == ws.datasets_dir and ".." not in dest.name
    check(new_datasets=(dest.name,))


def test_library_never_unpickles():
    """No pickle module anywhere in flagvision/, and every torch.load passes weights_only=True."""
    offenders = []
    for path in sorted(LIBRARY.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
                )
                if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "shelve", "marshal") for n in names):
                    offenders.append(f"{where} imports {names}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                if node.func.attr == "load" and owner_name == "torch":
                    flag = next((k for k in node.keywords if k.arg == "weights_only"), None)
                    if not (flag and isinstance(flag.value, ast.Constant) and flag.value.value is True):
                        offenders.append(f"{where} torch.load without weights_only=True")
                if node.func.attr in ("load", "loads") and owner_name in ("pickle", "dill", "joblib"):
                    offenders.append(f"{where} {owner_name}.{node.func.attr}")
                if node.func.attr == "load" and owner_name in ("np", "numpy"):
                    flag = next((k for k in node.keywords if k.arg == "allow_pickle"), None)
                    if flag is not None and not (isinstance(flag.value, ast.Constant) and flag.value.value is False):
                        offenders.append(f"{where} numpy.load with allow_pickle")
    assert not offenders, offenders


def test_dashboard_binds_localhost():
    from flagvision.studies import dashboard

    assert inspect.signature(dashboard.start_dashboard).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(dashboard.free_port).parameters["host"].default == "127.0.0.1"
    source = (LIBRARY / "cli" / "study.py").read_text()
    assert "0.0.0.0" not in source and "0.0.0.0" not in inspect.getsource(dashboard)
    # The URL it hands out is the address it was started with (the slow test in test_faults.py
    # starts a real one and checks http://127.0.0.1:PORT/).


def test_reliability_document_is_up_to_date():
    doc = REPO / "docs" / "RELIABILITY.md"
    assert doc.read_text() == render_markdown(), (
        "docs/RELIABILITY.md differs from the tests' table: run "
        "`.venv/bin/python tests/reliability/reliability_kit.py > docs/RELIABILITY.md`"
    )
