"""`python -m flagvision weights download` as a real subprocess against a real HTTP server on
127.0.0.1 (the URL and the test hash prefix from the environment; TORCH_HOME a tmp dir)."""

from __future__ import annotations

import os
from pathlib import Path

from flagvision.models import weights
from fv_helpers import WeightsServer, closed_port_url, run_cli, standin_vgg_weights


def _env(tmp_path: Path, url: str, prefix: str) -> dict[str, str]:
    return {"TORCH_HOME": str(tmp_path / "torch"), weights.WEIGHTS_URL_ENV: url, weights.HASH_PREFIX_ENV: prefix}


def test_weights_download_installs_then_status_says_found(tmp_path):
    standin = tmp_path / "standin.pth"
    digest = standin_vgg_weights(standin)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / weights.WEIGHTS_FILENAME
    with WeightsServer(standin.read_bytes()) as server:
        out = run_cli("weights", "download", env=_env(tmp_path, server.url, digest[:8]))
    assert out.returncode == 0, out.stderr
    assert f"ready at {cached}" in out.stdout and cached.read_bytes() == standin.read_bytes()
    status = run_cli("weights", "status", env=_env(tmp_path, server.url, digest[:8]))
    assert status.returncode == 0 and "found at" in status.stdout


def test_weights_download_offline_is_one_error_line_and_leaves_nothing(tmp_path):
    out = run_cli("weights", "download", env=_env(tmp_path, closed_port_url(), "0123abcd"))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "connection was refused" in lines[0], out.stderr
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert not folder.exists() or os.listdir(folder) == []
