"""Bootstrap intervals of an EER and of two models' EER difference (fakevoice/metrics/bootstrap.py),
in the classification report, and for every pair of models of a test
(fakevoice/services/paired_tests.py)."""

from __future__ import annotations

import numpy as np
import pytest
from test_fusion import _evaluation

from fakevoice.errors import InvalidSpecError
from fakevoice.metrics import classification_report, compute_eer
from fakevoice.metrics.bootstrap import (
    MIN_GROUPS,
    MIN_SPEAKERS,
    difference_verdict,
    difference_words,
    drawing_units,
    eer_difference,
    eer_interval,
    group_counts,
    interval_words,
    weighted_eers,
)
from fakevoice.services.paired_tests import paired_eers


def test_weights_of_one_give_the_asvspoof_eer_ties_included() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(3, 60))
        scores = np.round(rng.normal(size=n), int(rng.integers(0, 2)))  # many ties
        truth = rng.random(n) < 0.4
        if truth.all() or not truth.any():
            continue
        expected = compute_eer(scores[truth], scores[~truth])[0]
        assert weighted_eers(scores, truth, np.ones((1, n)))[0] == expected
        # Every item counted twice: the same curve, the same EER.
        assert weighted_eers(scores, truth, np.full((1, n), 2.0))[0] == expected


def test_a_draw_without_one_class_has_no_eer() -> None:
    scores, truth = np.array([0.1, 0.9, 0.5]), np.array([False, True, False])
    eers = weighted_eers(scores, truth, np.array([[1.0, 0.0, 2.0], [1.0, 1.0, 1.0]]))
    assert np.isnan(eers[0]) and eers[1] == compute_eer([0.9], [0.1, 0.5])[0]


def test_whole_groups_are_drawn_with_replacement() -> None:
    groups = np.array(["a", "a", "b", "c", "c", "c"])
    batches = list(group_counts(groups, 250, seed=3))
    assert [b.shape for b in batches] == [(100, 6), (100, 6), (50, 6)]
    counts = np.concatenate(batches)
    # The items of a group are drawn together, and each draw takes three groups.
    assert (counts[:, 0] == counts[:, 1]).all() and (counts[:, 3] == counts[:, 5]).all()
    assert (counts[:, [0, 2, 3]].sum(axis=1) == 3).all()
    again = np.concatenate(list(group_counts(groups, 250, seed=3)))
    assert (again == counts).all()


def scored(groups: int, per_group: int, separation: float, seed: int) -> tuple[np.ndarray, ...]:
    """Items in ``groups`` utterances (one human and the rest machine-made copies), scores
    ``separation`` apart, with noise shared within an utterance."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(groups), per_group)
    truth = np.tile(np.arange(per_group) == 0, groups)
    shared = rng.normal(size=groups)[group]  # an utterance is easy or hard for every copy
    scores = separation * truth + shared + 0.5 * rng.normal(size=group.size)
    return scores, truth, group


def test_the_interval_holds_the_eer_and_narrows_with_more_utterances() -> None:
    few = eer_interval(*scored(20, 4, 1.5, seed=1))
    many = eer_interval(*scored(400, 4, 1.5, seed=1))
    assert few is not None and many is not None
    for interval in (few, many):
        assert interval.low <= interval.eer <= interval.high
        assert interval.level == 0.95 and interval.resamples == 1000
    assert few.groups == 20 and many.groups == 400
    assert many.high - many.low < (few.high - few.low) / 2
    assert "interval" in interval_words(many.to_dict()) and "400 utterances" in interval_words(
        many.to_dict()
    )


def test_no_interval_from_too_few_utterances_or_one_class() -> None:
    scores, truth, group = scored(MIN_GROUPS - 1, 4, 1.5, seed=2)
    assert eer_interval(scores, truth, group) is None
    scores, truth, group = scored(50, 4, 1.5, seed=2)
    assert eer_interval(scores[~truth], truth[~truth], group[~truth]) is None
    with pytest.raises(InvalidSpecError, match="one value per item"):
        eer_interval(scores, truth, group[:-1])


def test_a_clearly_better_model_is_told_apart_and_a_copy_is_not() -> None:
    scores, truth, group = scored(200, 4, 2.5, seed=4)
    worse = scores + np.random.default_rng(5).normal(scale=2.0, size=scores.size)
    better_first = eer_difference(scores, worse, truth, group)
    assert better_first is not None and better_first.decided
    assert better_first.difference < 0 and better_first.high < 0
    assert better_first.first_lower > 0.97
    assert "A is better" in difference_words("A", "B", better_first.to_dict())
    swapped = eer_difference(worse, scores, truth, group)
    assert swapped is not None and swapped.difference == pytest.approx(-better_first.difference)
    assert "B is better" in difference_words("A", "B", swapped.to_dict())
    same = eer_difference(scores, scores.copy(), truth, group)
    assert same is not None and not same.decided
    assert (same.difference, same.low, same.high, same.first_lower) == (0.0, 0.0, 0.0, 0.0)
    assert "cannot tell them apart" in difference_words("A", "B", same.to_dict())


def test_the_report_has_the_interval_when_it_knows_the_utterances() -> None:
    scores, truth, group = scored(30, 3, 1.5, seed=6)
    p_human = 1 / (1 + np.exp(-scores))
    probs = np.column_stack([p_human, 1 - p_human])
    targets = np.where(truth, 0, 1)
    plain = classification_report(targets, probs, ["bonafide", "spoof"])
    assert plain["eer_interval"] is None
    report = classification_report(targets, probs, ["bonafide", "spoof"], groups=group)
    interval = report["eer_interval"]
    assert interval["eer"] == report["eer"] and interval["groups"] == 30
    assert interval["low"] <= report["eer"] <= interval["high"]


def speaker_scores(speakers: int, per_speaker: int, seed: int) -> tuple[np.ndarray, ...]:
    """Items whose scores share a large offset per speaker (a voice the model finds easy or hard):
    utterances of one speaker are not independent trials. Every speaker has human and machine
    items (copies of their recordings)."""
    rng = np.random.default_rng(seed)
    speaker = np.repeat(np.arange(speakers), 2 * per_speaker)
    truth = np.tile(np.repeat([True, False], per_speaker), speakers)
    offset = rng.normal(scale=2.0, size=speakers)[speaker] * np.where(truth, 1.0, -1.0)
    scores = np.where(truth, 1.0, -1.0) + offset + rng.normal(scale=0.5, size=speaker.size)
    utterance = np.arange(speaker.size) // 2  # a recording and its machine copy
    return scores, truth, utterance, np.array([f"spk{s}" for s in speaker])


def test_speakers_are_drawn_when_both_classes_have_enough_of_them() -> None:
    scores, truth, utterance, speaker = speaker_scores(MIN_SPEAKERS + 5, 20, seed=11)
    groups, unit = drawing_units(utterance, speaker, truth)
    assert unit == "speakers" and list(groups) == list(speaker)
    few = np.where(np.char.startswith(speaker, "spk1"), speaker, "spk0")  # 6 speakers
    assert drawing_units(utterance, few, truth)[1] == "utterances"
    assert drawing_units(utterance, None, truth)[1] == "utterances"
    one_voice = np.where(truth, speaker, "tts-voice")  # many people, one synthetic voice
    assert drawing_units(utterance, one_voice, truth)[1] == "utterances"

    by_utterance = eer_interval(scores, truth, utterance)
    by_speaker = eer_interval(scores, truth, speaker, unit="speakers")
    assert by_utterance is not None and by_speaker is not None
    assert by_speaker.eer == by_utterance.eer and by_speaker.groups == MIN_SPEAKERS + 5
    # The speakers' shared offsets are what moves the EER: drawing utterances hides it.
    width = lambda i: i.high - i.low  # noqa: E731
    assert width(by_speaker) > 1.5 * width(by_utterance)
    assert "25 speakers like these (a bootstrap over whole speakers)" in interval_words(
        by_speaker.to_dict()
    )
    older = {k: v for k, v in by_utterance.to_dict().items() if k != "unit"}  # kept reports
    assert "over whole utterances" in interval_words(older)

    p_human = 1 / (1 + np.exp(-scores))
    probs, targets = np.column_stack([p_human, 1 - p_human]), np.where(truth, 0, 1)
    report = classification_report(
        targets, probs, ["bonafide", "spoof"], groups=utterance, speakers=speaker
    )
    assert report["eer_interval"]["unit"] == "speakers"
    assert report["eer_interval"]["high"] == by_speaker.high

    # A test's pairs of models draw the same units.
    items = [
        f"u{u}__{'bonafide' if t else 'gen'}__snr_inf"
        for u, t in zip(utterance, truth, strict=True)
    ]
    classes = ["bonafide" if t else "gen" for t in truth]
    noisy = p_human + np.random.default_rng(12).normal(scale=0.2, size=p_human.size)
    first = _evaluation("A", 1, items, classes, list(p_human))
    second = _evaluation("B", 2, items, classes, list(noisy))
    for evaluation in (first, second):
        evaluation.scores["speaker"] = speaker
    (pair,) = paired_eers([first, second])
    assert pair.difference.unit == "speakers" and pair.difference.groups == MIN_SPEAKERS + 5


def test_every_pair_of_models_in_a_test_on_the_items_both_scored() -> None:
    scores, truth, group = scored(40, 3, 3.0, seed=7)
    items = [
        f"u{g}__{'bonafide' if t else 'gen'}{i % 3}__snr_inf"
        for i, (g, t) in enumerate(zip(group, truth, strict=True))
    ]
    classes = ["bonafide" if t else "gen" for t in truth]
    good = 1 / (1 + np.exp(-scores))
    noisy = 1 / (1 + np.exp(-(scores + np.random.default_rng(8).normal(scale=3, size=scores.size))))
    a = _evaluation("A", 1, items, classes, list(good))
    b = _evaluation("B", 2, items[:90], classes[:90], list(noisy[:90]))
    c = _evaluation("A", 3, items, classes, list(good))
    pairs = paired_eers([a, b, c])
    assert [(p.first, p.second) for p in pairs] == [
        ("A (1)", "B"),
        ("A (1)", "A (3)"),
        ("B", "A (3)"),
    ]
    assert [p.items for p in pairs] == [90, 120, 90]
    assert pairs[0].difference.decided and pairs[0].difference.difference < 0
    assert not pairs[1].difference.decided
    assert pairs[0].to_dict()["summary"].startswith("A (1) - B:")
    assert paired_eers([a, a]) == []  # one model counts once
    against = paired_eers([a, b, c], against_first=True)  # a baseline and its variants
    assert [(p.first, p.second) for p in against] == [("A (1)", "B"), ("A (1)", "A (3)")]


def test_a_comparison_is_drawn_once_per_key_and_the_oldest_goes() -> None:
    from fakevoice.services.paired_tests import KEPT_PAIRS, kept_pairs

    scores, truth, group = scored(40, 3, 3.0, seed=9)
    items = [f"u{g}__c{i % 3}__snr_inf" for i, g in enumerate(group)]
    classes = ["bonafide" if t else "gen" for t in truth]
    a = _evaluation("A", 1, items, classes, list(1 / (1 + np.exp(-scores))))
    b = _evaluation("B", 2, items, classes, list(1 / (1 + np.exp(-scores[::-1]))))
    first = kept_pairs(("kept test", 1), [a, b])
    assert len(first) == 1
    assert kept_pairs(("kept test", 1), [a, b]) is first  # not drawn again
    again = kept_pairs(("kept test", 2), [a, b])
    assert again is not first and again == first  # another key draws (the same seed)
    for n in range(KEPT_PAIRS):  # one model: no pair, nothing to draw
        kept_pairs(("filler", n), [a])
    assert kept_pairs(("kept test", 1), [a, b]) is not first  # the oldest was dropped


def test_a_narrow_difference_is_called_narrow() -> None:
    """A difference whose interval only just leaves out 0 (the first lower in 97 % of the draws)
    is a finding to confirm, not a settled one; a clear one says nothing more."""
    from fakevoice.metrics.bootstrap import difference_verdict

    narrow = {"difference": -0.16, "low": -0.208, "high": -0.005, "first_lower": 0.975}
    said = difference_verdict("A", "M", narrow)
    assert said.startswith("A is better (lower in 98% of the draws), narrowly:")
    clear = {"difference": -0.16, "low": -0.25, "high": -0.08, "first_lower": 1.0}
    assert difference_verdict("A", "M", clear) == "A is better (lower in 100% of the draws)"
    undecided = {"difference": -0.1, "low": -0.2, "high": 0.01, "first_lower": 0.96}
    assert difference_verdict("A", "M", undecided) == "the test cannot tell them apart"


def test_the_verdict_does_not_hang_on_which_model_is_named_first() -> None:
    """On 20 utterances the two EERs tie in some draws; a tie is a draw in which neither model
    is lower, whichever is named first (the second's share was 1 - first_lower, ties and all)."""
    rng = np.random.default_rng(14)
    truth = np.arange(40) % 2 == 0
    utterances = np.arange(40) // 2
    better = np.where(truth, rng.normal(1.5, 1.0, 40), rng.normal(0.0, 1.0, 40))
    worse = np.where(truth, rng.normal(0.5, 1.0, 40), rng.normal(0.0, 1.0, 40))
    ahead = eer_difference(better, worse, truth, utterances)
    behind = eer_difference(worse, better, truth, utterances)
    assert ahead is not None and behind is not None and ahead.decided and behind.decided
    assert ahead.first_lower + ahead.second_lower < 1  # some draws tie
    assert behind.second_lower == ahead.first_lower
    assert behind.first_lower == ahead.second_lower
    said_ahead = difference_verdict("G", "W", ahead.to_dict())
    said_behind = difference_verdict("W", "G", behind.to_dict())
    assert said_ahead == said_behind
    assert said_ahead.startswith(f"G is better (lower in {ahead.first_lower:.0%} of the draws)")
    assert "narrowly" in said_ahead  # lower in fewer than 99 % of the draws
