"""Score-level fusion of several models' tests on one dataset (fakevoice/services/evaluation.py):
known answers on hand-made scores."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fakevoice.metrics import compute_eer
from fakevoice.services.evaluation import DatasetEvaluation


def _evaluation(name: str, model_id: int, items: list[str], classes: list[str], p_human: list[float],
                noises: list[str] | None = None) -> DatasetEvaluation:  # fmt: skip
    scores = pd.DataFrame(
        {
            "item": items,
            "speaker": ["s"] * len(items),
            "class": classes,
            "noise": noises or ["snr_inf"] * len(items),
            "p_human": p_human,
            "predicted": ["?"] * len(items),
        }
    )
    return DatasetEvaluation({"model": {"name": name, "id": model_id}, "n": len(items)}, scores)


def test_two_models_that_miss_different_attacks_are_fused_into_a_better_one() -> None:
    from fakevoice.services.fusion import evaluations_table, fuse

    # 10 human items, 10 of generator a, 10 of b. Model A tells a apart and takes b for human;
    # model B the opposite. Either alone, half the spoofs score above every human: EER 50 %.
    # Fused, the spoofs' log-odds average out below the humans': none passes.
    classes = ["bonafide"] * 10 + ["a"] * 10 + ["b"] * 10
    items = [f"i{n}" for n in range(30)]
    first = _evaluation("A", 1, items, classes, [0.9] * 10 + [0.05] * 10 + [0.99] * 10)
    second = _evaluation("B", 2, items, classes, [0.9] * 10 + [0.99] * 10 + [0.05] * 10)
    for single in (first, second):
        table = single.scores
        human = (table["class"] == "bonafide").to_numpy()

        eer, _ = compute_eer(table["p_human"][human], table["p_human"][~human])
        assert eer == pytest.approx(0.5)
    fusion = fuse([first, second])
    assert fusion is not None
    assert (fusion.models, fusion.items) == (["A", "B"], 30)
    assert fusion.eer == pytest.approx(0.0) and fusion.auc == pytest.approx(1.0)
    assert fusion.generator_eer == {"a": pytest.approx(0.0), "b": pytest.approx(0.0)}
    assert fusion.correlation.loc["A", "B"] < 0  # they disagree where it matters
    table = evaluations_table([first, second], fusion)
    assert list(table["model"])[-2:] == ["fusion: A + B", "fusion, learnt weights: A + B"]
    assert table["eer"].iloc[-2] == 0.0
    # Learnt weights, scored only on items their fit did not see, find the same.
    assert fusion.learned is not None and fusion.learned["folds"] == 5
    assert table["eer"].iloc[-1] == fusion.learned["eer"] <= 0.1
    assert json.loads(json.dumps(fusion.to_dict()))["models"] == ["A", "B"]


def test_a_fusion_takes_the_shared_items_and_needs_enough_of_both_kinds() -> None:
    from fakevoice.services.fusion import MIN_FUSED_ITEMS, fuse

    classes = ["bonafide", "a"] * 15
    items = [f"i{n}" for n in range(30)]
    scores = [0.8, 0.3] * 15
    one = _evaluation("same", 1, items, classes, scores)
    assert fuse([one]) is None and fuse([one, one]) is None  # one model counts once
    # Another model with that name, on 24 of the items: the fusion uses those and names both.
    other = _evaluation("same", 2, items[6:], classes[6:], scores[6:])
    fusion = fuse([one, other])
    assert fusion is not None and fusion.items == 24
    assert fusion.models == ["same (1)", "same (2)"]
    n = MIN_FUSED_ITEMS - 1
    few = _evaluation("few", 3, items[:n], classes[:n], scores[:n])
    assert fuse([one, few]) is None
    humans_only = _evaluation("h", 4, items, ["bonafide"] * 30, scores)
    assert fuse([humans_only, humans_only]) is None
    # A model that gives every item the same score has no correlation with the other: not 0,
    # which reads as unlike it (the page shows a dash, the JSON null); each is itself, 1.
    flat = _evaluation("flat", 5, items, classes, [0.5] * 30)
    fused = fuse([one, flat])
    assert fused is not None
    assert fused.correlation.isna().to_numpy().tolist() == [[False, True], [True, False]]
    assert fused.correlation.loc["same", "same"] == fused.correlation.loc["flat", "flat"] == 1.0
    correlation = json.loads(json.dumps(fused.to_dict(), allow_nan=False))["correlation"]
    assert correlation == {"same": {"same": 1.0, "flat": None}, "flat": {"same": None, "flat": 1.0}}


def test_learnt_weights_turn_down_a_model_that_only_adds_noise() -> None:
    """A good model and one whose scores are noise: their plain mean is worse than the good
    model alone; learnt weights (fitted on some utterances, scored on the others) give the
    noise little say and keep the good model's EER."""
    import numpy as np

    from fakevoice.services.fusion import fuse

    rng = np.random.default_rng(0)
    utterances, per = 60, 3
    human = np.tile(np.arange(per) == 0, utterances)
    items = [
        f"u{n // per}__{'bonafide' if h else 'gen'}{n % per}__snr_inf" for n, h in enumerate(human)
    ]
    classes = ["bonafide" if h else "gen" for h in human]
    good = 1 / (1 + np.exp(-(3.0 * np.where(human, 1, -1) + rng.normal(size=human.size))))
    noise = 1 / (1 + np.exp(-6.0 * rng.normal(size=human.size)))
    fusion = fuse(
        [
            _evaluation("good", 1, items, classes, list(good)),
            _evaluation("noise", 2, items, classes, list(noise)),
        ]
    )
    assert fusion is not None and fusion.learned is not None
    alone, _ = compute_eer(good[human], good[~human])
    assert fusion.eer > alone + 0.02  # the plain mean lets the noise in
    assert fusion.learned["eer"] <= alone + 0.02
    weights = fusion.learned["weights"]
    assert abs(weights["noise"]) < 0.2 * abs(weights["good"])
    assert json.loads(json.dumps(fusion.to_dict()))["learned"]["weights"] == weights
