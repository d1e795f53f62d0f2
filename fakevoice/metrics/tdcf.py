"""Tandem detection cost function (t-DCF) of ASVspoof 2019: the spoofing countermeasure judged
together with a fixed speaker-verification (ASV) system, as Kinnunen et al. define it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from fakevoice.errors import InvalidSpecError
from fakevoice.metrics.detection import _as_scores, compute_det_curve, compute_eer


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
