"""Study page: range widgets → StudyConfig → study job; live results of an existing study."""

from __future__ import annotations

from conftest import app, no_exceptions

from flagvision import jobs


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
    assert len(at.get("plotly_chart")) >= 3  # history, parallel, learning curves, trial curves
    assert any("best trial" in i.value for i in at.info)  # what mattered
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
    from flagvision.runs import delete_run

    delete_run(trained_ws, store, runs[0]["id"])
