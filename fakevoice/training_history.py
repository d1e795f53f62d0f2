"""A training run's history: one :class:`EpochRecord` per epoch, and the rules read from it.

An epoch's figures come from its validation pass (:func:`epoch_scores`); the best epoch and a
stall go by the EERs measured (:func:`best_epoch`, :func:`is_best_epoch`, :func:`has_stalled`). Plain numpy, no
fastai: a run's checkpoint state is read back into records without the training engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fakevoice import metrics


@dataclass(frozen=True)
class EpochRecord:
    """One row of a run's history (losses are mean cross-entropy; EER is a fraction, NaN when the
    epoch could not measure it)."""

    epoch: int
    train_loss: float
    valid_loss: float
    accuracy: float
    macro_f1: float
    eer: float
    seconds: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "valid_loss": self.valid_loss,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "eer": self.eer,
            "seconds": self.seconds,
        }


def epoch_scores(probs: np.ndarray, targets: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, macro F1 and EER (bona fide = class 0) of one validation pass.

    Args:
        probs: Class probabilities, ``(items, n_classes)``.
        targets: Class indices, ``(items,)``.
        n_classes: How many classes the model has.

    Returns:
        ``accuracy``, ``macro_f1`` and ``eer`` as fractions; the EER is NaN when the pass lacks
        bona fide or spoofed items.
    """
    predictions = probs.argmax(axis=1)
    cm = metrics.confusion_matrix(targets, predictions, n_classes)
    bonafide = targets == 0
    if bonafide.any() and (~bonafide).any():
        eer, _ = metrics.compute_eer(probs[bonafide, 0], probs[~bonafide, 0])
    else:
        eer = math.nan
    return {
        "accuracy": float(metrics.accuracy(cm)),
        "macro_f1": float(metrics.macro_f1(cm)),
        "eer": float(eer),
    }


def lowest_eer(history: list[EpochRecord]) -> float | None:
    """The lowest EER of ``history``; None when no epoch measured one (all NaN, or none).

    An epoch's EER is NaN when it could not be measured (a validation split without one of the
    two kinds): such an epoch is never the best, and ``min`` over NaN answers by the order.
    """
    return min((r.eer for r in history if not math.isnan(r.eer)), default=None)


def best_epoch(eers: Sequence[float | None]) -> int | None:
    """Where in ``eers`` (a run's epoch EERs, in order) the epoch save-best keeps is: the one with
    the lowest EER, the last of equals (each new best overwrites the checkpoint); None when no
    epoch measured one (None or NaN), as then no best was saved."""
    measured = [(eer, i) for i, eer in enumerate(eers) if eer is not None and not math.isnan(eer)]
    if not measured:
        return None
    lowest = min(eer for eer, _ in measured)
    return max(i for eer, i in measured if eer == lowest)


def is_best_epoch(history: list[EpochRecord]) -> bool:
    """Whether the last epoch of ``history`` has the lowest EER so far (ties with an earlier one
    count); never for an epoch without an EER. The run's readers find the kept epoch by the same
    rule (:func:`best_epoch`)."""
    return best_epoch([r.eer for r in history]) == len(history) - 1


def has_stalled(history: list[EpochRecord], patience: int) -> bool:
    """Whether the last ``patience`` epochs brought no EER below the lowest before them (an epoch
    without an EER brings none). False while no earlier epoch has an EER: there is nothing to
    improve on, so a run that measures no EER trains all its epochs."""
    if len(history) <= patience:
        return False
    before = lowest_eer(history[:-patience])
    if before is None:
        return False
    recent = lowest_eer(history[-patience:])
    return recent is None or recent >= before
