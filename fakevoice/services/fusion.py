"""Several models' tests on the same items, side by side (:func:`evaluations_table`) and
combined: their scores fused into one system.

ASVspoof combines systems at the score level. Here two ways, on the items every model scored:
the plain mean of their log-odds of human (nothing fitted, so nothing to hold out), and a
logistic regression on those log-odds whose weights are learnt on some utterances and scored on
the others (:mod:`fakevoice.metrics.logistic`), so its EER is not flattered by its own fit. The
correlation of the models' scores says how much any fusion can gain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fakevoice.datasets.manifest import utterance_of
from fakevoice.errors import InvalidSpecError
from fakevoice.services.evaluation import DatasetEvaluation

MIN_FUSED_ITEMS = 20  # shared items below which a fusion's EER says too little
LOGIT_FLOOR = 1e-6  # P(human) is clipped into [floor, 1 - floor] before its log-odds


@dataclass(frozen=True)
class Fusion:
    """Several models' scores on the items they all scored, fused by the mean of their log-odds
    of human (score-level fusion, as systems are combined in ASVspoof).

    Attributes:
        models: the fused models' names (``name (id)`` where two share a name).
        items: the items all of them scored.
        eer / threshold: the fused score's EER and its threshold (on the mean log-odds).
        auc: the area under its ROC (bona fide vs spoof).
        generator_eer / noise_eer: its EER against each generator and at each noise level.
        correlation: how alike the models' log-odds are on those items (Pearson, models x
            models): the lower, the more a fusion can gain. NaN off the diagonal for a model
            whose scores are all the same (it has no correlation: never 0, which would read as
            a model unlike the others); 1 on the diagonal.
        learned: the fusion with learnt weights, when it can be fitted: a logistic regression on
            the models' log-odds fitted on some utterances and scored on the others (up to 5
            folds), its ``eer`` and ``auc`` on those held-out scores, and the ``weights`` of a
            fit on every item (how much each model counts); None otherwise.
    """

    models: list[str]
    items: int
    eer: float
    threshold: float
    auc: float
    generator_eer: dict[str, float]
    noise_eer: dict[str, float]
    correlation: pd.DataFrame
    learned: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return "fusion: " + " + ".join(self.models)

    @property
    def learned_label(self) -> str:
        return "fusion, learnt weights: " + " + ".join(self.models)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the correlation as ``{model: {model: r}}``, None where it has none)."""
        return {
            "method": "mean of the models' log-odds of human",
            "models": list(self.models),
            "items": self.items,
            "eer": self.eer,
            "threshold": self.threshold,
            "auc": self.auc,
            "generator_eer": dict(self.generator_eer),
            "noise_eer": dict(self.noise_eer),
            "correlation": {
                str(k): {str(c): None if pd.isna(v) else round(float(v), 4) for c, v in row.items()}
                for k, row in self.correlation.iterrows()
            },
            "learned": self.learned,
        }


def shared_items(
    evaluations: list[DatasetEvaluation],
) -> tuple[list[str], list[pd.DataFrame], pd.Index]:
    """Distinct models' labels (``name (id)`` where two share a name), their score tables
    indexed by item, and the items every one of them scored (in the first table's order)."""
    by_model = {e.report["model"]["id"]: e for e in evaluations}  # one model counts once
    evaluations = list(by_model.values())
    names = [e.report["model"]["name"] for e in evaluations]
    labels = [
        f"{e.report['model']['name']} ({e.report['model']['id']})" if names.count(n) > 1 else n
        for e, n in zip(evaluations, names, strict=True)
    ]
    # The items each model's pooled figures rest on: comparisons and the fusion stand beside them.
    tables = [e.judged_scores().drop_duplicates("item").set_index("item") for e in evaluations]
    shared = tables[0].index if tables else pd.Index([])
    for table in tables[1:]:
        shared = shared.intersection(table.index, sort=False)
    return labels, tables, shared


def fuse(evaluations: list[DatasetEvaluation]) -> Fusion | None:
    """The fusion of two or more models' tests on the items they all scored; None for fewer
    (distinct) models, fewer than :data:`MIN_FUSED_ITEMS` shared items, or shared items of one
    class only.
    """
    from fakevoice.artefacts import generator_eers, noise_eers
    from fakevoice.metrics import compute_eer
    from fakevoice.metrics.detection import roc_auc

    labels, tables, shared = shared_items(evaluations)
    if len(tables) < 2 or len(shared) < MIN_FUSED_ITEMS:
        return None
    first = tables[0].loc[shared]
    classes = first["class"].astype(str).tolist()
    human = np.asarray(classes) == "bonafide"
    if human.all() or not human.any():
        return None
    odds = np.column_stack(
        [_log_odds(table.loc[shared, "p_human"].to_numpy(dtype=np.float64)) for table in tables]
    )
    fused = odds.mean(axis=1)
    eer, threshold = compute_eer(fused[human], fused[~human])
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant score has no correlation
        r = np.corrcoef(odds, rowvar=False)
    np.fill_diagonal(r, 1.0)  # a model is its own likeness, even with constant scores
    correlation = pd.DataFrame(r, index=labels, columns=labels)
    groups = np.asarray([utterance_of(str(item)) for item in shared])
    return Fusion(
        models=labels,
        items=len(shared),
        eer=eer,
        threshold=threshold,
        auc=roc_auc(human, fused),
        generator_eer=generator_eers(fused, classes),
        noise_eer=noise_eers(fused, classes, first["noise"].astype(str).tolist()),
        correlation=correlation,
        learned=_learned_fusion(odds, human, groups, labels),
    )


def _with_constant(train: np.ndarray, odds: np.ndarray) -> np.ndarray:
    return np.hstack([odds, np.ones((odds.shape[0], 1))])


def _learned_fusion(
    odds: np.ndarray, human: np.ndarray, groups: np.ndarray, labels: list[str]
) -> dict[str, Any] | None:
    """A logistic regression on the models' log-odds, cross-fitted by utterance (see
    :class:`Fusion`), or None when the utterances cannot be split into folds with both kinds."""
    from fakevoice.metrics import compute_eer
    from fakevoice.metrics.detection import roc_auc
    from fakevoice.metrics.logistic import fit_logistic, group_folds, held_out_scores

    y = human.astype(np.float64)
    folds = group_folds(groups)
    if folds is None:
        return None
    held = held_out_scores(odds, y, folds, _with_constant)
    if held is None:
        return None
    weights = fit_logistic(_with_constant(odds, odds), y)[:-1]  # the constant is not a model
    return {
        "method": "logistic regression on the models' log-odds of human, fitted on some "
        "utterances and scored on the others",
        "folds": int(np.unique(folds).size),
        "eer": compute_eer(held[human], held[~human])[0],
        "auc": roc_auc(human, held),
        "weights": {label: round(float(w), 4) for label, w in zip(labels, weights, strict=True)},
    }


def _log_odds(p_human: np.ndarray) -> np.ndarray:
    p = np.clip(p_human, LOGIT_FLOOR, 1.0 - LOGIT_FLOOR)
    return np.asarray(np.log(p) - np.log1p(-p))


def fused_p_human(p_humans: list[float]) -> float:
    """Several models' P(human) of one clip combined as :func:`fuse` combines their tests: the
    mean of their log-odds, back as a probability."""
    if not p_humans:
        raise InvalidSpecError("Fusing needs at least one model's P(human).")
    mean = float(_log_odds(np.asarray(p_humans, dtype=np.float64)).mean())
    return 1.0 / (1.0 + math.exp(-mean))


def evaluations_table(
    evaluations: list[DatasetEvaluation], fusion: Fusion | None = None
) -> pd.DataFrame:
    """Several models' tests on one dataset, a row each: the model, how many items, accuracy,
    macro F1, EER and AUC, then ``eer@<noise level>`` (clean first) and ``eer@<generator>``;
    with ``fusion`` (their :func:`fuse`), a row for it and, when it could be fitted, one for its
    learnt weights (no accuracy: a fusion has no classes, only a score)."""
    from fakevoice.services.comparison import eer_columns, report_eers

    rows = [
        {
            "model": e.report["model"]["name"],
            "model_id": e.report["model"]["id"],
            "items": e.report["n"],
            "accuracy": e.report.get("accuracy"),
            "macro_f1": e.report.get("macro_f1"),
            "eer": e.report.get("eer"),
            "auc": e.report.get("auc"),
            **report_eers(e.report),
        }
        for e in evaluations
    ]
    if fusion is not None:
        rows.append(
            {
                "model": fusion.label,
                "model_id": None,
                "items": fusion.items,
                "accuracy": None,
                "macro_f1": None,
                "eer": fusion.eer,
                "auc": fusion.auc,
                **report_eers(fusion.to_dict()),
            }
        )
        if fusion.learned is not None:
            rows.append(
                {
                    "model": fusion.learned_label,
                    "model_id": None,
                    "items": fusion.items,
                    "accuracy": None,
                    "macro_f1": None,
                    "eer": fusion.learned["eer"],
                    "auc": fusion.learned["auc"],
                }
            )
    columns = ["model", "model_id", "items", "accuracy", "macro_f1", "eer", "auc"]
    columns += eer_columns(key for row in rows for key in row)
    return pd.DataFrame(rows, columns=columns)
