"""Hostile and odd inputs through every entry point that accepts them.

Images: dataset folder import, zip import, the Dataset page's uploader, Predict (``analyse_photo``
and the page), CLI ``predict``. Zips: ``import_dataset``, the Dataset page, CLI ``data import``.
Hyperparameters: CLI ``train`` flags and the Train page's session state. Odd-but-valid images are
not only accepted: a small model trained on rendered flags must name the right flag for each.
The expected messages come from ``reliability_kit.CASES`` (the table of docs/RELIABILITY.md).
"""

from __future__ import annotations

import ast
import json
import os
import time
import zipfile
from pathlib import Path

import pytest

from flagvision.config import CNN_IMAGE_SIZE
from flagvision.data.importer import DatasetImportError, import_dataset
from fv_helpers import run_cli
from reliability_kit import (
    CLI_IMPORT,
    CLI_PREDICT,
    CLI_TRAIN,
    DATASET_PAGE,
    FLAGS,
    FOLDER,
    PREDICT,
    TAMPERED_STATE,
    ZIP,
    app,
    encode,
    expect,
    hostile_images,
    no_exceptions,
    odd_valid_variants,
    raw_zip,
    tiny_image,
    with_bad_crc,
    zip_bytes,
)


def _msg(text: str) -> str:
    """The quoted message inside a table cell: “…”."""
    return text.split("“", 1)[1].split("”", 1)[0] if "“" in text else text


def _png(color=(0, 35, 149), size=(48, 32)) -> bytes:
    from PIL import Image

    return encode(Image.new("RGB", size, color), "PNG")


# -- images through the dataset importers ---------------------------------------------------------


def test_folder_import_of_every_image_input(guarded_ws, flag_images, tmp_path):
    ws, check = guarded_ws
    src = tmp_path / "photos"
    outside = tmp_path / "outer" / "sentinel" / "keep.txt"
    for flag in ("France", "Holland"):
        (src / flag).mkdir(parents=True)
        for fname, data in odd_valid_variants(flag_images[flag]).values():
            (src / flag / fname).write_bytes(data)
    for fname, data in hostile_images().values():
        (src / "France" / fname).write_bytes(data)
    os.mkfifo(src / "France" / "pipe.jpg")
    (src / "Holland" / "link.png").symlink_to(outside)

    t0 = time.monotonic()
    dest, report = import_dataset(ws, src, name="photos")
    assert time.monotonic() - t0 < 60  # the FIFO was never opened (it would block forever)

    odd = odd_valid_variants(flag_images["France"])
    assert report["images"] == 2 * len(odd) and report["classes"] == ["France", "Holland"]
    skipped = dict(report["skipped"])
    for key, (fname, _) in hostile_images().items():
        assert _msg(expect(key, FOLDER)) in skipped.pop(f"France/{fname}"), key
    assert _msg(expect("FIFO named .jpg (would block a reader)", FOLDER)) in skipped.pop("France/pipe.jpg")
    assert _msg(expect("symlink to a file outside the folder", FOLDER)) in skipped.pop("Holland/link.png")
    assert not skipped
    for fname, _ in odd.values():
        assert (dest / "France" / fname).is_file() and (dest / "Holland" / fname).is_file()
    check(new_datasets=("photos",))


def test_zip_import_of_every_image_input(guarded_ws, flag_images):
    ws, check = guarded_ws
    entries: dict[str, bytes] = {}
    for flag in ("France", "Holland"):
        for fname, data in odd_valid_variants(flag_images[flag]).values():
            entries[f"upload/{flag}/{fname}"] = data
    for fname, data in hostile_images().values():
        entries[f"upload/France/{fname}"] = data
    tiny_name, tiny = tiny_image()
    entries[f"upload/France/{tiny_name}"] = tiny
    entries["upload/France/inner.zip"] = zip_bytes({"Holland/a.png": _png()})
    too_long = "upload/France/" + "x" * 300 + ".png"
    entries[too_long] = _png()
    entries["upload/Holland/both.png"] = _png()
    entries["upload/Holland/both.png/a.png"] = _png()

    dest, report = import_dataset(ws, zip_bytes(entries), name="zipped")
    odd = odd_valid_variants(flag_images["France"])
    assert report["classes"] == ["France", "Holland"]  # the single top folder is stripped
    assert report["images"] == 2 * len(odd) + 1 + 1  # + the 1×1 image + the first "both.png"
    skipped = dict(report["skipped"])
    for key, (fname, _) in hostile_images().items():
        assert _msg(expect(key, ZIP)) in skipped.pop(f"upload/France/{fname}"), key
    assert "nested archive" in skipped.pop("upload/France/inner.zip")
    assert "File name too long" in skipped.pop(too_long)
    assert "cannot be stored" in skipped.pop("upload/Holland/both.png/a.png")
    assert not skipped
    assert (dest / "France" / tiny_name).is_file() and (dest / "Holland" / odd["250-character file name"][0]).is_file()
    check(new_datasets=("zipped",))


def test_dataset_page_upload_of_every_image_input(guarded_ws, flag_images):
    ws, check = guarded_ws
    entries = {}
    for flag in ("France", "Holland"):
        for fname, data in odd_valid_variants(flag_images[flag]).values():
            entries[f"{flag}/{fname}"] = data
    for fname, data in hostile_images().values():
        entries[f"Holland/{fname}"] = data
    at = app("dataset")
    at.file_uploader(key="dataset_zip").set_value(("odd photos.zip", zip_bytes(entries), "application/zip")).run()
    at.button(key="dataset_import").click().run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    n = 2 * len(odd_valid_variants(flag_images["France"]))
    assert any(f"Imported **odd photos**: {n} images in 2 classes" in s.value for s in at.success)
    assert any(f"{len(hostile_images())} file(s) skipped" in w.value for w in at.warning)
    table = at.dataframe[0].value
    assert sorted(table["file"]) == sorted(f"Holland/{f}" for f, _ in hostile_images().values())
    check(new_datasets=("odd photos",))


# -- hostile zips ---------------------------------------------------------------------------------


def _classes() -> dict[str, bytes]:
    return {"good/red/a.png": _png((220, 20, 20)), "good/blue/a.png": _png((20, 20, 220))}


def hostile_zip(key: str, outer: Path) -> bytes:
    good = _classes()
    if key == "zip with ../ paths":
        return zip_bytes({**good, "../sentinel/evil.png": _png(), "good/../../sentinel/keep.txt": b"overwritten"})
    if key == "zip with absolute paths":
        return zip_bytes({**good, str(outer / "sentinel" / "evil.png"): _png()})
    if key == "zip with a symlink":
        return zip_bytes(good, symlinks={"good/red/link.png": str(outer / "sentinel" / "keep.txt")})
    if key == "zip bomb (30 MB of zeros, ratio ≈1000)":
        return zip_bytes({**good, "good/red/bomb.png": b"\0" * (30 * 2**20)})
    if key == "zip with 100,000 tiny files":
        return raw_zip([(f"c{i % 2}/{i}.png", b"x") for i in range(100_000)])
    if key == "non-zip renamed .zip":
        return b"PK\x03\x04 but this is a text file renamed photos.zip\n" * 10
    if key == "zip with a corrupt entry (bad CRC)":
        data = _png((220, 20, 20), size=(64, 64))
        return with_bad_crc(zip_bytes({**good, "good/red/b.png": data}, compression=zipfile.ZIP_STORED), data)
    if key == "zip with an encrypted entry":
        return raw_zip(list(good.items()), flag_bits=0x1)
    if key == "zip with an unsupported compression method (deflate64)":
        return raw_zip(list(good.items()), method=9)
    raise KeyError(key)


HOSTILE_ZIPS = [
    "zip with ../ paths",
    "zip with absolute paths",
    "zip with a symlink",
    "zip bomb (30 MB of zeros, ratio ≈1000)",
    "zip with 100,000 tiny files",
    "non-zip renamed .zip",
    "zip with a corrupt entry (bad CRC)",
    "zip with an encrypted entry",
    "zip with an unsupported compression method (deflate64)",
]


@pytest.fixture(scope="module")
def hostile_zip_files(tmp_path_factory) -> dict[str, Path]:
    """Each hostile zip as a file (the 100,000-entry one takes a second to build, so once)."""
    root = tmp_path_factory.mktemp("hostile_zips")
    out = {}
    for i, key in enumerate(HOSTILE_ZIPS):
        out[key] = root / f"{i}.zip"
        out[key].write_bytes(hostile_zip(key, Path("/nonexistent/outer")))
    return out


@pytest.mark.parametrize("key", HOSTILE_ZIPS)
def test_hostile_zip_refused_and_nothing_changes(guarded_ws, key, tmp_path):
    ws, check = guarded_ws
    data = hostile_zip(key, tmp_path / "outer")
    t0 = time.monotonic()
    with pytest.raises(DatasetImportError) as info:
        import_dataset(ws, data, name="hostile")
    elapsed = time.monotonic() - t0
    assert _msg(expect(key, ZIP)) in str(info.value)
    if key == "non-zip renamed .zip":
        assert str(info.value).startswith("the uploaded file is")  # not our temporary copy's name
    if key == "zip with 100,000 tiny files":
        assert elapsed < 2.0, f"the entry limit took {elapsed:.1f}s"
    check()
    assert ws.list_datasets() == ["existing"]


def test_dataset_page_refuses_hostile_zips(guarded_ws, hostile_zip_files):
    """One session through every hostile zip, then a good one: the page keeps serving."""
    ws, check = guarded_ws
    at = app("dataset")
    for key, path in hostile_zip_files.items():
        at.file_uploader(key="dataset_zip").set_value((f"{key}.zip", path.read_bytes(), "application/zip")).run()
        at.button(key="dataset_import").click().run()
        no_exceptions(at)
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and _msg(expect(key, DATASET_PAGE)) in errors[0], (key, errors)
        assert "unexpected error" not in errors[0]
    check()
    at.file_uploader(key="dataset_zip").set_value(("fine.zip", zip_bytes(_classes()), "application/zip")).run()
    at.button(key="dataset_import").click().run()
    no_exceptions(at)
    assert any("Imported **fine**: 2 images in 2 classes" in s.value for s in at.success)


def test_cli_data_import_refuses_hostile_zips(guarded_ws, hostile_zip_files, capsys):
    """One real subprocess (exit code and stderr as a shell user sees them); the other cases through
    ``cli.main`` in this process, where any exception would escape into the test."""
    from flagvision.cli import main as cli

    ws, check = guarded_ws
    first, *others = ["zip with a corrupt entry (bad CRC)", "zip with ../ paths", "non-zip renamed .zip"]
    out = run_cli("--workspace", str(ws.root), "data", "import", str(hostile_zip_files[first]), "--name", "cli")
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.startswith("error: "), out.stderr
    assert _msg(expect(first, CLI_IMPORT)).rstrip(" …") in out.stderr
    for key in others:
        assert cli.main(["--workspace", str(ws.root), "data", "import", str(hostile_zip_files[key])]) == 2
        err = capsys.readouterr().err
        assert _msg(expect(key, CLI_IMPORT)).rstrip(" …") in err, (key, err)
    check()


# -- images through prediction --------------------------------------------------------------------


def test_predict_upload_of_every_image_input(checkpoint, flag_images):
    from flagvision.data.images import ImageError
    from flagvision.inference.photos import analyse_photo
    from flagvision.inference.predict import Predictor

    predictor = Predictor.from_checkpoint(checkpoint)
    wrong = []
    for flag in FLAGS:
        for key, (fname, data) in odd_valid_variants(flag_images[flag]).items():
            result = analyse_photo(fname, data, {"cnn": predictor}, gradcam=key == "EXIF-rotated JPEG")
            if result.predictions["cnn"].label != flag:
                wrong.append((flag, key, result.predictions["cnn"].top[:2]))
    assert not wrong, wrong
    tiny_name, tiny = tiny_image()
    assert len(analyse_photo(tiny_name, tiny, {"cnn": predictor}).predictions["cnn"].top) == 4
    for key, (fname, data) in hostile_images().items():
        with pytest.raises(ImageError) as info:
            analyse_photo(fname, data, {"cnn": predictor})
        assert str(info.value).startswith(f"{fname}: ") and _msg(expect(key, PREDICT)) in str(info.value)


def test_predict_page_of_every_image_input(flag_ws, flag_images):
    photos = []
    for flag in ("France", "Holland"):
        for fname, data in odd_valid_variants(flag_images[flag]).values():
            photos.append((f"{flag}-{fname}", data, "image/png"))
    for fname, data in hostile_images().values():
        photos.append((fname, data, "image/jpeg"))
    at = app("predict")
    at.file_uploader(key="predict_files").set_value(photos).run()
    no_exceptions(at)
    errors = [e.value for e in at.error]
    assert len(errors) == len(hostile_images()), (errors, [w.value for w in at.warning])
    for fname, _ in hostile_images().values():
        assert any(e.startswith(f"{fname}: ") for e in errors), fname
    table = at.dataframe[0].value
    rows = table.to_dict("records")
    assert len(rows) == len(photos)
    for row in rows:
        if row["photo"].startswith(("France-", "Holland-")):
            flag = row["photo"].split("-")[0]
            # read as the flag: answered, or "not sure" with the flag closest (the threshold is a setting)
            assert row["Custom CNN"].startswith((f"{flag} (", f"not sure — closest: {flag} ")), row
        else:
            assert row["error"] == "unreadable image"
    # The app keeps serving: a plain photo afterwards is classified.
    at.file_uploader(key="predict_files").set_value(
        [("again.png", encode(flag_images["Germany"], "PNG"), "image/png")]
    ).run()
    no_exceptions(at)
    assert not at.error


def test_cli_predict_of_every_image_input(checkpoint, flag_images, tmp_path, capsys):
    files, truth = [], {}
    for flag in FLAGS:
        folder = tmp_path / flag
        folder.mkdir()
        for fname, data in odd_valid_variants(flag_images[flag]).values():
            (folder / fname).write_bytes(data)
            files.append(str(folder / fname))
            truth[str(folder / fname)] = flag
    tiny_name, tiny = tiny_image()
    (tmp_path / tiny_name).write_bytes(tiny)
    bad = []
    for fname, data in hostile_images().values():
        (tmp_path / fname).write_bytes(data)
        bad.append(str(tmp_path / fname))
    os.mkfifo(tmp_path / "pipe.jpg")
    bad.append(str(tmp_path / "pipe.jpg"))

    out = run_cli("predict", "--checkpoint", str(checkpoint), "--json", *files, str(tmp_path / tiny_name), *bad)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    results = {r["image"]: r for r in json.loads(out.stdout)["predictions"]}
    wrong = [(p, results[p]["top"][0]) for p, flag in truth.items() if results[p]["top"][0]["class"] != flag]
    assert not wrong, wrong
    assert len(results[str(tmp_path / tiny_name)]["top"]) == 4
    for key, (fname, _) in hostile_images().items():
        assert _msg(expect(key, CLI_PREDICT)) in results[str(tmp_path / fname)]["error"], key
    assert "not a regular file" in results[str(tmp_path / "pipe.jpg")]["error"]
    # Only unreadable files: exit 2 (checked in this process: the same main(), no second torch import).
    from flagvision.cli import main as cli

    assert cli.main(["predict", "--checkpoint", str(checkpoint), *bad]) == 2
    assert "ERROR" in capsys.readouterr().out


# -- hyperparameters ------------------------------------------------------------------------------

FLAG_CASES = [c for c in __import__("reliability_kit").CASES if c.entry == CLI_TRAIN]


def test_cli_refuses_out_of_range_hyperparameters(tmp_path, tiny_dataset, capsys):
    """Every flag case through ``cli.main`` in this process (an exception would escape here), and
    one through a real subprocess for the exit code and stderr a shell user sees."""
    from flagvision.cli import main as cli

    base = ["--workspace", str(tmp_path / "ws"), "train", "--data", str(tiny_dataset)]
    for c in FLAG_CASES:
        flags = c.input.split("`")[1].split()
        assert cli.main(base + flags) == 2, c.input
        err = capsys.readouterr().err
        assert err.startswith("error: ") and _msg(c.expect) in err, (c.input, err)
    out = run_cli(*base, "--lr", "nan")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert _msg(expect("hyperparameter out of range `--lr nan`", CLI_TRAIN)) in out.stderr
    assert not (tmp_path / "ws" / "runs" / "1").exists()


def test_train_page_refuses_tampered_session_state(flag_ws):
    """Every out-of-range widget value at once: one st.error naming each, the widgets back at their
    defaults, Start disabled for that run, nothing submitted."""
    from flagvision.jobs import queue as jobs

    at = app()
    for key, c in TAMPERED_STATE:
        at.session_state[key] = ast.literal_eval(c.input.split(" = ", 1)[1].rstrip("`"))  # the table's literal
    at.switch_page("pages/train.py").run()
    no_exceptions(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "unexpected error" not in errors[0], errors
    for key, c in TAMPERED_STATE:
        assert _msg(c.expect) in errors[0], key
    assert (
        at.select_slider(key="train_hp_lr").value <= 1e-3
        and at.select_slider(key="train_image_size").value == CNN_IMAGE_SIZE
    )
    # Start is disabled in the run that reset them (AppTest, like a browser, cannot click it), so a
    # click that arrived with the tampered values cannot submit them.
    assert at.button(key="train_start").disabled
    at.run()  # the next run is back to normal, with the defaults
    no_exceptions(at)
    assert not at.error and not at.button(key="train_start").disabled
    store = jobs.open_store(flag_ws)
    assert [r["name"] for r in store.list_runs()] == ["four flags"] and store.list_jobs() == []
