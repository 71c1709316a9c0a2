"""The light commands import only what they need: no torch, no torchvision, Optuna only for studies.

Each command runs in a fresh interpreter through ``runpy`` (as ``python -m flagvision`` does), and an
``atexit`` hook reports which heavy modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from fv_helpers import REPO

HEAVY = ("torch", "torchvision", "optuna")
_PROBE = """
import atexit, json, runpy, sys
HEAVY = {heavy!r}
atexit.register(lambda: sys.stderr.write("\\nHEAVY " + json.dumps([m for m in HEAVY if m in sys.modules]) + "\\n"))
sys.argv = ["flagvision", *json.loads(sys.argv[1])]
runpy.run_module("flagvision", run_name="__main__", alter_sys=True)
"""


def _heavy_modules(*argv: str) -> tuple[int, list[str], str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), json.dumps(argv)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("HEAVY "), out.stderr
    return out.returncode, json.loads(last[len("HEAVY ") :]), out.stdout + out.stderr


@pytest.fixture(scope="module")
def ws_with_a_job(tmp_path_factory):
    from flagvision.jobs.store import Store

    ws = tmp_path_factory.mktemp("imports") / "ws"
    store = Store(ws / "flagvision.db")
    log = ws / "job.log"
    log.write_text("epoch 1/1 done\n")
    job_id = store.create_job("train", {}, state="running", started_at=time.time(), log_path=str(log))
    store.finish_job(job_id, "succeeded", result={"best_val_acc": 0.9})
    store.close()
    return ws, job_id


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["jobs", "list"],
        ["jobs", "list", "--json"],
        ["jobs", "show", "{job}"],
        ["jobs", "logs", "{job}"],
        ["jobs", "cancel", "{job}"],
        ["study", "list"],
        ["weights", "status"],
        ["weights", "status", "--json"],
    ],
    ids=" ".join,
)
def test_light_commands_do_not_import_torch(ws_with_a_job, command):
    ws, job_id = ws_with_a_job
    argv = ["--workspace", str(ws), *(part.format(job=job_id) for part in command)]
    status, heavy, output = _heavy_modules(*argv)
    assert status == 0, output
    allowed = {"optuna"} if command[0] == "study" else set()  # study list reads Optuna's own tables
    assert set(heavy) <= allowed, f"{' '.join(command)} imported {heavy}"


def test_the_probe_sees_torch_when_a_command_needs_it(tmp_path):
    """The same probe on `train --help`, whose --model choices come from the model registry."""
    status, heavy, output = _heavy_modules("train", "--help")
    assert status == 0 and "flag_cnn, vgg16_transfer" in output
    assert "torch" in heavy


def test_a_python_without_torch_gets_one_line_not_a_traceback():
    # As if run with a Python outside the set-up's .venv: ``import torch`` fails (None in sys.modules).
    probe = (
        "import runpy, sys; sys.modules['torch'] = None; sys.argv = ['flagvision', 'train', '--help']; "
        "runpy.run_module('flagvision', run_name='__main__', alter_sys=True)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert "no 'torch' package" in out.stderr and ".venv/bin/python -m flagvision" in out.stderr
