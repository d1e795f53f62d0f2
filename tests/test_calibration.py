"""Calibration of probabilities (fakevoice/metrics/calibration.py): the fit makes over-confident
and biased scores honest, leaves honest ones alone, and never worsens the likelihood."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fakevoice.errors import InvalidSpecError
from fakevoice.metrics import calibration, compute_eer
from fakevoice.metrics.calibration import (
    Calibration,
    calibrated_log_probs,
    class_balanced_weights,
    expected_calibration_error,
    fit_calibration,
    held_out_figures,
)
from fakevoice.services.evaluation import DatasetEvaluation, probability_columns
from fakevoice.store.records import Actor, ModelRecord


def honest_scores(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities that are right as often as they say (targets drawn from them)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(n, classes))
    probs = np.exp(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))
    targets = np.array([rng.choice(classes, p=p) for p in probs])
    return probs, targets


def sharpen(probs: np.ndarray, power: float, bias: np.ndarray | None = None) -> np.ndarray:
    """Over-confident (power > 1) and optionally biased versions of ``probs``."""
    logits = np.log(probs) * power + (0.0 if bias is None else bias)
    return np.exp(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))


def test_over_confident_scores_are_softened_and_made_honest() -> None:
    probs, targets = honest_scores(4000, 2, seed=1)
    fitted = fit_calibration(sharpen(probs, 3.0), targets)
    assert fitted is not None and fitted.items == 4000
    assert fitted.temperature == pytest.approx(3.0, rel=0.15)  # it undoes the sharpening
    assert fitted.nll_after < fitted.nll_before
    assert fitted.ece_after < 0.03 < fitted.ece_before
    # Two classes: temperature and bias keep the ranking of P(class 0), so the EER stays.
    raw = sharpen(probs, 3.0)
    again = np.exp(fitted.apply(np.log(raw)))

    def eer(scores: np.ndarray) -> float:
        return compute_eer(scores[targets == 0, 0], scores[targets == 1, 0])[0]

    assert eer(again) == pytest.approx(eer(raw), abs=1e-3)


def test_a_split_of_few_human_items_does_not_become_a_bias() -> None:
    """Scores of equal priors (as training with balanced class weights gives) on a validation
    split of 12 % human items: the calibration keeps them, instead of learning the split's mix
    as a bias that moves every human clip below P(human) 0.5."""
    rng = np.random.default_rng(11)
    targets = np.array([0] * 120 + [1] * 880)  # 0: bonafide
    x = rng.normal(np.where(targets == 0, 1.0, -1.0), 1.0)
    p_human = 1.0 / (1.0 + np.exp(-2.0 * x))  # the equal-prior posterior of these scores
    probs = np.stack([p_human, 1.0 - p_human], axis=1)
    fitted = fit_calibration(probs, targets)
    assert fitted is not None
    assert fitted.temperature == pytest.approx(1.0, abs=0.2)
    assert abs(fitted.bias[1]) < 0.35  # an unweighted fit: about log(880 / 120) = 2.0
    calibrated = np.exp(fitted.apply(np.log(probs)))[:, 0]
    assert np.mean(calibrated[targets == 0] >= 0.5) == pytest.approx(
        np.mean(p_human[targets == 0] >= 0.5), abs=0.05
    )
    assert np.mean(calibrated[targets == 0] >= 0.5) > 0.75
    weights = class_balanced_weights(targets)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[targets == 0].sum() == pytest.approx(weights[targets == 1].sum())


def test_a_model_that_leans_to_a_class_gets_a_bias_back() -> None:
    probs, targets = honest_scores(4000, 3, seed=2)
    leaning = sharpen(probs, 1.0, bias=np.array([0.0, 1.5, -1.0]))
    fitted = fit_calibration(leaning, targets)
    assert fitted is not None
    assert fitted.temperature == pytest.approx(1.0, abs=0.15)
    assert fitted.bias[0] == 0.0
    assert fitted.bias[1] == pytest.approx(-1.5, abs=0.25)
    assert fitted.bias[2] == pytest.approx(1.0, abs=0.25)
    assert fitted.ece_after < fitted.ece_before


def test_honest_scores_stay_about_as_they_are_and_too_few_items_get_none() -> None:
    probs, targets = honest_scores(4000, 2, seed=3)
    fitted = fit_calibration(probs, targets)
    assert fitted is not None
    assert fitted.temperature == pytest.approx(1.0, abs=0.1)
    assert abs(fitted.bias[1]) < 0.15
    assert fitted.nll_after <= fitted.nll_before
    assert fit_calibration(probs[: calibration.MIN_ITEMS - 1], targets[:19]) is None
    assert fit_calibration(probs[:, :1].ravel(), targets) is None  # not (n, classes)


def test_the_fit_never_worsens_the_likelihood() -> None:
    # Perfectly separated one-hot scores: nothing to gain, the identity is kept.
    targets = np.array([0, 1] * 20)
    one_hot = np.eye(2)[targets]
    fitted = fit_calibration(one_hot, targets)
    assert fitted is not None and fitted.nll_after <= fitted.nll_before + 1e-12


def test_applying_a_calibration_and_reading_one_from_a_manifest() -> None:
    log_p = np.log(np.array([[0.9, 0.1], [0.2, 0.8]]))
    same = Calibration(1.0, (0.0, 0.0)).apply(log_p)
    assert np.allclose(same, log_p)
    softer = np.exp(calibrated_log_probs(log_p, 2.0, np.zeros(2)))
    assert softer[0, 0] == pytest.approx(3 / 4)  # sqrt(0.9) / (sqrt(0.9) + sqrt(0.1))
    assert np.allclose(softer.sum(axis=1), 1.0)
    kept = Calibration(1.7, (0.0, -0.4), items=300).to_dict()
    assert Calibration.from_dict(kept, classes=2) == Calibration(1.7, (0.0, -0.4), 300)
    for broken in (
        None,
        {"temperature": "hot", "bias": [0, 0]},
        {"temperature": 1.0, "bias": [0.0]},  # one bias for two classes
        {"temperature": 0.0, "bias": [0, 0]},
        {"temperature": 1.0, "bias": [0, math.inf]},
        {"bias": [0, 0]},
    ):
        assert Calibration.from_dict(broken, classes=2) is None  # type: ignore[arg-type]


def test_the_reliability_diagram_bins_confidence_against_accuracy() -> None:
    probs = np.array([[0.95, 0.05], [0.92, 0.08], [0.55, 0.45], [0.4, 0.6]])
    rows = calibration.reliability(probs, np.array([0, 1, 0, 1]), bins=10)
    assert [(r["from"], r["n"]) for r in rows] == [(0.5, 2), (0.9, 2)]
    low, high = rows
    assert low["confidence"] == pytest.approx(0.575) and low["accuracy"] == 1.0
    assert high["confidence"] == pytest.approx(0.935) and high["accuracy"] == 0.5
    # The ECE is the gap of the diagram, weighted by the bins' sizes.
    assert expected_calibration_error(probs, np.array([0, 1, 0, 1]), bins=10) == pytest.approx(
        0.5 * (1.0 - 0.575) + 0.5 * (0.935 - 0.5)
    )
    assert calibration.reliability(np.zeros((0, 2)), np.zeros(0)) == []


def test_expected_calibration_error_measures_the_gap() -> None:
    targets = np.array([0] * 10)
    always_right = np.tile([1.0, 0.0], (10, 1))
    assert expected_calibration_error(always_right, targets) == 0.0
    # Says 0.9 and is right half the time: a gap of 0.4.
    half = np.tile([0.9, 0.1], (10, 1))
    assert expected_calibration_error(half, np.array([0, 1] * 5)) == pytest.approx(0.4)
    assert math.isnan(expected_calibration_error(np.zeros((0, 2)), np.zeros(0)))


def test_a_calibration_is_told_in_words() -> None:
    from fakevoice.metrics.calibration import calibration_line

    probs, targets = honest_scores(400, 2, seed=4)
    fitted = fit_calibration(sharpen(probs, 2.0), targets)
    assert fitted is not None
    line = calibration_line(fitted.to_dict())
    assert line.startswith("calibrated on 400 validation items (temperature ")
    assert f"{100 * fitted.ece_after:.1f} % after on those items)" in line
    assert "no calibration" in calibration_line(None)
    groups = np.arange(400) % 40
    measured = fit_calibration(sharpen(probs, 2.0), targets, groups)
    assert measured is not None and measured.ece_held_out is not None
    assert f", {100 * measured.ece_held_out:.1f} % on items each fit did not see)" in (
        calibration_line(measured.to_dict())
    )


def test_held_out_figures_show_what_the_in_sample_ones_flatter() -> None:
    import json

    # Scores that say nothing (labels drawn apart from them) on few items: fitted in sample, the
    # biases learn this sample's class balance and the likelihood improves; on items each fit
    # did not see, it does not.
    rng = np.random.default_rng(5)
    probs = sharpen(honest_scores(60, 3, seed=6)[0], 2.0)
    targets = rng.choice(3, size=60, p=[0.6, 0.3, 0.1])
    groups = np.repeat(np.arange(20), 3)  # three noisy copies of each of 20 sentences
    fitted = fit_calibration(probs, targets, groups)
    assert fitted is not None
    assert fitted.nll_after < fitted.nll_before
    assert fitted.nll_held_out > fitted.nll_after  # (the ECE of 60 items is too rough to tell)
    assert json.loads(json.dumps(fitted.to_dict()))["nll_held_out"] == fitted.nll_held_out

    # Over-confident scores on many items: the fit generalises, and the held-out ECE is near
    # the in-sample one and far below the ECE before.
    honest, labels = honest_scores(4000, 2, seed=7)
    many = fit_calibration(sharpen(honest, 3.0), labels, np.arange(4000) // 4)
    assert many is not None
    assert many.ece_held_out < 0.04 < many.ece_before
    assert many.ece_held_out == pytest.approx(many.ece_after, abs=0.02)


def test_held_out_figures_need_groups_and_enough_items() -> None:
    from fakevoice.metrics.calibration import held_out_figures

    probs, targets = honest_scores(100, 2, seed=8)
    assert math.isnan(fit_calibration(probs, targets).ece_held_out)  # type: ignore[union-attr]
    one_group = fit_calibration(probs, targets, np.zeros(100))
    assert one_group is not None and math.isnan(one_group.ece_held_out)
    assert one_group.to_dict()["ece_held_out"] is None  # JSON-ready: no NaN
    # Five folds of 100 items fit on 80 each; with 24 items a fit would see fewer than 20.
    assert held_out_figures(probs, targets, np.arange(100)) is not None
    assert held_out_figures(probs[:24], targets[:24], np.arange(24)) is None
    # Every item of a group is measured by a fit that saw none of the group: two groups, two
    # folds, each fitted on the other group alone.
    halves = np.repeat(["a", "b"], 50)
    ece, nll = held_out_figures(probs, targets, halves)  # type: ignore[misc]
    a, b = halves == "a", halves == "b"
    by_hand = np.empty((100, 2))
    for inside, other in ((a, b), (b, a)):
        fit = fit_calibration(probs[other], targets[other])
        assert fit is not None
        by_hand[inside] = fit.apply(np.log(probs[inside]))
    weights = class_balanced_weights(targets)  # every class weighs the same
    picked = by_hand[np.arange(100), targets]
    assert nll == pytest.approx(-np.average(picked, weights=weights), rel=1e-6)
    assert ece == pytest.approx(
        expected_calibration_error(np.exp(by_hand), targets, weights=weights), rel=1e-6
    )


def test_a_calibration_fitted_on_calibrated_scores_composes_into_one() -> None:
    first = Calibration(2.0, (0.0, 0.3, -0.2))
    second = Calibration(1.5, (0.0, -0.1, 0.4), items=50)
    probs, _ = honest_scores(10, 3, seed=5)
    log_p = np.log(probs)
    once = second.after(first)
    np.testing.assert_allclose(once.apply(log_p), second.apply(first.apply(log_p)), atol=1e-12)
    assert once.temperature == pytest.approx(3.0) and once.items == 50
    assert second.after(None) is second
    assert once.usable()
    assert not Calibration(0.1, (0.0, 0.0)).after(Calibration(0.1, (0.0, 0.0))).usable()


def test_no_calibration_is_fitted_on_items_of_one_class() -> None:
    # Human items alone: the likelihood only asks "say human more", so a fit learnt a bias that
    # called every clip, machine ones too, human (T = 20, bias -4.7 on spoof).
    probs, targets = honest_scores(400, 2, seed=9)
    assert fit_calibration(probs[targets == 0], targets[targets == 0]) is None
    human_only = fit_calibration(
        probs[targets == 0], targets[targets == 0], np.arange(int((targets == 0).sum())) % 7
    )
    assert human_only is None
    # A multi-class split that lacks a generator still holds two classes: it is fitted.
    three, labels = honest_scores(400, 3, seed=10)
    assert fit_calibration(three[labels < 2], labels[labels < 2]) is not None
    # Held out: a fold whose fit would see one class only gives no figures.
    halves = np.where(targets == 0, "human", "machine")
    assert held_out_figures(probs, targets, halves) is None


def _test_of(model: ModelRecord, names: list[str], classes: list[str]) -> DatasetEvaluation:
    """A test of ``model`` on items of ``classes``, its scores honest for a two-sided split."""
    probs = np.full((len(classes), len(names)), 0.5 / (len(names) - 1))
    for row, label in enumerate(classes):
        probs[row, names.index(label)] = 0.5 + 0.3 * (row % 3 == 0)
    probs /= probs.sum(axis=1, keepdims=True)
    scores = pd.DataFrame(
        {
            "item": [f"i{n}" for n in range(len(classes))],
            "speaker": [f"s{n % 5}" for n in range(len(classes))],
            "class": classes,
            "noise": "snr_inf",
            "p_human": probs[:, names.index("bonafide")],
            "predicted": [names[i] for i in probs.argmax(axis=1)],
            **dict(zip(probability_columns(names), probs.T, strict=True)),
        }
    )
    report = {"model": {"id": model.id, "name": model.name}, "class_names": names}
    return DatasetEvaluation(
        {**report, "dataset": "other", "split": "all", "trained_on": 0}, scores
    )


def test_a_calibrated_copy_needs_items_of_two_classes(run_dir: Path, alice: Actor) -> None:
    from test_uploads import register_run_model

    from fakevoice.services.calibration import calibrated_copy

    model = register_run_model(alice, run_dir)
    names = json.loads((run_dir / "manifest.json").read_text())["class_names"]
    with pytest.raises(InvalidSpecError, match=r"of one class \(bonafide\)"):
        calibrated_copy(alice, model.id, _test_of(model, names, ["bonafide"] * 40))
    two_sided = _test_of(model, names, ["bonafide"] * 20 + [names[1]] * 20)
    copy = calibrated_copy(alice, model.id, two_sided, "two-sided")
    assert copy.metrics["calibration"]["items"] == 40


def test_a_calibrated_copy_of_an_upload_says_what_it_still_lacks_and_from_whose_bundle(
    run_dir: Path, alice: Actor
) -> None:
    from conftest import zip_of

    from components.verdict_view import model_summary
    from fakevoice.bundle_figures import (
        DROPPED,
        DROPPED_FROM,
        DROPPED_PARTS,
        copied_metrics,
        dropped_parts_text,
    )
    from fakevoice.services import model_files
    from fakevoice.services.calibration import calibrated_copy
    from fakevoice.services.uploads import import_uploaded_model, upload_warning

    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.update(calibration={"temperature": 900.0, "bias": [0.0]}, familiarity="close")
    bundle = {
        "manifest.json": json.dumps(manifest).encode(),
        "model.safetensors": (run_dir / "model.safetensors").read_bytes(),
        "validation.json": b"not json",
    }
    uploaded = import_uploaded_model(alice, "uploaded", "u.zip", zip_of(bundle))
    assert set(uploaded.metrics[DROPPED_PARTS]) == {"calibration", "familiarity"}
    names = manifest["class_names"]
    copy = calibrated_copy(
        alice, uploaded.id, _test_of(uploaded, names, ["bonafide"] * 20 + [names[1]] * 20)
    )
    # The copy has a calibration of its own; the familiarity reference and the figures it lacks
    # as its source does, and says so of the bundle that source was uploaded in.
    assert copy.metrics[DROPPED_PARTS] == {
        "familiarity": uploaded.metrics[DROPPED_PARTS]["familiarity"]
    }
    assert copy.metrics[DROPPED] == uploaded.metrics[DROPPED]
    assert copy.metrics[DROPPED_FROM] == uploaded.id and DROPPED_FROM not in uploaded.metrics
    bundle_of = f"the uploaded bundle of model {uploaded.id}"
    (familiarity,) = dropped_parts_text(copy.metrics)
    assert familiarity.startswith(
        f"Not kept from {bundle_of}: its familiarity reference (familiarity in manifest.json)"
    )
    assert model_summary(copy).endswith(
        f"no validation figures (those of {bundle_of} failed their check and were not kept) · "
        f"probabilities calibrated · familiarity reference not kept from {bundle_of}."
    )
    card = model_files.model_card(alice, copy.id).data.decode()
    assert f"The uploaded bundle of model {uploaded.id} carried validation figures" in card
    assert f"- {familiarity}" in card
    assert "its bundle" not in card and "calibration in manifest.json" not in card
    # A copy of the copy still names the bundle that was uploaded.
    again = copied_metrics(copy.metrics, copy.id, renewed={"calibration"})
    assert (
        again[DROPPED_FROM] == uploaded.id and again[DROPPED_PARTS] == copy.metrics[DROPPED_PARTS]
    )
    assert upload_warning(uploaded) is not None and "its bundle" in str(upload_warning(uploaded))
