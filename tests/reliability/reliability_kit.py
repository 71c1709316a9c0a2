"""Generators of hostile and odd inputs, invariants, and the case table behind docs/RELIABILITY.md.

Nothing here is checked in as a binary: every file is generated in memory, in milliseconds.
Importable by name (conftest modules are not), like ``tests/fv_helpers.py``.

The table ``CASES`` is what the tests check: each row names an input, an entry point and the
message (or outcome) the test asserts, and the tests read their expected fragments from it, so
``python tests/reliability/reliability_kit.py > docs/RELIABILITY.md`` documents exactly what is
tested (``test_security.py`` fails when the document is out of date).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: also when run as a script
from fv_helpers import app, no_exceptions, zip_bytes  # noqa: F401  (re-exported to the tests)

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "streamlit_app.py")

# Four flags that a model can only tell apart by layout (France and Holland share their colours,
# and France turned by 90° looks like Holland upside down: the EXIF case is a real test).
FLAGS = ("France", "Holland", "Germany", "Sweden")
LONG_NAME = "f" * 246 + ".png"  # 250 characters: ext4 allows 255 bytes per name


# -- images -------------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def odd_valid_variants(flag: Image.Image) -> dict[str, tuple[str, bytes]]:
    """Each odd-but-valid encoding of ``flag``: key → (file name, bytes)."""
    rgba = flag.convert("RGBA")
    alpha = np.asarray(rgba).copy()
    alpha[..., 3] = 255
    alpha[:2, :, 3] = 0  # a transparent border row, composited over white
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the viewer turns it 90° clockwise
    stored_rotated = flag.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: EXIF undoes it
    gif = io.BytesIO()
    flag.save(gif, "GIF", save_all=True, append_images=[Image.new("RGB", flag.size, (0, 255, 0))], duration=100, loop=0)
    arr16 = np.asarray(flag.convert("L"), dtype=np.uint16) * 257
    return {
        "PNG with alpha": ("alpha.png", encode(Image.fromarray(alpha, "RGBA"), "PNG")),
        "palette PNG": ("palette.png", encode(flag.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG")),
        "16-bit PNG": ("sixteen.png", encode(Image.fromarray(arr16), "PNG")),
        "grayscale JPEG": ("gray.jpg", encode(flag.convert("L"), "JPEG", quality=95)),
        "CMYK JPEG": ("cmyk.jpg", encode(flag.convert("CMYK"), "JPEG", quality=95)),
        "animated GIF (frame 0 used)": ("anim.gif", gif.getvalue()),
        "WebP": ("photo.webp", encode(flag, "WEBP", quality=95)),
        "EXIF-rotated JPEG": ("exif.jpg", encode(stored_rotated, "JPEG", exif=exif.tobytes(), quality=95)),
        "250-character file name": (LONG_NAME, encode(flag, "PNG")),
    }


GRAYSCALE_VARIANTS = ("16-bit PNG", "grayscale JPEG")


def tiny_image() -> tuple[str, bytes]:
    return "tiny.png", encode(Image.new("RGB", (1, 1), (0, 35, 149)), "PNG")


def hostile_images() -> dict[str, tuple[str, bytes]]:
    """Files named like images that are not usable ones: key → (file name, bytes)."""
    jpeg = encode(Image.new("RGB", (200, 150), (200, 30, 30)), "JPEG")
    return {
        "zero-byte file": ("zero.jpg", b""),
        "text file named .jpg": ("notes.jpg", b"this is a text file, not a JPEG\n" * 4),
        "truncated JPEG": ("cut.jpg", jpeg[: len(jpeg) // 2]),
        "20000×20000 PNG (decompression bomb)": ("bomb.png", bomb_png()),
    }


_BOMB: bytes | None = None


def bomb_png() -> bytes:
    """400 megapixels in ~50 kB: one bit per pixel, all zero (encoded once per process)."""
    global _BOMB
    if _BOMB is None:
        _BOMB = encode(Image.new("1", (20000, 20000)), "PNG")
    return _BOMB


# -- zips ---------------------------------------------------------------------------------------


def raw_zip(entries: list[tuple[str, bytes]], flag_bits: int = 0, method: int = 0) -> bytes:
    """A stored zip written byte by byte: fast for 100,000 entries, and free to declare any
    general-purpose flags (bit 0: encrypted) or compression method (9: deflate64)."""
    local, central = bytearray(), bytearray()
    for name, data in entries:
        n = name.encode()
        crc = zlib.crc32(data)
        offset = len(local)
        local += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, flag_bits, method, 0, 0, crc, len(data), len(data), len(n), 0
        )
        local += n + data
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            flag_bits,
            method,
            0,
            0,
            crc,
            len(data),
            len(data),
            len(n),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += n
    count = len(entries)
    if count >= 0xFFFF:  # zip64 end records, as zipfile writes them
        z64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(central), len(local))
        loc = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(local) + len(central), 1)
        end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
        return bytes(local + central + z64 + loc + end)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(local), 0)
    return bytes(local + central + end)


def with_bad_crc(zip_data: bytes, entry_data: bytes) -> bytes:
    """Flip a byte inside a stored entry's data (a download cut and patched, a bad disk)."""
    data = bytearray(zip_data)
    at = data.find(entry_data[40:80])
    assert at > 0
    data[at] ^= 0xFF
    return bytes(data)


# -- checkpoints --------------------------------------------------------------------------------


class CodePayload:
    """Unpickling this runs code: it writes ``marker``. Nothing may ever unpickle it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps({"features.0.weight": CodePayload(marker)})


def torch_payload(marker: Path) -> bytes:
    """The payload in torch.save's own zip format (what a .pt/.pth file looks like)."""
    import torch

    buf = io.BytesIO()
    torch.save({"state": CodePayload(marker)}, buf)
    return buf.getvalue()


# -- invariants ---------------------------------------------------------------------------------


def tree_state(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path → content hash (or link target) of everything under ``root``."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, dirs, files in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirs[:] = sorted(d for d in dirs if str(rel_dir / d) not in skip)
        for name in dirs:
            out[str(rel_dir / name) + "/"] = "dir"
        for name in files:
            p = Path(dirpath) / name
            rel = str(rel_dir / name)
            if rel in skip:
                continue
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "special"
    return out


# -- the case table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    input: str
    entry: str
    expect: str  # the fragment the test asserts in the message (or the outcome it checks)
    test: str  # where: tests/reliability/<file>::<test>, or an existing test it relies on


CASES: list[Case] = []


def case(input: str, entry: str, expect: str, test: str) -> Case:
    c = Case(input, entry, expect, test)
    CASES.append(c)
    return c


def expect(input: str, entry: str) -> str:
    for c in CASES:
        if c.input == input and c.entry == entry:
            return c.expect
    raise KeyError((input, entry))


# Entry points, as they are named in the table.
FOLDER = "dataset folder import (`import_dataset(folder)`, `data import DIR`)"
ZIP = "zip import (`import_dataset(bytes)`, `data import X.zip`)"
DATASET_PAGE = "Dataset page zip uploader (AppTest)"
PREDICT = "Predict upload (`photos.analyse_photo`)"
PREDICT_PAGE = "Predict page uploader (AppTest)"
CLI_PREDICT = "CLI `predict` (subprocess)"
CLI_IMPORT = "CLI `data import` (subprocess)"
LOAD = "`load_checkpoint` / `Predictor.from_checkpoint`"
CLI_CKPT = "CLI `predict --checkpoint` (subprocess)"
RESUME = "resume (`run_training(resume=True)` → `load_last_state`)"
WEIGHTS = "CLI `weights import FILE` (subprocess) and `import_weights`"
CLI_TRAIN = "CLI `train` flags"
TRAIN_PAGE = "Train page session state (AppTest)"

T_IN = "test_inputs.py"
T_CK = "test_checkpoints_hostile.py"
T_FA = "test_faults.py"
T_SE = "test_security.py"

_hostile_msgs = {
    "zero-byte file": "the file is empty (0 bytes)",
    "text file named .jpg": "not a recognised image file",
    "truncated JPEG": "the image data is damaged or truncated",
    "20000×20000 PNG (decompression bomb)": "megapixel limit",
}
for _name, _msg in _hostile_msgs.items():
    case(
        _name,
        FOLDER,
        f"skipped and listed: “{_msg}”; the rest imported",
        f"{T_IN}::test_folder_import_of_every_image_input",
    )
    case(
        _name, ZIP, f"skipped and listed: “{_msg}”; the rest imported", f"{T_IN}::test_zip_import_of_every_image_input"
    )
    case(
        _name,
        DATASET_PAGE,
        "listed among the skipped files (st.warning + table); no exception",
        f"{T_IN}::test_dataset_page_upload_of_every_image_input",
    )
    case(_name, PREDICT, f"ImageError naming the file: “{_msg}”", f"{T_IN}::test_predict_upload_of_every_image_input")
    case(
        _name,
        PREDICT_PAGE,
        "st.error naming the file, the other photos classified; no exception",
        f"{T_IN}::test_predict_page_of_every_image_input",
    )
    case(
        _name,
        CLI_PREDICT,
        f"per-file ERROR “{_msg}”; exit 2 when every file fails; no traceback",
        f"{T_IN}::test_cli_predict_of_every_image_input",
    )
case(
    "FIFO named .jpg (would block a reader)",
    FOLDER,
    "skipped and listed: “not a regular file” (never opened)",
    f"{T_IN}::test_folder_import_of_every_image_input",
)
case(
    "FIFO named .jpg (would block a reader)",
    CLI_PREDICT,
    "ERROR “not a regular file”; exit 2; no hang",
    f"{T_IN}::test_cli_predict_of_every_image_input",
)
case(
    "symlink to a file outside the folder",
    FOLDER,
    "skipped and listed: “symbolic link; not followed”",
    f"{T_IN}::test_folder_import_of_every_image_input",
)

_odd = [
    "PNG with alpha",
    "palette PNG",
    "16-bit PNG",
    "grayscale JPEG",
    "CMYK JPEG",
    "animated GIF (frame 0 used)",
    "WebP",
    "EXIF-rotated JPEG",
    "250-character file name",
]
for _name in _odd:
    case(_name, FOLDER, "imported", f"{T_IN}::test_folder_import_of_every_image_input")
    case(_name, ZIP, "imported", f"{T_IN}::test_zip_import_of_every_image_input")
    case(
        _name,
        DATASET_PAGE,
        "imported (counted in the success message)",
        f"{T_IN}::test_dataset_page_upload_of_every_image_input",
    )
    case(_name, PREDICT, "predicted as the right flag", f"{T_IN}::test_predict_upload_of_every_image_input")
    case(
        _name,
        PREDICT_PAGE,
        "classified, right flag in the summary table",
        f"{T_IN}::test_predict_page_of_every_image_input",
    )
    case(_name, CLI_PREDICT, "predicted as the right flag (JSON)", f"{T_IN}::test_cli_predict_of_every_image_input")
case("1×1 image", ZIP, "imported", f"{T_IN}::test_zip_import_of_every_image_input")
case("1×1 image", PREDICT, "accepted, top-5 returned", f"{T_IN}::test_predict_upload_of_every_image_input")
case("1×1 image", CLI_PREDICT, "accepted, top-5 returned", f"{T_IN}::test_cli_predict_of_every_image_input")

_zip_cases = {
    "zip with ../ paths": "the zip holds a path leaving its folder",
    "zip with absolute paths": "the zip holds an absolute path",
    "zip with a symlink": "the zip holds a symbolic link",
    "zip bomb (30 MB of zeros, ratio ≈1000)": "a zip bomb?",
    "zip with 100,000 tiny files": "the zip holds 100000 entries, more than the 20000 allowed",
    "non-zip renamed .zip": "is neither a folder nor a zip file",
    "zip with a corrupt entry (bad CRC)": "the zip is damaged at",
    "zip with an encrypted entry": "is encrypted; password-protected zips are not supported",
    "zip with an unsupported compression method (deflate64)": "uses a compression method that cannot be read",
}
for _name, _msg in _zip_cases.items():
    case(
        _name,
        ZIP,
        f"refused: “{_msg}”; nothing written in or outside the workspace, existing data unchanged",
        f"{T_IN}::test_hostile_zip_refused_and_nothing_changes",
    )
    case(
        _name,
        DATASET_PAGE,
        f"st.error “{_msg}”; no exception; the app keeps serving",
        f"{T_IN}::test_dataset_page_refuses_hostile_zips",
    )
case(
    "zip with 100,000 tiny files",
    ZIP,
    "refused in under 2 s from the end record, before the directory is parsed",
    f"{T_IN}::test_hostile_zip_refused_and_nothing_changes",
)
case(
    "zip with ../ paths",
    CLI_IMPORT,
    "exit 2, “error: the zip holds a path leaving its folder”; no traceback",
    f"{T_IN}::test_cli_data_import_refuses_hostile_zips",
)
case(
    "zip with a corrupt entry (bad CRC)",
    CLI_IMPORT,
    "exit 2, “error: the zip is damaged at …”; no traceback",
    f"{T_IN}::test_cli_data_import_refuses_hostile_zips",
)
case(
    "non-zip renamed .zip",
    CLI_IMPORT,
    "exit 2, “is neither a folder nor a zip file”; no traceback",
    f"{T_IN}::test_cli_data_import_refuses_hostile_zips",
)
case(
    "nested zips",
    ZIP,
    "imported without the inner zip, listed as “not an image file (nested archive)”",
    f"{T_IN}::test_zip_import_of_every_image_input",
)
case(
    "zip entry with a 300-character name",
    ZIP,
    "skipped and listed: “cannot be stored (File name too long)”",
    f"{T_IN}::test_zip_import_of_every_image_input",
)
case(
    "zip entry that is both a file and a folder",
    ZIP,
    "skipped and listed: “cannot be stored (…)”",
    f"{T_IN}::test_zip_import_of_every_image_input",
)

case(
    "pickle with a code payload as model.safetensors",
    LOAD,
    "CheckpointError “not a readable safetensors file”; marker file never created",
    "tests/training/test_checkpoints.py::test_pickle_payload_never_runs",
)
case(
    "pickle with a code payload as model.safetensors",
    CLI_CKPT,
    "exit 2 “not a readable safetensors file”; marker never created; no traceback",
    f"{T_CK}::test_cli_refuses_hostile_checkpoints",
)
case(
    "pickle with a code payload as model.safetensors",
    PREDICT_PAGE,
    "st.error “not a readable safetensors file”; marker never created; no exception",
    f"{T_CK}::test_predict_page_with_a_poisoned_checkpoint",
)
case(
    "pickle with a code payload as last_optimizer.pt",
    RESUME,
    "CheckpointError “resumable state is damaged”; marker never created",
    f"{T_CK}::test_resume_with_a_poisoned_optimizer_state",
)
case(
    "torch.save file with a code payload as the VGG-16 .pth",
    WEIGHTS,
    "exit 2 “is not torchvision's vgg16-397923af.pth” (hash); with the hash check passed, "
    "“not a loadable PyTorch weights file”; marker never created, nothing installed",
    f"{T_CK}::test_weights_import_of_a_code_payload",
)
case(
    "checkpoint of the wrong architecture",
    CLI_CKPT,
    "exit 2 “the weights do not fit a flag_cnn with 4 classes”",
    f"{T_CK}::test_cli_refuses_hostile_checkpoints",
)
case(
    "card with the wrong class count",
    CLI_CKPT,
    "exit 2 “the weights do not fit a flag_cnn with 5 classes”",
    f"{T_CK}::test_cli_refuses_hostile_checkpoints",
)
for _name, _msg in {
    "card input_size not the trained size (e.g. 100000: a 120 GB resize)": "differs from its config's image size",
    "card input_size not a number": "differs from its config's image size",
    "card normalization without mean": "normalization needs a mean of 3 numbers",
    "card normalization std 0 (NaN probabilities)": "normalization needs a std of 3 numbers above 0",
    "card class names not strings / duplicated": "at least two distinct class names",
    "card model differs from its config": "the card says model",
    "card config not a mapping": "the card's config is invalid",
}.items():
    case(_name, LOAD, f"CheckpointError “{_msg}”", f"{T_CK}::test_hostile_cards_refused")

for _flags, _msg in {
    "--lr nan": "lr=nan is outside its range",
    "--lr 5": "lr=5.0 is outside its range",
    "--dropout-rate 0.9": "dropout_rate=0.9 is outside its range",
    "--epochs 0": "epochs=0 is outside its range",
    "--batch-size 8": "batch_size=8 is outside its range",
    "--num-filters-conv1 12": "must be 8–64 step 8",
    "--image-size 100000": "image_size=100000 is outside",
    "--augment 2": "augment=2.0 is outside",
    "--vgg-blocks 9": "blocks",
}.items():
    case(
        f"hyperparameter out of range `{_flags}`",
        CLI_TRAIN,
        f"exit 2 “{_msg}”; no traceback",
        f"{T_IN}::test_cli_refuses_out_of_range_hyperparameters",
    )
for _key, trial_value, _msg in (
    ("train_hp_lr", 5.0, "lr=5.0 is outside its range"),
    ("train_hp_num_filters_conv1", 1000, "num_filters_conv1=1000 is outside its range"),
    ("train_hp_dropout_rate", 0.9, "dropout_rate=0.9 is outside its range"),
    ("train_hp_batch_size", 0, "batch_size=0 is outside its range"),
    ("train_hp_epochs", 10**6, "epochs=1000000 is outside its range"),
    ("train_hp_optimizer", "Evil", "optimizer='Evil' is not one of"),
    ("train_image_size", 100000, "image size=100000 is not one of"),
    ("train_augment", -1.0, "augmentation strength=-1.0 is outside its range"),
    ("train_model", "resnet", "model='resnet' is not one of"),
    ("train_dataset", "../../etc", "dataset='../../etc' is not one of"),
):
    case(
        f"session state `{_key} = {trial_value!r}`",
        TRAIN_PAGE,
        f"st.error “{_msg}”, reset to the default; Start in the same run submits nothing; no exception",
        f"{T_IN}::test_train_page_refuses_tampered_session_state",
    )
TAMPERED_STATE = [(c.input.split("`")[1].split(" = ")[0], c) for c in CASES if c.entry == TRAIN_PAGE]

# Faults.
F = "fault"
case(
    "SIGKILL a training worker mid-epoch",
    "jobs / worker",
    "reaped as failed (“worker died”, log tail), last checkpoint kept, resumed with no repeated epoch",
    "tests/jobs/test_jobs.py::test_killed_worker_is_reaped_then_resumed_without_duplicate_epochs",
)
case(
    "SIGKILL a foreground `python -m flagvision train` mid-run",
    "CLI + app poll (`jobs.tick`)",
    "the next poll marks the run failed, naming the dead pid and `jobs resume --run ID`; resumed to the end",
    "tests/jobs/test_jobs.py::test_killed_foreground_training_is_failed_by_the_next_poll_and_resumable",
)
case(
    "SIGKILL the Streamlit server (whole process group) while a job runs",
    "app server + jobs",
    "the job's worker survives and succeeds; "
    "a new server starts on the same workspace and its page lists the finished run",
    f"{T_FA}::test_killing_the_app_server_loses_no_job",
)
case(
    "SIGKILL a study worker mid-trial",
    "study",
    "the trial turns FAIL by heartbeat and a WAITING copy is retried",
    "tests/studies/test_study.py::test_killed_worker_trial_fails_by_heartbeat_and_is_retried",
)
case(
    "checkpoint write fails half-way (writer writes half, raises ENOSPC)",
    "save_checkpoint / save_last_state",
    "previous model + card (and previous last.* resume state) intact and loadable; no temporary files left",
    f"{T_FA}::test_failing_writer_keeps_every_previous_file",
)
case(
    "checkpoint write on a really full filesystem (64 kB tmpfs)",
    "save_checkpoint",
    "OSError ENOSPC; previous checkpoint intact and loadable (skipped where mount is not permitted)",
    f"{T_FA}::test_full_tmpfs_keeps_the_previous_checkpoint",
)
case(
    "one study + one training + the app polling every 200 ms + optuna-dashboard for 3 minutes",
    "store (SQLite WAL)",
    "no “database is locked” anywhere, PRAGMA integrity_check ok (slow test)",
    f"{T_FA}::test_three_minutes_of_everything_at_once",
)

# Security defaults.
case(
    ".streamlit/config.toml",
    "app server",
    "binds 127.0.0.1, enableXsrfProtection true, maxUploadSize set",
    f"{T_SE}::test_streamlit_config_is_local_and_xsrf_protected",
)
case(
    "paths with ../, absolute paths, symlinks out",
    "`Workspace.confine`, `dataset_dir`, `run_dir`",
    "WorkspaceError “is outside the workspace” (a dataset or run name that is a path: “is not a folder name”)",
    f"{T_SE}::test_confine_refuses_paths_out_of_the_workspace",
)
case(
    "page text inputs",
    "every page",
    "none takes a path (dataset name, run name, study name); a dataset name "
    "“../../x” is sanitised and lands inside datasets/",
    f"{T_SE}::test_page_text_inputs_take_no_paths",
)
case(
    "library source",
    "flagvision/",
    "no pickle import; every torch.load has weights_only=True",
    f"{T_SE}::test_library_never_unpickles",
)
case(
    "optuna-dashboard",
    "`dashboard.start_dashboard`",
    "binds 127.0.0.1 by default (URL http://127.0.0.1:PORT/)",
    f"{T_SE}::test_dashboard_binds_localhost",
)


def render_markdown() -> str:
    lines = [
        "# Reliability and security",
        "",
        "Every hostile input and fault below is generated and checked by `tests/reliability/` (or by the",
        "existing test named in the last column). Generated from `tests/reliability/reliability_kit.py`",
        "(`python tests/reliability/reliability_kit.py > docs/RELIABILITY.md`); a test fails when this",
        "file is out of date.",
        "",
        "Everywhere: no traceback reaches the user (AppTest: `at.exception` empty; CLI: exit 2, no",
        "“Traceback” on stderr), the app keeps serving, nothing is written outside the workspace (a",
        "sentinel tree is hashed before and after), and a refused import changes no existing dataset or run.",
        "",
    ]
    sections = {
        "Inputs": lambda c: (
            c.test.startswith(T_IN) and "hyperparameter" not in c.input and "session state" not in c.input
        ),
        "Checkpoints": lambda c: c.test.startswith(T_CK) or "test_checkpoints.py" in c.test,
        "Hyperparameters": lambda c: "hyperparameter" in c.input or "session state" in c.input,
        "Faults": lambda c: c.test.startswith(T_FA) or "test_jobs" in c.test or "test_study" in c.test,
        "Security defaults": lambda c: c.test.startswith(T_SE),
    }
    for title, belongs in sections.items():
        lines += [f"## {title}", "", "| input / fault | entry point | what happens | test |", "|---|---|---|---|"]
        for c in CASES:
            if belongs(c):
                test = c.test if c.test.startswith("tests/") else f"tests/reliability/{c.test}"
                lines.append(f"| {c.input} | {c.entry} | {c.expect} | `{test}` |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
