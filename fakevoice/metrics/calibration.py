"""Calibration of a detector's probabilities: what "P(human) = 0.8" should mean.

A verdict is a threshold on probabilities ("human" when P(human) is at least 0.6, say), so the
probabilities must say how often the model is right. Networks trained with cross-entropy are
usually over-confident, and one trained on imbalanced data leans to a class. After training, the
workbench fits *bias-corrected temperature scaling* on the validation split (Guo et al. 2017,
"On calibration of modern neural networks"; the class biases as in vector scaling, shared
temperature): ``q = softmax(log p / T + b)`` with one temperature ``T`` and one bias per class
(the first class's is 0), by minimising the negative log-likelihood. Neither changes which class a
single window ranks first unless the biases say so, and ``T`` alone keeps every ranking, so the
EER of a two-class model is unchanged.

Every class weighs the same in the fit and in its figures (*class-balanced*: each item weighs
``1 / (classes x items of its class)``), as in training: the probabilities are those of equal
priors, so that "P(human) = 0.8" does not depend on how many human items a split happened to
hold. (An unweighted fit learnt the split's own mix as a class bias: on a demo split of 12 %
human items it moved every human clip below P(human) 0.5.) A user whose calls are mostly human,
or mostly machine, moves the threshold.

The fit is reported with the validation NLL and the expected calibration error (ECE, 15 equal-width
bins of the top probability) before and after. "After" on the items the parameters were fitted on
flatters the fit, so it is also measured on items it was not fitted on (*cross-fitting*): the
items' groups (utterances, so that the noisy copies of one sentence stay together; speakers for a
test's items) are dealt into up to 5 folds, each fold is calibrated by a fit on the others, and
the ECE and NLL of those out-of-fold probabilities are kept as ``ece_held_out`` and
``nll_held_out``. The validation split also chose the epoch, so even those figures are somewhat
optimistic; a test on another dataset (Evaluate, "Test on a dataset") shows how calibrated the
model really is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

MIN_ITEMS = 20  # fewer validation items than this: no calibration is fitted
ECE_BINS = 15
LOG_FLOOR = -30.0  # log-probabilities below this are clipped (a probability of 1e-13)
BIAS_PENALTY = 1e-3  # keeps the bias of a class the split lacks finite
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
MAX_BIAS = 50.0  # a larger class bias in a manifest is not trusted
HELD_OUT_FOLDS = 5  # cross-fitting folds for the held-out figures (fewer when fewer groups)


@dataclass(frozen=True)
class Calibration:
    """``q = softmax(log p / temperature + bias)``; the identity is temperature 1, biases 0.

    Attributes:
        temperature: divides the log-probabilities (above 1 softens over-confident outputs).
        bias: added per class after dividing (the first class's is 0).
        items: how many validation items it was fitted on.
        nll_before / nll_after: the mean negative log-likelihood of the true class there.
        ece_before / ece_after: the expected calibration error there (0 to 1).
        ece_held_out / nll_held_out: the same after calibration, on items each fold's fit did
            not see (cross-fitting; NaN when the items were too few or in one group).
    """

    temperature: float
    bias: tuple[float, ...]
    items: int = 0
    nll_before: float = math.nan
    nll_after: float = math.nan
    ece_before: float = math.nan
    ece_after: float = math.nan
    ece_held_out: float = math.nan
    nll_held_out: float = math.nan

    def apply(self, log_probs: np.ndarray) -> np.ndarray:
        """Calibrated log-probabilities of ``(n, classes)`` log-probabilities."""
        return calibrated_log_probs(log_probs, self.temperature, np.asarray(self.bias))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a figure that was not measured (NaN) is None."""
        figures = {
            key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in asdict(self).items()
        }
        return {**figures, "bias": list(self.bias)}

    def after(self, first: Calibration | None) -> Calibration:
        """This calibration, fitted on probabilities ``first`` had calibrated already, as one
        calibration of the raw ones (its figures are this fit's):
        ``softmax((log p / T1 + b1) / T2 + b2) = softmax(log p / (T1 T2) + b1 / T2 + b2)``."""
        if first is None:
            return self
        bias = tuple(
            b1 / self.temperature + b2 for b1, b2 in zip(first.bias, self.bias, strict=True)
        )
        return replace(self, temperature=first.temperature * self.temperature, bias=bias)

    def usable(self) -> bool:
        """Within the bounds a model's manifest may hold (:meth:`from_dict`)."""
        return Calibration.from_dict(self.to_dict(), len(self.bias)) is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, classes: int) -> Calibration | None:
        """The calibration kept in a model's manifest (None when it has none or it is unusable:
        a bundle from elsewhere is not trusted to hold sensible numbers)."""
        if not isinstance(data, dict):
            return None
        try:
            temperature = float(data["temperature"])
            bias = tuple(float(b) for b in data["bias"])
        except (KeyError, TypeError, ValueError):
            return None
        usable = (
            MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE
            and len(bias) == classes
            and all(math.isfinite(b) and abs(b) <= MAX_BIAS for b in bias)
        )
        if not usable:
            return None
        figures = {name: _figure(data.get(name), name) for name in FIT_FIGURES}
        return cls(temperature, bias, _count(data.get("items")), **figures)


FIT_FIGURES = (
    "nll_before",
    "nll_after",
    "ece_before",
    "ece_after",
    "ece_held_out",
    "nll_held_out",
)
"""The figures of a calibration's fit that a manifest keeps (:class:`Calibration`'s)."""


def _figure(value: object, name: str) -> float:
    """A kept figure of a calibration's fit, NaN when absent or impossible (an ECE outside 0 to
    1, a negative NLL): a bundle from elsewhere is not trusted to hold sensible numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return math.nan
    high = 1.0 if name.startswith("ece") else math.inf
    return float(value) if 0.0 <= value <= high else math.nan


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def calibrated_log_probs(log_probs: np.ndarray, temperature: float, bias: np.ndarray) -> np.ndarray:
    """``log softmax(log_probs / temperature + bias)``, row by row."""
    scaled = np.maximum(np.asarray(log_probs, dtype=np.float64), LOG_FLOOR) / temperature + bias
    return scaled - np.logaddexp.reduce(scaled, axis=1, keepdims=True)


def class_balanced_weights(targets: np.ndarray) -> np.ndarray:
    """One weight per item, ``1 / (classes present x items of its class)``: every class present
    weighs the same in total (they sum to 1)."""
    targets = np.asarray(targets)
    present, index, counts = np.unique(targets, return_inverse=True, return_counts=True)
    return np.asarray(1.0 / (len(present) * counts[index]), dtype=np.float64)


def reliability(
    probs: np.ndarray,
    targets: np.ndarray,
    bins: int = ECE_BINS,
    weights: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The reliability diagram's points: for each equal-width bin of confidence (the top
    probability) that holds items, its bounds, how many items, their mean confidence and how
    often the top class was right (means under ``weights`` when given, e.g.
    :func:`class_balanced_weights`, with ``weight``: the bin's share of the total weight)."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    if len(targets) == 0:
        return []
    w = np.ones(len(targets)) if weights is None else np.asarray(weights, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            row = {
                "from": float(edges[b]),
                "to": float(edges[b + 1]),
                "n": int(inside.sum()),
                "confidence": float(np.average(confidence[inside], weights=w[inside])),
                "accuracy": float(np.average(correct[inside], weights=w[inside])),
            }
            if weights is not None:
                row["weight"] = float(w[inside].sum() / w.sum())
            rows.append(row)
    return rows


def expected_calibration_error(
    probs: np.ndarray,
    targets: np.ndarray,
    bins: int = ECE_BINS,
    weights: np.ndarray | None = None,
) -> float:
    """ECE: the mean gap between confidence (the top probability) and accuracy, over equal-width
    confidence bins (:func:`reliability`), weighted by how many items each bin holds (by their
    total weight under ``weights``)."""
    rows = reliability(probs, targets, bins, weights)
    key = "n" if weights is None else "weight"
    total = sum(row[key] for row in rows)
    if not total:
        return math.nan
    return float(sum(row[key] * abs(row["accuracy"] - row["confidence"]) for row in rows) / total)


def _nll(log_probs: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None) -> float:
    picked = -log_probs[np.arange(len(targets)), targets]
    return float(np.average(picked, weights=weights))


def fit_calibration(
    probs: np.ndarray, targets: np.ndarray, groups: np.ndarray | None = None
) -> Calibration | None:
    """Fit temperature and class biases on ``(n, classes)`` probabilities with their true class
    indices; None when there are fewer than :data:`MIN_ITEMS` items (too few to trust a fit) or
    the items are all of one class (the likelihood then only asks for that class everywhere: the
    fit would call every clip so). The identity is kept when the fit would not lower the NLL.

    Args:
        groups: one label per item (an utterance, a speaker): items of a group are never split
            between fitting and measuring when the held-out figures are cross-fitted. None: the
            held-out figures are not measured.
    """
    fitted = _fit(probs, targets)
    if fitted is None or groups is None:
        return fitted
    held_out = held_out_figures(probs, targets, groups)
    if held_out is None:
        return fitted
    return replace(fitted, ece_held_out=held_out[0], nll_held_out=held_out[1])


def held_out_figures(
    probs: np.ndarray, targets: np.ndarray, groups: np.ndarray, folds: int = HELD_OUT_FOLDS
) -> tuple[float, float] | None:
    """The ECE and NLL of calibrated probabilities on items the calibration was not fitted on.

    The distinct ``groups`` are dealt, in a seeded order, into ``min(folds, groups)`` folds; the
    items of each fold are calibrated by a fit on the items of the others. None with fewer than
    two groups, or when a fit would have fewer than :data:`MIN_ITEMS` items or one class only.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    labels = np.asarray(groups).astype(str)
    distinct = np.unique(labels)
    if len(distinct) < 2 or len(labels) != len(targets):
        return None
    order = np.random.default_rng(0).permutation(len(distinct))
    fold_of_group = dict(zip(distinct[order], np.arange(len(distinct)) % folds, strict=True))
    fold = np.array([fold_of_group[g] for g in labels])
    log_p = np.maximum(np.log(np.clip(probs, 1e-300, None)), LOG_FLOOR)
    log_p = log_p - np.logaddexp.reduce(log_p, axis=1, keepdims=True)
    out_of_fold = np.empty_like(log_p)
    for k in np.unique(fold):
        inside = fold == k
        fitted = _fit(probs[~inside], targets[~inside])
        if fitted is None:
            return None
        out_of_fold[inside] = fitted.apply(log_p[inside])
    balanced = class_balanced_weights(targets)
    return (
        expected_calibration_error(np.exp(out_of_fold), targets, weights=balanced),
        _nll(out_of_fold, targets, balanced),
    )


def _fit(probs: np.ndarray, targets: np.ndarray) -> Calibration | None:
    import torch

    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if probs.ndim != 2 or len(targets) != len(probs) or len(targets) < MIN_ITEMS:
        return None
    if np.unique(targets).size < 2:
        return None
    classes = probs.shape[1]
    log_p = np.maximum(np.log(np.clip(probs, 1e-300, None)), LOG_FLOOR)
    log_p = log_p - np.logaddexp.reduce(log_p, axis=1, keepdims=True)
    # Every class weighs the same, as in training (balanced class weights): an unweighted fit
    # learnt the split's own mix as a class bias (a split of 12 % human items moved every
    # validation clip of a human below P(human) 0.5).
    balanced = class_balanced_weights(targets)
    before = _nll(log_p, targets, balanced)

    x = torch.tensor(log_p, dtype=torch.float64)
    y = torch.tensor(targets)
    item_weight = torch.tensor(balanced, dtype=torch.float64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    free_bias = torch.zeros(classes - 1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [log_t, free_bias], lr=0.5, max_iter=200, line_search_fn="strong_wolfe"
    )

    def loss_of() -> torch.Tensor:
        bias = torch.cat([torch.zeros(1, dtype=torch.float64), free_bias])
        t = log_t.clamp(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)).exp()
        picked = torch.nn.functional.cross_entropy(x / t + bias, y, reduction="none")
        nll = (picked * item_weight).sum()
        return nll + BIAS_PENALTY * (free_bias**2).sum()

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_of()
        loss.backward()
        return loss

    optimiser.step(closure)
    temperature = float(np.clip(math.exp(float(log_t.detach())), MIN_TEMPERATURE, MAX_TEMPERATURE))
    bias = (0.0, *(float(b) for b in free_bias.detach()))
    after_log = calibrated_log_probs(log_p, temperature, np.asarray(bias))
    after = _nll(after_log, targets, balanced)
    if not (math.isfinite(after) and after < before):
        temperature, bias, after_log, after = 1.0, (0.0,) * classes, log_p, before
    return Calibration(
        temperature=round(temperature, 6),
        bias=tuple(round(b, 6) for b in bias),
        items=len(targets),
        nll_before=before,
        nll_after=after,
        ece_before=expected_calibration_error(np.exp(log_p), targets, weights=balanced),
        ece_after=expected_calibration_error(np.exp(after_log), targets, weights=balanced),
    )


def calibration_line(calibration: object) -> str:
    """What a model's kept calibration (``metrics.json``'s ``calibration``) did, in words."""
    if not isinstance(calibration, dict):
        return "used as the network gives them (no calibration kept with this model)"
    where = calibration.get("dataset")
    items = f"items of {where}" if isinstance(where, str) else "validation items"
    try:
        held_out = calibration.get("ece_held_out")
        unseen = (
            f", {100 * float(held_out):.1f} % on items each fit did not see"
            if isinstance(held_out, int | float) and math.isfinite(held_out)
            else ""
        )
        return (
            f"calibrated on {int(calibration['items'])} {items} (temperature "
            f"{float(calibration['temperature']):.2f}; expected calibration error, classes "
            f"weighing the same, {100 * float(calibration['ece_before']):.1f} % before, "
            f"{100 * float(calibration['ece_after']):.1f} % after on those items{unseen})"
        )
    except (KeyError, TypeError, ValueError):
        # A bundle from elsewhere may keep its temperature and biases without the figures.
        return "calibrated where the model was made (no figures kept with it)"
