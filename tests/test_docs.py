"""docs/ARCHITECTURE.md quotes the code: every ``flagvision.…`` name in it, and every name in its
module table, must exist."""

from __future__ import annotations

import importlib
import re

from fv_helpers import REPO

DOC = (REPO / "docs" / "ARCHITECTURE.md").read_text()


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_quoted_name_exists():
    names = sorted(set(re.findall(r"`(flagvision(?:\.\w+)+)", DOC)))
    assert len(names) > 20, names
    missing = []
    for name in names:
        try:
            _resolve(name)
        except (ModuleNotFoundError, AttributeError):
            missing.append(name)
    assert not missing, f"docs/ARCHITECTURE.md names what the code lacks: {missing}"


def test_module_table_matches_the_code():
    rows = [line.split("|") for line in DOC.splitlines() if line.startswith("| ") and "`" in line]
    checked = 0
    for row in rows:
        modules = re.findall(r"`([\w.]+)`", row[2])
        api = re.findall(r"`([A-Za-z_][\w.]*)", row[4])
        objects = [importlib.import_module(f"flagvision.{m}") for m in modules]
        for name in api:
            first = name.split(".")[0]
            assert any(hasattr(mod, first) for mod in objects), f"{name} is in none of {modules}"
            checked += 1
    assert checked > 40
