"""The Runs page's disagreements, without Streamlit: which runs can be compared, the default pair,
run names for the sentences and the table of check images where two runs' answers differ."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app_ui.logic import runs_with_checkpoints
from flagvision.config import CUSTOM_CNN, VGG16_TRANSFER
from flagvision.jobs.schema import FINISHED_STATES
from flagvision.workspace import CARD_FILE

GALLERY_MAX = 24  # thumbnails of differing check images shown under the table


def comparable_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished runs whose checkpoint exists (``checkpoint_path`` filled in), best test accuracy first."""
    return runs_with_checkpoints(r for r in runs if r.get("status") in FINISHED_STATES)


def default_pair(runs: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """The best custom CNN and the best VGG-16 transfer of ``runs`` (best first, at least two); the
    best two runs when one of the models has none."""
    best = {m: next((r["id"] for r in runs if r.get("model") == m), None) for m in (CUSTOM_CNN, VGG16_TRANSFER)}
    a, b = best[CUSTOM_CNN], best[VGG16_TRANSFER]
    if a is not None and b is not None:
        return a, b
    return runs[0]["id"], runs[1]["id"]


def run_name(run: dict[str, Any]) -> str:
    """ "run #3 (Custom CNN)": two runs of one model stay apart in the sentences."""
    return f"run #{run['id']} ({run.get('label') or run.get('model')})"


def card_classes(checkpoint_path: str | Path) -> list[str]:
    """The class names on a checkpoint's card (a JSON read: no model is loaded); [] if unreadable."""
    try:
        card = json.loads((Path(checkpoint_path) / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    names = card.get("class_names") if isinstance(card, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else []


def disagreement_rows(report: dict[str, Any], names: tuple[str, str]) -> list[dict[str, Any]]:
    """One table row per check image where the two runs differ: its flags, framing, each answer with
    its calibrated confidence, and who is right."""
    right = {"a": names[0], "b": names[1], "both": "both", "neither": "neither"}
    return [
        {
            "image": "/".join(Path(r["image"]).parts[-2:]),  # a check image is <flag>/<nnn>.jpg
            "true": r["true"],
            "framing": r["framing"] or "",
            names[0]: f"{r['answer_a']} ({r['confidence_a']:.0%})",
            names[1]: f"{r['answer_b']} ({r['confidence_b']:.0%})",
            "right": right[r["right"]],
        }
        for r in report["rows"]
    ]


def gallery(report: dict[str, Any], limit: int = GALLERY_MAX) -> list[tuple[str, str]]:
    """(image path, caption) of the first differing check images still on disk."""
    out: list[tuple[str, str]] = []
    for r in report["rows"]:
        if len(out) >= limit:
            break
        if Path(r["image"]).is_file():
            out.append((r["image"], f"{r['true']}: {r['answer_a']} / {r['answer_b']}"))
    return out
