"""Judge a stored model on a dataset: a cross-dataset test, or its own validation split again.

Every item is scored through the model's own preprocessing (its feature spec, its clip length),
so a model can be tested on any dataset, whatever features that dataset's images were rendered
with. The report is :func:`fakevoice.metrics.classification_report` plus the EER against each
generator and at each noise level; the per-item scores come with it for a CSV. Evaluations are not
verdicts: nothing is written to the actor's history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from fakevoice.errors import DatasetError, InvalidSpecError
from fakevoice.services.datasets import dataset_path
from fakevoice.services.verdicts import detector_for, get_model
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor

MAX_EVALUATE_ITEMS = 5000
SPLITS = ("valid", "all")
SCORE_COLUMNS = ("item", "speaker", "class", "noise", "p_human", "predicted")
PROBABILITY_PREFIX = "p:"  # then every class's probability, "p:<class>", in the model's order

Progress = Callable[[int, int], None]
"""Called as ``(items scored, items to score)`` after each item."""


@dataclass(frozen=True)
class DatasetEvaluation:
    """A model's metrics on a dataset, and the score of every item behind them.

    Attributes:
        report: JSON-ready metrics (see :func:`evaluate_on_dataset`).
        scores: one row per scored item: ``item``, ``speaker``, ``class``, ``noise``,
            ``p_human`` (the model's probability of bona fide), ``predicted`` (its top class),
            then ``p:<class>`` for each of the model's classes (tests made before these were
            kept lack them).
    """

    report: dict[str, Any]
    scores: pd.DataFrame

    def scores_csv(self) -> bytes:
        """The per-item scores as CSV (UTF-8)."""
        # Significant digits, not decimals: the tiny probabilities of a confident model matter
        # to a calibration fitted on them.
        return self.scores.to_csv(index=False, float_format="%.8g").encode()

    def probabilities(self) -> np.ndarray | None:
        """Every class's probability per item, ``(n, classes)`` in the model's class order (None
        for a test made before they were kept)."""
        columns = probability_columns(list(self.report.get("class_names") or []))
        if not columns or not set(columns) <= set(self.scores.columns):
            return None
        return self.scores[columns].to_numpy(dtype=np.float64)

    def targets(self, bonafide_index: int) -> np.ndarray:
        """The true class index of each item, as the model's classes count it."""
        names = list(self.report.get("class_names") or [])
        return np.array(
            [target_index(str(c), names, bonafide_index) for c in self.scores["class"]],
            dtype=np.int64,
        )

    def report_json(self) -> bytes:
        """The report as indented JSON (UTF-8)."""
        return (json.dumps(self.report, indent=2) + "\n").encode()


def probability_columns(names: list[str]) -> list[str]:
    """The scores table's columns of every class's probability, ``p:<class>``, in ``names``'
    order."""
    return [f"{PROBABILITY_PREFIX}{name}" for name in names]


def target_index(label: str, names: list[str], bonafide_index: int) -> int:
    """The index of an item's class ``label`` among a model's classes ``names``: for a two-class
    model every spoof is the other class; -1 for a generator a multi-class model never saw (it
    has no column to be scored in)."""
    if len(names) == 2:
        return bonafide_index if label == "bonafide" else 1 - bonafide_index
    if label == "bonafide":
        return bonafide_index
    return names.index(label) if label in names else -1


def evaluate_on_dataset(
    actor: Actor,
    model_id: int,
    dataset: str,
    split: str = "valid",
    *,
    limit: int | None = None,
    on_progress: Progress | None = None,
) -> DatasetEvaluation:
    """Score the items of a dataset (or of the model's validation split) and report metrics.

    Args:
        split: ``"valid"`` uses the validation split the model was trained with when it was
            trained on this dataset (the whole dataset otherwise); ``"all"`` uses every item.
        limit: score at most this many items, a seeded random sample (at most
            :data:`MAX_EVALUATE_ITEMS` in any case).
        on_progress: told after each item how far the scoring is.

    Returns:
        The report (:func:`fakevoice.metrics.classification_report` of the predictions plus
        ``dataset``, ``split`` (what was really used), ``model``, ``items_available``, and the EER
        against each generator (``generator_eer``) and at each noise level (``noise_eer``)) and
        the per-item scores.

    Raises:
        NotFoundError: Unknown model or dataset.
        InvalidSpecError: An unknown split or a limit under 1.
        DatasetError: The dataset has no item the model can be judged on.
    """
    from fakevoice.artefacts import generator_eers, noise_eers
    from fakevoice.datasets.manifest import load_item_waveform, read_manifest
    from fakevoice.metrics import classification_report
    from fakevoice.training_data import prepare_data
    from fakevoice.trainspec import TrainSpec

    if split not in SPLITS:
        raise InvalidSpecError(f"split must be 'valid' or 'all'; got {split!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidSpecError(f"limit must be a whole number of items, at least 1; got {limit!r}")
    model = get_model(actor, model_id)
    detector = detector_for(model)
    folder = dataset_path(dataset, actor=actor)
    frame = read_manifest(folder)
    used = "all"
    trained = detector.manifest.get("train_spec")
    if split == "valid" and isinstance(trained, dict) and trained.get("dataset") == dataset:
        frame = prepare_data(TrainSpec.from_dict(trained), get_settings().dataset_dir).valid
        used = "valid"
    available = len(frame)
    cap = min(limit or MAX_EVALUATE_ITEMS, MAX_EVALUATE_ITEMS)
    if len(frame) > cap:
        frame = frame.sample(n=cap, random_state=0)
    names = detector.class_names
    bonafide_index = detector.bonafide_index
    targets: list[int] = []
    probs: list[list[float]] = []
    utterances: list[str] = []  # the EER's interval draws whole utterances
    rows: list[dict[str, Any]] = []
    records = cast(list[dict[str, Any]], frame.to_dict("records"))
    for done, row in enumerate(records, start=1):
        label = str(row["class"])
        target = target_index(label, names, bonafide_index)
        if target >= 0:
            verdict = detector.predict_samples(load_item_waveform(folder, row), 16000)
            targets.append(target)
            utterances.append(str(row["utterance"]))
            probs.append([verdict.probabilities[n] for n in names])
            rows.append(
                {
                    "item": str(row["item"]),
                    "speaker": str(row["speaker"]),
                    "class": label,
                    "noise": str(row["noise"]),
                    "p_human": verdict.p_human,
                    "predicted": names[int(np.argmax(probs[-1]))],
                    **dict(zip(probability_columns(names), probs[-1], strict=True)),
                }
            )
        if on_progress is not None:
            on_progress(done, len(records))
    if not targets:
        raise DatasetError(f"Dataset {dataset!r} has no item this model can be judged on.")
    scores = np.asarray(probs)
    report = classification_report(
        np.asarray(targets), scores, names, bonafide_index, groups=utterances
    )
    table = pd.DataFrame(rows, columns=[*SCORE_COLUMNS, *probability_columns(names)])
    human = scores[:, bonafide_index]
    classes = table["class"].tolist()
    report["generator_eer"] = generator_eers(human, classes)
    report["noise_eer"] = noise_eers(human, classes, table["noise"].tolist())
    report.update(
        {
            "dataset": dataset,
            "split": used,
            "items_available": available,
            "model": {"id": model.id, "name": model.name},
        }
    )
    return DatasetEvaluation(json.loads(json.dumps(report, default=float)), table)


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
            models): the lower, the more a fusion can gain.
    """

    models: list[str]
    items: int
    eer: float
    threshold: float
    auc: float
    generator_eer: dict[str, float]
    noise_eer: dict[str, float]
    correlation: pd.DataFrame

    @property
    def label(self) -> str:
        return "fusion: " + " + ".join(self.models)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the correlation as ``{model: {model: r}}``)."""
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
                str(k): {str(c): round(float(v), 4) for c, v in row.items()}
                for k, row in self.correlation.iterrows()
            },
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
    tables = [e.scores.drop_duplicates("item").set_index("item") for e in evaluations]
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
    correlation = pd.DataFrame(r, index=labels, columns=labels)
    return Fusion(
        models=labels,
        items=len(shared),
        eer=eer,
        threshold=threshold,
        auc=roc_auc(human, fused),
        generator_eer=generator_eers(fused, classes),
        noise_eer=noise_eers(fused, classes, first["noise"].astype(str).tolist()),
        correlation=correlation.fillna(0.0),
    )


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
    with ``fusion`` (their :func:`fuse`), a last row for it (no accuracy: it has no classes,
    only a score)."""
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
    columns = ["model", "model_id", "items", "accuracy", "macro_f1", "eer", "auc"]
    columns += eer_columns(key for row in rows for key in row)
    return pd.DataFrame(rows, columns=columns)
