"""Detection and classification metrics: EER, min t-DCF, ROC / AUC, confusion matrix, P / R / F1.

Plain numpy, no scikit-learn. Scores follow the ASVspoof convention: **higher = more bona fide**.
EER and min t-DCF reproduce the official ASVspoof 2019 evaluation code (``eval_metrics.py`` of the
challenge): the detection-error curve is built by sorting all scores, a trial is accepted as bona
fide when its score is *above* the threshold, the EER is taken where ``|FRR - FAR|`` is smallest,
and the t-DCF is the 2019 definition of Kinnunen et al. with the ASV system fixed at its own EER
threshold. On the published RawGAT-ST eval scores this gives EER 1.060135 % and min t-DCF 0.033539.

One module per subject: :mod:`~fakevoice.metrics.detection` (DET curve, EER, ROC, AUC),
:mod:`~fakevoice.metrics.tdcf` (the cost model and min t-DCF) and
:mod:`~fakevoice.metrics.classification` (confusion matrix, P / R / F1 and the report). The
parsers for the challenge's score files and the report built from them are in
:mod:`fakevoice.asvspoof_scores`.
"""

from __future__ import annotations

from fakevoice.metrics.classification import (
    accuracy,
    classification_report,
    confusion_matrix,
    macro_f1,
    per_class_prf,
)
from fakevoice.metrics.detection import (
    MAX_ROC_POINTS,
    compute_det_curve,
    compute_eer,
    downsample_curve,
    roc_auc,
    roc_curve,
)
from fakevoice.metrics.tdcf import (
    ASVSPOOF2019_COST,
    ASVErrorRates,
    TDCFCostModel,
    asv_error_rates,
    compute_min_tdcf,
    compute_tdcf_curve,
    curve_minimum,
)

__all__ = [
    "ASVSPOOF2019_COST",
    "MAX_ROC_POINTS",
    "ASVErrorRates",
    "TDCFCostModel",
    "accuracy",
    "asv_error_rates",
    "classification_report",
    "compute_det_curve",
    "compute_eer",
    "compute_min_tdcf",
    "compute_tdcf_curve",
    "confusion_matrix",
    "curve_minimum",
    "downsample_curve",
    "macro_f1",
    "per_class_prf",
    "roc_auc",
    "roc_curve",
]
