"""How familiar a clip is to a detector: how far, in the model's own features, it lies from the
audio the model was validated on.

A detector answers for any input, even one unlike everything it learned from (another language,
a telephone line, a generator it never met, music), and its probabilities then say little. The
features its classes are read from (the input of its last linear layer) show such clips. The
distance is a Mahalanobis distance in the manner of Lee et al. (2018, "A simple unified framework
for detecting out-of-distribution samples and adversarial attacks"), with two changes:

* The directions the class means differ along are taken out first: a clip the model is very sure
  of lies far along them, and that is confidence, not strangeness. What is left is how unusual
  the clip is in every other direction, whatever its class.
* The covariance (shared by the classes) is kept low rank: its top directions and one variance
  for all the others (probabilistic PCA, Tipping and Bishop 1999), so that a model's reference
  fits in its manifest and stays defined with few items.

The reference is fitted when a run ends, on the validation items as the detector itself
preprocesses them. The distances a clip is judged against are out of fold: the split is cut into
folds of whole utterances, each measured by a fit that did not see it, and new clips are measured
by one of those fits (a fit on every item would see new clips closer than the held-out ones when
items are not many more than features). They are kept as percentiles. A clip's *typicality* is
the share of validation items at least as far as it is: spread evenly between 0 and 1 for clips
like the validation ones, near 0 for one unlike them all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

RANK = 32  # directions of the covariance kept apart; the rest share one variance
FOLDS = 5
MIN_ITEMS = 40  # fewer validation items give no reference
PERCENTILES = 101  # the out-of-fold distances at 0, 1, ..., 100 %
UNFAMILIAR = 0.001  # a clip further than 99.9 % of the validation items is unfamiliar
METHOD = "mahalanobis off the class-mean directions, low-rank shared covariance"
_VARIANCE_FLOOR = 1e-6  # of the mean variance: directions the validation items never moved in


@dataclass(frozen=True)
class Familiarity:
    """A model's reference for how unusual its features usually are, off its classes' directions.

    Attributes:
        means: ``(C, d)`` the class means of the validation items' features (the directions
            they differ along are taken out of every distance).
        components: ``(k, d)`` orthonormal top directions of the within-class covariance.
        variances: ``(k,)`` the variance along each of them.
        residual: the variance in every other direction (their mean).
        reference: ``(PERCENTILES,)`` the validation items' out-of-fold distances at 0 to 100 %.
        items: how many validation items the reference rests on.
        short_clips: how an image model's input showed a clip shorter than its window when
            the reference was made: ``"whole"`` (as now) or ``"tiled"`` (references made before
            stop 24, which a detector no longer uses for image models: their distances were of
            another picture of such clips).
    """

    means: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    residual: float
    reference: np.ndarray
    items: int
    short_clips: str = "whole"

    @property
    def dims(self) -> int:
        return int(self.means.shape[1])

    def fits(self, model: nn.Module) -> bool:
        """Whether this reference measures ``model``: it is of the width of the input of the
        model's last linear layer (one of another width belongs to another network)."""
        layer = logit_layer(model)
        return layer is not None and layer.in_features == self.dims

    @cached_property
    def between(self) -> np.ndarray:
        """The directions the class means differ along (:func:`_between`), worked out once: a
        detector measures every verdict with them."""
        return _between(self.means)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row of ``features`` ``(n, d)`` from the class
        means once the directions they differ along are taken out, ``(n,)``."""
        x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        if x.shape[1] != self.dims:
            raise ValueError(
                f"features have {x.shape[1]} dimensions; the reference has {self.dims}"
            )
        centred = _off(x - self.means[0], self.between)
        along = centred @ self.components.T  # (n, k)
        total = np.einsum("nd,nd->n", centred, centred)
        inside = np.einsum("nk,nk->n", along, along)
        distance = (along**2 / self.variances).sum(axis=1)
        return np.asarray(distance + np.maximum(total - inside, 0.0) / self.residual)

    def typicality(self, distances: np.ndarray | float) -> np.ndarray:
        """The share of validation items at least as far from the classes as each distance (1
        for the closest, 0 beyond the furthest), interpolated between the kept percentiles."""
        levels = np.linspace(1.0, 0.0, len(self.reference))
        return np.asarray(np.interp(distances, self.reference, levels, left=1.0, right=0.0))

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``familiarity`` entry (six significant digits: about 100 KB for a
        256-feature model with 2 classes)."""

        def compact(values: np.ndarray) -> Any:
            return np.vectorize(lambda v: float(f"{v:.6g}"), otypes=[float])(values).tolist()

        return {
            "method": METHOD,
            "items": self.items,
            "means": compact(self.means),
            "components": compact(self.components),
            "variances": compact(self.variances),
            "residual": float(f"{self.residual:.6g}"),
            "reference": compact(self.reference),
            "short_clips": self.short_clips,
        }

    @classmethod
    def from_dict(cls, data: object, n_classes: int | None = None) -> Familiarity | None:
        """The reference a manifest keeps, or None when it has none or a damaged one (the model
        is then used without it)."""
        if not isinstance(data, Mapping):
            return None
        try:
            means = np.asarray(data["means"], dtype=np.float64)
            components = np.asarray(data["components"], dtype=np.float64)
            variances = np.asarray(data["variances"], dtype=np.float64)
            residual = float(data["residual"])
            reference = np.asarray(data["reference"], dtype=np.float64)
            items = int(data["items"])
        except (KeyError, TypeError, ValueError):
            logger.warning("ignoring a damaged familiarity reference in a model manifest")
            return None
        shapes_fit = (
            means.ndim == 2
            and (n_classes is None or means.shape[0] <= n_classes)
            and components.ndim == 2
            and components.shape[1] == means.shape[1]
            and variances.shape == (components.shape[0],)
            and reference.ndim == 1
            and reference.size >= 2
            and items >= MIN_ITEMS
        )
        values = (means, components, variances, reference, np.asarray([residual]))
        if (
            not shapes_fit
            or not all(np.isfinite(v).all() for v in values)
            or residual <= 0
            or (variances <= 0).any()
            or (np.diff(reference) < 0).any()
        ):
            logger.warning("ignoring a familiarity reference whose shapes or values do not fit")
            return None
        short_clips = "whole" if data.get("short_clips") == "whole" else "tiled"
        return cls(means, components, variances, residual, reference, items, short_clips)


def fit_familiarity(
    features: np.ndarray,
    targets: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    rank: int = RANK,
    folds: int = FOLDS,
    seed: int = 0,
) -> Familiarity | None:
    """The reference of validation items' ``features`` ``(n, d)`` with class ``targets`` ``(n,)``;
    ``groups`` (utterances) stay together in one fold. None with fewer than :data:`MIN_ITEMS`
    items, a single class, or features that never vary."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    y = np.asarray(targets)
    if len(x) < MIN_ITEMS or len(np.unique(y)) < 2 or x.shape[1] < 2:
        return None
    if not np.isfinite(x).all():
        return None
    fold_of = _folds(len(x), groups, folds, seed)
    if len(np.unique(fold_of)) < 2:  # a single utterance: nothing held out
        return None
    classes = set(np.unique(y).tolist())
    outside = np.full(len(x), np.nan)
    kept: Familiarity | None = None
    for fold in np.unique(fold_of):
        held = fold_of == fold
        fitted = _fit(x[~held], y[~held], rank)
        if fitted is None:
            return None
        fitted_classes = np.unique(y[~held])
        # Only items whose class this fit knows: an item measured against the other classes'
        # means alone would look further than it is.
        known = held & np.isin(y, fitted_classes)
        if known.any():
            outside[known] = fitted.distances(x[known])
        if kept is None and set(fitted_classes.tolist()) == classes:
            kept = fitted
    measured = outside[np.isfinite(outside)]
    if kept is None or len(measured) < MIN_ITEMS:
        return None
    # New clips are measured by a fit on part of the items, as each held-out one was: a fit on
    # all of them would see new clips closer than the held-out ones (its residual variance is
    # larger when items are not many more than features).
    reference = np.percentile(measured, np.linspace(0.0, 100.0, PERCENTILES))
    return Familiarity(
        kept.means, kept.components, kept.variances, kept.residual, reference, len(x)
    )


def _folds(n: int, groups: np.ndarray | None, folds: int, seed: int) -> np.ndarray:
    """Each item's fold: whole groups (or single items) dealt out in a seeded order."""
    keys = np.asarray(groups).astype(str) if groups is not None else np.arange(n).astype(str)
    names, index = np.unique(keys, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of_group = np.empty(len(names), dtype=np.int64)
    fold_of_group[order] = np.arange(len(names)) % max(2, min(folds, len(names)))
    return fold_of_group[index]


def _fit(x: np.ndarray, y: np.ndarray, rank: int) -> Familiarity | None:
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    between = _between(means)
    within = _off(x - means[np.searchsorted(classes, y)], between)
    n, d = x.shape
    covariance = within.T @ within / max(n - len(classes), 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    free = d - len(between)  # the directions left once the classes' own are taken out
    mean_variance = float(eigenvalues.sum()) / max(free, 1)
    if mean_variance <= 0.0 or free < 2:
        return None
    k = max(1, min(rank, free - 1, n - len(classes) - 1))
    floor = _VARIANCE_FLOOR * mean_variance
    # The smallest eigenvalues are the classes' directions (zero here): not residual variance.
    residual = max(float(eigenvalues[len(between) : d - k].mean()), floor)
    variances = np.maximum(eigenvalues[d - k :][::-1], residual)
    components = eigenvectors[:, d - k :][:, ::-1].T
    return Familiarity(means, components, variances, residual, np.zeros(2), n)


def _between(means: np.ndarray) -> np.ndarray:
    """An orthonormal basis ``(m, d)`` of the directions the class means differ along."""
    if len(means) < 2:
        return np.zeros((0, means.shape[1]))
    q, r = np.linalg.qr((means[1:] - means[0]).T)
    keep = np.abs(np.diag(r)) > 1e-12 * max(1.0, float(np.abs(r).max()))
    return np.asarray(q[:, keep].T)


def _off(vectors: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``vectors`` with their components along ``basis`` (orthonormal rows) removed."""
    return vectors - (vectors @ basis.T) @ basis if len(basis) else vectors


def logit_layer(model: nn.Module) -> nn.Linear | None:
    """The linear layer the model's class scores come out of (its last one), whose input is the
    feature vector :class:`Familiarity` measures; None for a model without one."""
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linear[-1] if linear else None


@contextmanager
def captured_features(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """While inside, every forward pass of ``model`` appends the features its last linear layer
    reads, ``(batch, d)`` on the CPU, to the list yielded (which stays empty for a model without
    a linear layer)."""
    captured: list[torch.Tensor] = []
    layer = logit_layer(model)
    if layer is None:
        yield captured
        return

    def keep(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].detach().float().reshape(len(inputs[0]), -1).cpu())

    handle = layer.register_forward_pre_hook(keep)
    try:
        yield captured
    finally:
        handle.remove()
