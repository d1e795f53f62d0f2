"""Detection metrics: the detection-error curve, EER, ROC and AUC (plain numpy).

Scores follow the ASVspoof convention: **higher = more bona fide**; a trial is accepted as bona
fide when its score is *above* the threshold, as in the official ASVspoof 2019 evaluation code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fakevoice.errors import InvalidSpecError

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
    """Miss and false-alarm rates at every threshold, as the ASVspoof 2019 evaluation code does,
    but for scores tied across the classes.

    The official code walks a run of tied scores bona fide trials first (a stable sort), so its
    curve passes through points no threshold gives: all scores equal make an EER of 100 %, and
    a model whose float32 probabilities saturate at 1.0 for human and machine clips alike looks
    worse than it is. Here a run that holds both classes is crossed in a straight line, the
    rates expected when the tie is broken at random; a run of one class, and so any scores
    without such ties (the ASVspoof 2019 known answer included), gives the official curve.

    Args:
        bonafide_scores: ``(n_bonafide,)`` scores of bona fide (target) trials.
        spoof_scores: ``(n_spoof,)`` scores of spoof (non-target) trials.

    Returns:
        ``frr``, ``far``, ``thresholds``, each ``(n_bonafide + n_spoof + 1,)``: at ``thresholds[i]``
        a trial with score ``> thresholds[i]`` is accepted as bona fide, ``frr[i]`` is the fraction
        of bona fide trials rejected and ``far[i]`` the fraction of spoof trials accepted. The first
        threshold is the next float below the lowest score (``frr = 0``, ``far = 1``); under a
        score of ``-inf``, which no threshold accepts, it is ``-inf`` with the rates there.

    Raises:
        InvalidSpecError: an array is empty or holds NaN.
    """
    bonafide = _as_scores(bonafide_scores, "bona fide")
    spoof = _as_scores(spoof_scores, "spoof")
    all_scores = np.concatenate((bonafide, spoof))
    is_bonafide = np.concatenate((np.ones(bonafide.size), np.zeros(spoof.size)))
    order = np.argsort(all_scores, kind="mergesort")
    ranked, truth = all_scores[order], is_bonafide[order] > 0
    bonafide_at_or_below = through_ties(ranked, truth, np.cumsum(truth))
    spoof_above = spoof.size - through_ties(ranked, truth, np.cumsum(~truth))
    # The official code's lowest score - 0.001 is that score itself from about 1e13 on, and -inf
    # under -inf: the first point claimed every trial accepted. The next float down lies below
    # any finite score; nothing lies below -inf, so there the rates are -inf's.
    first = np.nextafter(all_scores[order[0]], -np.inf)
    frr_first = np.count_nonzero(bonafide <= first) / bonafide.size
    far_first = np.count_nonzero(spoof > first) / spoof.size
    frr = np.concatenate(([frr_first], bonafide_at_or_below / bonafide.size))
    far = np.concatenate(([far_first], spoof_above / spoof.size))
    thresholds = np.concatenate(([first], all_scores[order]))
    return frr, far, thresholds


def through_ties(ranked: np.ndarray, truth: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative ``counts`` along ``ranked`` scores, each run of equal scores that holds both
    classes crossed in a straight line (the counts a random order within the tie gives on
    average); other runs keep their counts.

    Args:
        ranked: ``(n,)`` scores in ascending order.
        truth: ``(n,)`` whether each is bona fide.
        counts: ``(..., n)`` cumulative counts (or weights) along ``ranked``, any leading shape.

    Returns:
        ``(..., n)`` float64.
    """
    counts = np.asarray(counts, dtype=np.float64)
    ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), ranked.size - 1]
    starts = np.r_[0, ends[:-1] + 1]
    bonafide_in_run = np.add.reduceat(truth.astype(np.int64), starts)
    mixed = (bonafide_in_run > 0) & (bonafide_in_run < ends - starts + 1)
    if not mixed.any():
        return counts
    spread = counts.copy()
    for start, end in zip(starts[mixed], ends[mixed], strict=True):
        before = counts[..., start - 1 : start] if start else np.zeros(counts.shape[:-1] + (1,))
        steps = np.arange(1, end - start + 2) / (end - start + 1)
        spread[..., start : end + 1] = before + steps * (counts[..., end : end + 1] - before)
    return spread


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
    # Compared, not subtracted: inf - inf is NaN, which would split a run of infinite scores.
    last_of_run = np.r_[np.flatnonzero(values[1:] != values[:-1]), values.size - 1]
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
