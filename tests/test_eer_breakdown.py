"""What a test's EER per generator and per noise level rests on: the sample a capped test draws
(services/evaluation.balanced_sample), the items behind each row (artefacts.eer_item_counts) and
how the view shows them (components/report_view.render_generator_eer)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from fakevoice.artefacts import eer_item_counts, generator_eers, noise_eers
from fakevoice.services.evaluation import balanced_sample


def items(human: int, per_generator: dict[str, int]) -> pd.DataFrame:
    classes = ["bonafide"] * human + [g for g, n in per_generator.items() for _ in range(n)]
    return pd.DataFrame({"item": [f"i{n}" for n in range(len(classes))], "class": classes})


def test_a_capped_test_draws_half_human_and_the_generators_evenly() -> None:
    frame = items(600, {"world": 600, "lpc": 600, "piper": 45})
    sample = balanced_sample(frame, 60)
    counts = sample["class"].value_counts().to_dict()
    assert len(sample) == 60 and counts["bonafide"] == 30
    assert sorted(counts[g] for g in ("world", "lpc", "piper")) == [10, 10, 10]
    assert list(sample.index) == sorted(sample.index)  # the dataset's order
    assert balanced_sample(frame, 60).equals(sample)  # every model of a test draws the same items
    # A class with too few gives its share to the others; few humans leave room for machines.
    counts = balanced_sample(frame, 1000)["class"].value_counts().to_dict()
    assert counts == {"bonafide": 500, "piper": 45, "lpc": 228, "world": 227}  # by name
    few_humans = balanced_sample(items(5, {"world": 100}), 50)["class"].value_counts().to_dict()
    assert few_humans == {"bonafide": 5, "world": 45}
    assert balanced_sample(frame, 5000) is frame  # under the cap: everything


def test_every_row_says_how_many_items_it_rests_on() -> None:
    classes = ["bonafide"] * 4 + ["world"] * 6 + ["lpc"] * 2
    noises = ["snr_inf", "snr_10db"] * 2 + ["snr_inf"] * 3 + ["snr_20db"] * 3 + ["snr_inf"] * 2
    counts = eer_item_counts(classes, noises)
    assert counts["generator"] == {"lpc": [4, 2], "world": [4, 6]}
    assert counts["noise"] == {"snr_inf": [2, 5], "snr_20db": [0, 3], "snr_10db": [2, 0]}
    scores = np.linspace(0.0, 1.0, len(classes))
    assert set(generator_eers(scores, classes)) == set(counts["generator"])
    assert set(noise_eers(scores, classes, noises)) == {"snr_inf"}  # the others lack a class


def _view() -> None:
    import streamlit as st

    from components import report_view

    report_view.render_generator_eer(st.session_state["report"], {"world": 0.4})


def test_the_view_shows_counts_flags_few_items_and_names_the_levels_left_out() -> None:
    classes = ["bonafide"] * 4 + ["world"] * 6 + ["lpc"] * 2
    noises = ["snr_inf", "snr_10db"] * 2 + ["snr_inf"] * 3 + ["snr_20db"] * 3 + ["snr_inf"] * 2
    scores = np.linspace(0.0, 1.0, len(classes))
    report = {
        "generator_eer": generator_eers(scores, classes),
        "noise_eer": noise_eers(scores, classes, noises),
        "eer_items": eer_item_counts(classes, noises),
    }
    at = AppTest.from_function(_view)
    at.session_state["report"] = report
    at.run()
    assert not at.exception
    generators, levels = (d.value for d in at.dataframe)
    assert list(generators.columns) == [
        "generator",
        "EER",
        "simple cues alone",
        "human items",
        "machine items",
    ]
    lpc = generators[generators["generator"] == "lpc"].iloc[0]
    assert (lpc["human items"], lpc["machine items"]) == (4, 2)
    assert np.isnan(lpc["simple cues alone"])  # no audit figure: a dash, not "None"
    assert all(d.proto.placeholder == "—" for d in at.dataframe)
    assert list(levels["human items"]) == [2]
    (caption,) = [c.value for c in at.caption]
    assert "fewer than 10 items of a side is a rough figure" in caption
    assert "Left out: 20 dB SNR (no human item), 10 dB SNR (no machine item)." in caption

    # A report from before the counts were kept: the EERs alone, no claims about items.
    at = AppTest.from_function(_view)
    at.session_state["report"] = {k: v for k, v in report.items() if k != "eer_items"}
    at.run()
    assert "human items" not in at.dataframe[0].value.columns
    assert "Left out" not in at.caption[0].value
