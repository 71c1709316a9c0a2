"""optuna-dashboard started by the library: answers HTTP, lists studies, never disturbs a writer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest

from flagvision.config import DataConfig, RunConfig
from flagvision.studies.config import StudyConfig, StudyError
from flagvision.studies.dashboard import DashboardError, start_dashboard
from fv_helpers import wait_for

WRITER = r"""
import json, sys, time
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
from flagvision.studies.runner import StudyConfig, run_study
from flagvision.workspace import Workspace

args = json.loads(sys.argv[1])

def report(fraction, text):
    if " epoch " in text:
        time.sleep(args["sleep_per_epoch"])  # slow trials: the dashboard reads while this writes

summary = run_study(StudyConfig.from_dict(args["config"]), Workspace.open(args["workspace"]), report=report)
print("SUMMARY " + json.dumps(summary.to_dict()), flush=True)
"""


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def _studies(base_url: str) -> dict[str, int]:
    status, body = _get(base_url + "api/studies")
    assert status == 200
    return {s["study_name"]: s["study_id"] for s in json.loads(body)["study_summaries"]}


@pytest.mark.slow
def test_dashboard_lists_a_study_while_another_process_writes_it(tmp_path, workspace, tiny_dataset):
    cfg = StudyConfig(
        name="live",
        n_trials=3,
        epochs_per_trial=2,
        sampler="random",
        pruner="none",
        enqueue_preset=False,
        base=RunConfig(data=DataConfig(path=str(tiny_dataset), image_size=32, augment=0.0), threads=1),
    )
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    log = open(tmp_path / "writer.log", "w")
    args = {"config": cfg.to_dict(), "workspace": str(workspace.root), "sleep_per_epoch": 0.6}
    writer = subprocess.Popen([sys.executable, str(script), json.dumps(args)], stdout=log, stderr=subprocess.STDOUT)
    try:
        with start_dashboard(workspace.storage_url) as dash:
            assert dash.url.startswith("http://127.0.0.1:")
            status, body = _get(dash.url)  # / redirects to the single-page app
            assert status == 200 and b"<html" in body.lower()
            # Watch the study grow through the dashboard's JSON API while the writer is still running.
            seen_live, deadline = False, time.monotonic() + 180
            while time.monotonic() < deadline and writer.poll() is None:
                study_id = _studies(dash.url).get("live")
                if study_id is not None:
                    _, body = _get(f"{dash.url}api/studies/{study_id}")
                    states = [t["state"] for t in json.loads(body)["trials"]]
                    if "Complete" in states and writer.poll() is None:
                        seen_live = True
                time.sleep(0.3)
            assert writer.wait(timeout=180) == 0, (tmp_path / "writer.log").read_text()[-3000:]
            assert seen_live, "the dashboard never showed a finished trial while the study was running"
            # The writer was not disturbed: every trial finished, and the dashboard sees all of them.
            summary = json.loads((tmp_path / "writer.log").read_text().split("SUMMARY ")[-1])
            assert summary["finished"] == 3
            # optuna-dashboard caches a study's trials for 2–10 s: poll until it shows the final states.
            study_url = f"{dash.url}api/studies/{_studies(dash.url)['live']}"
            last: list[str] = []

            def all_complete() -> bool:
                last[:] = [t["state"] for t in json.loads(_get(study_url)[1])["trials"]]
                return last == ["Complete"] * 3

            wait_for(
                all_complete, 60, lambda: f"the dashboard to show 3 complete trials (last seen: {last})", every=0.5
            )
            process = dash.process
        assert process.poll() is not None  # stopped on leaving the with-block
    finally:
        if writer.poll() is None:
            writer.kill()


def test_dashboard_on_a_journal_file(tmp_path):
    url = f"journal://{tmp_path / 'studies.log'}"
    from flagvision.studies.storage import open_storage

    study = optuna.create_study(study_name="journaled", storage=open_storage(url), direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with start_dashboard(url) as dash:
        assert "journaled" in _studies(dash.url)


def test_dashboard_refuses_unusable_storage_and_busy_port(tmp_path, workspace):
    with pytest.raises(StudyError, match="not understood"):
        start_dashboard("redis://localhost/0")
    with start_dashboard(workspace.storage_url) as first:
        port = int(first.url.rstrip("/").rsplit(":", 1)[1])
        with pytest.raises(DashboardError, match="not available"):
            start_dashboard(workspace.storage_url, port=port)
