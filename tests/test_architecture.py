"""The layout's rules, read from the source: no import cycle between the library's modules, no
private name imported across its packages, and no module over about 500 lines without a written reason."""

from __future__ import annotations

import ast
from pathlib import Path

from fv_helpers import REPO

LIBRARY = REPO / "flagvision"
MAX_LINES = 520  # "about 500 lines": a little slack before a module must say why it is longer


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(LIBRARY.rglob("*.py"))}


def _package(module: str, modules: dict[str, Path]) -> str:
    """``flagvision.jobs.store`` → ``flagvision.jobs``; a top-level module is its own package."""
    if modules.get(module, Path()).name == "__init__.py":
        return module
    return module.rsplit(".", 1)[0] if module.count(".") >= 2 else module


def _imports(path: Path, top_level_only: bool) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) for every flagvision import in ``path``; ``top_level_only``
    skips imports inside functions and ``if TYPE_CHECKING:`` blocks (they run later or never)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flagvision"):
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("flagvision")]
    return found


def _target(module: str, name: str, modules: dict[str, Path]) -> str:
    """``from flagvision.jobs import store`` imports the module ``flagvision.jobs.store``."""
    return f"{module}.{name}" if f"{module}.{name}" in modules else module


def test_no_import_cycle_between_library_modules():
    modules = _modules()
    graph = {m: set() for m in modules}
    for m, path in modules.items():
        for module, names, _ in _imports(path, top_level_only=True):
            for target in {_target(module, n, modules) for n in names} or {module}:
                if target in modules and target != m:
                    graph[m].add(target)
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(" → ".join([*stack[stack.index(t) :], t]))
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_no_private_name_is_imported_across_packages():
    modules = _modules()
    found = []
    for m, path in modules.items():
        for module, names, line in _imports(path, top_level_only=False):
            for n in names:
                target = _target(module, n, modules)
                private = n.startswith("_") or any(p.startswith("_") for p in target.split(".")[1:])
                if private and _package(target, modules) != _package(m, modules):
                    found.append(f"{path.relative_to(REPO)}:{line} imports {n} from {module}")
    assert found == []


def test_no_module_over_about_500_lines_without_a_reason_in_its_docstring():
    long = []
    for path in [
        *sorted(LIBRARY.rglob("*.py")),
        *sorted((REPO / "app_ui").glob("*.py")),
        *sorted(REPO.glob("pages/*.py")),
    ]:
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "over 500 lines" not in doc:
            long.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert long == []


def test_the_checks_see_a_cycle_and_a_private_import(tmp_path):
    """The walkers above find what they look for (a check that cannot fail proves nothing)."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from flagvision.x import _hidden\nfrom flagvision import y\n")
    b.write_text("def f():\n    from flagvision.z import w\n")
    assert _imports(a, True) == [("flagvision.x", ["_hidden"], 1), ("flagvision", ["y"], 2)]
    assert _imports(b, True) == [] and _imports(b, False) == [("flagvision.z", ["w"], 2)]
    modules = {"flagvision.y": Path("y.py"), "flagvision.jobs.store": Path("store.py")}
    assert _target("flagvision", "y", modules) == "flagvision.y"
    assert _package("flagvision.jobs.store", modules) == "flagvision.jobs"
