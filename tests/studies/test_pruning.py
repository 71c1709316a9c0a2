"""Pruning that keeps the best trial, and the bench's reasons built from its own measurements.

The default pruner is StudyConfig's: its settings round-trip through JSON (old stored configs still
load), and a small real study on SQLite with it prunes a hopeless trial but never the reference
study's preset. The bench's reason builders are pure functions of what a run measured: they are
checked here for a CPU with bf16 in hardware and one without, and for the study's reasons.
"""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from benchmarks import bench
from flagvision.config import DataConfig, RunConfig
from flagvision.studies.config import StudyConfig
from flagvision.studies.runner import make_pruner, run_study
from flagvision.studies.storage import load_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- the bench's reasons ------------------------------------------------------------------------


def test_bf16_reason_on_a_cpu_with_bf16_reports_the_measured_speed_not_a_missing_feature():
    text = bench.bf16_finding(("amx_bf16", "avx512_bf16"), 0.72)
    assert "0.72×" in text and "has bf16 instructions" in text and "amx_bf16" in text
    assert "no bf16" not in text and "emulated" not in text


def test_bf16_reason_on_a_cpu_without_bf16_says_it_is_emulated():
    text = bench.bf16_finding((), 0.13)
    assert "0.13×" in text and "no bf16 instructions" in text and "emulated" in text


def test_bf16_reason_when_bf16_is_faster_or_not_timed():
    assert "1.40× as fast" in bench.bf16_finding(("amx_bf16",), 1.4)
    assert "not timed" in bench.bf16_finding((), None)


def _tuning(bf16: float) -> dict[str, dict[str, float]]:
    return {
        "engine defaults (what fit() does)": {"ratio": 1.0, "first_s": 0.1},
        "NCHW (no channels_last)": {"ratio": 0.94, "first_s": 0.1},
        "bf16 autocast": {"ratio": bf16, "first_s": 0.8},
        "batch 64 (a hyperparameter, for reference; per 16 images)": {"ratio": 1.31, "first_s": 0.3},
    }


@pytest.mark.parametrize(
    "flags, bf16, present, absent",
    [
        (("amx_bf16",), 0.72, ["0.72×", "has bf16 instructions"], ["no bf16", "lacks", "emulated"]),
        ((), 0.13, ["0.13×", "no bf16 instructions", "emulated"], ["has bf16"]),
    ],
)
def test_epoch_reason_is_built_from_the_runs_figures(flags, bf16, present, absent):
    text = bench.epoch_speedup_reason(1.14, 11.6, 41.6, 0.237, _tuning(bf16), flags, 0.059)
    for part in present + [
        "2.6× short",
        "11.6 s",
        "41.6 s",
        "23.7 %",
        "71.1 %",
        "NCHW (no channels_last) 0.94×",
        "5.9 %",
    ]:
        assert part in text, part
    for part in absent:
        assert part not in text, part


def test_epoch_reason_without_a_tuning_run_claims_nothing_about_settings():
    text = bench.epoch_speedup_reason(1.14, 11.6, 41.6, None, {}, (), None)
    assert "not timed" in text and "What was tried" not in text and "peak" not in text


def test_tuning_verdicts_follow_the_measured_ratio():
    assert bench.tuning_verdict("x", 0.8).startswith("rejected: slower here (0.80×)")
    assert bench.tuning_verdict("x", 1.01).startswith("rejected: no measurable gain")
    assert "candidate default" in bench.tuning_verdict("x", 1.2)
    # torch.compile: 2 s extra on the first step, 0.1 s steps 1.25× faster, 10 steps an epoch → 10 epochs.
    assert "after 10.0 epoch(s)" in bench.tuning_verdict("c", 1.25, extra_first_s=2.0, step_s=0.1, steps_per_epoch=10)
    assert "hyperparameter" in bench.tuning_verdict("b", 1.3, hyperparameter=True)


def test_cheap_timings_are_the_median_of_three_with_their_range():
    calls = []

    def cheap() -> float:
        calls.append(1)
        return [0.3, 0.1, 0.2][len(calls) - 1]

    t = bench._repeat(cheap)
    assert len(calls) == 3 and t.median == 0.2
    assert t.fmt() == "0.20 s (0.10 s–0.30 s, median of 3)"
    assert bench._repeat(lambda: 12.0).fmt() == "12.0 s (1 run)"  # a 10 s+ measurement runs once


def _run(pruner: str, seconds: float, trials: list[tuple[str, list[float], dict]]) -> bench.StudyRun:
    rows = [
        {
            "number": i,
            "state": st,
            "value": max(c) if st == "COMPLETE" else None,
            "params": p,
            "curve": c,
            "seconds": seconds / len(trials) * len(c) / 5,
        }
        for i, (st, c, p) in enumerate(trials)
    ]
    best = max((r["value"] for r in rows if r["value"] is not None), default=0.0)
    return bench.StudyRun(pruner, seconds, best, rows)


def test_study_reasons_name_the_trials_and_the_point_where_the_studies_parted():
    good, slow, other = {"lr": 1e-3}, {"lr": 1e-4}, {"lr": 5e-4}
    unpruned = _run(
        "none",
        100.0,
        [
            ("COMPLETE", [0.3, 0.5, 0.6, 0.7, 0.72], good),
            ("COMPLETE", [0.1, 0.3, 0.6, 0.8, 0.75], slow),
            ("COMPLETE", [0.2, 0.3, 0.4, 0.5, 0.5], other),
        ],
    )
    pruned = _run(
        "median",
        40.0,
        [("COMPLETE", [0.3, 0.5, 0.6, 0.7, 0.72], good), ("PRUNED", [0.1], slow), ("PRUNED", [0.2], good)],
    )
    gap = bench.study_gap_reason(pruned, unpruned)
    assert "trial #1 (80.0 %, reached at epoch 4)" in gap
    assert "first 2 trials" in gap and "pruned after epoch 1 at 10.0 %" in gap and "trial #0 (72.0 %)" in gap
    slow_text = bench.study_time_reason(0.4, pruned, unpruned, 5)
    assert (
        "1.20× the target time" in slow_text
        and "7 of 15 epochs" in slow_text
        and "2 trials were pruned, 2 of them" in slow_text
    )


# --- the default pruner -------------------------------------------------------------------------

GOOD = {"optimizer": "Adam", "lr": 1e-3, "activation": "ReLU"}  # learns the tiny layouts within one epoch
BAD = {"optimizer": "Adadelta", "lr": 1e-5, "activation": "ReLU"}  # barely moves: chance-level accuracy


def test_default_pruner_config_round_trips_and_old_configs_still_load():
    cfg = StudyConfig()
    assert cfg.pruner == "percentile" and isinstance(make_pruner(cfg), optuna.pruners.PercentilePruner)
    again = StudyConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and again.pruner_percentile == cfg.pruner_percentile
    # A config stored before the percentile pruner existed: no pruner_percentile field, median pruner.
    old = json.loads(cfg.to_json())
    del old["pruner_percentile"]
    old.update(pruner="median", pruner_startup_trials=2, pruner_warmup_epochs=1)
    loaded = StudyConfig.from_dict(old)
    pruner = make_pruner(loaded)
    assert isinstance(pruner, optuna.pruners.MedianPruner) and loaded.pruner_percentile == cfg.pruner_percentile
    # "1 warm-up epoch" means epoch 1 is never pruned: Optuna's first check at step 2 (epochs are steps 1..E).
    assert pruner._n_warmup_steps == 2
    with pytest.raises(Exception, match="pruner_percentile"):
        cfg.with_changes(pruner_percentile=0)


def test_default_pruner_prunes_a_hopeless_trial_but_never_the_preset(tiny_dataset, workspace):
    base = RunConfig(data=DataConfig(path=str(tiny_dataset), image_size=32, augment=0.0), threads=1)
    cfg = StudyConfig(name="default-pruner", n_trials=6, epochs_per_trial=2, sampler="random", base=base)
    assert cfg.pruner == StudyConfig().pruner  # the default, as the app and `tune` use it
    # run_study enqueues the preset only into a new study; here it comes after the start-up trials,
    # marked as run_study marks it, so that the pruner would judge it if it were not exempt.
    study = optuna.create_study(study_name=cfg.name, storage=workspace.storage_url, direction="maximize")
    for params in (GOOD, {**GOOD, "batch_size": 32}, {**GOOD, "lr": 5e-4}):
        study.enqueue_trial(params)
    study.enqueue_trial(BAD, user_attrs={"preset": "seed's best preset"})
    study.enqueue_trial(BAD)
    study.enqueue_trial({**BAD, "batch_size": 32})
    summary = run_study(cfg, workspace)
    trials = load_study(workspace.storage_url, cfg.name).trials
    states = [t.state for t in trials]
    assert states[:3] == [TrialState.COMPLETE] * 3, states  # the start-up trials
    assert trials[3].user_attrs.get("preset") and states[3] == TrialState.COMPLETE  # judged hopeless, not pruned
    assert states[4] == TrialState.PRUNED and trials[4].intermediate_values.keys() == {1}  # judged after epoch 1
    assert summary.pruned >= 1 and summary.best_value == 1.0


def test_run_study_enqueues_the_preset_first_and_completes_it(tiny_dataset, workspace):
    base = RunConfig(data=DataConfig(path=str(tiny_dataset), image_size=32, augment=0.0), threads=1)
    cfg = StudyConfig(name="preset-first", n_trials=1, epochs_per_trial=2, sampler="random", base=base)
    run_study(cfg, workspace)
    (trial,) = load_study(workspace.storage_url, cfg.name).trials
    assert trial.user_attrs.get("preset") and trial.state == TrialState.COMPLETE


def test_study_time_reason_states_the_floor_of_whole_epoch_pruning():
    unpruned = _run("none", 45.0, [("COMPLETE", [0.1] * 5, {})] * 30)
    pruned = _run("percentile", 18.0, [("COMPLETE", [0.1] * 5, {})] * 4 + [("PRUNED", [0.1], {})] * 26)
    unpruned.seconds, pruned.seconds = 4.5 + 0.27 * 150, 4.5 + 0.27 * 46
    fit = bench.study_cost_fit([unpruned, pruned])
    assert fit == pytest.approx((4.5, 0.27))
    text = bench.study_time_reason(0.4, pruned, unpruned, 5, fit, startup_trials=2)
    assert "every trial but 3 (2 start-up trial(s) and the best)" in text and "42 epochs would run" in text
    assert "about 0.35 of the unpruned time" in text and "0.15 s per trial + 0.27 s per epoch" in text
