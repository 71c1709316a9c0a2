"""VGG-16 weights handling: status, the streaming download, hash-checked import, safe loading.

No test touches the internet or the user's real torch cache: TORCH_HOME points at a tmp dir and
the download URL at a closed local port unless a test serves a file from a real HTTP server on
127.0.0.1 (``fv_helpers.WeightsServer``). The success paths use a generated state dict whose own
hash prefix is injected (``expected_prefix`` or ``$FLAGVISION_WEIGHTS_HASH_PREFIX``); nothing here
pretends a generated file is ImageNet's.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
import torch

from flagvision.models import weights
from flagvision.models.weights import DownloadCancelled, WeightsError, WeightsMissingError
from fv_helpers import WeightsServer, closed_port_url, standin_vgg_weights


@pytest.fixture(autouse=True)
def isolated_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv(weights.WEIGHTS_URL_ENV, closed_port_url())  # no test reaches the internet
    monkeypatch.delenv(weights.HASH_PREFIX_ENV, raising=False)
    monkeypatch.setattr(weights, "_verified", set())
    return home


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """A small file the real weights check accepts (see ``standin_vgg_weights``), and its sha256."""
    path = tmp_path_factory.mktemp("standin") / "standin.pth"
    digest = standin_vgg_weights(path)
    return path.read_bytes(), digest


@pytest.fixture(scope="module")
def generated_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A random (not pretrained) state dict with every VGG-16 feature tensor, and its sha256."""
    path = tmp_path_factory.mktemp("gen") / "generated-vgg16-features.pth"
    gen = torch.Generator().manual_seed(0)
    shapes = weights._reference_shapes()
    state = {k: torch.randn(s, generator=gen) for k, s in shapes.items() if k.startswith("features.")}
    torch.save(state, path)
    return path, _sha256(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_dir_contents() -> list[str]:
    folder = weights.weights_path().parent
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_published_file_matches_torchvision() -> None:
    from torchvision.models import VGG16_Weights

    published = VGG16_Weights.IMAGENET1K_V1
    assert weights.WEIGHTS_URL == published.url
    assert weights.WEIGHTS_FILENAME == "vgg16-397923af.pth"
    assert weights.PUBLISHED_HASH_PREFIX == "397923af"
    assert round(published.meta["_file_size"]) == weights._FILE_SIZE_MB


def test_weights_path_follows_torch_home(isolated_torch_home: Path) -> None:
    assert weights.weights_path() == isolated_torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth"


def test_status_when_missing_names_every_way_out() -> None:
    status = weights.weights_status()
    assert status["available"] is False
    assert status["expected_hash_prefix"] == "397923af"
    assert status["path"] == str(weights.weights_path())
    for text in ("weights download", "weights import", "--no-pretrained", "random init, not pretrained"):
        assert text in status["message"]


def test_load_when_missing_raises_missing_error() -> None:
    with pytest.raises(WeightsMissingError, match="weights import"):
        weights.load_pretrained_state_dict()


# -- the streaming download, against a real HTTP server on 127.0.0.1 ---------------------------------


def test_standin_is_small_and_passes_the_real_check(standin: tuple[bytes, str], tmp_path: Path) -> None:
    body, _ = standin
    assert len(body) < 2 * weights.MB  # a full float32 features.* state dict would be 59 MB
    path = tmp_path / "standin.pth"
    path.write_bytes(body)
    weights._check_state_dict(weights._load_state_dict(path), source="standin")  # raises if not accepted


def test_download_streams_in_chunks_checks_and_installs(standin: tuple[bytes, str]) -> None:
    body, digest = standin
    seen: list[tuple[int, int | None]] = []
    with WeightsServer(body) as server:
        path = weights.download_weights(
            lambda done, total: seen.append((done, total)),
            url=server.url,
            expected_prefix=digest[:8],
            chunk_bytes=64 * 1024,
        )
    assert path == weights.weights_path() and path.read_bytes() == body
    assert _cache_dir_contents() == [weights.WEIGHTS_FILENAME]  # no .partial left beside it
    assert seen[0] == (0, len(body)) and seen[-1] == (len(body), len(body))
    assert len(seen) > 10 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert weights.weights_status()["available"] is True


def test_download_url_and_test_prefix_from_the_environment(
    standin: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body, digest = standin
    with WeightsServer(body) as server:
        monkeypatch.setenv(weights.WEIGHTS_URL_ENV, server.url)
        monkeypatch.setenv(weights.HASH_PREFIX_ENV, digest[:12])
        status = weights.weights_status()
        assert status["url"] == server.url and status["expected_hash_prefix"] == digest[:12]
        assert weights.HASH_PREFIX_ENV in status["message"]  # an overridden check is never silent
        assert weights.download_weights() == weights.weights_path()
        assert server.requests == 1
        assert weights.download_weights() == weights.weights_path()  # cached and verified: no request
        assert server.requests == 1
    monkeypatch.setenv(weights.HASH_PREFIX_ENV, "not-hex")
    with pytest.raises(WeightsError, match="8 to 64 hex digits"):
        weights.expected_hash_prefix()


def test_broken_connection_leaves_nothing_in_the_cache(standin: tuple[bytes, str]) -> None:
    body, digest = standin
    with WeightsServer(body, cut_after=len(body) // 2) as server:
        with pytest.raises(WeightsError) as info:
            weights.download_weights(url=server.url, expected_prefix=digest[:8], chunk_bytes=64 * 1024)
    message = str(info.value)
    assert "connection broke after" in message and "Nothing was saved" in message and "\n" not in message
    assert "weights import" in message  # the way without internet
    assert _cache_dir_contents() == []


def test_wrong_hash_leaves_nothing_in_the_cache(standin: tuple[bytes, str]) -> None:
    body, digest = standin  # a valid state dict, but not the published file
    with WeightsServer(body) as server:
        with pytest.raises(WeightsError, match=f"starts with {digest[:8]}, expected 397923af"):
            weights.download_weights(url=server.url)
    assert _cache_dir_contents() == []


def test_right_hash_but_not_a_state_dict_leaves_nothing(tmp_path: Path) -> None:
    garbage = os.urandom(300_000)
    with WeightsServer(garbage) as server:
        with pytest.raises(WeightsError, match="not a loadable PyTorch weights file"):
            weights.download_weights(url=server.url, expected_prefix=hashlib.sha256(garbage).hexdigest()[:8])
    assert _cache_dir_contents() == []


def test_refused_connection_stalled_server_and_http_error_are_one_line_each(standin: tuple[bytes, str]) -> None:
    body, digest = standin
    with pytest.raises(WeightsError, match="the connection was refused"):
        weights.download_weights(url=closed_port_url())
    with WeightsServer(body, stall_after=100_000) as server:
        with pytest.raises(WeightsError, match=r"no answer within 0\.5 s"):
            weights.download_weights(url=server.url, expected_prefix=digest[:8], timeout_s=0.5)
    with WeightsServer(body, status=404) as server:
        with pytest.raises(WeightsError, match="the server answered 404"):
            weights.download_weights(url=server.url)
    assert _cache_dir_contents() == []


def test_offline_name_lookup_is_a_clear_error() -> None:
    # .invalid never resolves (RFC 2606): what a machine without network meets first.
    with pytest.raises(WeightsError, match="seems to be offline") as info:
        weights.download_weights(url="http://weights.flagvision.invalid/vgg16-397923af.pth")
    assert "--no-pretrained" in str(info.value) and _cache_dir_contents() == []


def test_stop_request_cancels_and_removes_the_partial_file(standin: tuple[bytes, str]) -> None:
    body, digest = standin
    chunks: list[int] = []
    with WeightsServer(body) as server:
        with pytest.raises(DownloadCancelled):
            weights.download_weights(
                lambda done, total: chunks.append(done),
                url=server.url,
                expected_prefix=digest[:8],
                should_stop=lambda: len(chunks) > 3,
                chunk_bytes=64 * 1024,
            )
    assert 0 < chunks[-1] < len(body)  # stopped mid-file
    assert _cache_dir_contents() == []


def test_partial_files_of_dead_downloads_are_removed(standin: tuple[bytes, str]) -> None:
    body, digest = standin
    folder = weights.weights_path().parent
    folder.mkdir(parents=True)
    dead = folder / f".{weights.WEIGHTS_FILENAME}.dead.partial"
    live = folder / f".{weights.WEIGHTS_FILENAME}.live.partial"  # another download, still writing
    dead.write_bytes(b"half")
    live.write_bytes(b"half")
    old = time.time() - weights.STALE_PARTIAL_S - 60
    os.utime(dead, (old, old))
    with WeightsServer(body) as server:
        weights.download_weights(url=server.url, expected_prefix=digest[:8])
    assert _cache_dir_contents() == sorted([live.name, weights.WEIGHTS_FILENAME])


def test_import_refuses_hash_mismatch_and_copies_nothing(generated_file: tuple[Path, str]) -> None:
    path, _ = generated_file  # a valid state dict, but not the published file
    with pytest.raises(WeightsError, match="397923af"):
        weights.import_weights(path)
    assert _cache_dir_contents() == []


def test_import_installs_matching_file_atomically(generated_file: tuple[Path, str]) -> None:
    path, digest = generated_file
    installed = weights.import_weights(path, expected_prefix=digest[:8])
    assert installed == weights.weights_path()
    assert _sha256(installed) == digest
    assert _cache_dir_contents() == [weights.WEIGHTS_FILENAME]  # no temp file left behind
    assert weights.weights_status()["available"] is True

    loaded = weights.load_pretrained_state_dict(expected_prefix=digest[:8])
    original = torch.load(path, weights_only=True)
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[k], original[k]) for k in original)


def test_cached_file_not_matching_published_prefix_is_refused(generated_file: tuple[Path, str]) -> None:
    path, digest = generated_file
    weights.import_weights(path, expected_prefix=digest[:8])
    # Installed under the published name, it is still not the published file: loading says so.
    with pytest.raises(WeightsError, match="does not match the published hash prefix"):
        weights.load_pretrained_state_dict()


def test_download_reuses_a_verified_cached_file(
    generated_file: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, digest = generated_file
    monkeypatch.setattr(weights, "PUBLISHED_HASH_PREFIX", digest[:8])
    weights.import_weights(path)
    assert weights.download_weights() == weights.weights_path()  # the URL is a closed port


def test_import_refuses_garbage_with_matching_prefix(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError, match="not a loadable PyTorch weights file"):
        weights.import_weights(garbage, expected_prefix=_sha256(garbage)[:8])
    assert _cache_dir_contents() == []


def test_import_refuses_wrong_shapes(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(2, 2), "fc.weight": torch.zeros(3)}, wrong)
    with pytest.raises(WeightsError, match="not a VGG-16 state dict"):
        weights.import_weights(wrong, expected_prefix=_sha256(wrong)[:8])
    assert _cache_dir_contents() == []


def test_import_refuses_non_dict(tmp_path: Path) -> None:
    tensor_file = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(WeightsError, match="not a VGG-16 state dict"):
        weights.import_weights(tensor_file, expected_prefix=_sha256(tensor_file)[:8])


def test_import_missing_file() -> None:
    with pytest.raises(WeightsError, match="is not a file"):
        weights.import_weights("/nonexistent/vgg16.pth")


# A pickle that runs code when unpickled: __reduce__ tells pickle to call _write_marker(path).
def _write_marker(path: str) -> dict:
    Path(path).write_text("code ran")
    return {}


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_write_marker, (self.marker,))


def test_import_refuses_code_payload_without_running_it(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pth"
    marker = tmp_path / "marker.txt"
    torch.save({"features.0.weight": _Payload(str(marker))}, evil)

    with pytest.raises(WeightsError, match="not a loadable PyTorch weights file"):
        weights.import_weights(evil, expected_prefix=_sha256(evil)[:8])
    assert not marker.exists()
    assert _cache_dir_contents() == []

    # The payload is live: an unsafe load would have run it (proves the test tests something).
    proof = tmp_path / "proof.txt"
    torch.save({"x": _Payload(str(proof))}, tmp_path / "proof.pth")
    torch.load(tmp_path / "proof.pth", weights_only=False)
    assert proof.exists()
