import subprocess
import sys


def test_import_flagvision_does_not_import_streamlit():
    code = (
        "import importlib, pkgutil, sys, flagvision\n"
        "for m in pkgutil.iter_modules(flagvision.__path__):\n"
        "    if m.name != '__main__': importlib.import_module('flagvision.' + m.name)\n"
        "bad = sorted(m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.'))\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_streamlit_import_in_library_source():
    from pathlib import Path

    import flagvision

    for path in Path(flagvision.__file__).parent.rglob("*.py"):
        text = path.read_text()
        assert "import streamlit" not in text and "from streamlit" not in text, path
