"""How far an EER could move on another draw of the same kind of speech: bootstrap intervals.

A test of a few hundred utterances gives an EER that another few hundred would not repeat
exactly. Drawing the test's groups again with replacement and computing the EER of each draw gives
its spread; the middle 95 % of the draws is the percentile interval (Efron). The groups are drawn
whole, since their items are not independent trials: a recording's noisy copies and its
machine-made versions move together, and so do a speaker's recordings. :func:`drawing_units`
chooses speakers when a test has enough of them on both sides (:data:`MIN_SPEAKERS`), so the
interval also says how far the EER could move with other speakers; else utterances. For two models scored on the same items the draws are shared, so
the interval of their EER difference, and the share of draws in which one is lower, say whether
the test can tell them apart (Bisani and Ney, "Bootstrap estimates for confidence intervals in
ASR performance evaluation", 2004).

Scores follow the package's convention: higher = more bona fide.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fakevoice.errors import InvalidSpecError
from fakevoice.metrics.detection import compute_eer, through_ties

RESAMPLES = 1000
LEVEL = 0.95
MIN_GROUPS = 10  # fewer groups than this: an interval from their draws would mean little
MIN_SPEAKERS = 20
"""Speakers a test needs among its human items and among its machine items for a bootstrap over
speakers; with fewer, whole utterances are drawn (a handful of speakers drawn again says little)."""
UNITS = ("speakers", "utterances")
BATCH = 100  # draws weighed at once (memory: BATCH x items floats, a few times over)


@dataclass(frozen=True)
class EerInterval:
    """The percentile interval of an EER.

    Attributes:
        eer: The EER of the test itself (fraction).
        low: Lower end of the interval (fraction).
        high: Upper end.
        level: Its coverage (0.95).
        groups: Groups drawn from.
        resamples: Draws that held both classes (the others are left out).
        unit: What a group is: ``"utterances"`` or ``"speakers"``.
    """

    eer: float
    low: float
    high: float
    level: float
    groups: int
    resamples: int
    unit: str = "utterances"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EerDifference:
    """Two models' EERs on the same items, drawn together.

    Attributes:
        difference: EER of the first minus EER of the second (fraction; below 0: the first
            is better).
        low: Lower end of the difference's interval.
        high: Upper end.
        first_lower: Share of the draws in which the first model's EER is lower.
        second_lower: Share of the draws in which the second model's EER is lower (not
            ``1 - first_lower``: in the others the two may tie).
        level: The interval's coverage.
        groups: Groups drawn from.
        resamples: Draws that held both classes.
        unit: What a group is: ``"utterances"`` or ``"speakers"``.
    """

    difference: float
    low: float
    high: float
    first_lower: float
    second_lower: float
    level: float
    groups: int
    resamples: int
    unit: str = "utterances"

    @property
    def decided(self) -> bool:
        """Whether the interval leaves out 0: the test tells the two models apart."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decided": self.decided}


def interval_words(interval: Mapping[str, Any]) -> str:
    """An :class:`EerInterval` (or its dict, as kept in reports) in words."""
    unit = interval.get("unit") or "utterances"  # reports written before speakers were drawn
    return (
        f"EER {interval['eer']:.1%}, {interval['level']:.0%} interval {interval['low']:.1%} to "
        f"{interval['high']:.1%}: how far it could move on another {interval['groups']} "
        f"{unit} like these (a bootstrap over whole {unit})"
    )


def drawing_units(utterances: Any, speakers: Any, is_bonafide: Any) -> tuple[np.ndarray, str]:
    """What a bootstrap of these items draws whole, and its name.

    Speakers when the human items and the machine items each hold at least
    :data:`MIN_SPEAKERS` of them (machine items name the speaker they imitate or copy), else
    utterances: a test of a few speakers drawn again by speaker would swing on one voice, and one
    with a single TTS voice would lose its machine class in many draws.

    Args:
        utterances: ``(n,)`` the utterance of each item.
        speakers: ``(n,)`` the speaker of each item, or None when unknown.
        is_bonafide: ``(n,)`` truth.

    Returns:
        ``(n,)`` group labels, and ``"speakers"`` or ``"utterances"``.
    """
    if speakers is not None:
        who = np.asarray(speakers).astype(str).ravel()
        human = np.asarray(is_bonafide, dtype=bool).ravel()
        if (
            who.size == human.size
            and min(np.unique(who[human]).size, np.unique(who[~human]).size) >= MIN_SPEAKERS
        ):
            return who, "speakers"
    return np.asarray(utterances).ravel(), "utterances"


NARROW_SHARE = 0.99  # a decided difference lower in fewer of the draws than this is narrow


def difference_verdict(first: str, second: str, difference: Mapping[str, Any]) -> str:
    """Which of ``first`` and ``second`` an :class:`EerDifference` (or its dict) says is better,
    or that the test cannot tell."""
    if not (difference["low"] > 0 or difference["high"] < 0):
        return "the test cannot tell them apart"
    lower = difference["first_lower"]
    # A dict without second_lower (made by hand): the draws that are not the first's.
    second_lower = difference.get("second_lower", 1 - lower)
    better, share = (first, lower) if difference["difference"] < 0 else (second, second_lower)
    said = f"{better} is better (lower in {share:.0%} of the draws)"
    if share < NARROW_SHARE:
        # An interval that only just leaves out 0 can take it in on another seed of the draws.
        said += (
            ", narrowly: the interval's nearer end is close to 0, so a test on more items may "
            "not bear it out"
        )
    return said


def difference_words(first: str, second: str, difference: Mapping[str, Any]) -> str:
    """An :class:`EerDifference` (or its dict) of models ``first`` and ``second`` in words."""
    span = f"{100 * difference['low']:+.1f} to {100 * difference['high']:+.1f}"
    return (
        f"{first} - {second}: {100 * difference['difference']:+.1f} EER points "
        f"({difference['level']:.0%} interval {span}); "
        + difference_verdict(first, second, difference)
    )


def group_counts(groups: np.ndarray, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """How many times each item is drawn, a batch of draws at a time: in each draw, as many
    groups as there are, drawn with replacement, each bringing all its items.

    Args:
        groups: ``(n,)`` the group of each item (any labels).
        resamples: How many draws in all.
        seed: Seeds the draws (the same seed, the same draws: pairs of models share them).

    Yields:
        ``(batch, n)`` float counts, batches of at most :data:`BATCH` draws.
    """
    _, group_of_item = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(group_of_item.max()) + 1
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, BATCH):
        batch = min(BATCH, resamples - start)
        drawn = rng.integers(0, n_groups, (batch, n_groups)) + n_groups * np.arange(batch)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=batch * n_groups).reshape(batch, n_groups)
        yield counts[:, group_of_item].astype(np.float64)


def weighted_eers(scores: np.ndarray, is_bonafide: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The EER of each row of item weights, without a sort per draw.

    The items keep :func:`~fakevoice.metrics.compute_eer`'s ranking and its way through runs of
    scores tied across the classes, so all-ones weights give exactly its EER; an item drawn
    twice counts twice, its copies always on the same side of a threshold.

    Args:
        scores: ``(n,)`` higher = more bona fide.
        is_bonafide: ``(n,)`` truth.
        weights: ``(draws, n)`` how many times each item counts in each draw.

    Returns:
        ``(draws,)`` EERs; NaN for a draw without one of the classes.
    """
    # compute_eer ranks bona fide trials, then spoofs, with a stable sort: the same order here.
    order = np.argsort(
        np.concatenate([scores[is_bonafide], scores[~is_bonafide]]), kind="mergesort"
    )
    items = np.concatenate([np.flatnonzero(is_bonafide), np.flatnonzero(~is_bonafide)])[order]
    truth = is_bonafide[items]
    ranked = scores[items]
    bonafide = weights[:, items] * truth
    spoof = weights[:, items] * ~truth
    with np.errstate(invalid="ignore", divide="ignore"):
        # Counts until the division, as compute_eer: the same floats, the same argmin.
        spoof_total = spoof.sum(axis=1, keepdims=True)
        frr = through_ties(ranked, truth, np.cumsum(bonafide, axis=1)) / bonafide.sum(
            axis=1, keepdims=True
        )
        far = (spoof_total - through_ties(ranked, truth, np.cumsum(spoof, axis=1))) / spoof_total
    frr = np.hstack([np.zeros((weights.shape[0], 1)), frr])
    far = np.hstack([np.ones((weights.shape[0], 1)), far])
    index = np.nanargmin(np.abs(frr - far), axis=1) if np.isfinite(frr).any() else None
    if index is None:
        return np.full(weights.shape[0], np.nan)
    rows = np.arange(weights.shape[0])
    eers = (frr[rows, index] + far[rows, index]) / 2
    eers[~(np.isfinite(frr[:, -1]) & np.isfinite(far[:, -1]))] = np.nan
    return eers


def _draw_eers(
    scores: list[np.ndarray], is_bonafide: np.ndarray, groups: np.ndarray, resamples: int, seed: int
) -> np.ndarray:
    """``(draws, len(scores))`` EER of each score array in each draw that holds both classes."""
    batches = [
        np.stack([weighted_eers(s, is_bonafide, weights) for s in scores], axis=1)
        for weights in group_counts(groups, resamples, seed)
    ]
    eers = np.concatenate(batches)
    return eers[np.isfinite(eers).all(axis=1)]


def _checked(
    scores: list[np.ndarray], is_bonafide: Any, groups: Any
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray] | None:
    truth = np.asarray(is_bonafide, dtype=bool).ravel()
    labels = np.asarray(groups).ravel()
    arrays = [np.asarray(s, dtype=np.float64).ravel() for s in scores]
    if any(a.size != truth.size for a in arrays) or labels.size != truth.size:
        raise InvalidSpecError("scores, is_bonafide and groups must have one value per item.")
    if truth.all() or not truth.any() or np.unique(labels).size < MIN_GROUPS:
        return None
    return arrays, truth, labels


def eer_interval(
    scores: Any,
    is_bonafide: Any,
    groups: Any,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
    unit: str = "utterances",
) -> EerInterval | None:
    """The EER of ``scores`` with its bootstrap interval over ``groups``.

    Args:
        scores: ``(n,)`` higher = more bona fide.
        is_bonafide: ``(n,)`` truth.
        groups: ``(n,)`` the group of each item (utterance or speaker); groups are drawn whole.
        unit: What a group is, for the words (see :func:`drawing_units`).

    Returns:
        The interval, or None with fewer than :data:`MIN_GROUPS` groups or one class only.
    """
    checked = _checked([scores], is_bonafide, groups)
    if checked is None:
        return None
    (values,), truth, labels = checked
    eers = _draw_eers([values], truth, labels, resamples, seed)[:, 0]
    if eers.size < resamples // 2:
        return None
    low, high = np.quantile(eers, [(1 - level) / 2, (1 + level) / 2])
    return EerInterval(
        eer=compute_eer(values[truth], values[~truth])[0],
        low=float(low),
        high=float(high),
        level=level,
        groups=int(np.unique(labels).size),
        resamples=int(eers.size),
        unit=unit,
    )


def eer_difference(
    first: Any,
    second: Any,
    is_bonafide: Any,
    groups: Any,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
    unit: str = "utterances",
) -> EerDifference | None:
    """Two models' EER difference on the same items, with its paired bootstrap interval.

    Args:
        first: ``(n,)`` the first model's scores (higher = more bona fide).
        second: ``(n,)`` the second model's scores on the same items, in the same order.
        is_bonafide: ``(n,)`` truth.
        groups: ``(n,)`` the group of each item.
        unit: What a group is (see :func:`drawing_units`).

    Returns:
        The difference, or None with fewer than :data:`MIN_GROUPS` groups or one class only.
    """
    checked = _checked([first, second], is_bonafide, groups)
    if checked is None:
        return None
    (a, b), truth, labels = checked
    eers = _draw_eers([a, b], truth, labels, resamples, seed)
    if eers.shape[0] < resamples // 2:
        return None
    differences = eers[:, 0] - eers[:, 1]
    low, high = np.quantile(differences, [(1 - level) / 2, (1 + level) / 2])
    return EerDifference(
        difference=compute_eer(a[truth], a[~truth])[0] - compute_eer(b[truth], b[~truth])[0],
        low=float(low),
        high=float(high),
        first_lower=float(np.mean(differences < 0)),
        second_lower=float(np.mean(differences > 0)),
        level=level,
        groups=int(np.unique(labels).size),
        resamples=int(differences.size),
        unit=unit,
    )
