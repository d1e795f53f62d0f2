"""Judge a stored model on a dataset: a cross-dataset test, or its own validation split again.

Every item is scored through the model's own preprocessing (its feature spec, its clip length),
so a model can be tested on any dataset, whatever features that dataset's images were rendered
with. The report is :func:`fakevoice.metrics.classification_report` plus the EER against each
generator and at each noise level; the per-item scores come with it for a CSV. Evaluations are not
verdicts: nothing is written to the actor's history.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from fakevoice.errors import DatasetError, FakeVoiceError, InvalidSpecError
from fakevoice.services.datasets import dataset_path
from fakevoice.services.verdicts import detector_for, get_model
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor

logger = logging.getLogger(__name__)

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

    def judged_scores(self) -> pd.DataFrame:
        """The rows the pooled figures rest on: every item of a two-class model's test, only
        those of classes a multi-class model has (its test also scores the generators it has no
        class for, in the EER per generator; the report's ``unseen``)."""
        names = list(self.report.get("class_names") or [])
        if len(names) <= 2:
            return self.scores
        return self.scores[self.scores["class"].astype(str).isin({*names, "bonafide"})]

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


def balanced_sample(frame: pd.DataFrame, cap: int, seed: int = 0) -> pd.DataFrame:
    """At most ``cap`` items of ``frame`` (the dataset's order kept): half human and half machine
    where it has enough of each, the machine half shared evenly among the generators (a class
    with too few gives its share to the others). A random sample of a set with few human items
    would leave an EER resting on a handful of them.
    """
    if len(frame) <= cap:
        return frame
    human = frame[frame["class"] == "bonafide"]
    machine = frame[frame["class"] != "bonafide"]
    n_human = min(len(human), max(cap // 2, cap - len(machine)))
    available = {str(name): int(n) for name, n in machine["class"].value_counts().items()}
    quota = _even_shares(available, cap - n_human)
    parts = [human.sample(n=n_human, random_state=seed)] + [
        machine[machine["class"] == name].sample(n=count, random_state=seed)
        for name, count in quota.items()
        if count
    ]
    return pd.concat(parts).sort_index()


def _even_shares(available: dict[str, int], total: int) -> dict[str, int]:
    """``total`` split as evenly as possible among classes holding ``available`` items each."""
    shares = dict.fromkeys(available, 0)
    left = min(total, sum(available.values()))
    while left > 0:
        open_classes = sorted(c for c in available if shares[c] < available[c])
        each = max(1, left // len(open_classes))
        for name in open_classes:
            take = min(each, available[name] - shares[name], left)
            shares[name] += take
            left -= take
            if left == 0:
                break
    return shares


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
    from fakevoice.artefacts import eer_item_counts, generator_eers, noise_eers
    from fakevoice.datasets.fingerprints import TRAINING_AUDIO, items_heard, valid_fingerprints
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
    trained = own_train_spec(detector.manifest, dataset)
    training_items: set[str] | None = set()
    if trained is not None:
        if split == "valid":
            own_split = prepare_data(TrainSpec.from_dict(trained), get_settings().dataset_dir)
            frame, used = own_split.valid, "valid"
        else:
            training_items = training_items_of(trained)
    available = len(frame)
    cap = min(limit or MAX_EVALUATE_ITEMS, MAX_EVALUATE_ITEMS)
    if len(frame) > cap:
        frame = balanced_sample(frame, cap)
    # Items the model learnt from flatter every figure (and a calibration fitted on them): those
    # of its training split when this is its dataset as it was, else those whose audio it heard
    # (another dataset built from the same recordings, or its own changed since).
    trained_on = (
        None
        if training_items is None
        else int(frame["item"].astype(str).isin(training_items).sum())
    )
    trained_on_basis = "items"
    heard = valid_fingerprints(detector.manifest.get(TRAINING_AUDIO))
    if heard is not None and (trained is None or training_items is None):
        trained_on = items_heard(folder, frame, heard)
        trained_on_basis = "audio"
    names = detector.class_names
    bonafide_index = detector.bonafide_index
    targets: list[int] = []
    probs: list[list[float]] = []
    utterances: list[str] = []  # the EER's interval draws whole utterances, or speakers
    speakers: list[str] = []
    typical: list[float | None] = []  # each item's typicality (None: a model without reference)
    rows: list[dict[str, Any]] = []
    records = cast(list[dict[str, Any]], frame.to_dict("records"))
    unseen: dict[str, int] = {}  # items of generators a multi-class model has no class for
    for done, row in enumerate(records, start=1):
        label = str(row["class"])
        target = target_index(label, names, bonafide_index)
        verdict = detector.predict_samples(load_item_waveform(folder, row), 16000)
        item_probs = [verdict.probabilities[n] for n in names]
        if target >= 0:
            targets.append(target)
            utterances.append(str(row["utterance"]))
            speakers.append(str(row["speaker"]))
            typical.append(verdict.typicality)
            probs.append(item_probs)
        else:
            unseen[label] = unseen.get(label, 0) + 1
        rows.append(
            {
                "item": str(row["item"]),
                "speaker": str(row["speaker"]),
                "class": label,
                "noise": str(row["noise"]),
                "p_human": verdict.p_human,
                "predicted": names[int(np.argmax(item_probs))],
                **dict(zip(probability_columns(names), item_probs, strict=True)),
            }
        )
        if on_progress is not None:
            on_progress(done, len(records))
    if not targets:
        raise DatasetError(f"Dataset {dataset!r} has no item this model can be judged on.")
    scores = np.asarray(probs)
    report = classification_report(
        np.asarray(targets), scores, names, bonafide_index, groups=utterances, speakers=speakers
    )
    table = pd.DataFrame(rows, columns=[*SCORE_COLUMNS, *probability_columns(names)])
    # Human against each generator and at each noise level, every item scored: a generator the
    # model has no class for is still machine speech, and how it does there is the point of a
    # test. The pooled figures above are on the classes the model knows (``unseen``: the rest).
    human = table["p_human"].to_numpy(dtype=np.float64)
    classes = table["class"].tolist()
    report["generator_eer"] = generator_eers(human, classes)
    report["noise_eer"] = noise_eers(human, classes, table["noise"].tolist())
    report["eer_items"] = eer_item_counts(classes, table["noise"].tolist())
    report["unseen"] = unseen
    report["trained_on"] = trained_on
    report["trained_on_basis"] = trained_on_basis
    report["unfamiliar"] = unfamiliar_shares(typical, [t == bonafide_index for t in targets])
    report.update(
        {
            "dataset": dataset,
            "split": used,
            "items_available": available,
            "model": {"id": model.id, "name": model.name},
        }
    )
    return DatasetEvaluation(json.loads(json.dumps(report, default=float)), table)


def unfamiliar_shares(typicality: list[float | None], human: list[bool]) -> dict[str, Any] | None:
    """How much of a test the model finds unlike its own data: the share of its human and of its
    machine items whose typicality is under :data:`~fakevoice.metrics.familiarity.UNFAMILIAR`
    (:mod:`fakevoice.metrics.familiarity`), and the items each share rests on. A cross-dataset
    test on audio the model finds unfamiliar measures it out of its depth. None for a model
    without a familiarity reference."""
    from fakevoice.metrics.familiarity import UNFAMILIAR

    if not typicality or any(t is None for t in typicality):
        return None
    values = np.asarray(typicality, dtype=np.float64)
    is_human = np.asarray(human, dtype=bool)
    shares: dict[str, Any] = {"below": UNFAMILIAR}
    for name, chosen in (("human", is_human), ("machine", ~is_human)):
        n = int(chosen.sum())
        shares[name] = float((values[chosen] < UNFAMILIAR).mean()) if n else None
        shares[f"{name}_items"] = n
    return shares


def own_train_spec(manifest: dict[str, Any], dataset: str) -> dict[str, Any] | None:
    """The recipe a model (its manifest) was trained with when ``dataset`` is the dataset it was
    trained on (by name), else None."""
    trained = manifest.get("train_spec")
    return trained if isinstance(trained, dict) and trained.get("dataset") == dataset else None


def training_items_of(train_spec: dict[str, Any]) -> set[str] | None:
    """The items of a model's training split, worked out again from its recipe on the dataset
    of that name as it is now; None when that cannot be done (the dataset changed since: other
    speakers or classes, too few items), when it is unknown whether a test holds any."""
    from fakevoice.training_data import prepare_data
    from fakevoice.trainspec import TrainSpec

    try:
        data = prepare_data(TrainSpec.from_dict(train_spec), get_settings().dataset_dir)
    except FakeVoiceError as error:
        logger.info("the training split of %s cannot be worked out again: %s", train_spec, error)
        return None
    return set(data.train["item"].astype(str))


def trained_on_words(report: dict[str, Any]) -> str | None:
    """A warning when a test holds items the model was trained on (None when it holds none)."""
    count = report.get("trained_on")
    if report.get("trained_on", 0) is None:
        return (
            "This is the dataset the model was trained on, but it changed since, so which of "
            "its items the model learnt from is unknown: its figures here may be flattered."
        )
    if not isinstance(count, int) or count <= 0:
        return None
    if report.get("trained_on_basis") == "audio":
        return (
            f"{count} of the {report.get('n', '?')} items tested have the same audio as clips "
            "this model was trained on (a dataset built from the same recordings, perhaps with "
            "other noise): its figures here are flattered. Test it on recordings it has not heard."
        )
    return (
        f"{count} of the {report.get('n', '?')} items tested were in this model's training split: "
        "its figures here are flattered. Test it on its validation split (valid) or on another "
        "dataset."
    )


def unseen_words(unseen: object) -> str | None:
    """The report's ``unseen`` (items of generators a multi-class model has no class for) in a
    sentence; None when there were none."""
    if not isinstance(unseen, dict) or not unseen:
        return None
    listed = ", ".join(f"{name} ({count})" for name, count in sorted(unseen.items()))
    total = sum(int(count) for count in unseen.values())
    return (
        f"{total} items of generators this model has no class for ({listed}) are scored as "
        "machine speech in the EER per generator and per noise level, not in the pooled "
        "figures, which cover the classes it was trained on."
    )


def unfamiliar_words(shares: object) -> str | None:
    """:func:`unfamiliar_shares` in a sentence (None when the report has none)."""
    if not isinstance(shares, dict):
        return None
    parts = [
        f"{100 * shares[name]:.0f} % of the {shares[f'{name}_items']} {name} items"
        for name in ("human", "machine")
        if isinstance(shares.get(name), float)
    ]
    if not parts:
        return None
    return (
        f"Unlike the model's own data (typicality under {shares.get('below', 0.001):g}): "
        + " and ".join(parts)
        + ". Where that share is large, these figures say how the model does out of its depth."
    )
