"""VGG-16 ImageNet weights: where they live, whether they are there, and how to get them.

The weights are torchvision's ``VGG16_Weights.IMAGENET1K_V1`` and live where torchvision itself
caches them (``<torch hub dir>/checkpoints/vgg16-397923af.pth``), so a file fetched by any
torchvision program is reused and ours is reused by them. Nothing here downloads implicitly:
``download_weights`` is an explicit user action (CLI ``weights download`` or the app's Download
button, which runs it in a "weights" job).

The download streams the file with urllib from :func:`weights_url` (``$FLAGVISION_WEIGHTS_URL``
for a mirror or a test server, else torchvision's URL) into a ``.partial`` file beside the target,
hashing as it goes, then checks the hash prefix and the state dict and renames it into place. A
broken connection, a wrong hash or no network end in one :class:`WeightsError` line with the
partial file removed: the cache holds the whole checked file or nothing.

Trust model. The file name publishes the first 8 hex digits of the file's SHA-256; every file we
install or load is checked against that prefix, which catches the wrong file, a truncated copy or a
locally trained state dict posing as ImageNet weights. A 32-bit prefix is not a defence against a
deliberate forgery, so the security boundary is ``torch.load(weights_only=True)``: a pickle that
tries to run code is refused, never executed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that load or check tensors: `weights status` and the
# app's weights notice only look for a file, and must not pay seconds for importing torch.

from flagvision.errors import FlagVisionError

__all__ = [
    "PUBLISHED_HASH_PREFIX",
    "WEIGHTS_FILENAME",
    "WEIGHTS_URL",
    "WEIGHTS_URL_ENV",
    "DownloadCancelled",
    "WeightsError",
    "WeightsMissingError",
    "download_weights",
    "expected_hash_prefix",
    "import_weights",
    "load_pretrained_state_dict",
    "weights_path",
    "weights_status",
    "weights_url",
]


class WeightsError(FlagVisionError, RuntimeError):
    """The VGG-16 weights could not be obtained, verified or loaded; the message names the fix."""


class WeightsMissingError(WeightsError):
    """Pretrained weights were requested but are not in the local cache (nothing is downloaded)."""


class DownloadCancelled(WeightsError):
    """The download was asked to stop (``should_stop``); the partial file was removed."""


# torchvision's VGG16_Weights.IMAGENET1K_V1, spelled out so that importing this module (and hence
# flagvision.models.networks, which the app imports for its select boxes) does not pay for importing
# torchvision.models; tests/models/test_weights.py checks both against torchvision.
WEIGHTS_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
WEIGHTS_FILENAME = WEIGHTS_URL.rsplit("/", 1)[-1]  # "vgg16-397923af.pth"


def _published_hash_prefix(filename: str) -> str:
    """torch.hub's naming convention "<name>-<first hex digits of sha256>.<ext>" publishes the hash prefix."""
    match = re.search(r"-([a-f0-9]{6,})\.", filename)
    if match is None:
        raise ValueError(f"{filename} does not follow torch.hub's <name>-<hash>.<ext> naming")
    return match.group(1)


PUBLISHED_HASH_PREFIX = _published_hash_prefix(WEIGHTS_FILENAME)
_FILE_SIZE_MB = 528  # torchvision's meta["_file_size"] (527.8 MB, in units of 2**20 bytes)
MB = 1 << 20  # the unit of _FILE_SIZE_MB, used for every size shown

# Where the download comes from: a mirror, or a local server in the tests. A mirror serves the same
# file, so the hash check stays the published one.
WEIGHTS_URL_ENV = "FLAGVISION_WEIGHTS_URL"
# For tests only: the hash prefix a generated stand-in file is checked against (in the app's and
# the workers' processes alike). Unset, every check uses the published prefix; set, the status says so.
HASH_PREFIX_ENV = "FLAGVISION_WEIGHTS_HASH_PREFIX"
CONNECT_TIMEOUT_S = 10.0  # connect and each read: offline, or a stalled server, fails within seconds
CHUNK_BYTES = 256 * 1024  # read size while streaming; progress is reported once per chunk
STALE_PARTIAL_S = 120.0  # a .partial file untouched this long belongs to a download that died

# The three ways out, quoted by every error a user can meet (CLI flag names owned by flagvision.cli.main).
HOW_TO_GET = (
    "Get them with `python -m flagvision weights download` (needs internet, about "
    f"{_FILE_SIZE_MB} MB), or copy {WEIGHTS_FILENAME} from a machine that has it and run "
    "`python -m flagvision weights import FILE`; or train without them using --no-pretrained "
    '(random initialisation, labelled "random init, not pretrained").'
)
# What to do when the download itself failed (the app shows it under its Download button).
_OFFLINE_WAYS = (
    f"Without internet: copy {WEIGHTS_FILENAME} from a machine that has it and import it (the Import "
    "form in the app, or `python -m flagvision weights import FILE`), or train VGG-16 with random "
    "initialisation (--no-pretrained on the command line)."
)

# (done bytes, total bytes or None when the server does not say) after every chunk.
ProgressFn = Callable[[int, int | None], None]

# Files already hashed in this process, keyed by (path, size, mtime, prefix): a study builds a model
# per trial and should not re-hash 528 MB each time.
_verified: set[tuple[str, int, int, str]] = set()


def weights_path() -> Path:
    """Where torchvision caches the VGG-16 ImageNet file (honours TORCH_HOME, read at each call)."""
    return Path(_hub_dir()) / "checkpoints" / WEIGHTS_FILENAME


def _hub_dir() -> str:
    """``torch.hub.get_dir()``, without importing torch when it is not imported yet.

    Once torch is imported its own answer is used (it also honours ``torch.hub.set_dir``);
    before, the same rule: $TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch, then hub/.
    """
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return torch.hub.get_dir()
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return os.path.join(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch"))), "hub")


def weights_url() -> str:
    """Where ``download_weights`` fetches from: ``$FLAGVISION_WEIGHTS_URL``, else torchvision's URL."""
    return os.environ.get(WEIGHTS_URL_ENV, "").strip() or WEIGHTS_URL


def expected_hash_prefix() -> str:
    """The sha256 prefix every file is checked against: the published one, unless a test set
    ``$FLAGVISION_WEIGHTS_HASH_PREFIX`` (hex digits) for a generated stand-in file."""
    override = os.environ.get(HASH_PREFIX_ENV, "").strip().lower()
    if not override:
        return PUBLISHED_HASH_PREFIX
    if not re.fullmatch(r"[0-9a-f]{8,64}", override):
        raise WeightsError(f"{HASH_PREFIX_ENV}={override!r} is not 8 to 64 hex digits of a sha256; unset it")
    return override


def weights_status() -> dict[str, Any]:
    """What the UI and ``weights status`` show: available, path, expected hash prefix, message.

    Cheap: only checks that the file exists. Its hash is verified when it is loaded.
    """
    path = weights_path()
    available = path.is_file() and path.stat().st_size > 0
    prefix = expected_hash_prefix()
    if available:
        message = f"VGG-16 ImageNet weights found at {path}."
    else:
        message = f"VGG-16 ImageNet weights are not in the local cache ({path}). {HOW_TO_GET}"
    if prefix != PUBLISHED_HASH_PREFIX:
        message += (
            f" Files are checked against the hash prefix {prefix} set by {HASH_PREFIX_ENV}, not the published one."
        )
    return {
        "available": available,
        "path": str(path),
        "expected_hash_prefix": prefix,
        "url": weights_url(),
        "size_mb": _FILE_SIZE_MB,
        "message": message,
    }


def download_weights(
    progress: ProgressFn | None = None,
    *,
    url: str | None = None,
    expected_prefix: str | None = None,
    should_stop: Callable[[], bool] | None = None,
    timeout_s: float = CONNECT_TIMEOUT_S,
    chunk_bytes: int = CHUNK_BYTES,
) -> Path:
    """Stream the weights from ``url`` (default :func:`weights_url`) into the hub cache; return its path.

    The bytes go to a ``.partial`` file beside the target while their sha256 is computed; then the
    hash prefix is checked, then the state dict (as :func:`import_weights` does), then the file is
    renamed into place (atomic). ``progress(done, total)`` is called after every chunk (total is
    None when the server sends no length); ``should_stop()`` is asked too, and True ends the
    download with :class:`DownloadCancelled`. No network, a broken connection, a wrong file or a
    stop raise :class:`WeightsError` (one line) with the partial file removed, so nothing
    half-written stays in the cache. An existing valid file is reused without any network access.
    """
    target = weights_path()
    prefix = expected_hash_prefix() if expected_prefix is None else expected_prefix.lower()
    if target.is_file():
        _verify_file(target, prefix, what="the cached file")
        return target
    source = url or weights_url()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{WEIGHTS_FILENAME}.", suffix=".partial", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(source, out, progress, should_stop, timeout_s, chunk_bytes)
            out.flush()
            os.fsync(out.fileno())
        if not digest.startswith(prefix):
            raise WeightsError(
                f"the file downloaded from {source} is not torchvision's {WEIGHTS_FILENAME}: its sha256 starts "
                f"with {digest[: len(prefix)]}, expected {prefix}. Nothing was installed."
            )
        _check_state_dict(_load_state_dict(tmp), source=f"the file downloaded from {source}")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _remember_verified(target, prefix)
    return target


def _stream(
    url: str,
    out: Any,
    progress: ProgressFn | None,
    should_stop: Callable[[], bool] | None,
    timeout_s: float,
    chunk_bytes: int,
) -> str:
    """Copy ``url``'s body into ``out`` chunk by chunk; return its sha256 (hex). Every network
    failure becomes one WeightsError line that says what happened and the ways without internet."""
    h = hashlib.sha256()
    done, total = 0, None
    request = urllib.request.Request(url, headers={"User-Agent": "flagvision"})
    try:
        # timeout: for the connect and for every read, so no network or a stalled server fails
        # within seconds instead of hanging the job.
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if progress is not None:
                progress(0, total)
            while True:
                if should_stop is not None and should_stop():
                    raise DownloadCancelled("the download was cancelled; nothing was installed")
                chunk = response.read(chunk_bytes)
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except WeightsError:
        raise
    except http.client.IncompleteRead as exc:
        done += len(exc.partial)
        raise _download_error(url, f"the connection broke after {_mb(done)} of {_mb(total)}") from None
    except urllib.error.HTTPError as exc:
        raise _download_error(url, f"the server answered {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _download_error(url, _network_reason(exc.reason, timeout_s)) from None
    except (OSError, http.client.HTTPException) as exc:  # reset, timeout or refusal mid-body
        raise _download_error(
            url, f"the connection broke after {_mb(done)} ({_network_reason(exc, timeout_s)})"
        ) from None
    if total is not None and done != total:
        raise _download_error(url, f"the connection broke after {_mb(done)} of {_mb(total)}")
    return h.hexdigest()


def _mb(size: int | None) -> str:
    return "an unknown size" if size is None else f"{size / MB:.1f} MB"


def _network_reason(reason: object, timeout_s: float) -> str:
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout_s:g} s"
    if isinstance(reason, socket.gaierror):
        return f"this machine seems to be offline (cannot resolve the server's name: {reason.strerror or reason})"
    if isinstance(reason, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _download_error(url: str, what: str) -> WeightsError:
    host = urllib.parse.urlsplit(url).netloc or url
    return WeightsError(
        f"could not download the VGG-16 ImageNet weights from {host}: {what}. Nothing was saved. {_OFFLINE_WAYS}"
    )


def _remove_stale_partials(folder: Path) -> None:
    """Remove ``.partial`` files of downloads that died without cleaning up (a killed process)."""
    now = time.time()
    for leftover in folder.glob(f".{WEIGHTS_FILENAME}.*.partial"):
        try:
            if now - leftover.stat().st_mtime > STALE_PARTIAL_S:
                leftover.unlink()
        except OSError:  # removed meanwhile, or not ours to remove: the download goes on
            pass


def import_weights(file: str | os.PathLike[str], expected_prefix: str | None = None) -> Path:
    """Install a local copy of the weights file into the hub cache, after checking it.

    Checks, in order, before anything is written: the file's sha256 starts with the published
    prefix; it loads with ``torch.load(weights_only=True)``; it holds VGG-16 tensors of the right
    shapes (all of ``features.*``; ``classifier.*`` may be absent). Then it is copied to a temp
    file beside the target and renamed into place (atomic), re-hashing the copy on the way.

    ``expected_prefix`` exists for tests, which use a generated file's own prefix to exercise the
    success path; real callers leave it None (the published prefix).
    """
    source = Path(file)
    prefix = expected_hash_prefix() if expected_prefix is None else expected_prefix.lower()
    if not source.is_file():
        raise WeightsError(f"{source} is not a file; expected a copy of {WEIGHTS_FILENAME}")
    digest = _sha256(source)
    if not digest.startswith(prefix):
        raise WeightsError(
            f"{source} is not torchvision's {WEIGHTS_FILENAME}: its sha256 starts with {digest[: len(prefix)]}, "
            f"the published prefix is {prefix}. Nothing was installed."
        )
    _check_state_dict(_load_state_dict(source), source=str(source))

    target = weights_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{WEIGHTS_FILENAME}.", suffix=".partial", dir=target.parent)
    try:
        copied = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                copied.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        # The bytes copied must be the bytes checked above (the source could change in between).
        if copied.hexdigest() != digest:
            raise WeightsError(f"{source} changed while it was being imported; nothing was installed")
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _remember_verified(target, prefix)
    return target


def load_pretrained_state_dict(expected_prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The cached VGG-16 state dict, hash-checked and loaded with ``weights_only=True``.

    Raises WeightsMissingError (with the ways to get the file) when it is not cached, and
    WeightsError when the cached file is not the published one. Never downloads.
    """
    path = weights_path()
    prefix = expected_hash_prefix() if expected_prefix is None else expected_prefix.lower()
    if not path.is_file():
        raise WeightsMissingError(f"VGG-16 ImageNet weights are not in the local cache ({path}). {HOW_TO_GET}")
    _verify_file(path, prefix, what="the cached file")
    state = _load_state_dict(path)
    _check_state_dict(state, source=str(path))
    return state


# ----------------------------------------------------------------------------- helpers


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_key(path: Path, prefix: str) -> tuple[str, int, int, str]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, prefix)


def _remember_verified(path: Path, prefix: str) -> None:
    _verified.add(_file_key(path, prefix))


def _verify_file(path: Path, prefix: str, what: str) -> None:
    if _file_key(path, prefix) in _verified:
        return
    digest = _sha256(path)
    if not digest.startswith(prefix):
        raise WeightsError(
            f"{what} {path} does not match the published hash prefix {prefix} (its sha256 starts with "
            f"{digest[: len(prefix)]}): it is not torchvision's {WEIGHTS_FILENAME}. Delete it. {HOW_TO_GET}"
        )
    _remember_verified(path, prefix)


def _load_state_dict(path: Path) -> Any:
    import torch

    try:
        # weights_only=True: the restricted unpickler accepts tensors and plain containers only, so a
        # crafted file cannot run code. Any failure (garbage bytes, code payload) becomes WeightsError.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"{path} is not a loadable PyTorch weights file ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _reference_shapes() -> dict[str, tuple[int, ...]]:
    """Key → shape of torchvision's vgg16 state dict, built on the meta device (no memory, ~20 ms)."""
    import torch
    from torchvision.models import vgg16

    with torch.device("meta"):
        model = vgg16()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check_state_dict(state: Any, source: str) -> None:
    """Refuse anything that is not (a superset of the features of) a VGG-16 state dict."""
    import torch

    if not isinstance(state, Mapping):
        raise WeightsError(f"{source} holds a {type(state).__name__}, not a VGG-16 state dict")
    reference = _reference_shapes()
    problems: list[str] = []
    for key, value in state.items():
        if key not in reference:
            problems.append(f"unexpected key {key!r}")
        elif not isinstance(value, torch.Tensor) or not value.is_floating_point():
            problems.append(f"{key} is not a floating-point tensor")
        elif tuple(value.shape) != reference[key]:
            problems.append(f"{key} has shape {tuple(value.shape)}, expected {reference[key]}")
    missing = [k for k in reference if k.startswith("features.") and k not in state]
    if missing:
        problems.append(f"missing {len(missing)} feature tensors (e.g. {missing[0]})")
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise WeightsError(f"{source} is not a VGG-16 state dict: {shown}")
