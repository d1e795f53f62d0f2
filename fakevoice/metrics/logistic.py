"""Logistic regression fitted on some groups and scored on the others (cross-fitting).

Two parts of the workbench learn a small linear rule from scores and must report how it does on
items it did not see: the shortcut audit (do simple cues tell human from machine clips?) and the
learnt fusion of several models' scores. Both deal whole groups (speakers, utterances) into up to
five folds, fit on four and score the fifth, so no item is scored by a rule fitted on it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FOLDS = 5
L2_PENALTY = 0.01  # only keeps the weights finite when the features separate the classes
NEWTON_STEPS = 30

Design = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``design(train_features, features)``: the design matrix of ``features`` (last column the
constant 1), with any scaling taken from ``train_features`` only."""


def fit_logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Class-balanced, L2-penalised logistic regression by Newton steps.

    Args:
        x: ``(n, d)`` design matrix whose last column is the constant 1 (not penalised).
        y: ``(n,)`` 1 for human, 0 for machine.

    Returns:
        ``(d,)`` weights; ``x @ w`` is the log-odds of human.
    """
    weights = np.where(y == 1, 0.5 / max(1, int(y.sum())), 0.5 / max(1, int((1 - y).sum())))
    weights = weights * y.size
    penalty = np.full(x.shape[1], L2_PENALTY)
    penalty[-1] = 0.0
    w = np.zeros(x.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 0.5 * (1.0 + np.tanh(0.5 * (x @ w)))
        gradient = x.T @ (weights * (p - y)) + penalty * w
        hessian = (x * (weights * p * (1.0 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def fold_of_groups(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """``(n,)`` fold number of each item: whole groups dealt into ``folds`` folds, seeded."""
    names = np.unique(groups)
    order = np.random.default_rng(seed).permutation(names.size)
    fold_of_name = dict(zip(names[order], np.arange(names.size) % folds, strict=True))
    return np.array([fold_of_name[g] for g in groups])


def group_folds(groups: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """Up to :data:`FOLDS` folds of whole groups, or None with fewer than two groups."""
    count = min(FOLDS, np.unique(groups).size)
    return fold_of_groups(groups, count, seed) if count >= 2 else None


def held_out_scores(
    features: np.ndarray, y: np.ndarray, folds: np.ndarray, design: Design
) -> np.ndarray | None:
    """Log-odds of human for every item from a fit on the other folds; None when some fold's
    training part lacks a class.

    Args:
        features: ``(n, k)`` what the rule may use.
        y: ``(n,)`` 1 for human, 0 for machine.
        folds: ``(n,)`` fold of each item (:func:`fold_of_groups`).
        design: Builds the design matrix (see :data:`Design`).
    """
    scores = np.empty(y.size)
    for fold in np.unique(folds):
        train = folds != fold
        if len(np.unique(y[train])) < 2:
            return None
        w = fit_logistic(design(features[train], features[train]), y[train])
        scores[~train] = design(features[train], features[~train]) @ w
    return scores
