"""Classification metrics: confusion matrix, accuracy, per-class P / R / F1, and the report
the evaluate page and ``metrics.json`` show (with the detection metrics of bona fide vs spoof).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fakevoice.errors import InvalidSpecError
from fakevoice.metrics.bootstrap import drawing_units, eer_interval
from fakevoice.metrics.calibration import expected_calibration_error, reliability
from fakevoice.metrics.detection import compute_eer, downsample_curve, roc_curve


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        y_true: ``(n,)`` true class indices in ``[0, n_classes)``.
        y_pred: ``(n,)`` predicted class indices in ``[0, n_classes)``.
        n_classes: number of classes.

    Returns:
        ``(n_classes, n_classes)`` int64: row = true class, column = predicted class.

    Raises:
        InvalidSpecError: lengths differ or an index is outside ``[0, n_classes)``.
    """
    true = np.asarray(y_true).ravel()
    pred = np.asarray(y_pred).ravel()
    if n_classes < 1:
        raise InvalidSpecError(f"n_classes must be at least 1; got {n_classes}.")
    if true.size != pred.size:
        raise InvalidSpecError(f"Got {true.size} true labels but {pred.size} predictions.")
    for name, labels in (("true", true), ("predicted", pred)):
        if labels.size and (
            not np.issubdtype(labels.dtype, np.integer)
            or labels.min() < 0
            or labels.max() >= n_classes
        ):
            raise InvalidSpecError(
                f"The {name} labels must be class indices from 0 to {n_classes - 1}."
            )
    flat = true.astype(np.int64) * n_classes + pred.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ``numerator / denominator`` with 0 where the denominator is 0."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def per_class_prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 of a confusion matrix (0 where undefined).

    Args:
        cm: ``(n_classes, n_classes)`` counts, row = true class, column = predicted class.

    Returns:
        ``precision``, ``recall``, ``f1``, each ``(n_classes,)`` float64 in ``[0, 1]``.
    """
    cm = _as_confusion(cm)
    hits = np.diag(cm).astype(np.float64)
    precision = _safe_divide(hits, cm.sum(axis=0).astype(np.float64))
    recall = _safe_divide(hits, cm.sum(axis=1).astype(np.float64))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return precision, recall, f1


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean F1 over the classes that occur as truth or prediction.

    Classes that never occur (neither true nor predicted) are left out, as scikit-learn does by
    default, so a generator missing from a validation split does not drag the score down.

    Args:
        cm: ``(n_classes, n_classes)`` counts, row = true class, column = predicted class.

    Raises:
        InvalidSpecError: the matrix holds no trials.
    """
    cm = _as_confusion(cm)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    if not present.any():
        raise InvalidSpecError("The confusion matrix is empty: there are no trials to score.")
    return float(per_class_prf(cm)[2][present].mean())


def accuracy(cm: np.ndarray) -> float:
    """Fraction of trials on the diagonal of a confusion matrix.

    Raises:
        InvalidSpecError: the matrix holds no trials.
    """
    cm = _as_confusion(cm)
    total = cm.sum()
    if total == 0:
        raise InvalidSpecError("The confusion matrix is empty: there are no trials to score.")
    return float(np.trace(cm) / total)


def _as_confusion(cm: Any) -> np.ndarray:
    array = np.asarray(cm)
    if array.ndim != 2 or array.shape[0] != array.shape[1] or (array < 0).any():
        raise InvalidSpecError(
            f"A confusion matrix must be square with non-negative counts; got shape {array.shape}."
        )
    return array


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def classification_report(
    y_true: Any,
    probs: Any,
    class_names: Sequence[str],
    bonafide_index: int = 0,
    groups: Any = None,
    speakers: Any = None,
) -> dict[str, Any]:
    """Everything the evaluate page and ``metrics.json`` show about one set of predictions.

    The prediction is the arg-max class. The detection metrics (EER, ROC, AUC) treat the problem
    as bona fide vs any spoof, with ``P(bonafide)`` as the bona fide score; when the truth holds only
    one of the two sides they are ``None`` (and ``roc`` is absent) and ``notes`` says why.

    Args:
        y_true: ``(n,)`` true class indices.
        probs: ``(n, n_classes)`` class probabilities (rows sum to 1).
        class_names: ``n_classes`` names, in index order.
        bonafide_index: index of the bona fide class.
        groups: ``(n,)`` the utterance of each item, when known: the EER then comes with its
            bootstrap interval (:mod:`fakevoice.metrics.bootstrap`).
        speakers: ``(n,)`` the speaker of each item, when known: with enough speakers the
            interval draws whole speakers instead of utterances (:func:`~fakevoice.metrics.
            bootstrap.drawing_units`).

    Returns:
        A JSON-able dict: ``n``, ``class_names``, ``accuracy``, ``macro_f1``, ``per_class``
        (name -> precision, recall, f1, support), ``confusion_matrix`` (list of rows, true x
        predicted), ``ece`` (expected calibration error of the top probability, 0 to 1; see
        :mod:`fakevoice.metrics.calibration`) and ``reliability`` (its diagram's points),
        ``eer`` (fraction) and ``eer_threshold`` (on ``P(bonafide)``), ``auc``,
        ``roc`` (``fpr``, ``tpr``, ``thresholds`` with at most 200 points; the first threshold,
        ``+inf``, is written as ``None``; and ``auc``), ``eer_interval`` (the EER's 95 %
        bootstrap interval: ``low``, ``high``, ``groups``, ``unit``...; None without groups or
        with too few) and ``notes``.

    Raises:
        InvalidSpecError: shapes disagree, the set is empty, or the probabilities hold NaN.
    """
    p = np.asarray(probs, dtype=np.float64)
    n_classes = len(class_names)
    if p.ndim != 2 or p.shape[1] != n_classes:
        raise InvalidSpecError(
            f"probs must have shape (n, {n_classes}) for {n_classes} classes; got {p.shape}."
        )
    if not 0 <= bonafide_index < n_classes:
        raise InvalidSpecError(
            f"bonafide_index must be between 0 and {n_classes - 1}; got {bonafide_index}."
        )
    if p.shape[0] == 0:
        raise InvalidSpecError("There are no predictions to evaluate.")
    if np.isnan(p).any():
        raise InvalidSpecError("The predicted probabilities contain NaN values.")
    true = np.asarray(y_true).ravel()
    cm = confusion_matrix(true, p.argmax(axis=1), n_classes)
    precision, recall, f1 = per_class_prf(cm)
    support = cm.sum(axis=1)
    report: dict[str, Any] = {
        "n": int(cm.sum()),
        "class_names": list(class_names),
        "accuracy": accuracy(cm),
        "macro_f1": macro_f1(cm),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.tolist(),
        "ece": expected_calibration_error(p, true),
        "reliability": reliability(p, true),
        "eer": None,
        "eer_threshold": None,
        "eer_interval": None,
        "auc": None,
        "notes": [],
    }
    is_bonafide = true == bonafide_index
    bonafide_score = p[:, bonafide_index]
    if is_bonafide.all() or not is_bonafide.any():
        side = "bona fide" if is_bonafide.all() else "spoof"
        report["notes"].append(f"Only {side} trials are present, so EER and ROC are undefined.")
        return report
    eer, threshold = compute_eer(bonafide_score[is_bonafide], bonafide_score[~is_bonafide])
    fpr, tpr, thresholds = roc_curve(is_bonafide, bonafide_score)
    auc = float(np.trapezoid(tpr, fpr))
    keep = downsample_curve(fpr, tpr)
    interval = None
    if groups is not None:
        units, unit = drawing_units(groups, speakers, is_bonafide)
        interval = eer_interval(bonafide_score, is_bonafide, units, unit=unit)
    report.update(
        eer=eer,
        eer_threshold=threshold,
        eer_interval=None if interval is None else interval.to_dict(),
        auc=auc,
        roc={
            "fpr": fpr[keep].tolist(),
            "tpr": tpr[keep].tolist(),
            "thresholds": [_finite_or_none(t) for t in thresholds[keep]],
            "auc": auc,
        },
    )
    return report
