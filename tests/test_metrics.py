"""Tests of fakevoice.metrics: known ASVspoof 2019 answers, scikit-learn cross-checks, edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from fakevoice import asvspoof_scores, metrics
from fakevoice.errors import DatasetError, FakeVoiceError, InvalidSpecError

ASVSPOOF = Path(__file__).resolve().parents[2] / "shared" / "asvspoof2019"
CM_FILE = ASVSPOOF / "RawGAT_ST_mul_eval_scores.txt"
ASV_FILE = ASVSPOOF / "ASVspoof2019.LA.asv.eval.gi.trl.scores.txt"
needs_asvspoof = pytest.mark.skipif(
    not (CM_FILE.is_file() and ASV_FILE.is_file()),
    reason=f"ASVspoof 2019 score files not found under {ASVSPOOF}",
)


# --- known answer: RawGAT-ST on ASVspoof 2019 LA eval ------------------------------------------


@pytest.fixture(scope="module")
def rawgat() -> tuple[asvspoof_scores.CMScores, asvspoof_scores.ASVScores]:
    return asvspoof_scores.read_cm_scores(CM_FILE), asvspoof_scores.read_asv_scores(ASV_FILE)


@needs_asvspoof
def test_rawgat_eer_and_min_tdcf_match_published_figures(
    rawgat: tuple[asvspoof_scores.CMScores, asvspoof_scores.ASVScores],
) -> None:
    cm, asv = rawgat
    eer, _ = metrics.compute_eer(cm.bonafide, cm.spoof)
    min_tdcf, _ = metrics.compute_min_tdcf(
        cm.bonafide, cm.spoof, asv.target, asv.nontarget, asv.spoof
    )
    assert eer * 100 == pytest.approx(1.060135, abs=1e-6)
    assert min_tdcf == pytest.approx(0.033539, abs=1e-6)


@needs_asvspoof
def test_rawgat_per_attack_eer_and_report(
    rawgat: tuple[asvspoof_scores.CMScores, asvspoof_scores.ASVScores],
) -> None:
    cm, asv = rawgat
    report = asvspoof_scores.asvspoof_report(cm, asv)
    assert report["per_attack"]["A17"]["eer"] * 100 == pytest.approx(1.745, abs=1e-3)
    assert report["per_attack"]["A18"]["eer"] * 100 == pytest.approx(3.090, abs=1e-3)
    assert report["eer"] * 100 == pytest.approx(1.060135, abs=1e-6)
    assert report["min_tdcf"] == pytest.approx(0.033539, abs=1e-6)
    assert list(report["per_attack"]) == [f"A{i:02d}" for i in range(7, 20)]
    assert all(0 < entry["min_tdcf"] < 1 for entry in report["per_attack"].values())
    json.dumps(report, allow_nan=False)


def test_report_cautions_when_the_asv_scores_name_none_of_the_attacks(
    rng: np.random.Generator,
) -> None:
    """Eval countermeasure scores with the dev ASV file gave a min t-DCF that looked right and
    dropped every attack's own in silence: the report says the two files do not match."""
    n = 200
    cm = asvspoof_scores.CMScores(
        utterance=np.array([f"u{i}" for i in range(3 * n)]),
        attack=np.array(["-"] * n + ["A07"] * n + ["A19"] * n),
        key=np.array(["bonafide"] * n + ["spoof"] * 2 * n),
        score=np.concatenate([rng.normal(2, 1, n), rng.normal(-2, 1, 2 * n)]),
    )

    def asv_with(attack: str) -> asvspoof_scores.ASVScores:
        return asvspoof_scores.ASVScores(
            source=np.array(["bonafide"] * 2 * n + [attack] * n),
            key=np.array(["target"] * n + ["nontarget"] * n + ["spoof"] * n),
            score=np.concatenate([rng.normal(3, 1, n), rng.normal(-3, 1, n), rng.normal(1, 1, n)]),
        )

    mismatched = asvspoof_scores.asvspoof_report(cm, asv_with("A01"))
    assert mismatched["min_tdcf"] is not None
    assert all(entry["min_tdcf"] is None for entry in mismatched["per_attack"].values())
    assert mismatched["cautions"] == [
        "The ASV scores name none of these scores' attacks (A07 to A19; theirs: A01): are both "
        "files of the same partition (dev or eval)? The min t-DCF above takes the ASV file's "
        "spoof trials as they are, and no attack has one of its own."
    ]
    assert asvspoof_scores.asvspoof_report(cm, asv_with("A07"))["cautions"] == []
    assert asvspoof_scores.asvspoof_report(cm)["cautions"] == []


@needs_asvspoof
def test_asvspoof_files_parse_into_the_documented_trial_counts(
    rawgat: tuple[asvspoof_scores.CMScores, asvspoof_scores.ASVScores],
) -> None:
    cm, asv = rawgat
    assert cm.score.size == 71237
    assert cm.bonafide.size == 7355
    assert cm.spoof_of("A17").size == 4914
    assert set(np.unique(cm.attack[cm.key == "bonafide"])) == {"-"}
    assert asv.target.size > 0 and asv.nontarget.size > 0 and asv.spoof.size > 0
    assert asv.target.size + asv.nontarget.size + asv.spoof.size == asv.score.size


# --- EER -----------------------------------------------------------------------------------------


def test_eer_of_perfectly_separated_scores_is_zero_with_threshold_between_classes(
    rng: np.random.Generator,
) -> None:
    bonafide = rng.uniform(2.0, 3.0, 300)
    spoof = rng.uniform(-1.0, 1.0, 500)
    eer, threshold = metrics.compute_eer(bonafide, spoof)
    assert eer == 0.0
    # Accepted as bona fide when score > threshold: every bona fide, no spoof.
    assert spoof.max() <= threshold < bonafide.min()


def test_eer_of_identical_distributions_is_about_one_half(rng: np.random.Generator) -> None:
    eer, _ = metrics.compute_eer(rng.normal(size=20000), rng.normal(size=20000))
    assert eer == pytest.approx(0.5, abs=0.02)


def test_eer_of_reversed_scores_is_one() -> None:
    eer, _ = metrics.compute_eer([0.0, 0.1, 0.2], [0.5, 0.6, 0.7])
    assert eer == 1.0


def test_eer_of_gaussians_matches_theory(rng: np.random.Generator) -> None:
    # Two unit-variance Gaussians d apart cross at d/2: EER = Phi(-d/2) = 0.1587 for d = 2.
    eer, threshold = metrics.compute_eer(rng.normal(2.0, 1.0, 40000), rng.normal(0.0, 1.0, 40000))
    assert eer == pytest.approx(0.158655, abs=0.006)
    assert threshold == pytest.approx(1.0, abs=0.05)


def test_eer_is_invariant_to_monotonic_transforms(rng: np.random.Generator) -> None:
    bonafide = rng.normal(1.0, 1.0, 700)
    spoof = rng.normal(-0.5, 1.3, 900)
    eer, threshold = metrics.compute_eer(bonafide, spoof)
    for transform in (np.exp, np.arctan, lambda x: 3.0 * x + 7.0, lambda x: x**3):
        eer_t, threshold_t = metrics.compute_eer(transform(bonafide), transform(spoof))
        assert eer_t == eer
        assert threshold_t == pytest.approx(transform(threshold), rel=1e-12)


def test_det_curve_matches_brute_force_counts(rng: np.random.Generator) -> None:
    # Rounded scores give many ties, the hard case for a cumulative-sum implementation.
    bonafide = np.round(rng.normal(0.5, 1.0, 200), 1)
    spoof = np.round(rng.normal(-0.5, 1.0, 300), 1)
    frr, far, thresholds = metrics.compute_det_curve(bonafide, spoof)
    assert frr.shape == far.shape == thresholds.shape == (501,)
    assert np.all(np.diff(frr) >= 0) and np.all(np.diff(far) <= 0)
    # At every distinct threshold (the last of each tie run) the rates are the plain fractions.
    last_of_run = np.r_[np.flatnonzero(np.diff(thresholds)), thresholds.size - 1]
    for i in last_of_run:
        assert frr[i] == pytest.approx(np.mean(bonafide <= thresholds[i]))
        assert far[i] == pytest.approx(np.mean(spoof > thresholds[i]))


@pytest.mark.parametrize(
    ("bonafide", "spoof", "first_rates"),
    [
        ([1e16, 3e16], [2e16], (0.0, 1.0)),  # 1e16 - 0.001 is 1e16: it held 1e16 accepted
        ([-1e300, 0.5], [0.1, -1e299], (0.0, 1.0)),
        ([-np.inf, 0.5, 0.9], [0.1, 0.7], (1 / 3, 1.0)),  # no threshold accepts -inf
        ([0.9, 0.5], [-np.inf, 0.1], (0.0, 0.5)),
    ],
)
def test_det_curve_starts_at_what_its_first_threshold_gives(
    bonafide: list[float], spoof: list[float], first_rates: tuple[float, float]
) -> None:
    """Every point's rates are its threshold's, the first included: it lies below the lowest
    score (the next float down), or is -inf under a score of -inf, which no threshold accepts."""
    frr, far, thresholds = metrics.compute_det_curve(bonafide, spoof)
    assert thresholds[0] < min(bonafide + spoof) or thresholds[0] == -np.inf
    last_of_run = np.flatnonzero(thresholds[1:] > thresholds[:-1])
    for i in (0, *last_of_run, thresholds.size - 1):
        assert frr[i] == np.mean(np.asarray(bonafide) <= thresholds[i])
        assert far[i] == np.mean(np.asarray(spoof) > thresholds[i])
    assert (frr[0], far[0]) == first_rates


def test_eer_close_to_sklearn_roc_crossing(rng: np.random.Generator) -> None:
    bonafide = rng.normal(1.0, 1.0, 3000)
    spoof = rng.normal(-1.0, 1.0, 3000)
    eer, _ = metrics.compute_eer(bonafide, spoof)
    labels = np.r_[np.ones(bonafide.size), np.zeros(spoof.size)]
    fpr, tpr, _ = skm.roc_curve(labels, np.r_[bonafide, spoof])
    crossing = np.argmin(np.abs((1 - tpr) - fpr))
    assert eer == pytest.approx((1 - tpr[crossing] + fpr[crossing]) / 2, abs=1e-3)


def test_scores_tied_across_the_classes_are_crossed_as_a_random_order_would() -> None:
    """The official curve walks a tie bona fide trials first, through points no threshold
    gives; here a tie that holds both classes is crossed in a straight line (the rates a random
    order within it gives on average), and any other run of scores as the official code does."""
    # Every clip of both classes scores the same: chance, where the official ranking says 100 %.
    assert metrics.compute_eer(np.zeros(50), np.zeros(80))[0] == 0.5
    # Saturated probabilities: every human clip and 2 of 3 machine clips at exactly 1.0. The
    # official curve reaches FRR = FAR = 2/3 inside the tie (two humans rejected, both machine
    # clips still accepted); a random order within it crosses FRR = FAR at 0.4.
    eer, threshold = metrics.compute_eer(np.ones(3), np.r_[1.0, 1.0, 0.0])
    assert eer == pytest.approx(0.4) and threshold == 1.0
    frr, far, thresholds = metrics.compute_det_curve(np.ones(3), np.r_[1.0, 1.0, 0.0])
    np.testing.assert_allclose(frr, [0, 0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(far, [1, 2 / 3, 8 / 15, 0.4, 4 / 15, 2 / 15, 0])
    # A run of one class (here every human clip at 0.9) is walked as the official code does.
    human, machine = np.full(10, 0.9), np.r_[np.full(10, 0.05), np.full(10, 0.99)]
    assert metrics.compute_eer(human, machine)[0] == 0.5
    # No ties across the classes: the official EER, exactly.
    rng = np.random.default_rng(1)
    b, s = np.round(rng.normal(1, 1, 400), 1) + 0.01, np.round(rng.normal(0, 1, 600), 1)
    order = np.argsort(np.r_[b, s], kind="mergesort")
    truth = np.r_[np.ones(b.size), np.zeros(s.size)][order]
    official_frr = np.r_[0.0, np.cumsum(truth) / b.size]
    official_far = np.r_[1.0, (s.size - np.cumsum(1 - truth)) / s.size]
    index = np.argmin(np.abs(official_frr - official_far))
    assert metrics.compute_eer(b, s)[0] == (official_frr[index] + official_far[index]) / 2


@pytest.mark.parametrize(
    ("bonafide", "spoof", "message"),
    [
        ([], [0.1, 0.2], "bona fide scores are empty"),
        ([0.1, 0.2], [], "spoof scores are empty"),
        ([0.1, np.nan], [0.2], "NaN"),
        ([0.1], [np.nan, 0.3], "NaN"),
    ],
)
def test_eer_rejects_empty_and_nan_scores(bonafide: list, spoof: list, message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        metrics.compute_eer(bonafide, spoof)


# --- t-DCF -------------------------------------------------------------------------------------


@pytest.fixture
def asv_scores(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A decent ASV system: targets high, non-targets low, spoofs in between."""
    return rng.normal(4.0, 1.0, 2000), rng.normal(0.0, 1.0, 2000), rng.normal(2.5, 1.0, 2000)


def test_min_tdcf_of_perfect_countermeasure_is_zero(
    rng: np.random.Generator, asv_scores: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    bonafide, spoof = rng.uniform(5, 6, 400), rng.uniform(-1, 1, 400)
    min_tdcf, threshold = metrics.compute_min_tdcf(bonafide, spoof, *asv_scores)
    assert min_tdcf == 0.0
    assert spoof.max() <= threshold < bonafide.min()


def test_min_tdcf_of_useless_countermeasure_is_about_one(
    rng: np.random.Generator, asv_scores: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    min_tdcf, _ = metrics.compute_min_tdcf(
        rng.normal(size=20000), rng.normal(size=20000), *asv_scores
    )
    assert 0.9 < min_tdcf <= 1.0


def test_tdcf_curve_matches_the_2019_formula_at_each_threshold(
    rng: np.random.Generator, asv_scores: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    target, nontarget, asv_spoof = asv_scores
    bonafide, spoof = rng.normal(1.5, 1.0, 300), rng.normal(-1.0, 1.0, 300)
    asv = metrics.asv_error_rates(target, nontarget, asv_spoof)
    eer_asv, asv_threshold = metrics.compute_eer(target, nontarget)
    assert asv.threshold == asv_threshold
    assert asv.p_miss == pytest.approx(np.mean(target < asv_threshold))
    assert abs(asv.p_miss - asv.p_fa) < 0.01 and eer_asv == pytest.approx(asv.p_miss, abs=0.01)

    cost = metrics.ASVSPOOF2019_COST
    c1 = cost.p_target * (1 - asv.p_miss) - cost.p_nontarget * 10 * asv.p_fa
    c2 = 10 * cost.p_spoof * (1 - np.mean(asv_spoof < asv_threshold))
    curve, thresholds = metrics.compute_tdcf_curve(bonafide, spoof, asv, cost)
    for i in rng.choice(thresholds.size, 25, replace=False):
        p_miss_cm = np.mean(bonafide <= thresholds[i])
        p_fa_cm = np.mean(spoof > thresholds[i])
        assert curve[i] == pytest.approx((c1 * p_miss_cm + c2 * p_fa_cm) / min(c1, c2))
    min_tdcf, threshold = metrics.compute_min_tdcf(bonafide, spoof, target, nontarget, asv_spoof)
    assert min_tdcf == curve.min()
    assert threshold == thresholds[np.argmin(curve)]


def test_min_tdcf_never_exceeds_one(rng: np.random.Generator) -> None:
    target, nontarget, asv_spoof = (
        rng.normal(3, 1, 500),
        rng.normal(0, 1, 500),
        rng.normal(1, 1, 500),
    )
    for shift in (-2.0, 0.0, 0.5, 2.0):
        min_tdcf, _ = metrics.compute_min_tdcf(
            rng.normal(shift, 1, 300), rng.normal(0, 1, 300), target, nontarget, asv_spoof
        )
        assert 0.0 <= min_tdcf <= 1.0 + 1e-12


def test_cost_model_is_frozen_and_validated() -> None:
    cost = metrics.ASVSPOOF2019_COST
    assert cost.p_spoof + cost.p_target + cost.p_nontarget == pytest.approx(1.0)
    with pytest.raises(AttributeError):
        cost.p_spoof = 0.1  # type: ignore[misc]
    with pytest.raises(InvalidSpecError, match="sum to 1"):
        metrics.TDCFCostModel(p_spoof=0.5)
    with pytest.raises(InvalidSpecError, match="c_fa_cm"):
        metrics.TDCFCostModel(c_fa_cm=-1.0)


def test_tdcf_rejects_an_asv_system_with_swapped_keys(rng: np.random.Generator) -> None:
    # Target and non-target keys swapped: ASV misses nearly every target, so C1 goes negative.
    target, nontarget = rng.normal(-3, 1, 1000), rng.normal(3, 1, 1000)
    with pytest.raises(InvalidSpecError, match="t-DCF weights are not positive"):
        metrics.compute_min_tdcf(
            rng.normal(1, 1, 100), rng.normal(size=100), target, nontarget, rng.normal(size=100)
        )


# --- ROC / AUC -----------------------------------------------------------------------------------


@pytest.mark.parametrize("decimals", [None, 1])
def test_roc_curve_and_auc_match_sklearn(rng: np.random.Generator, decimals: int | None) -> None:
    labels = rng.integers(0, 2, 800)
    scores = rng.normal(size=800) + 0.8 * labels
    if decimals is not None:
        scores = np.round(scores, decimals)
    fpr, tpr, thresholds = metrics.roc_curve(labels, scores)
    sk_fpr, sk_tpr, sk_thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thresholds, sk_thresholds)
    assert metrics.roc_auc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores))


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC as the share of (positive, negative) pairs ranked right, ties counting one half."""
    positive, negative = scores[labels == 1][:, None], scores[labels == 0][None, :]
    return float(np.mean((positive > negative) + 0.5 * (positive == negative)))


def test_roc_keeps_ties_of_infinite_scores_together(rng: np.random.Generator) -> None:
    # Log-likelihood ratios can be -inf / +inf; equal infinite scores are a tie like any other.
    assert metrics.roc_auc([1, 0], [np.inf, np.inf]) == 0.5
    assert metrics.roc_auc([1, 0, 1, 0], [-np.inf, -np.inf, 0.0, 1.0]) == 0.375
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + labels, 1)
    scores[rng.random(300) < 0.1] = np.inf
    scores[rng.random(300) < 0.1] = -np.inf
    fpr, tpr, thresholds = metrics.roc_curve(labels, scores)
    assert np.all(np.diff(thresholds[1:]) < 0)  # one point per distinct score
    # The same ranking with finite stand-ins for the infinities, which scikit-learn accepts.
    finite = np.clip(
        scores, scores[np.isfinite(scores)].min() - 1, scores[np.isfinite(scores)].max() + 1
    )
    sk_fpr, sk_tpr, _ = skm.roc_curve(labels, finite, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert metrics.roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores))


def test_roc_accepts_boolean_labels(rng: np.random.Generator) -> None:
    labels = rng.random(100) < 0.3
    scores = rng.random(100)
    assert metrics.roc_auc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores))


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "Only one class"),
        ([0, 0], [0.1, 0.2], "Only one class"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "0 / 1"),
        ([0, 1], [0.1, np.nan], "NaN"),
        ([], [], "empty"),
        ([0, 1], [0.1, 0.2, 0.3], "must match"),
    ],
)
def test_roc_rejects_bad_input(labels: list, scores: list, message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        metrics.roc_curve(labels, scores)


def test_downsample_curve_keeps_ends_and_area(rng: np.random.Generator) -> None:
    labels = rng.integers(0, 2, 5000)
    scores = rng.normal(size=5000) + labels
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    keep = metrics.downsample_curve(fpr, tpr, 200)
    assert fpr.size > 1000 and keep.size <= 200
    assert keep[0] == 0 and keep[-1] == fpr.size - 1 and np.all(np.diff(keep) > 0)
    assert np.trapezoid(tpr[keep], fpr[keep]) == pytest.approx(np.trapezoid(tpr, fpr), abs=2e-3)


# --- confusion matrix, P / R / F1 ----------------------------------------------------------------


def test_confusion_and_prf_match_sklearn(rng: np.random.Generator) -> None:
    n_classes = 5
    y_true = rng.integers(0, n_classes, 600)
    y_pred = np.where(rng.random(600) < 0.6, y_true, rng.integers(0, n_classes, 600))
    y_pred[y_pred == 3] = 4  # class 3 is never predicted: precision 0 without a warning
    cm = metrics.confusion_matrix(y_true, y_pred, n_classes)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=range(n_classes)))
    precision, recall, f1 = metrics.per_class_prf(cm)
    sk_p, sk_r, sk_f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=range(n_classes), zero_division=0
    )
    np.testing.assert_allclose(precision, sk_p)
    np.testing.assert_allclose(recall, sk_r)
    np.testing.assert_allclose(f1, sk_f1)
    assert precision[3] == 0.0 and f1[3] == 0.0
    assert metrics.accuracy(cm) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert metrics.macro_f1(cm) == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    )


def test_macro_f1_leaves_out_classes_that_never_occur(rng: np.random.Generator) -> None:
    y_true = rng.integers(0, 3, 300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 3, 300))
    cm = metrics.confusion_matrix(y_true, y_pred, 6)  # classes 3..5 absent from truth and guesses
    assert cm[3:].sum() == 0 and cm[:, 3:].sum() == 0
    assert metrics.macro_f1(cm) == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))


def test_confusion_matrix_rejects_out_of_range_labels() -> None:
    with pytest.raises(InvalidSpecError, match="from 0 to 2"):
        metrics.confusion_matrix([0, 1, 3], [0, 1, 2], 3)
    with pytest.raises(InvalidSpecError, match="3 true labels but 2"):
        metrics.confusion_matrix([0, 1, 2], [0, 1], 3)


def test_empty_confusion_matrix_has_no_accuracy() -> None:
    cm = metrics.confusion_matrix([], [], 3)
    assert cm.shape == (3, 3) and cm.sum() == 0
    with pytest.raises(InvalidSpecError, match="no trials"):
        metrics.accuracy(cm)
    with pytest.raises(InvalidSpecError, match="no trials"):
        metrics.macro_f1(cm)


# --- classification report -----------------------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_classification_report_is_json_and_consistent(rng: np.random.Generator) -> None:
    names = ["bonafide", "world", "griffinlim", "piper"]
    y_true = rng.integers(0, 4, 1500)
    probs = _softmax(rng.normal(size=(1500, 4)) + 2.0 * np.eye(4)[y_true])
    report = metrics.classification_report(y_true, probs, names, bonafide_index=0)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report

    y_pred = probs.argmax(axis=1)
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert report["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred).tolist()
    recall = skm.recall_score(y_true, y_pred, average=None)
    for i, name in enumerate(names):
        assert report["per_class"][name]["recall"] == pytest.approx(recall[i])
        assert report["per_class"][name]["support"] == int(np.sum(y_true == i))

    is_bonafide = y_true == 0
    assert report["auc"] == pytest.approx(skm.roc_auc_score(is_bonafide, probs[:, 0]))
    eer, threshold = metrics.compute_eer(probs[is_bonafide, 0], probs[~is_bonafide, 0])
    assert report["eer"] == eer and report["eer_threshold"] == threshold
    assert 0.0 < report["eer"] < 0.5
    roc = report["roc"]
    assert 2 <= len(roc["fpr"]) <= metrics.MAX_ROC_POINTS
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"])
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0, 0, 1, 1)
    assert roc["thresholds"][0] is None and all(0 <= t <= 1 for t in roc["thresholds"][1:])
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)


def test_classification_report_with_one_side_only_has_no_eer(rng: np.random.Generator) -> None:
    y_true = rng.integers(1, 3, 50)  # spoof classes only
    probs = _softmax(rng.normal(size=(50, 3)))
    report = metrics.classification_report(y_true, probs, ["bonafide", "a", "b"], 0)
    assert report["eer"] is None and report["auc"] is None and "roc" not in report
    assert "Only spoof trials" in report["notes"][0]
    assert report["per_class"]["bonafide"]["support"] == 0
    json.dumps(report, allow_nan=False)


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (np.full((4, 3), 1 / 3), "shape"),
        (np.array([[0.5, np.nan], [0.2, 0.8]]), "NaN"),
        (np.empty((0, 2)), "no predictions"),
    ],
)
def test_classification_report_rejects_bad_probabilities(probs: np.ndarray, message: str) -> None:
    y_true = np.zeros(len(probs), dtype=int)
    with pytest.raises(InvalidSpecError, match=message):
        metrics.classification_report(y_true, probs, ["bonafide", "spoof"], 0)


# --- score file parsers --------------------------------------------------------------------------


def test_read_score_files_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    scores = rng.normal(size=6)
    cm_path = tmp_path / "cm.txt"
    cm_path.write_text(
        "".join(
            f"LA_E_{i} {'-' if i < 2 else 'A1' + str(i % 2 + 7)} "
            f"{'bonafide' if i < 2 else 'spoof'} {float(s)!r}\n"
            for i, s in enumerate(scores)
        )
        + "\n"
    )
    cm = asvspoof_scores.read_cm_scores(cm_path)
    np.testing.assert_array_equal(cm.score, scores)
    np.testing.assert_array_equal(cm.bonafide, scores[:2])
    assert cm.attacks == ["A17", "A18"]
    np.testing.assert_array_equal(cm.spoof_of("A17"), scores[[2, 4]])

    asv_path = tmp_path / "asv.txt"
    asv_path.write_text("bonafide target 3.5\nbonafide nontarget -1.0\nA17 spoof 0.25\n")
    asv = asvspoof_scores.read_asv_scores(asv_path)
    assert asv.target.tolist() == [3.5] and asv.nontarget.tolist() == [-1.0]
    assert asv.spoof_of("A17").tolist() == [0.25] and asv.spoof_of("A18").size == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("LA_E_1 - bonafide 0.5\nLA_E_2 A07 spoof\n", "line 2: expected 4 columns, got 3"),
        ("LA_E_1 - genuine 0.5\n", "line 1: key must be one of bonafide, spoof"),
        ("LA_E_1 - bonafide abc\n", "line 1: score 'abc' is not a number"),
        ("LA_E_1 - bonafide nan\n", "line 1: score is NaN"),
        ("\n\n", "holds no scores"),
    ],
)
def test_read_cm_scores_explains_malformed_files(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "scores.txt"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        asvspoof_scores.read_cm_scores(path)


def test_read_score_files_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(FakeVoiceError, match="does not exist"):
        asvspoof_scores.read_asv_scores(tmp_path / "nope.txt")
    with pytest.raises(DatasetError, match="key must be one of target, nontarget, spoof"):
        path = tmp_path / "asv.txt"
        path.write_text("bonafide bonafide 1.0\n")
        asvspoof_scores.read_asv_scores(path)


def test_asvspoof_report_without_asv_scores(tmp_path: Path, rng: np.random.Generator) -> None:
    cm = asvspoof_scores.CMScores(
        utterance=np.array([f"u{i}" for i in range(6)]),
        attack=np.array(["-", "-", "-", "A07", "A07", "A08"]),
        key=np.array(["bonafide"] * 3 + ["spoof"] * 3),
        score=np.array([3.0, 2.0, 0.5, 1.0, -1.0, 0.0]),
    )
    report = asvspoof_scores.asvspoof_report(cm)
    assert report["min_tdcf"] is None
    assert report["eer"] == metrics.compute_eer([3.0, 2.0, 0.5], [1.0, -1.0, 0.0])[0]
    assert report["per_attack"]["A08"]["eer"] == 0.0
    assert report["per_attack"]["A07"]["min_tdcf"] is None


def test_tdcf_rejects_an_asv_system_that_already_stops_every_spoof(
    rng: np.random.Generator,
) -> None:
    target, nontarget = rng.normal(3, 1, 500), rng.normal(-3, 1, 500)
    with pytest.raises(InvalidSpecError, match="already rejects every spoof"):
        metrics.compute_min_tdcf(
            rng.normal(1, 1, 100), rng.normal(size=100), target, nontarget, np.full(50, -50.0)
        )


@needs_asvspoof
def test_the_scores_command_gives_the_known_answer(capsys: pytest.CaptureFixture[str]) -> None:
    """`fakevoice scores CM --asv ASV`: the challenge's files give EER 1.060135 % and min t-DCF
    0.033539 (ASVspoof 2019 LA, RawGAT-ST) through the CLI as through the library."""
    from fakevoice.cli import main

    assert main(["scores", str(CM_FILE), "--asv", str(ASV_FILE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["eer"] * 100 == pytest.approx(1.060135, abs=1e-6)
    assert report["min_tdcf"] == pytest.approx(0.033539, abs=1e-6)
    assert main(["scores", str(CM_FILE)]) == 0
    printed = capsys.readouterr().out
    assert "EER 1.060135 %" in printed and "give --asv" in printed


def test_the_scores_command_reads_a_workbench_scores_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A test's scores CSV is a countermeasure score file too: the same EER as its P(human)."""
    from fakevoice.cli import main

    rng = np.random.default_rng(3)
    classes = ["bonafide"] * 40 + ["world"] * 30 + ["lpc"] * 30
    p_human = np.clip(
        rng.normal(np.where(np.array(classes) == "bonafide", 0.7, 0.4), 0.15), 0.0, 1.0
    )
    scores = tmp_path / "scores.csv"
    scores.write_text(
        "item,speaker,class,noise,p_human\n"
        + "".join(
            f"i{n},s,{c},clean,{p}\n" for n, (c, p) in enumerate(zip(classes, p_human, strict=True))
        )
    )
    assert main(["scores", str(scores), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    human = p_human[:40]
    expected, _ = metrics.compute_eer(human, p_human[40:])
    assert report["eer"] == pytest.approx(expected, abs=1e-9)
    assert set(report["per_attack"]) == {"lpc", "world"} and report["min_tdcf"] is None
    # A spreadsheet's byte-order mark and a model column of one model are fine; two models not.
    saved = tmp_path / "saved.csv"
    lines = scores.read_text().splitlines()
    saved.write_text(
        "\ufeffmodel," + lines[0] + "\n" + "".join(f"m1,{line}\n" for line in lines[1:]),
        encoding="utf-8",
    )
    assert main(["scores", str(saved), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["eer"] == pytest.approx(expected, abs=1e-9)
    two = tmp_path / "two.csv"
    two.write_text(
        "model,"
        + lines[0]
        + "\n"
        + "".join(f"m{n % 2},{line}\n" for n, line in enumerate(lines[1:]))
    )
    assert main(["scores", str(two)]) == 2
    assert "holds the scores of several models (m0, m1)" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("item,class,p_human\na,bonafide,1.5\n")
    assert main(["scores", str(bad)]) == 2
    assert "p_human must be numbers from 0 to 1" in capsys.readouterr().err
    header_only = tmp_path / "header.csv"  # said "p_human must be numbers ... on every row"
    header_only.write_text(lines[0] + "\n")
    assert main(["scores", str(header_only)]) == 2
    assert capsys.readouterr().err == (
        "fakevoice: header.csv holds no scores: it has a header and no rows.\n"
    )
