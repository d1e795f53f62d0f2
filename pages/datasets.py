"""Datasets page: what a built dataset holds, and one utterance human vs machine, side by side."""

from __future__ import annotations

import random

import streamlit as st

from components import dataset_view
from fakevoice import services
from fakevoice.errors import FakeVoiceError

DATASET_KEY = "dataset"  # also the query parameter, so a link can name the dataset
SEED_KEY = "compare_seed"
RANDOM = "random"


def _no_datasets() -> None:
    st.info(
        "No dataset is built yet. Build the demo dataset (real speakers from Debian speech "
        "packages plus their machine-made copies) with:"
    )
    st.code("fakevoice dataset build-demo", language="bash")
    st.caption(
        "or run `make run`, which builds it when missing and starts the workbench. "
        "Then reload this page."
    )


def _choose_dataset(names: list[str]) -> str:
    """The dataset selectbox; a bad name from the URL or the session is reported, not used."""
    stale = st.session_state.get(DATASET_KEY)
    if stale is not None and stale not in names:
        del st.session_state[DATASET_KEY]
        _report_bad_name(str(stale))
    requested = st.query_params.get(DATASET_KEY)
    if requested is not None and requested not in names:
        _report_bad_name(requested)
    elif requested is not None and DATASET_KEY not in st.session_state:
        st.session_state[DATASET_KEY] = requested
    name: str = st.selectbox("Dataset", names, key=DATASET_KEY)
    st.query_params[DATASET_KEY] = name
    return name


def _report_bad_name(name: str) -> None:
    try:
        services.dataset_path(name)
    except FakeVoiceError as exc:
        st.error(str(exc))


def _compare(name: str, noise_levels: list[str]) -> None:
    st.subheader("Compare human and machine")
    left, right = st.columns([1, 2])
    noise = left.selectbox(
        "Noise level", noise_levels, format_func=services.noise_label, key=f"noise:{name}"
    )
    utterances = services.utterances(name, noise)
    choice = right.selectbox(
        "Utterance",
        [RANDOM, *utterances],
        key=f"utterance:{name}",
        help="an utterance id, or a random one that every generator copied",
    )
    if choice == RANDOM:
        st.session_state.setdefault(SEED_KEY, random.randrange(2**31))
        if st.button("Reshuffle", icon=":material/shuffle:"):
            st.session_state[SEED_KEY] += 1
        comparisons = services.sample_items(name, 1, st.session_state[SEED_KEY], noise=noise)
    else:
        comparisons = [services.compare_utterance(name, choice, noise)]
    if not comparisons:
        st.info("No utterance has a bonafide item at this noise level.")
    for comparison in comparisons:
        dataset_view.render_comparison(comparison)


def main() -> None:
    st.title("Datasets")
    try:
        names = services.dataset_names()
        if not names:
            _no_datasets()
            return
        name = _choose_dataset(names)
        overview = services.dataset_overview(name)
        dataset_view.render_metrics(overview)
        dataset_view.render_counts(overview)
        dataset_view.render_details(overview)
        _compare(name, overview.noise_levels)
    except FakeVoiceError as exc:
        st.error(str(exc))


main()
