"""The CLI as a shell user meets it: real subprocesses, exit codes, no tracebacks for user errors."""

import json
import shutil

import pytest

from fv_helpers import make_pattern_dataset, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = make_pattern_dataset(root / "data", per_class=15)
    ws = root / "ws"
    out = run_cli(
        "--workspace", str(ws), "train", "--data", str(data), "--epochs", "3", "--image-size", "32", "--lr", "1e-3"
    )
    assert out.returncode == 0, out.stderr
    return ws, data, out


def test_train_writes_checkpoint_and_store_rows(trained):
    ws, data, out = trained
    assert "epoch   3/3" in out.stdout
    ckpt = ws / "runs" / "1" / "checkpoint"
    card = json.loads((ckpt / "card.json").read_text())
    assert (ckpt / "model.safetensors").is_file()
    assert card["model"] == "flag_cnn" and card["class_names"] == ["diagonal", "horizontal", "vertical"]
    assert card["config"]["hparams"]["epochs"] == 3 and card["config"]["hparams"]["optimizer"] == "NAdam"
    assert json.loads((ws / "runs" / "1" / "config.json").read_text())["data"]["image_size"] == 32
    from flagvision.jobs.store import Store

    store = Store(ws / "flagvision.db")
    run = store.get_run(1)
    assert run["status"] == "succeeded" and run["test_acc"] is not None
    assert [m["epoch"] for m in store.get_metrics(1)] == [1, 2, 3]


def test_evaluate_and_predict_json(trained):
    ws, data, _ = trained
    ckpt = ws / "runs" / "1" / "checkpoint"
    out = run_cli("evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) >= {"accuracy", "per_class", "confusion", "class_names", "n_images"}
    assert result["n_images"] == 45 and len(result["confusion"]) == 3
    out = run_cli("predict", "--checkpoint", str(ckpt), str(data / "vertical" / "000.png"), "--top-k", "2", "--json")
    assert out.returncode == 0, out.stderr
    pred = json.loads(out.stdout)["predictions"][0]
    assert len(pred["top"]) == 2 and pred["top"][0]["probability"] >= pred["top"][1]["probability"]
    assert "box" in pred


def test_scene_search_in_evaluate_and_predict(trained, tmp_path):
    from PIL import Image

    ws, data, _ = trained
    ckpt = ws / "runs" / "1" / "checkpoint"
    plain = json.loads(run_cli("evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--json").stdout)
    out = run_cli("evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--search", "--json")
    assert out.returncode == 0, out.stderr
    searched = json.loads(out.stdout)
    assert searched["scene_search"] is True and plain["scene_search"] is False
    assert searched["n_images"] == plain["n_images"] == 45 and 0 <= searched["accuracy"] <= 1
    assert sum(map(sum, searched["confusion"])) == 45
    # A small pattern in a corner of a wide grey photo: the answer may come from a crop, inside the photo.
    scene = Image.new("RGB", (200, 120), (128, 128, 128))
    scene.paste(Image.open(data / "vertical" / "000.png").convert("RGB").resize((50, 50)), (140, 60))
    scene.save(tmp_path / "scene.png")
    found = json.loads(run_cli("predict", "--checkpoint", str(ckpt), str(tmp_path / "scene.png"), "--json").stdout)
    box = found["predictions"][0]["box"]
    assert box is None or (0 <= box[0] < box[2] <= 200 and 0 <= box[1] < box[3] <= 120)
    whole = json.loads(
        run_cli("predict", "--checkpoint", str(ckpt), str(tmp_path / "scene.png"), "--whole-photo", "--json").stdout
    )
    assert whole["predictions"][0]["box"] is None


def test_predict_says_not_sure_below_the_threshold(trained, tmp_path):
    from flagvision.config import CONFIDENCE_THRESHOLD

    ws, data, _ = trained
    # A copy of the checkpoint whose card spreads the probabilities out: with T = 100 the three
    # classes are each near 1/3, far below any threshold of 0.5 or more.
    ckpt = tmp_path / "flat"
    shutil.copytree(ws / "runs" / "1" / "checkpoint", ckpt)
    card = json.loads((ckpt / "card.json").read_text())
    (ckpt / "card.json").write_text(json.dumps({**card, "temperature": 100.0}))
    image = str(data / "vertical" / "000.png")
    out = run_cli("predict", "--checkpoint", str(ckpt), image, "--confidence-threshold", "0.5", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["temperature"] == 100.0 and result["confidence_threshold"] == 0.5
    pred = result["predictions"][0]
    assert pred["top"][0]["probability"] < 0.36
    assert pred["sure"] is False and pred["answer"] is None
    assert pred["closest"] == pred["top"][:2]
    text = run_cli("predict", "--checkpoint", str(ckpt), image, "--confidence-threshold", "0.5")
    first, second = pred["top"][0]["class"], pred["top"][1]["class"]
    assert f"not sure — closest: {first} " in text.stdout and f", {second} " in text.stdout
    # The same photo with the card's own temperature and no threshold at all: a plain answer.
    plain = json.loads(
        run_cli(
            "predict", "--checkpoint", str(ws / "runs" / "1"), image, "--confidence-threshold", "0", "--json"
        ).stdout
    )["predictions"][0]
    assert plain["sure"] is True and plain["answer"] == plain["top"][0]["class"]
    # The default threshold is the setting's.
    default = json.loads(run_cli("predict", "--checkpoint", str(ckpt), image, "--json").stdout)
    assert default["confidence_threshold"] == CONFIDENCE_THRESHOLD
    bad = run_cli("predict", "--checkpoint", str(ckpt), image, "--confidence-threshold", "1.5")
    assert bad.returncode == 2 and "between 0 and 1" in bad.stderr and "Traceback" not in bad.stderr


def test_evaluate_reports_calibration_and_the_answered_part(trained):
    from flagvision.config import CONFIDENCE_THRESHOLD

    ws, data, _ = trained
    ckpt = ws / "runs" / "1" / "checkpoint"
    card = json.loads((ckpt / "card.json").read_text())
    for extra in ([], ["--search"]):
        args = ["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--confidence-threshold", "0.6"]
        out = run_cli(*args, "--json", *extra)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        cal = result["calibration"]
        assert cal["temperature"] == card["temperature"] and cal["bins"] == 15
        assert 0 <= cal["ece_before"] <= 1 and 0 <= cal["ece_after"] <= 1
        assert sum(b["count"] for b in cal["reliability_after"]) == 45
        sel = cal["selective"]
        assert sel["threshold"] == 0.6 and sel["n_images"] == 45
        assert sel["coverage"] == sel["answered"] / 45
        # Bins wholly above the threshold are answered, bins wholly below are not.
        above = sum(b["count"] for b in cal["reliability_after"] if b["lower"] >= 0.6)
        below = sum(b["count"] for b in cal["reliability_after"] if b["upper"] <= 0.6)
        assert above <= sel["answered"] <= 45 - below
    text = run_cli("evaluate", "--checkpoint", str(ckpt), "--data", str(data)).stdout
    assert "calibration: temperature" in text and " before, " in text
    assert f"not sure below {CONFIDENCE_THRESHOLD:.0%}: answered " in text


def test_bad_files_are_skipped_and_reported(tmp_path):
    data = make_pattern_dataset(tmp_path / "data", per_class=8)
    (data / "vertical" / "zero.jpg").write_bytes(b"")
    (data / "vertical" / "text.jpg").write_text("this is not a jpeg")
    good = (data / "horizontal" / "000.png").read_bytes()
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.open(BytesIO(good)).convert("RGB").save(buf, "JPEG")
    (data / "horizontal" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    out = run_cli(
        "--workspace", str(tmp_path / "ws"), "train", "--data", str(data), "--epochs", "1", "--image-size", "32"
    )
    assert out.returncode == 0, out.stderr
    for name in ("zero.jpg", "text.jpg", "truncated.jpg"):
        assert name in out.stderr
    assert "3 unreadable file(s) skipped; training on the other 24" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("case", ["one_class", "empty", "missing"])
def test_unusable_dataset_refused_clearly(tmp_path, case):
    data = tmp_path / "data"
    if case == "one_class":
        make_pattern_dataset(data, per_class=4)
        for extra in ("horizontal", "vertical"):
            shutil.rmtree(data / extra)
    elif case == "empty":
        data.mkdir()
    out = run_cli("--workspace", str(tmp_path / "ws"), "train", "--data", str(data), "--epochs", "1")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    expected = {"one_class": "only one class", "empty": "no class sub-folders", "missing": "is not a folder"}[case]
    assert expected in out.stderr


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--num-filters-conv1", "12"], "step 8"),
        (["--lr", "0.5"], "outside its range"),
        (["--kernel-size-conv1", "7", "--kernel-size-conv2", "7", "--image-size", "16"], "smaller kernels"),
    ],
)
def test_out_of_range_hyperparameters_refused(tmp_path, tiny_dataset, args, fragment):
    out = run_cli("--workspace", str(tmp_path / "ws"), "train", "--data", str(tiny_dataset), *args)
    assert out.returncode == 2 and fragment in out.stderr and "Traceback" not in out.stderr


def test_image_size_defaults_follow_the_model(tmp_path):
    from flagvision.cli.main import build_parser, resolve_run_config
    from flagvision.config import CNN_IMAGE_SIZE, VGG_IMAGE_SIZE

    def cfg(*args):
        return resolve_run_config(build_parser().parse_args(["train", *args]))

    assert cfg().data.image_size == CNN_IMAGE_SIZE == 40
    assert cfg("--model", "vgg16_transfer").data.image_size == VGG_IMAGE_SIZE == 64
    assert cfg("--model", "vgg16_transfer", "--image-size", "96").data.image_size == 96
    config = tmp_path / "run.json"
    config.write_text(cfg("--image-size", "128", "--model", "vgg16_transfer").to_json())
    assert cfg("--config", str(config)).data.image_size == 128  # a config file keeps its size


def test_choices_refused_by_argparse(tmp_path, tiny_dataset):
    out = run_cli("train", "--data", str(tiny_dataset), "--optimizer", "AdamW")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_vgg_without_weights_names_both_ways(tmp_path, tiny_dataset):
    out = run_cli(
        "--workspace",
        str(tmp_path / "ws"),
        "train",
        "--data",
        str(tiny_dataset),
        "--model",
        "vgg16_transfer",
        "--epochs",
        "1",
        env={"TORCH_HOME": str(tmp_path / "torch")},
    )
    assert out.returncode == 2, out.stderr
    assert "weights import" in out.stderr and "--no-pretrained" in out.stderr


def test_vgg_random_init_is_labelled(tmp_path, tiny_dataset):
    out = run_cli(
        "--workspace",
        str(tmp_path / "ws"),
        "train",
        "--data",
        str(tiny_dataset),
        "--model",
        "vgg16_transfer",
        "--no-pretrained",
        "--vgg-blocks",
        "2",
        "--epochs",
        "1",
        "--image-size",
        "32",
        env={"TORCH_HOME": str(tmp_path / "torch")},
    )
    assert out.returncode == 0, out.stderr
    assert "random init, not pretrained" in out.stdout
    ckpt = tmp_path / "ws" / "runs" / "1" / "checkpoint"
    card = json.loads((ckpt / "card.json").read_text())
    assert card["pretrained"] is False and "random init, not pretrained" in card["label"]
    out = run_cli("predict", "--checkpoint", str(ckpt), str(tiny_dataset / "vertical" / "000.png"), "--json")
    assert "random init, not pretrained" in json.loads(out.stdout)["model"]


def test_predict_unreadable_image_exit_code(trained, tmp_path):
    ws, _, _ = trained
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    out = run_cli("predict", "--checkpoint", str(ws / "runs" / "1"), str(bad))
    assert out.returncode == 2 and "not a recognised image" in out.stdout


def test_data_checkset_writes_an_imagefolder_and_keeps_existing_output(tmp_path, capsys):
    from flagvision.cli.main import main

    out = tmp_path / "check"
    assert main(["data", "checkset", "--out", str(out), "--per-class", "1", "--size", "48"]) == 0
    assert "wrote 24 check images" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if p.is_dir())[:2] == ["Austria", "Belgium"]
    assert len(list(out.glob("*/*.jpg"))) == 24
    before = sorted(p.read_bytes() for p in out.glob("*/*.jpg"))
    assert main(["data", "checkset", "--out", str(out), "--per-class", "1", "--size", "48"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert sorted(p.read_bytes() for p in out.glob("*/*.jpg")) == before  # refused: nothing touched
    assert main(["data", "checkset", "--out", str(tmp_path / "bad"), "--size", "8"]) == 2
    assert "size 32..1024" in capsys.readouterr().err


def test_data_checkset_draws_the_flags_onto_your_own_photographs(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from flagvision.cli.main import main

    photos = tmp_path / "photos"
    photos.mkdir()
    pixels = np.random.default_rng(0).normal((90, 140, 210), 10, (200, 300, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(photos / "sky.jpg")
    (photos / "torn.jpg").write_bytes(b"\xff\xd8 half a photo")
    out = tmp_path / "check"
    assert (
        main(["data", "checkset", "--out", str(out), "--per-class", "2", "--size", "48", "--photos", str(photos)]) == 0
    )
    printed = capsys.readouterr().out
    assert "skipped: torn.jpg" in printed and "wrote 48 check images" in printed
    manifest = json.loads((out / "checkset.json").read_text())
    assert {e["framing"] for e in manifest["images"]} == {"photo_scene", "photo_vertical"} and manifest["photos"] == 1
    (photos / "sky.jpg").unlink()
    assert main(["data", "checkset", "--out", str(tmp_path / "c2"), "--photos", str(photos)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no photograph in it could be read" in err and "\n" not in err
    assert main(["data", "checkset", "--out", str(tmp_path / "c3"), "--photos", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_evaluate_on_one_class_reports_null_for_the_others(trained, tmp_path):
    """'How does my model do on these photos of one flag?' is a fair question (training still needs two)."""
    ws, data, _ = trained
    ckpt = ws / "runs" / "1" / "checkpoint"
    shutil.copytree(data / "vertical", tmp_path / "only" / "vertical")
    out = run_cli("evaluate", "--checkpoint", str(ckpt), "--data", str(tmp_path / "only"), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout, parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))
    assert result["n_images"] == 15 and result["class_names"] == ["diagonal", "horizontal", "vertical"]
    assert result["per_class"]["diagonal"] is None and result["per_class"]["horizontal"] is None
    assert result["per_class"]["vertical"] == result["accuracy"]
    text = run_cli("evaluate", "--checkpoint", str(ckpt), "--data", str(tmp_path / "only"))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["vertical", "diagonal", "horizontal"]  # absent ones last
    assert lines[2].split()[1:] == ["no", "images"] and "nan" not in text.stdout
    assert lines[4].startswith("calibration: temperature") and lines[5].startswith("not sure below")


def test_evaluate_refuses_a_class_the_model_does_not_know_by_name(trained, tmp_path):
    ws, data, _ = trained
    shutil.copytree(data / "vertical", tmp_path / "mixed" / "vertical")
    shutil.copytree(data / "horizontal", tmp_path / "mixed" / "Austria")
    out = run_cli("evaluate", "--checkpoint", str(ws / "runs" / "1" / "checkpoint"), "--data", str(tmp_path / "mixed"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ") and "classes unknown to the model: Austria" in out.stderr
