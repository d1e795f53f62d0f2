"""Which of several models tested on the same items is better, and whether the test can tell.

Two models' EERs on one test differ by some points; another draw of the same kind of speech
could reverse that. For every pair of models in a test, their EERs on the items both scored are
drawn again together, whole utterances at a time, or whole speakers when the test has enough
(:func:`fakevoice.metrics.bootstrap.drawing_units`): the interval of the difference, and the
share of draws in which the first is lower.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from fakevoice.datasets.manifest import utterance_of
from fakevoice.metrics.bootstrap import (
    EerDifference,
    difference_words,
    drawing_units,
    eer_difference,
)
from fakevoice.services.evaluation import DatasetEvaluation
from fakevoice.services.fusion import shared_items

KEPT_PAIRS = 32  # comparisons kept in a process, the least recently read dropped first
_kept: OrderedDict[Hashable, list[PairedEer]] = OrderedDict()
_kept_lock = threading.Lock()


@dataclass(frozen=True)
class PairedEer:
    """Two models' EER difference on the items both scored.

    Attributes:
        first: The first model's label (in the test's order).
        second: The second's.
        items: Items both scored.
        difference: The EER difference (first - second) with its bootstrap interval.
    """

    first: str
    second: str
    items: int
    difference: EerDifference

    def words(self) -> str:
        return difference_words(self.first, self.second, self.difference.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "second": self.second,
            "items": self.items,
            **self.difference.to_dict(),
            "summary": self.words(),
        }


def paired_eers(
    evaluations: list[DatasetEvaluation], *, against_first: bool = False
) -> list[PairedEer]:
    """Every pair of distinct models of a test (or, ``against_first``, the first against each
    other), on the items both scored (pairs whose shared items hold one class only, or too few
    utterances to draw from, are left out)."""
    labels, tables, _ = shared_items(evaluations)
    indexed = list(enumerate(tables))
    candidates = (
        [(indexed[0], other) for other in indexed[1:]]
        if against_first
        else list(combinations(indexed, 2))
    )
    pairs = []
    for (i, a), (j, b) in candidates:
        shared = a.index.intersection(b.index, sort=False)
        if shared.empty:
            continue
        human = (a.loc[shared, "class"].astype(str) == "bonafide").to_numpy()
        utterances = np.asarray([utterance_of(str(item)) for item in shared])
        speakers = a.loc[shared, "speaker"] if "speaker" in a.columns else None
        groups, unit = drawing_units(utterances, speakers, human)
        difference = eer_difference(
            a.loc[shared, "p_human"].to_numpy(dtype=np.float64),
            b.loc[shared, "p_human"].to_numpy(dtype=np.float64),
            human,
            groups,
            unit=unit,
        )
        if difference is not None:
            pairs.append(PairedEer(labels[i], labels[j], len(shared), difference))
    return pairs


def kept_pairs(
    key: Hashable, evaluations: list[DatasetEvaluation], *, against_first: bool = False
) -> list[PairedEer]:
    """:func:`paired_eers`, kept per ``key`` in this process (the last :data:`KEPT_PAIRS`).

    The draws are the costly part (about half a second a pair on 5,000 items) and written scores
    do not change, so a caller that names them by what identifies them (a test's id and how many
    of its models are done: its results only grow; runs' ids and end times) draws them once,
    however often a page is redrawn or a client polls. The caller has checked that the actor may
    read them before it asks.
    """
    with _kept_lock:
        if key in _kept:
            _kept.move_to_end(key)
            return _kept[key]
    pairs = paired_eers(evaluations, against_first=against_first)
    with _kept_lock:
        _kept[key] = pairs
        while len(_kept) > KEPT_PAIRS:
            _kept.popitem(last=False)
    return pairs


def pairs_of_test(run_id: int, evaluations: list[DatasetEvaluation]) -> list[PairedEer]:
    """Every pair of the models a test (job ``run_id``) has done so far, kept."""
    return kept_pairs(("test", run_id, len(evaluations)), evaluations)
