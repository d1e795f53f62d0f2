"""A run's history: an epoch's figures from its validation pass, the best epoch, a stall."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fakevoice.training_history import EpochRecord, epoch_scores, has_stalled, is_best_epoch


def _history(*eers: float) -> list[EpochRecord]:
    return [EpochRecord(n, 0.5, 0.5, 0.5, 0.5, eer, 1.0) for n, eer in enumerate(eers)]


def test_the_best_epoch_and_a_stall_go_by_the_eers_measured() -> None:
    nan = math.nan
    assert is_best_epoch(_history(nan, 0.3)) and is_best_epoch(_history(0.3, nan, 0.3))
    assert not is_best_epoch(_history(0.2, nan)) and not is_best_epoch(_history(nan))
    assert not is_best_epoch(_history(0.3, nan, 0.2, 0.25))
    assert has_stalled(_history(nan, 0.2, 0.3), 1)  # 0.2 was the best, and 0.3 is no better
    assert has_stalled(_history(0.2, nan, nan), 2)  # epochs without an EER better nothing
    assert not has_stalled(_history(nan, 0.5, 0.4), 1) and not has_stalled(_history(0.2, 0.1), 1)
    assert not has_stalled(_history(nan, nan, nan), 1)  # nothing to better: no stall
    assert not has_stalled(_history(nan, 0.4), 1)  # the first EER betters none
    assert not has_stalled(_history(0.1, 0.2), 2)  # too few epochs yet


def test_epoch_scores_of_a_pass_and_no_eer_without_both_kinds() -> None:
    # Class 0 is bona fide; the third item is a spoof the model takes for human.
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    targets = np.array([0, 0, 1, 2])
    scores = epoch_scores(probs, targets, 3)
    assert scores["accuracy"] == pytest.approx(0.5)  # items 0 and 1 right, 2 and 3 wrong
    assert scores["eer"] == pytest.approx(0.0)  # P(human) still ranks every human above
    assert 0.0 < scores["macro_f1"] < 1.0
    assert math.isnan(epoch_scores(probs[:2], targets[:2], 3)["eer"])  # humans only
