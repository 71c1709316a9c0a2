"""Optuna studies: search space, a real pruned study, cancel/resume, several workers, dead workers.

Multi-process tests start real ``python`` subprocesses that call :func:`flagvision.studies.runner.run_study`
(the same code path as a background worker), on a journal file, on a PostgreSQL server this test
starts itself (Debian's ``postgresql`` package; skipped only when its binaries are absent), and on
the workspace SQLite file with heartbeats.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from flagvision.config import PARAM_SPECS, SEARCHABLE, DataConfig, RunConfig
from flagvision.data.dataset import load_dataset
from flagvision.jobs.store import Store
from flagvision.studies.config import ParamOverride, StudyConfig, StudyError, resolve_space, suggest
from flagvision.studies.figures import plot_history, plot_importances, plot_intermediate, plot_parallel, plot_slice
from flagvision.studies.results import final_training_config, param_importances, study_results, what_mattered
from flagvision.studies.runner import run_study, run_study_job
from flagvision.studies.storage import load_study
from fv_helpers import wait_for

optuna.logging.set_verbosity(optuna.logging.WARNING)

GOOD = {"optimizer": "Adam", "lr": 1e-3}  # learns the tiny layouts within one epoch
BAD = {"optimizer": "Adadelta", "lr": 1e-5}  # barely moves: chance-level accuracy


def _cfg(data_path: Path, **changes) -> StudyConfig:
    base = RunConfig(data=DataConfig(path=str(data_path), image_size=32, augment=0.0), threads=1)
    defaults = dict(
        name="s",
        n_trials=4,
        epochs_per_trial=2,
        sampler="random",
        pruner="none",
        base=base,
        enqueue_preset=False,
    )
    return StudyConfig(**{**defaults, **changes})


# --- configuration and search space ---------------------------------------------------------------


def test_config_round_trips_through_json():
    cfg = StudyConfig(
        name="flags-1",
        n_trials=7,
        space=(
            ParamOverride("activation", fixed="ReLU"),
            ParamOverride("lr", low=1e-4, high=5e-4),
            ParamOverride("optimizer", choices=("Adam", "NAdam")),
        ),
    )
    again = StudyConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg
    assert again.search_space().fixed == {"activation": "ReLU"}


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"sampler": "grid"}, "random, tpe"),
        ({"pruner": "asha"}, "none, median, hyperband"),
        ({"n_trials": 0}, "n_trials"),
        ({"name": ""}, "study name"),
        ({"storage": "redis://x"}, "journal:///"),
        ({"space": (ParamOverride("epochs", fixed=3),)}, "not a searchable parameter"),
        ({"space": (ParamOverride("lr", low=1.0, high=2.0),)}, "outside its range"),
        ({"space": (ParamOverride("num_filters_conv1", low=9, high=32),)}, "step 8"),
        ({"space": (ParamOverride("activation", low=1, high=2),)}, "categorical"),
        ({"space": (ParamOverride("optimizer", choices=("Adam", "Lion")),)}, "not one of"),
        ({"space": (ParamOverride("lr", fixed=1e-4, low=1e-5),)}, "exactly one"),
        ({"grace_period_s": 5, "heartbeat_interval_s": 5}, "must exceed"),
        # 7×7 kernels shrink 16 px to nothing: refused before any trial runs.
        ({"base": RunConfig(data=DataConfig(image_size=16))}, "impossible network"),
    ],
)
def test_config_refuses_bad_values_with_the_fix(changes, fragment):
    with pytest.raises(StudyError, match=fragment):
        StudyConfig(**changes)


def test_suggest_respects_fixed_narrowed_and_grid():
    """Property test: many random trials stay inside the (narrowed) space and on the spec grid."""
    overrides = (
        ParamOverride("activation", fixed="ReLU"),
        ParamOverride("optimizer", choices=("Adam", "NAdam")),
        ParamOverride("lr", low=1e-4, high=5e-4),
        ParamOverride("num_filters_conv2", low=32, high=64),
        ParamOverride("batch_size", low=32, high=32),  # a one-point range is a fixed value
        ParamOverride("kernel_size_conv1", low=5),  # open-ended: 5–7
    )
    space = resolve_space(overrides, epochs=5)
    assert set(space.fixed) == {"activation", "batch_size"}
    assert set(space.searched) == set(SEARCHABLE) - {"activation", "batch_size"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen: dict[str, set] = {name: set() for name in SEARCHABLE}
    for _ in range(300):
        trial = study.ask()
        hp = suggest(trial, space)
        study.tell(trial, 0.0)
        assert "activation" not in trial.params and "batch_size" not in trial.params
        assert set(trial.params) == set(space.searched)
        assert hp.activation == "ReLU" and hp.batch_size == 32 and hp.epochs == 5
        assert hp.optimizer in ("Adam", "NAdam")
        assert 1e-4 <= hp.lr <= 5e-4
        assert hp.num_filters_conv2 in (32, 48, 64)
        assert hp.kernel_size_conv1 in (5, 7)
        for name in SEARCHABLE:
            spec = PARAM_SPECS[name]
            value = getattr(hp, name)
            assert spec.check(value) == value  # inside the full range
            if spec.kind == "int":
                assert value in spec.grid()  # on the step grid
            seen[name].add(value)
    # The narrowed space is actually explored, not collapsed onto one value.
    assert seen["optimizer"] == {"Adam", "NAdam"}
    assert seen["num_filters_conv2"] == {32, 48, 64}
    assert seen["fc1_units"] == set(PARAM_SPECS["fc1_units"].grid())


# --- a real study ---------------------------------------------------------------------------------


def test_real_study_with_median_pruning(tiny_dataset, workspace):
    """6 trials into SQLite; the median pruner prunes a hopeless configuration deterministically.

    Trials 0–2 are enqueued (good, hopeless, good) and are the pruner's startup trials, so they
    complete; trial 3 (hopeless again) is below the median (100%) after its first epoch and must be
    pruned. Trials 4–5 are sampled and may end either way.
    """
    cfg = _cfg(
        tiny_dataset,
        name="median",
        n_trials=6,
        epochs_per_trial=2,
        pruner="median",
        pruner_startup_trials=3,
        pruner_warmup_epochs=0,
        space=(ParamOverride("activation", fixed="ReLU"),),
    )
    study = optuna.create_study(study_name=cfg.name, storage=workspace.storage_url, direction="maximize")
    for params in (GOOD, BAD, {**GOOD, "batch_size": 32}, {**BAD, "batch_size": 32}):
        study.enqueue_trial(params)
    reports: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    summary = run_study(cfg, workspace, report=lambda f, t: reports.append((f, t)))
    seconds = time.perf_counter() - t0

    study = load_study(workspace.storage_url, cfg.name)
    states = [t.state for t in study.trials]
    assert len(states) == 6 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert states[:4] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert summary.finished == 6 and summary.pruned == states.count(TrialState.PRUNED) >= 1
    assert summary.best_value == 1.0 and summary.best_params["activation"] == "ReLU"
    assert study.trials[3].intermediate_values.keys() == {1}  # stopped after epoch 1
    # Progress: monotone fractions ending at 1, with the best value in the text.
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert "best 100.0%" in reports[-1][1]

    # Every trial is a run in the store, linked both ways, with live per-epoch curves.
    store = Store(workspace.db_path)
    for t in study.trials:
        run = store.get_run(t.user_attrs["run_id"])
        assert (run["study_name"], run["trial_number"], run["status"]) == ("median", t.number, "succeeded")
        assert Path(t.user_attrs["checkpoint_path"], "model.safetensors").is_file()
        assert len(store.get_metrics(run["id"])) == len(t.intermediate_values)
    assert "pruned" in store.get_run(study.trials[3].user_attrs["run_id"])["notes"]

    importances, _ = param_importances(study)
    assert importances and set(importances) <= set(cfg.search_space().searched)
    top = next(iter(importances))
    text = what_mattered(study)
    assert top in text and "100.0%" in text
    results = study_results(workspace.storage_url, cfg.name)
    assert results["best"]["run_id"] is not None and results["top_trials"][0]["value"] == 1.0
    assert results["states"] == {
        "COMPLETE": states.count(TrialState.COMPLETE),
        "PRUNED": states.count(TrialState.PRUNED),
    }
    for plot in (plot_history, plot_importances, plot_parallel, plot_slice, plot_intermediate):
        assert plot(study).figure is not None, plot.__name__
    final = final_training_config(study, epochs=10)
    assert final.hparams.epochs == 10 and final.hparams.activation == "ReLU" and final.data.image_size == 32

    # Resuming by name with a higher total runs exactly the missing trials.
    more = run_study(cfg.with_changes(n_trials=7), workspace)
    assert more.trials_run == 1 and more.finished == 7
    print(f"6-trial study: {seconds:.1f}s")


def test_figures_and_summary_with_too_few_trials(tiny_dataset, workspace):
    cfg = _cfg(tiny_dataset, name="small", n_trials=1, epochs_per_trial=1, enqueue_preset=True)
    run_study(cfg, workspace)
    study = load_study(workspace.storage_url, "small")
    assert study.trials[0].user_attrs["preset"]  # the seed's preset ran first
    assert plot_importances(study).figure is None and "at least 2" in plot_importances(study).message
    assert plot_parallel(study).figure is None
    assert plot_history(study).figure is not None
    assert "at least 2" in what_mattered(study)
    assert study_results(workspace.storage_url, "small")["importances"] == {}
    with pytest.raises(StudyError, match="existing: small"):
        load_study(workspace.storage_url, "nope")
    # Resuming with another search space is refused, naming what differs.
    with pytest.raises(StudyError, match="epochs_per_trial"):
        run_study(cfg.with_changes(epochs_per_trial=2), workspace)


def test_cancel_stops_after_the_epoch_and_resume_finishes(tiny_dataset, workspace):
    cfg = _cfg(tiny_dataset, name="cancel", n_trials=2, epochs_per_trial=3)
    data = load_dataset(cfg.base.data)
    seen: list[str] = []
    summary = run_study(
        cfg,
        workspace,
        should_stop=lambda: bool(seen),
        report=lambda f, t: seen.append(t) if "epoch 1/" in t else None,
        data=data,
    )
    assert summary.stopped == "cancelled" and summary.trials_run == 1 and summary.finished == 0
    study = load_study(workspace.storage_url, "cancel")
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["stop_reason"] == "cancelled"
    assert trial.intermediate_values.keys() == {1}
    run = Store(workspace.db_path).get_run(trial.user_attrs["run_id"])
    assert run["status"] == "cancelled"
    # A cancelled trial does not count: the resumed study runs both planned trials.
    again = run_study(cfg, workspace, data=data)
    assert again.finished == 2 and again.trials_run == 2 and not again.stopped


def test_run_study_job_reads_the_payload_and_names_the_job(tiny_dataset, workspace):
    cfg = _cfg(tiny_dataset, name="job", n_trials=1, epochs_per_trial=1)
    store = Store(workspace.db_path)
    job_id = store.create_job("study", cfg.to_dict())
    reports = []
    result = run_study_job(workspace, store, store.get_job(job_id), lambda: False, lambda f, t: reports.append(f))
    assert result["finished"] == 1 and result["best_run_id"] is not None
    assert store.get_job(job_id)["study_name"] == "job"
    assert store.get_run(result["best_run_id"])["job_id"] == job_id
    assert reports[-1] == 1.0


def test_cli_tune_and_show(tiny_dataset, workspace, capsys):
    from flagvision.cli.main import main

    ws = str(workspace.root)
    rc = main(
        [
            "--workspace",
            ws,
            "tune",
            "--name",
            "cli",
            "--n-trials",
            "2",
            "--epochs-per-trial",
            "1",
            "--data",
            str(tiny_dataset),
            "--image-size",
            "32",
            "--augment",
            "0",
            "--threads",
            "1",
            "--fix",
            "activation=ReLU",
            "--range",
            "lr=1e-4:1e-3",
            "--choices",
            "optimizer=Adam,NAdam",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "best: trial" in out and "2/2 trials" in out
    assert main(["--workspace", ws, "study", "show", "cli", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["planned"] == 2 and shown["best"]["params"]["activation"] == "ReLU"
    assert {o["name"] for o in shown["config"]["space"]} == {"activation", "lr", "optimizer"}
    # User errors exit 2 with one line, no traceback.
    assert main(["--workspace", ws, "tune", "--data", str(tiny_dataset), "--range", "lr=1:2"]) == 2
    assert main(["--workspace", ws, "tune", "--data", str(tiny_dataset), "--fix", "colour=red"]) == 2
    assert main(["--workspace", ws, "study", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert "outside its range" in err and "not a searchable parameter" in err and "Traceback" not in err


# --- several processes ----------------------------------------------------------------------------

WORKER = r"""
import json, sys, time
from pathlib import Path
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
from flagvision.studies.runner import StudyConfig, run_study
from flagvision.workspace import Workspace

args = json.loads(sys.argv[1])
cfg = StudyConfig.from_dict(args["config"])
ws = Workspace.open(args["workspace"])
barrier = args.get("barrier")
if barrier:  # start together, after the slow imports, so that both really share the work
    Path(barrier, f"ready-{args['worker']}").touch()
    deadline = time.time() + 120
    while len(list(Path(barrier).glob("ready-*"))) < args["workers"] and time.time() < deadline:
        time.sleep(0.05)
pause = args.get("sleep_per_epoch", 0)

def report(fraction, text):
    if pause and " epoch " in text:
        time.sleep(pause)  # a slow trial, so that trials overlap (or can be killed mid-way)

summary = run_study(cfg, ws, report=report, worker=args["worker"])
print("SUMMARY " + json.dumps(summary.to_dict()), flush=True)
"""


def _start_worker(tmp_path: Path, cfg: StudyConfig, ws_root: Path, worker: int, **extra) -> subprocess.Popen:
    script = tmp_path / "study_worker.py"
    script.write_text(WORKER)
    args = {"config": cfg.to_dict(), "workspace": str(ws_root), "worker": worker, **extra}
    log = open(tmp_path / f"worker-{worker}.log", "w")
    return subprocess.Popen(
        [sys.executable, str(script), json.dumps(args)], stdout=log, stderr=subprocess.STDOUT, text=True
    )


def _summary_of(tmp_path: Path, worker: int) -> dict:
    text = (tmp_path / f"worker-{worker}.log").read_text()
    lines = [line for line in text.splitlines() if line.startswith("SUMMARY ")]
    assert lines, text[-3000:]
    return json.loads(lines[-1][len("SUMMARY ") :])


def _two_workers_share_one_study(tmp_path: Path, workspace, data_path: Path, storage_url: str, n: int = 6) -> None:
    cfg = _cfg(data_path, name="shared", n_trials=n, epochs_per_trial=2, storage=storage_url)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        _start_worker(tmp_path, cfg, workspace.root, w, barrier=str(barrier), workers=2, sleep_per_epoch=0.2)
        for w in range(2)
    ]
    for w, p in enumerate(procs):
        assert p.wait(timeout=240) == 0, (tmp_path / f"worker-{w}.log").read_text()[-3000:]
    summaries = [_summary_of(tmp_path, w) for w in range(2)]
    print(
        "worker seconds in run_study:",
        [round(s["seconds"], 1) for s in summaries],
        "trials:",
        [s["trials_run"] for s in summaries],
    )

    study = load_study(storage_url, "shared")
    trials = study.trials
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) and numbers == list(range(len(trials)))  # no duplicate, none lost
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n  # exactly N finished, not N per worker
    # Anything else can only be a trial refused because the other worker took the last slot.
    assert all(t.state == TrialState.FAIL for t in trials if t.state != TrialState.COMPLETE)
    assert sum(s["trials_run"] for s in summaries) == len(trials)
    assert all(s["trials_run"] >= 1 for s in summaries), summaries  # both did work
    store = Store(workspace.db_path)
    runs = {r["trial_number"]: r for r in store.list_runs() if r["study_name"] == "shared"}
    for t in complete:
        assert runs[t.number]["id"] == t.user_attrs["run_id"] and runs[t.number]["status"] == "succeeded"


@pytest.mark.slow
def test_two_workers_on_a_journal_file(tmp_path, workspace, tiny_dataset):
    _two_workers_share_one_study(tmp_path, workspace, tiny_dataset, f"journal://{tmp_path / 'study.log'}")


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server: initdb into a temp dir, start on a free port, one database.

    PostgreSQL refuses to run as root, so as root every server command runs as the ``postgres``
    user (created by Debian's package) in a directory that user owns.
    """
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="fv-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]

    def pg(*cmd: str) -> subprocess.CompletedProcess:
        result = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120, cwd=root)
        assert result.returncode == 0, f"{cmd}: {result.stdout}\n{result.stderr}"
        return result

    data_dir, port = root / "data", _free_port()
    try:
        pg(str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        pg(str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-o", options, "-l", str(root / "server.log"), "-w", "start")
        pg(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "flagvision")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/flagvision"
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            cwd=root,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_on_postgresql(tmp_path, workspace, tiny_dataset, postgres_url):
    _two_workers_share_one_study(tmp_path, workspace, tiny_dataset, postgres_url)


def _oldest_heartbeat_age_s(db_path) -> float:
    """Seconds since the oldest trial heartbeat in Optuna's tables, computed as Optuna's stale-trial
    check does: the database's CURRENT_TIMESTAMP minus the heartbeat, both in whole seconds in SQLite
    (so "older than the grace period" means a difference of at least grace + 1 s)."""
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        row = conn.execute(
            "SELECT MAX((julianday(CURRENT_TIMESTAMP) - julianday(heartbeat)) * 86400) FROM trial_heartbeats"
        ).fetchone()
    return float(row[0] or 0.0)


@pytest.mark.slow
def test_killed_worker_trial_fails_by_heartbeat_and_is_retried(tmp_path, workspace, tiny_dataset):
    """SIGKILL a worker mid-trial: its trial turns FAIL by heartbeat, a WAITING copy is retried."""
    cfg = _cfg(tiny_dataset, name="killed", n_trials=1, epochs_per_trial=3, heartbeat_interval_s=1, grace_period_s=2)
    victim = _start_worker(tmp_path, cfg, workspace.root, 0, sleep_per_epoch=60)  # stalls after epoch 1
    deadline = time.monotonic() + 120
    running = None
    while time.monotonic() < deadline and running is None:
        time.sleep(0.3)
        assert victim.poll() is None, (tmp_path / "worker-0.log").read_text()[-3000:]
        try:
            trials = load_study(workspace.storage_url, "killed").trials
        except StudyError:
            continue
        running = next((t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values), None)
    assert running is not None, "the worker never reached its first epoch"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    # Wait until the dead worker's last heartbeat, as the storage records it, is older than the grace period.
    wait_for(lambda: _oldest_heartbeat_age_s(workspace.db_path) > cfg.grace_period_s + 0.5, 60, "a stale heartbeat")

    summary = run_study(cfg, workspace)  # a second worker
    trials = load_study(workspace.storage_url, "killed").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    retry = trials[1]
    assert retry.system_attrs["failed_trial"] == 0  # set by Optuna's RetryHeartbeatStaleTrialCallback
    assert retry.params == trials[0].params
    assert summary.finished == 1 and summary.trials_run == 1
    store = Store(workspace.db_path)
    dead_run = store.get_run(trials[0].user_attrs["run_id"])
    assert dead_run["status"] == "failed" and "heartbeat" in dead_run["error"]
    assert store.get_run(retry.user_attrs["run_id"])["status"] == "succeeded"


@pytest.mark.slow
def test_background_study_job_runs_in_a_worker_and_cancels(tiny_dataset, workspace, capsys):
    """`tune --background` → jobs.submit_study → worker → run_study_job; cancel stops the study."""
    from flagvision.cli.main import main
    from flagvision.jobs import queue as jobs

    assert (
        main(
            [
                "--workspace",
                str(workspace.root),
                "tune",
                "--background",
                "--name",
                "bg",
                "--n-trials",
                "200",
                "--epochs-per-trial",
                "2",
                "--data",
                str(tiny_dataset),
                "--image-size",
                "32",
                "--augment",
                "0",
                "--threads",
                "1",
                "--sampler",
                "random",
                "--pruner",
                "none",
            ]
        )
        == 0
    )
    job_id = int(capsys.readouterr().out.split()[1])
    deadline = time.monotonic() + 180

    def finished_trials() -> int:
        try:
            study = load_study(workspace.storage_url, "bg")
        except StudyError:
            return 0
        return sum(t.state == TrialState.COMPLETE for t in study.trials)

    while finished_trials() < 2:
        assert time.monotonic() < deadline, jobs.get_job(workspace, job_id)
        jobs.tick(workspace)
        time.sleep(0.3)
    # The progress line reaches the store with the worker's next heartbeat (every second).
    job = wait_for(
        lambda: "trials" in ((j := jobs.get_job(workspace, job_id))["progress_text"] or "") and j,
        60,
        "the study's progress line",
        workspace,
    )
    assert job["state"] == "running" and job["study_name"] == "bg"
    jobs.cancel(workspace, job_id)
    while jobs.get_job(workspace, job_id)["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    job = jobs.get_job(workspace, job_id)
    assert job["state"] == "cancelled", job
    assert job["result"]["stopped"] == "cancelled" and 2 <= job["result"]["finished"] < 200
    study = load_study(workspace.storage_url, "bg")
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]  # nothing left dangling
