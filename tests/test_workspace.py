"""RunPaths names every file of a run folder, and nothing else in the code spells those names.

Also: the job and run states "active" and "finished" are written out once, in flagvision/jobs/schema.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flagvision.config import DataConfig, HyperParams, RunConfig
from flagvision.jobs import queue as jobs
from flagvision.jobs.schema import ACTIVE_STATES, FINISHED_STATES, JOB_STATES, RUN_STATUSES
from flagvision.jobs.store import Store
from flagvision.workspace import RunPaths, Workspace
from fv_helpers import REPO, make_pattern_dataset

# Where the run-folder names may not be spelled out (the library, the pages, the app's frame).
SOURCES = sorted(
    [
        *(REPO / "flagvision").rglob("*.py"),
        *(REPO / "pages").rglob("*.py"),
        *(REPO / "app_ui").rglob("*.py"),
        REPO / "streamlit_app.py",
    ]
)


def _relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _listing(folder: Path) -> set[Path]:
    """Every file under ``folder``, hidden ones included (a leftover temporary file counts)."""
    return {p for p in folder.rglob("*") if p.is_file()}


def test_run_paths_name_exactly_the_files_a_training_writes(tmp_path):
    from flagvision.training.run import execute_run

    ws = Workspace.open(tmp_path / "ws")
    data = make_pattern_dataset(tmp_path / "data", per_class=6)
    cfg = RunConfig(data=DataConfig(path=str(data), image_size=32), hparams=HyperParams(epochs=1), threads=1)
    with Store(ws.db_path) as store:
        outcome = execute_run(ws, store, cfg, name="layout")
        row = store.get_run(outcome.run_id)
    assert outcome.status == "succeeded"
    paths = ws.run_paths(outcome.run_id)
    assert paths.root == ws.run_dir(outcome.run_id) and paths.root.is_dir()
    assert row["run_dir"] == str(paths.root) and row["checkpoint_path"] == str(paths.checkpoint)
    # A foreground run has no log: only a background job's worker writes one (its path checked below).
    assert _listing(paths.root) == set(paths.files) - {paths.log}
    assert paths.checkpoint.is_dir() and all(p.parent == paths.checkpoint for p in paths.last_state)
    assert len(set(paths.files)) == len(paths.files)
    train_job = {"id": 7, "kind": "train", "run_id": outcome.run_id}
    assert jobs.job_log_path(ws, train_job) == paths.log


def test_run_paths_come_from_the_root_alone(tmp_path):
    paths = RunPaths(tmp_path / "runs" / "3")
    assert all(paths.root in p.parents for p in paths.files)
    assert paths == RunPaths(tmp_path / "runs" / "3")
    with pytest.raises(AttributeError):
        paths.root = tmp_path  # type: ignore[misc]  # frozen


def _run_folder_names() -> tuple[set[str], str]:
    """The file names of a run folder and the checkpoint folder's name, as RunPaths has them."""
    paths = RunPaths(Path("run"))
    return {p.name for p in paths.files}, paths.checkpoint.name


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _is_definition(node: ast.Constant, parent: ast.AST, where: str) -> bool:
    """``NAME = "value"`` in flagvision/workspace.py: the one place the names are spelled."""
    return (
        where == "flagvision/workspace.py"
        and isinstance(parent, ast.Assign)
        and parent.value is node
        and all(isinstance(t, ast.Name) and t.id.isupper() for t in parent.targets)
    )


def _spells(text: str, name: str) -> bool:
    """``text`` is ``name``, or a path with ``name`` as one of its parts ("runs/*/checkpoint")."""
    return text == name or ("/" in text and not any(c.isspace() for c in text) and name in text.split("/"))


def _builds_a_path(node: ast.Constant, parent: ast.AST) -> bool:
    """The constant is joined into a path (``x / "name"``) or passed to a call (``Path("name")``)."""
    return (isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Div)) or (
        isinstance(parent, ast.Call) and node in parent.args
    )


def run_folder_literals(source: str, where: str) -> list[str]:
    """Where the code ``source`` (of file ``where``) spells a run-folder name: a file name anywhere
    (prose in a docstring, with spaces around the name, aside), the checkpoint folder's name where
    a path is built (it is also a plain word, e.g. a JSON key of a job's summary)."""
    files, folder = _run_folder_names()
    tree = ast.parse(source, filename=where)
    parents = _parents(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        parent = parents.get(node, tree)
        if _is_definition(node, parent, where):
            continue
        text = node.value
        if any(_spells(text, name) for name in files) or (
            _spells(text, folder) and (text != folder or _builds_a_path(node, parent))
        ):
            found.append(f"{where}:{node.lineno}: {text!r}")
    return found


def test_no_run_folder_name_is_spelled_outside_its_definition():
    found = [hit for path in SOURCES for hit in run_folder_literals(path.read_text(encoding="utf-8"), _relative(path))]
    assert not found, "use RunPaths or the workspace constants instead of:\n" + "\n".join(found)


def test_each_run_folder_name_is_defined_once():
    files, folder = _run_folder_names()
    tree = ast.parse((REPO / "flagvision" / "workspace.py").read_text(encoding="utf-8"))
    defined = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    ]
    assert sorted(v for v in defined if v in files | {folder}) == sorted(files | {folder})


def test_the_literal_check_finds_a_spelled_name():
    # The check above must be able to fail: code that spells the names the old way.
    source = (
        "from pathlib import Path\n"
        "def card(run_dir):\n"
        '    return Path(run_dir) / "checkpoint" / "card.json"\n'
        'LOG = Path("runs/1/log.txt")\n'
        'OWNER = f"{LOG.parent}/owner.json"\n'
        'SUMMARY = {"checkpoint": "a JSON key, not a path"}\n'
        '"""A docstring may say that checkpoint/ holds card.json."""\n'
        'CARD_FILE = "card.json"\n'
    )
    hits = sorted(run_folder_literals(source, "pages/bad.py"))
    assert hits == [
        "pages/bad.py:3: 'card.json'",
        "pages/bad.py:3: 'checkpoint'",
        "pages/bad.py:4: 'runs/1/log.txt'",
        "pages/bad.py:5: '/owner.json'",
        "pages/bad.py:8: 'card.json'",  # a definition outside workspace.py is a second definition
    ]
    assert run_folder_literals('CARD_FILE = "card.json"\n', "flagvision/workspace.py") == []


# -- job and run states ---------------------------------------------------------------------------


def test_active_and_finished_states_cover_every_state_once():
    assert set(ACTIVE_STATES).isdisjoint(FINISHED_STATES)
    assert RUN_STATUSES == JOB_STATES == (*ACTIVE_STATES, *FINISHED_STATES)


def _state_groups(path: Path) -> list[str]:
    """Tuples, lists and sets of state names that spell the active or the finished group by hand."""
    groups = {frozenset(ACTIVE_STATES), frozenset(FINISHED_STATES)}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts:
            values = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len(values) == len(node.elts) and frozenset(values) in groups:
                found.append(f"{_relative(path)}:{node.lineno}: {tuple(values)}")
    return found


def test_state_groups_are_spelled_only_in_the_store():
    found = [hit for path in SOURCES if _relative(path) != "flagvision/jobs/schema.py" for hit in _state_groups(path)]
    assert not found, "use schema.ACTIVE_STATES / schema.FINISHED_STATES instead of:\n" + "\n".join(found)
    assert len(_state_groups(REPO / "flagvision" / "jobs" / "schema.py")) == 2  # the two definitions themselves
