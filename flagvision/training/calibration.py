"""Calibrated confidence: temperature scaling, expected calibration error, reliability bins, "not sure".

A network trained with cross-entropy is often over-confident: its top probability says 99 % on
answers that are right far less often. Temperature scaling (Guo et al., 2017, "On Calibration of
Modern Neural Networks") divides the logits by one number ``T > 0`` fitted on held-out data by
minimising the negative log-likelihood; the ranking of the classes, and so every answer, stays the
same, only the probabilities change. :func:`fit_temperature` finds ``T``;
:func:`expected_calibration_error` and :func:`reliability_bins` measure how far confidence is from
accuracy (15 equal-width bins of the top probability, as in the paper); :func:`selective` says what
a confidence threshold does: the share of images answered and the accuracy of those answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

ECE_BINS = 15  # equal-width bins of the top probability (Guo et al., 2017)
# The searched range of T: wide enough for any real model, and bounded, because a held-out split
# that the model gets entirely right would otherwise drive T towards 0 (ever sharper answers).
T_MIN, T_MAX = 0.05, 20.0
_GOLDEN = (math.sqrt(5) - 1) / 2
_SEARCH_STEPS = 60  # golden-section steps on log T: the bracket shrinks to 1e-12 of its width


def _nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(F.cross_entropy(logits / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature ``T`` in [:data:`T_MIN`, :data:`T_MAX`] that minimises the NLL of ``softmax(logits / T)``.

    The NLL is convex in ``1/T``, so it has one minimum along ``log T`` too, and a golden-section
    search finds it: deterministic, no learning rate, no gradient that can blow up. No images → 1.0.
    """
    logits = torch.as_tensor(logits).detach().double().cpu()
    labels = torch.as_tensor(labels).detach().long().cpu()
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"need (N, C) logits and N labels, got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if len(labels) == 0:
        return 1.0
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = _nll(logits, labels, math.exp(a)), _nll(logits, labels, math.exp(b))
    for _ in range(_SEARCH_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = _nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = _nll(logits, labels, math.exp(b))
    return math.exp((lo + hi) / 2)


def calibrated_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``softmax(logits / T)`` over the last dimension, in float32."""
    return F.softmax(logits.float() / float(temperature), dim=-1)


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per equal-width bin of the top probability: its edges, how many images fell in it, their mean
    confidence and their accuracy (both ``None`` in an empty bin). Bin ``m`` holds ``((m-1)/M, m/M]``."""
    probs = torch.as_tensor(probs).detach().float().cpu()
    labels = torch.as_tensor(labels).detach().long().cpu()
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    out: list[dict[str, Any]] = []
    if len(labels):
        confidence, predicted = probs.max(dim=1)
        correct = (predicted == labels).float()
        # ceil(c * M) - 1 puts c = m/M in bin m-1, the paper's right-closed bins; c = 0 goes to bin 0.
        index = (torch.ceil(confidence.double() * bins).long() - 1).clamp(0, bins - 1)
    for m in range(bins):
        row: dict[str, Any] = {
            "lower": m / bins,
            "upper": (m + 1) / bins,
            "count": 0,
            "confidence": None,
            "accuracy": None,
        }
        if len(labels):
            mask = index == m
            n = int(mask.sum())
            if n:
                row.update(count=n, confidence=float(confidence[mask].mean()), accuracy=float(correct[mask].mean()))
        out.append(row)
    return out


def ece_from_bins(rows: Sequence[dict[str, Any]]) -> float:
    """Expected calibration error from :func:`reliability_bins`: the count-weighted mean |accuracy − confidence|."""
    total = sum(r["count"] for r in rows)
    if not total:
        return float("nan")
    return sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows if r["count"]) / total


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """ECE (0–1) of class probabilities ``probs`` (N, C) against ``labels`` (N); NaN without images."""
    return ece_from_bins(reliability_bins(probs, labels, bins))


def selective(probs: torch.Tensor, labels: torch.Tensor, threshold: float) -> dict[str, Any]:
    """What answering only when the top probability is at least ``threshold`` does: ``coverage`` (the
    share answered, 0–1), ``accuracy`` of the answered part (None when nothing is answered), counts."""
    probs = torch.as_tensor(probs).detach().float().cpu()
    labels = torch.as_tensor(labels).detach().long().cpu()
    n = len(labels)
    if not n:
        return {"threshold": threshold, "coverage": float("nan"), "accuracy": None, "answered": 0, "n_images": 0}
    confidence, predicted = probs.max(dim=1)
    answered = confidence >= threshold
    k = int(answered.sum())
    accuracy = float((predicted[answered] == labels[answered]).float().mean()) if k else None
    return {"threshold": threshold, "coverage": k / n, "accuracy": accuracy, "answered": k, "n_images": n}


def risk_coverage(probs: torch.Tensor, labels: torch.Tensor) -> list[dict[str, float]]:
    """The risk–coverage curve: for each distinct confidence as threshold (surest first), the share
    answered and the accuracy of the answered part."""
    probs = torch.as_tensor(probs).detach().float().cpu()
    labels = torch.as_tensor(labels).detach().long().cpu()
    if not len(labels):
        return []
    confidence, predicted = probs.max(dim=1)
    order = torch.argsort(confidence, descending=True, stable=True)
    correct = (predicted[order] == labels[order]).double().cumsum(0)
    conf = confidence[order]
    points = []
    for i in range(len(order)):
        if i + 1 < len(order) and conf[i + 1] == conf[i]:
            continue  # a tie answers together
        points.append(
            {"threshold": float(conf[i]), "coverage": (i + 1) / len(order), "accuracy": float(correct[i]) / (i + 1)}
        )
    return points


def calibration_report(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float, threshold: float, bins: int = ECE_BINS
) -> dict[str, Any]:
    """Everything evaluation.json and ``evaluate`` say about confidence, from (N, C) logits: see
    :func:`probability_report`, with the probabilities before (T = 1) and after calibration."""
    return probability_report(
        calibrated_softmax(logits), calibrated_softmax(logits, temperature), labels, temperature, threshold, bins
    )


def probability_report(
    before: torch.Tensor | None,
    after: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    threshold: float,
    bins: int = ECE_BINS,
) -> dict[str, Any]:
    """The temperature, ECE and reliability bins before and after calibration (``before`` None: not
    measured, reported as None), and what the "not sure" threshold does to the calibrated answers."""
    rows_after = reliability_bins(after, labels, bins)
    rows_before = reliability_bins(before, labels, bins) if before is not None else None
    return {
        "temperature": float(temperature),
        "bins": bins,
        "ece_before": ece_from_bins(rows_before) if rows_before is not None else None,
        "ece_after": ece_from_bins(rows_after),
        "reliability_before": rows_before,
        "reliability_after": rows_after,
        "selective": selective(after, labels, threshold),
    }
