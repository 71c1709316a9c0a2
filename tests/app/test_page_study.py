"""Study page: range widgets → StudyConfig → study job; live results of an existing study."""

from __future__ import annotations

from app_helpers import app, no_exceptions
from flagvision.jobs import queue as jobs


def test_start_study_from_narrowed_ranges(app_ws):
    at = app("study")
    no_exceptions(at)
    at.text_input(key="study_new_name").input("app-study").run()
    at.slider(key="study_n_trials").set_value(3).run()
    at.slider(key="study_epochs").set_value(1).run()
    at.select_slider(key="study_image_size").set_value(32).run()
    at.selectbox(key="study_sampler").set_value("random").run()
    at.slider(key="study_range_num_filters_conv1").set_value((16, 16)).run()  # fixed
    at.slider(key="study_range_fc1_units").set_value((64, 128)).run()  # narrowed
    at.multiselect(key="study_range_activation").set_value(["ReLU", "ELU"]).run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    assert any("fixed at 16" in c.value for c in at.caption)
    at.button(key="study_start").click().run()
    no_exceptions(at)
    store = jobs.open_store(app_ws)
    job = next(j for j in store.list_jobs() if j["kind"] == "study")
    cfg = job["payload"]["config"]
    assert cfg["name"] == "app-study" and cfg["n_trials"] == 3 and cfg["epochs_per_trial"] == 1
    space = {o["name"]: o for o in cfg["space"]}
    assert space["num_filters_conv1"] == {"name": "num_filters_conv1", "fixed": 16}
    assert (space["fc1_units"]["low"], space["fc1_units"]["high"]) == (64, 128)
    assert space["activation"]["choices"] == ["ReLU", "ELU"]
    assert at.selectbox(key="study_selected").value == "app-study"
    jobs.cancel(app_ws, job["id"], force=True)


def test_empty_choice_list_is_an_error(app_ws):
    at = app("study")
    at.multiselect(key="study_range_optimizer").set_value([]).run()
    no_exceptions(at)
    assert any("choose at least one" in e.value for e in at.error)
    assert at.button(key="study_start").disabled


def test_existing_study_results_and_final_training(trained_ws):
    at = app("study")
    no_exceptions(at)
    assert at.selectbox(key="study_selected").value == "tiny-study"
    assert any("2 of 2 trials finished" in m.value for m in at.markdown)
    trials = at.dataframe[0].value
    assert len(trials) == 2 and "num_filters_conv2" in trials.columns
    assert any("best trial" in i.value for i in at.info)  # what mattered
    # The figure tabs are lazy: only the open one is drawn (the history first), each once opened.
    charts = {"History": len(at.get("plotly_chart"))}
    for view in ("Importances", "Parallel coordinates", "Learning curves", "Trial curves"):
        at.session_state["study_view"] = view
        at.run()
        no_exceptions(at)
        charts[view] = len(at.get("plotly_chart"))
    assert charts["History"] == 1 and charts["Trial curves"] == 2, charts  # the trial's loss and accuracy
    assert max(charts.values()) <= 2 and sum(charts.values()) >= 4, charts
    at.selectbox(key="study_trial_curve").set_value(1).run()
    no_exceptions(at)
    store = jobs.open_store(trained_ws)
    before = len(store.list_runs())
    at.slider(key="study_final_epochs").set_value(1).run()
    at.button(key="study_final").click().run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    runs = store.list_runs()
    assert len(runs) == before + 1 and "best trial" in runs[0]["name"]
    assert runs[0]["config"]["hparams"]["epochs"] == 1
    jobs.cancel(trained_ws, runs[0]["job_id"], force=True)
    from flagvision.training.run import delete_run

    delete_run(trained_ws, store, runs[0]["id"])


def test_new_study_form_is_folded_and_not_drawn_once_studies_exist(trained_ws):
    """With studies to watch, the form is folded and costs nothing; what was set in it survives
    folding it again."""
    at = app("study")
    no_exceptions(at)
    assert not [b for b in at.button if b.key == "study_start"]
    at.session_state["study_new_open"] = True
    at.run()
    no_exceptions(at)
    at.slider(key="study_n_trials").set_value(7).run()
    at.session_state["study_new_open"] = False
    at.run()
    assert not [s for s in at.slider if s.key == "study_n_trials"]
    at.session_state["study_new_open"] = True
    at.run()
    no_exceptions(at)
    assert at.slider(key="study_n_trials").value == 7


def test_tampered_session_state_is_reset_not_a_crash(app_ws):
    """Values no widget could hold (a stale or tampered session): one st.error naming each, the
    widgets back at their defaults, Start disabled for that run, nothing submitted."""
    tampered = {
        "study_n_trials": 500,  # Streamlit would raise: above the slider's max
        "study_epochs": 2.5,
        "study_image_size": 33,
        "study_sampler": "grid",
        "study_new_name": 5,  # not text: .strip() would raise
        "study_range_num_filters_conv1": (3, 1000),  # below the slider's min: Streamlit would raise
        "study_range_dropout_rate": (0.4, 0.1),
        "study_range_lr": (2e-5, 1e-4),  # not steps of the log slider
        "study_range_activation": ["Swish"],
    }
    at = app()
    for key, value in tampered.items():
        at.session_state[key] = value
    at.switch_page("pages/study.py").run()
    no_exceptions(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "Reset to their defaults" in errors[0] and "unexpected" not in errors[0], errors
    for name in (
        "trials=500",
        "epochs per trial=2.5",
        "image size=33",
        "sampler='grid'",
        "study name=5",
        "num_filters_conv1=3",
        "dropout_rate=(0.4, 0.1)",
        "lr=2e-05",
        "activation='Swish'",
    ):
        assert name in errors[0], name
    assert at.slider(key="study_n_trials").value == 20
    assert at.slider(key="study_range_num_filters_conv1").value == (8, 64)
    assert at.text_input(key="study_new_name").value.startswith("study-")
    assert at.button(key="study_start").disabled
    at.run()  # the next run is back to normal
    no_exceptions(at)
    assert not at.error and not at.button(key="study_start").disabled
    assert jobs.open_store(app_ws).list_jobs() == []


def test_importances_are_recomputed_only_when_a_trial_completes(trained_root, tmp_path, monkeypatch):
    """The live panel polls every 2 s; fANOVA importances (figure and "what mattered") are computed
    again only when the count of complete trials changes."""
    import shutil

    import optuna
    import streamlit as st

    from flagvision.studies import results as fv_results
    from flagvision.workspace import Workspace

    root = tmp_path / "ws"  # a copy: a trial is added below
    shutil.copytree(trained_root, root)
    monkeypatch.setenv("FLAGVISION_HOME", str(root))
    ws = Workspace.open(root)
    calls = []
    real = fv_results.param_importances
    monkeypatch.setattr(fv_results, "param_importances", lambda study: calls.append(study.study_name) or real(study))
    st.cache_data.clear()

    at = app("study")
    no_exceptions(at)
    assert calls, "importances were never computed"
    first = len(calls)
    at.run()
    at.run()  # two polls, no trial completed in between
    no_exceptions(at)
    assert len(calls) == first

    study = optuna.load_study(study_name="tiny-study", storage=ws.storage_url)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))[0]
    study.add_trial(optuna.trial.create_trial(params=done.params, distributions=done.distributions, value=0.5))
    at.run()
    no_exceptions(at)
    assert len(calls) > first
    assert any("3 of 2 trials finished" in m.value for m in at.markdown)
