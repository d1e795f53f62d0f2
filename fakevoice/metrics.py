"""Detection and classification metrics: EER, min t-DCF, ROC / AUC, confusion matrix, P / R / F1.

Plain numpy, no scikit-learn. Scores follow the ASVspoof convention: **higher = more bona fide**.
EER and min t-DCF reproduce the official ASVspoof 2019 evaluation code (``eval_metrics.py`` of the
challenge): the detection-error curve is built by sorting all scores, a trial is accepted as bona
fide when its score is *above* the threshold, the EER is taken where ``|FRR - FAR|`` is smallest,
and the t-DCF is the 2019 definition of Kinnunen et al. with the ASV system fixed at its own EER
threshold. On the published RawGAT-ST eval scores this gives EER 1.060135 % and min t-DCF 0.033539.

The parsers for the challenge's score files and the report built from them are in
:mod:`fakevoice.asvspoof_scores`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from fakevoice.errors import InvalidSpecError

logger = logging.getLogger(__name__)

MAX_ROC_POINTS = 200


# --- input checks --------------------------------------------------------------------------------


def _as_scores(scores: Any, name: str) -> np.ndarray:
    """``scores`` as a 1-D float64 array; InvalidSpecError when empty or holding NaN."""
    array = np.asarray(scores, dtype=np.float64).ravel()
    if array.size == 0:
        raise InvalidSpecError(f"The {name} scores are empty: at least one score is needed.")
    n_nan = int(np.isnan(array).sum())
    if n_nan:
        raise InvalidSpecError(
            f"The {name} scores contain {n_nan} NaN value(s) out of {array.size}; "
            "the model or score file produced invalid numbers."
        )
    return array


def _as_binary_labels(labels: Any, n_scores: int) -> np.ndarray:
    """``labels`` as a boolean array (True = positive); InvalidSpecError unless both classes occur."""
    array = np.asarray(labels).ravel()
    if array.size != n_scores:
        raise InvalidSpecError(f"Got {array.size} labels for {n_scores} scores; they must match.")
    if array.dtype != np.bool_:
        if not np.isin(array, (0, 1)).all():
            raise InvalidSpecError("Labels must be 0 / 1 or True / False for a binary ROC curve.")
        array = array.astype(bool)
    if array.all() or not array.any():
        raise InvalidSpecError(
            "Only one class is present in the labels; a ROC curve needs both positives and "
            "negatives."
        )
    return array


# --- EER ---------------------------------------------------------------------------------------


def compute_det_curve(
    bonafide_scores: Any, spoof_scores: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every threshold, as the ASVspoof 2019 evaluation code does.

    Args:
        bonafide_scores: ``(n_bonafide,)`` scores of bona fide (target) trials.
        spoof_scores: ``(n_spoof,)`` scores of spoof (non-target) trials.

    Returns:
        ``frr``, ``far``, ``thresholds``, each ``(n_bonafide + n_spoof + 1,)``: at ``thresholds[i]``
        a trial with score ``> thresholds[i]`` is accepted as bona fide, ``frr[i]`` is the fraction
        of bona fide trials rejected and ``far[i]`` the fraction of spoof trials accepted. The first
        threshold lies just below every score (``frr = 0``, ``far = 1``).

    Raises:
        InvalidSpecError: an array is empty or holds NaN.
    """
    bonafide = _as_scores(bonafide_scores, "bona fide")
    spoof = _as_scores(spoof_scores, "spoof")
    all_scores = np.concatenate((bonafide, spoof))
    is_bonafide = np.concatenate((np.ones(bonafide.size), np.zeros(spoof.size)))
    # A stable sort keeps tied bona fide trials before tied spoofs, exactly like the official code.
    order = np.argsort(all_scores, kind="mergesort")
    bonafide_at_or_below = np.cumsum(is_bonafide[order])
    spoof_above = spoof.size - (np.arange(1, all_scores.size + 1) - bonafide_at_or_below)
    frr = np.concatenate(([0.0], bonafide_at_or_below / bonafide.size))
    far = np.concatenate(([1.0], spoof_above / spoof.size))
    thresholds = np.concatenate(([all_scores[order[0]] - 0.001], all_scores[order]))
    return frr, far, thresholds


def compute_eer(bonafide_scores: Any, spoof_scores: Any) -> tuple[float, float]:
    """Equal error rate of a detector whose higher scores mean more bona fide.

    Args:
        bonafide_scores: ``(n_bonafide,)`` scores of bona fide trials (any real scale).
        spoof_scores: ``(n_spoof,)`` scores of spoof trials.

    Returns:
        ``(eer, threshold)``: the EER as a fraction in ``[0, 1]`` (the mean of FRR and FAR at the
        threshold where they are closest) and that threshold (accept as bona fide when
        ``score > threshold``).

    Raises:
        InvalidSpecError: an array is empty or holds NaN.
    """
    frr, far, thresholds = compute_det_curve(bonafide_scores, spoof_scores)
    index = int(np.argmin(np.abs(frr - far)))
    return float((frr[index] + far[index]) / 2), float(thresholds[index])


# --- t-DCF -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TDCFCostModel:
    """Priors and costs of the tandem detection cost function (ASVspoof 2019 evaluation plan).

    Attributes:
        p_spoof: prior of a spoofing attack.
        p_target: prior of a target (genuine, same-speaker) trial.
        p_nontarget: prior of a zero-effort impostor; the three priors sum to one.
        c_miss_asv: cost of the ASV system rejecting a target speaker.
        c_fa_asv: cost of the ASV system accepting a non-target speaker.
        c_miss_cm: cost of the countermeasure rejecting a target speaker.
        c_fa_cm: cost of the countermeasure accepting a spoof.
    """

    p_spoof: float = 0.05
    p_target: float = 0.9405
    p_nontarget: float = 0.0095
    c_miss_asv: float = 1.0
    c_fa_asv: float = 10.0
    c_miss_cm: float = 1.0
    c_fa_cm: float = 10.0

    def __post_init__(self) -> None:
        negative = [f.name for f in fields(self) if not getattr(self, f.name) >= 0]
        if negative:
            raise InvalidSpecError(
                f"t-DCF priors and costs must be non-negative numbers; got {', '.join(negative)}."
            )
        total = self.p_spoof + self.p_target + self.p_nontarget
        if abs(total - 1.0) > 1e-9:
            raise InvalidSpecError(
                f"p_spoof + p_target + p_nontarget must sum to 1; got {total:.6g}."
            )


ASVSPOOF2019_COST = TDCFCostModel()


@dataclass(frozen=True)
class ASVErrorRates:
    """Error rates of an ASV system at one fixed threshold (all fractions in ``[0, 1]``).

    Attributes:
        threshold: ASV score threshold (accept when ``score >= threshold``).
        p_fa: fraction of non-target trials accepted.
        p_miss: fraction of target trials rejected.
        p_miss_spoof: fraction of spoof trials rejected.
    """

    threshold: float
    p_fa: float
    p_miss: float
    p_miss_spoof: float


def asv_error_rates(
    asv_target: Any, asv_nontarget: Any, asv_spoof: Any, threshold: float | None = None
) -> ASVErrorRates:
    """ASV error rates at ``threshold``, by default the ASV system's own EER threshold.

    Args:
        asv_target: ``(n_target,)`` ASV scores of target trials.
        asv_nontarget: ``(n_nontarget,)`` ASV scores of non-target (zero-effort impostor) trials.
        asv_spoof: ``(n_spoof,)`` ASV scores of spoof trials.
        threshold: ASV threshold; ``None`` uses the EER threshold of target vs non-target.

    Raises:
        InvalidSpecError: an array is empty or holds NaN.
    """
    target = _as_scores(asv_target, "ASV target")
    nontarget = _as_scores(asv_nontarget, "ASV non-target")
    spoof = _as_scores(asv_spoof, "ASV spoof")
    if threshold is None:
        _, threshold = compute_eer(target, nontarget)
    return ASVErrorRates(
        threshold=float(threshold),
        p_fa=float(np.mean(nontarget >= threshold)),
        p_miss=float(np.mean(target < threshold)),
        p_miss_spoof=float(np.mean(spoof < threshold)),
    )


def compute_tdcf_curve(
    bonafide_cm: Any,
    spoof_cm: Any,
    asv: ASVErrorRates,
    cost_model: TDCFCostModel = ASVSPOOF2019_COST,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised t-DCF (ASVspoof 2019 definition) at every countermeasure threshold.

    ``t-DCF(s) = C1 * Pmiss_cm(s) + C2 * Pfa_cm(s)``, divided by ``min(C1, C2)`` so that a
    countermeasure that accepts or rejects everything scores at least 1, with
    ``C1 = p_target * (c_miss_cm - c_miss_asv * Pmiss_asv) - p_nontarget * c_fa_asv * Pfa_asv`` and
    ``C2 = c_fa_cm * p_spoof * (1 - Pmiss_spoof_asv)``.

    Args:
        bonafide_cm: ``(n_bonafide,)`` countermeasure scores of bona fide trials.
        spoof_cm: ``(n_spoof,)`` countermeasure scores of spoof trials.
        asv: error rates of the ASV system at its fixed threshold.
        cost_model: priors and costs.

    Returns:
        ``(tdcf_norm, thresholds)``, both ``(n_bonafide + n_spoof + 1,)``, thresholds as in
        :func:`compute_det_curve`.

    Raises:
        InvalidSpecError: empty or NaN scores, or ASV error rates that make a weight non-positive.
    """
    p_miss_cm, p_fa_cm, thresholds = compute_det_curve(bonafide_cm, spoof_cm)
    c = cost_model
    c1 = (
        c.p_target * (c.c_miss_cm - c.c_miss_asv * asv.p_miss)
        - c.p_nontarget * c.c_fa_asv * asv.p_fa
    )
    c2 = c.c_fa_cm * c.p_spoof * (1 - asv.p_miss_spoof)
    if c1 <= 0:
        raise InvalidSpecError(
            f"The t-DCF weights are not positive (C1 = {c1:.4g}): the ASV system misses "
            f"{asv.p_miss:.1%} of targets and accepts {asv.p_fa:.1%} of non-targets; check the ASV "
            "scores and their target / nontarget keys."
        )
    if c2 <= 0:
        raise InvalidSpecError(
            "The t-DCF weights are not positive (C2 = 0): the ASV system already rejects every "
            "spoof trial, so a countermeasure cannot be scored against it."
        )
    return (c1 * p_miss_cm + c2 * p_fa_cm) / min(c1, c2), thresholds


def compute_min_tdcf(
    bonafide_cm: Any,
    spoof_cm: Any,
    asv_target: Any,
    asv_nontarget: Any,
    asv_spoof: Any,
    cost_model: TDCFCostModel = ASVSPOOF2019_COST,
) -> tuple[float, float]:
    """Minimum normalised t-DCF of a countermeasure in tandem with an ASV system.

    The ASV system is fixed at its EER threshold (target vs non-target), as in ASVspoof 2019.

    Args:
        bonafide_cm: ``(n_bonafide,)`` countermeasure scores of bona fide trials (higher = bona fide).
        spoof_cm: ``(n_spoof,)`` countermeasure scores of spoof trials.
        asv_target: ``(n_target,)`` ASV scores of target trials.
        asv_nontarget: ``(n_nontarget,)`` ASV scores of non-target trials.
        asv_spoof: ``(n_asv_spoof,)`` ASV scores of spoof trials.
        cost_model: priors and costs, by default those of ASVspoof 2019.

    Returns:
        ``(min_tdcf, threshold)``: the smallest normalised t-DCF (0 is perfect, 1 is no better than
        a countermeasure that accepts or rejects everything) and the countermeasure threshold that
        reaches it (accept as bona fide when ``score > threshold``).

    Raises:
        InvalidSpecError: an array is empty or holds NaN, or the ASV system is unusable.
    """
    asv = asv_error_rates(asv_target, asv_nontarget, asv_spoof)
    return curve_minimum(*compute_tdcf_curve(bonafide_cm, spoof_cm, asv, cost_model))


def curve_minimum(curve: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    """The smallest value of a cost curve and its threshold (the first one on ties)."""
    index = int(np.argmin(curve))
    return float(curve[index]), float(thresholds[index])


# --- ROC ---------------------------------------------------------------------------------------


def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic at every distinct score.

    Args:
        labels: ``(n,)`` 1 / True for positives, 0 / False for negatives.
        scores: ``(n,)`` scores, higher = more likely positive.

    Returns:
        ``fpr``, ``tpr``, ``thresholds``, each ``(n_distinct + 1,)``: a trial is called positive
        when ``score >= thresholds[i]``; thresholds decrease and the first is ``+inf``
        (``fpr = tpr = 0``), the last is the lowest score (``fpr = tpr = 1``).

    Raises:
        InvalidSpecError: empty or NaN scores, labels not binary, or only one class present.
    """
    values = _as_scores(scores, "ROC")
    positive = _as_binary_labels(labels, values.size)
    order = np.argsort(-values, kind="mergesort")
    values, positive = values[order], positive[order]
    # The last index of each run of equal scores: ties move the curve diagonally in one step.
    last_of_run = np.r_[np.flatnonzero(np.diff(values)), values.size - 1]
    true_pos = np.cumsum(positive)[last_of_run]
    false_pos = (last_of_run + 1) - true_pos
    tpr = np.r_[0.0, true_pos / true_pos[-1]]
    fpr = np.r_[0.0, false_pos / false_pos[-1]]
    return fpr, tpr, np.r_[np.inf, values[last_of_run]]


def roc_auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve (ties count one half), in ``[0, 1]``.

    Args:
        labels: ``(n,)`` 1 / True for positives, 0 / False for negatives.
        scores: ``(n,)`` scores, higher = more likely positive.

    Raises:
        InvalidSpecError: as :func:`roc_curve`.
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def downsample_curve(x: np.ndarray, y: np.ndarray, max_points: int = MAX_ROC_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` points spread evenly along a curve's length.

    The first and last points are always kept, so the shape and end points of a ROC curve survive.

    Args:
        x: ``(n,)`` x coordinates (e.g. false-positive rate).
        y: ``(n,)`` y coordinates (e.g. true-positive rate).
        max_points: the most points to keep (at least 2).

    Returns:
        ``(m,)`` increasing indices into ``x`` and ``y``, ``m <= max_points``.
    """
    if max_points < 2:
        raise InvalidSpecError(f"max_points must be at least 2; got {max_points}.")
    if x.size <= max_points:
        return np.arange(x.size)
    length = np.r_[0.0, np.cumsum(np.hypot(np.diff(x), np.diff(y)))]
    targets = np.linspace(0.0, length[-1], max_points)
    indices = np.searchsorted(length, targets, side="left")
    return np.unique(np.r_[0, np.clip(indices, 0, x.size - 1), x.size - 1])


# --- classification ------------------------------------------------------------------------------


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
    y_true: Any, probs: Any, class_names: Sequence[str], bonafide_index: int = 0
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

    Returns:
        A JSON-able dict: ``n``, ``class_names``, ``accuracy``, ``macro_f1``, ``per_class``
        (name -> precision, recall, f1, support), ``confusion_matrix`` (list of rows, true x
        predicted), ``eer`` (fraction) and ``eer_threshold`` (on ``P(bonafide)``), ``auc``,
        ``roc`` (``fpr``, ``tpr``, ``thresholds`` with at most 200 points; the first threshold,
        ``+inf``, is written as ``None``; and ``auc``) and ``notes``.

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
        "eer": None,
        "eer_threshold": None,
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
    report.update(
        eer=eer,
        eer_threshold=threshold,
        auc=auc,
        roc={
            "fpr": fpr[keep].tolist(),
            "tpr": tpr[keep].tolist(),
            "thresholds": [_finite_or_none(t) for t in thresholds[keep]],
            "auc": auc,
        },
    )
    return report
