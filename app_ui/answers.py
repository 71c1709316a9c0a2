"""How the Predict page words an answer, without Streamlit: top-k rows, a batch table row, a sure
answer or "not sure — closest: A, B", the calibration summary, and two models compared in a sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def topk_rows(top: Sequence[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"class": name, "probability": p} for name, p in top]


def batch_summary_row(
    filename: str, results: dict[str, Any], badge: str | None, threshold: float = 0.0
) -> dict[str, Any]:
    """One row of the Predict page's batch table: per model the top-1 and its confidence, or "not
    sure" with the two closest classes below ``threshold``; with two models, which one is surer."""
    row: dict[str, Any] = {"photo": filename}
    from flagvision.inference.predict import answer_text, is_sure  # torch: only once a photo is classified

    for label, pred in results.items():
        sure = is_sure(pred, threshold)
        row[f"{label}"] = f"{pred.label} ({pred.confidence:.0%})" if sure else answer_text(pred, threshold)
    if badge is not None:
        row["agreement"] = badge
    if len(results) == 2:
        from flagvision.inference.compare import compare

        (name_a, a), (name_b, b) = results.items()
        surer = compare(a, b).surer
        row["surer"] = "as sure" if surer is None else (name_a, name_b)[surer]
    return row


def answer_markdown(pred: Any, threshold: float) -> str:
    """A model's answer on Predict: the class and its calibrated confidence, or "not sure — closest:
    A x%, B y%" below ``threshold`` (the text of ``flagvision.inference.predict.answer_text``)."""
    from flagvision.inference.predict import answer_text, is_sure  # torch: only once a photo is classified

    text = answer_text(pred, threshold)
    return f"Answer: **{text}**" if is_sure(pred, threshold) else f"🤔 {text}"


def calibration_summary(calibration: dict[str, Any]) -> str:
    """One line on a run's calibration (evaluation.json's ``calibration``) for the Runs page."""
    sel = calibration.get("selective") or {}
    line = (
        f"Temperature **{calibration['temperature']:.3g}**: expected calibration error "
        f"{_pct_text(calibration.get('ece_before'))} before, **{_pct_text(calibration.get('ece_after'))}** after "
        f"({calibration.get('bins', 15)} bins, on the evaluation images)."
    )
    if sel.get("n_images"):
        answered = "none answered" if sel.get("accuracy") is None else f"{sel['accuracy']:.1%} of those right"
        line += f" Not sure below {sel['threshold']:.0%}: {sel['coverage']:.1%} answered, {answered}."
    return line


def _pct_text(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


AGREEMENT_ICONS = {"agree": "✅", "partly agree": "🟡", "disagree": "❌"}


def comparison_markdown(predictions: dict[str, Any], labels: dict[str, str], threshold: float) -> str | None:
    """The two models on one photo or flag, in a sentence (``flagvision.inference.compare.comparison_text``:
    who is surer, whether they agree) behind its badge's icon; None unless two models answered."""
    if len(predictions) != 2:
        return None
    from flagvision.inference.compare import agreement, comparison_text  # torch: only once a photo is classified

    (slot_a, a), (slot_b, b) = predictions.items()
    text = comparison_text(a, b, (labels[slot_a], labels[slot_b]), threshold)
    return f"{AGREEMENT_ICONS[agreement(a, b)]} {text}"
