"""Every ``--json`` output of the CLI is strict JSON: no NaN or Infinity, which jq and browsers refuse.

The commands are enumerated from the parser itself, so a new ``--json`` command fails here until it
is given arguments below (and so is checked). Each runs as a real subprocess on a workspace that
holds non-finite numbers where they really occur: a diverged run's NaN loss, an infinite trial
value, a class with no images in the evaluated folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

import pytest

from fv_helpers import make_pattern_dataset, run_cli


def _refuse_constant(name: str):
    raise AssertionError(f"not strict JSON: {name}")


def _json_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every sub-command path (e.g. ("jobs", "show")) whose parser has a --json option."""
    found: set[tuple[str, ...]] = set()
    if prefix and any("--json" in action.option_strings for action in parser._actions):
        found.add(prefix)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _json_commands(sub, prefix + (name,))
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny trained checkpoint, a one-class folder, a failed job with NaN metrics, a study."""
    import optuna

    from flagvision.jobs.store import Store

    root = tmp_path_factory.mktemp("json")
    data = make_pattern_dataset(root / "data", per_class=10)
    ws = root / "ws"
    out = run_cli("--workspace", str(ws), "train", "--data", str(data), "--epochs", "1", "--image-size", "32")
    assert out.returncode == 0, out.stderr
    one_class = root / "one_class"
    shutil.copytree(data / "vertical", one_class / "vertical")

    store = Store(ws / "flagvision.db")
    run_id = store.create_run(name="diverged", status="failed", config={"hparams": {"epochs": 2}})
    store.log_epoch(
        run_id, 1, train_loss=float("nan"), train_acc=0.1, val_loss=float("inf"), val_acc=0.1, lr=1e-3, seconds=1.0
    )
    job_id = store.create_job("train", {"run_id": run_id}, run_id=run_id, state="running", started_at=time.time())
    store.finish_job(job_id, "failed", error="loss became NaN", result={"best_val_loss": float("nan")})
    store.close()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{ws / 'flagvision.db'}", study_name="tiny", direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)
    for value, x in ((0.5, 1e-4), (0.7, 2e-4), (float("inf"), 3e-4)):  # Optuna stores an infinite value as is
        study.add_trial(optuna.trial.create_trial(params={"lr": x}, distributions={"lr": lr}, value=value))
    return {"ws": ws, "data": data, "one_class": one_class, "ckpt": ws / "runs" / "1" / "checkpoint", "job": job_id}


def _arguments(w) -> dict[tuple[str, ...], list[str]]:
    ws, ckpt = ["--workspace", str(w["ws"])], str(w["ckpt"])
    return {
        ("evaluate",): ["evaluate", "--checkpoint", ckpt, "--data", str(w["one_class"])],
        ("predict",): ["predict", "--checkpoint", ckpt, str(w["data"] / "vertical" / "000.png")],
        ("weights", "status"): ["weights", "status"],
        ("data", "summary"): ["data", "summary", "--data", str(w["data"])],
        ("jobs", "list"): [*ws, "jobs", "list"],
        ("jobs", "show"): [*ws, "jobs", "show", str(w["job"])],
        ("study", "list"): [*ws, "study", "list"],
        ("study", "show"): [*ws, "study", "show", "tiny"],
        ("finder", "train"): [*ws, "finder", "train", "--scenes", "16", "--val-scenes", "4", "--epochs", "1"],
        ("finder", "status"): [*ws, "finder", "status"],
    }


def test_every_json_command_prints_strict_json(world):
    from flagvision.cli.main import build_parser

    commands = _arguments(world)
    found = _json_commands(build_parser())
    assert found == set(commands), f"--json commands without a case here: {sorted(found - set(commands))}"
    outputs = {}
    for path, argv in commands.items():
        out = run_cli(*argv, "--json")
        assert out.returncode == 0, (path, out.stderr)
        outputs[path] = json.loads(out.stdout, parse_constant=_refuse_constant)
    # The non-finite values were really there, and came out as null.
    per_class = outputs[("evaluate",)]["per_class"]
    assert per_class["diagonal"] is None and per_class["horizontal"] is None and 0 <= per_class["vertical"] <= 1
    metrics = outputs[("jobs", "show")]["metrics"][0]
    assert metrics["train_loss"] is None and metrics["val_loss"] is None and metrics["val_acc"] == 0.1
    assert outputs[("jobs", "show")]["job"]["result"] == {"best_val_loss": None}
    assert outputs[("study", "list")][0]["best_value"] is None
    assert outputs[("study", "show")]["best"]["value"] is None


def test_evaluation_json_and_card_are_strict(world):
    run = world["ws"] / "runs" / "1"
    for path in (run / "evaluation.json", run / "checkpoint" / "card.json"):
        json.loads(path.read_text(), parse_constant=_refuse_constant)


def test_strict_dumps_turns_non_finite_numbers_into_null():
    from flagvision import strict_json

    data = {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": (0.25, {"d": float("nan")})}
    assert json.loads(strict_json.dumps(data), parse_constant=_refuse_constant) == {
        "a": None,
        "b": [None, None, 1.5],
        "c": [0.25, {"d": None}],
    }
    # What `default` makes of an unknown object is cleaned too.
    assert strict_json.dumps({"x": object()}, default=lambda o: float("nan")) == '{"x": null}'
