"""VGG-16 weights handling: status, offline download, hash-checked import, safe loading.

No test touches the network or the user's real torch cache: TORCH_HOME points at a tmp dir and
the downloader is replaced. The success path uses a generated state dict whose own hash prefix is
injected (``expected_prefix``); nothing here pretends a generated file is ImageNet's.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
from pathlib import Path

import pytest
import torch

from flagvision.models import weights
from flagvision.models.weights import WeightsError, WeightsMissingError


@pytest.fixture(autouse=True)
def isolated_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(weights, "_verified", set())

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home


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
    for text in ("weights download", "weights import", "--no-pretrained", "random init"):
        assert text in status["message"]


def test_load_when_missing_raises_missing_error() -> None:
    with pytest.raises(WeightsMissingError, match="weights import"):
        weights.load_pretrained_state_dict()


def test_download_offline_is_a_clear_error_and_writes_nothing() -> None:
    with pytest.raises(WeightsError) as info:
        weights.download_weights(progress=False)
    message = str(info.value)
    assert "network disabled" in message and "weights import" in message and "--no-pretrained" in message
    assert not weights.weights_path().exists()


def test_download_hash_mismatch_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def bad_download(url, dst, hash_prefix=None, progress=True):
        raise RuntimeError(f'invalid hash value (expected "{hash_prefix}", got "deadbeef")')

    monkeypatch.setattr(torch.hub, "download_url_to_file", bad_download)
    with pytest.raises(WeightsError, match="invalid hash"):
        weights.download_weights(progress=False)
    assert not weights.weights_path().exists()


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
    assert weights.download_weights(progress=False) == weights.weights_path()  # network is disabled


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
