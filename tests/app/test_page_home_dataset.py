"""Home and Dataset pages, driven through AppTest against a tiny workspace."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from app_helpers import app, no_exceptions, png_bytes
from app_ui.logic import image_strip
from flagvision.jobs import queue as jobs
from flagvision.synthetic.builtin import builtin_ready


def test_home_shows_dataset_links_and_sidebar(app_ws):
    at = app()
    no_exceptions(at)
    assert at.title[0].value == "FlagVision"
    assert any("Ready: 24 classes" in s.value for s in at.success)
    links = {link.label for link in at.get("page_link")}
    assert {"Dataset", "Train", "Study", "Runs", "Predict"} <= links
    assert any(str(app_ws.root) in c.value for c in at.sidebar.caption)
    assert any("No finished run yet" in c.value for c in at.caption)


def test_home_lists_jobs_in_an_escaped_markdown_table(app_ws):
    """Home's job tables are Markdown (no data frame's JavaScript on its first paint); a name cannot
    break out of its cell."""
    store = jobs.open_store(app_ws)
    store.create_job("study", {}, state="failed", study_name="my_study|$x$")
    at = app()
    no_exceptions(at)
    table = next(m.value for m in at.markdown if m.value.startswith("| job |"))
    assert "| failed |" in table and "my\\_study\\|\\$x\\$" in table and "| 0% |" in table
    assert not at.dataframe


def test_image_strip_keeps_the_scale_and_skips_unreadable_files(tmp_path):
    good = tmp_path / "red.png"
    good.write_bytes(png_bytes((220, 20, 20), size=(40, 20)))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    strip = image_strip([good, bad], tile=16, gap=2, slots=3)
    assert strip.size == (3 * 16 + 2 * 2, 16)
    assert strip.getpixel((8, 8))[0] > 200  # the readable one, squashed into its tile
    assert strip.getpixel((18 + 8, 8)) == (255, 255, 255)  # the unreadable one leaves a blank tile


def test_home_best_models_per_model(trained_ws):
    at = app()
    no_exceptions(at)
    labels = {m.label for m in at.metric}
    assert {"Custom CNN", "VGG-16 transfer (random init, not pretrained)"} <= labels


@pytest.fixture
def empty_ws(tmp_path, monkeypatch):
    """A workspace without the built-in data, whose one job slot is held: what the app queues
    stays queued (the full built-in set would take a worker a minute)."""
    from flagvision.workspace import Workspace

    monkeypatch.setenv("FLAGVISION_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no ImageNet weights there
    ws = Workspace.open(tmp_path / "empty")
    store = jobs.open_store(ws)
    # "Being started right now" (no pid, a heartbeat ahead) holds the slot, and no reaper takes it.
    store.create_job("study", {}, state="running", started_at=time.time(), heartbeat_at=time.time() + 3600)
    yield ws
    for job in store.list_jobs(("queued", "running")):
        if job["kind"] == "study":
            store.finish_job(job["id"], "cancelled")
        else:
            jobs.cancel(ws, job["id"], force=True)


def test_home_offers_to_build_missing_builtin_as_a_job(empty_ws):
    at = app()
    no_exceptions(at)
    assert at.button(key="home_build").label == "Generate the built-in dataset"
    at.button(key="home_build").click().run()
    no_exceptions(at)
    (job,) = jobs.open_store(empty_ws).list_jobs(("queued",))
    assert job["kind"] == "builtin" and "then" not in job["payload"]  # the data only
    assert not builtin_ready(empty_ws)  # queued for a worker, not rendered by the page
    assert not [b for b in at.button if b.key == "home_build"]
    assert [b.proto.text for b in at.main.get("progress")] == ["Building the built-in dataset: queued"]


def test_the_default_models_button_without_data_queues_the_data_job_first(empty_ws):
    at = app()
    no_exceptions(at)
    assert any("**Built-in data**: not built yet" in m.value for m in at.markdown)
    at.button(key="home_default_models").click().run()
    no_exceptions(at)
    (job,) = jobs.open_store(empty_ws).list_jobs(("queued",))
    assert job["kind"] == "builtin" and job["payload"]["then"] == jobs.THEN_DEFAULT_MODELS
    assert not builtin_ready(empty_ws)  # the button only queues
    parts = next(m.value for m in at.markdown if m.value.startswith("**Built-in data**"))
    assert "**Built-in data**: queued" in parts and "**Custom CNN**: queued after the built-in data" in parts
    assert not [b for b in at.button if b.key == "home_default_models"]  # nothing left to queue


def test_dataset_counts_samples_augmentation_flags(app_ws):
    at = app("dataset")
    no_exceptions(at)
    assert not at.error
    assert "24 classes" in at.markdown[0].value
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # class counts of train and test
    # The tabs below the charts are lazy: only the open one is drawn, samples first.
    samples = at.get("image")
    assert len(samples) == 1 and len(samples[0].proto.imgs) == 24  # one strip of samples per class
    assert not [s for s in at.slider if s.key == "dataset_aug_strength"]
    at.session_state["dataset_view"] = "The 24 flags"
    at.run()
    no_exceptions(at)
    flags = at.get("image")
    assert len(flags) == 1 and len(flags[0].proto.imgs) == 24
    at.session_state["dataset_view"] = "Augmentation preview"
    at.run()
    no_exceptions(at)
    images_before = len(at.get("image"))
    assert images_before == 1 and len(at.get("image")[0].proto.imgs) == 7  # the original and 6 views
    at.slider(key="dataset_aug_strength").set_value(1.0).run()
    at.selectbox(key="dataset_aug_class").set_value("Germany").run()
    no_exceptions(at)
    assert not at.error
    assert len(at.get("image")) == images_before


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_dataset_zip_upload_imports_and_reports_skipped(app_ws):
    data = _zip(
        {
            "shapes/red/a.png": png_bytes((220, 20, 20)),
            "shapes/red/b.png": png_bytes((200, 40, 40)),
            "shapes/blue/a.png": png_bytes((20, 20, 220)),
            "shapes/blue/b.png": png_bytes((40, 40, 200)),
            "shapes/blue/broken.jpg": b"\xff\xd8 truncated",
            "shapes/notes.txt": b"hello",
        }
    )
    at = app("dataset")
    at.file_uploader(key="dataset_zip").set_value(("my shapes.zip", data, "application/zip")).run()
    at.text_input(key="dataset_import_name").input("shapes").run()
    at.button(key="dataset_import").click().run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Imported **shapes**: 4 images in 2 classes" in s.value for s in at.success)
    assert any("2 file(s) skipped" in w.value for w in at.warning)
    assert at.selectbox(key="dataset_choice").value == "shapes"
    assert (app_ws.dataset_dir("shapes") / "red" / "a.png").is_file()


def test_dataset_bad_zip_is_a_clear_error(app_ws):
    at = app("dataset")
    at.file_uploader(key="dataset_zip").set_value(("junk.zip", b"not a zip at all", "application/zip")).run()
    at.button(key="dataset_import").click().run()
    no_exceptions(at)
    assert any("not a readable zip" in e.value or "neither a folder nor a zip" in e.value for e in at.error)
