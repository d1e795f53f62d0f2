"""Datasets page: build a dataset from your own recordings (a background job), what a built
dataset holds, whether simple cues give its classes away, one utterance human vs machine side by
side, deleting your own datasets, and (for administrators) the same clips rendered again with
other spectrogram features (a background job too)."""

from __future__ import annotations

import random
from pathlib import Path

import streamlit as st

from components import auth, dataset_build, dataset_view, job_list, navigation, shortcut_audit
from fakevoice import services
from fakevoice.colormaps import COLORMAPS
from fakevoice.datasets.shortcut_findings import ShortcutAudit
from fakevoice.errors import FakeVoiceError
from fakevoice.features import FEATURE_KIND_HELP, FEATURE_KINDS, FeatureSpec
from fakevoice.store.records import Actor, RunRecord

DATASET_KEY = job_list.DATASET_KEY  # also the query parameter, so a link can name the dataset
SEED_KEY = "compare_seed"
RANDOM = "random"
SHOWN_RENDERS = 5


def _no_datasets() -> None:
    st.info(
        "No dataset is built yet. Build one from your recordings above, or the demo dataset "
        "(real speakers from Debian speech packages plus their machine-made copies) with:"
    )
    st.code("fakevoice dataset build-demo", language="bash")
    st.caption(
        "or run `make run`, which builds it when missing and starts the workbench. "
        "Then reload this page."
    )


def _choose_dataset(actor: Actor | None, names: list[str]) -> str:
    """The dataset selectbox; a bad name from the URL or the session is reported, not used."""
    opened = st.session_state.pop(job_list.OPEN_KEY, None)  # a job list's Open button
    if opened in names:
        st.session_state[DATASET_KEY] = opened
        st.query_params[DATASET_KEY] = opened
    stale = st.session_state.get(DATASET_KEY)
    if stale is not None and stale not in names:
        del st.session_state[DATASET_KEY]
        _report_bad_name(actor, str(stale))
    requested = st.query_params.get(DATASET_KEY)
    bad_request = requested is not None and requested not in names
    if bad_request:
        _report_bad_name(actor, str(requested))
    elif requested is not None and DATASET_KEY not in st.session_state:
        st.session_state[DATASET_KEY] = requested
    name: str = st.selectbox("Dataset", names, key=DATASET_KEY, on_change=_follow_choice)
    # A bad name stays in the URL, and its error on the page, until another dataset is chosen
    # (as a bad ?run= on Train): replaced at once, the error went with the rerun the sign-in
    # cookie's component asks for just after a page loads.
    if not bad_request:
        st.query_params[DATASET_KEY] = name
    return name


def _follow_choice() -> None:
    """The URL names the dataset chosen in the box (a callback)."""
    st.query_params[DATASET_KEY] = st.session_state[DATASET_KEY]


def _report_bad_name(actor: Actor | None, name: str) -> None:
    try:
        services.dataset_path(name, actor=actor)
    except FakeVoiceError as exc:
        st.error(str(exc))


def _compare(actor: Actor | None, name: str, noise_levels: list[str]) -> None:
    st.subheader("Compare human and machine")
    left, right = st.columns([1, 2])
    noise = left.selectbox(
        "Noise level", noise_levels, format_func=services.noise_label, key=f"noise:{name}"
    )
    utterances = services.utterances(name, noise, actor=actor)
    choice = right.selectbox(
        "Utterance",
        [RANDOM, *utterances],
        key=f"utterance:{name}",
        help="an utterance id, or a random one that every generator copied",
    )
    if choice == RANDOM:
        st.session_state.setdefault(SEED_KEY, random.randrange(2**31))
        if st.button("Reshuffle", icon=":material/shuffle:", key="reshuffle"):
            st.session_state[SEED_KEY] += 1
        comparisons = services.sample_items(
            name, 1, st.session_state[SEED_KEY], noise=noise, actor=actor
        )
    else:
        comparisons = [services.compare_utterance(name, choice, noise, actor=actor)]
    if not comparisons:
        st.info("No utterance has a bonafide item at this noise level.")
    for comparison in comparisons:
        dataset_view.render_comparison(comparison)


def _render_form(name: str, spec: dict[str, object]) -> None:
    """Administrators: render this dataset's clips with other features, as a new dataset."""
    user = auth.current_user()
    if user is None or not user.is_admin:
        return
    base = FeatureSpec.from_dict(spec) if spec else FeatureSpec()
    with st.expander("Render these clips with other features", icon=":material/tune:"):
        st.caption(
            "A new dataset with the same clips, noise and manifest, and images made with the "
            "features below, so models can be compared on identical audio. Datasets are shared "
            "by everyone on this server."
        )
        with st.form(key=f"render:{name}"):
            top = st.columns([2, 1, 1])
            new_name = top[0].text_input(
                "New dataset name", value=f"{name}-{base.kind}", key="render_name"
            )
            kind = top[1].selectbox(
                "Features",
                FEATURE_KINDS,
                index=FEATURE_KINDS.index(base.kind),
                key="render_kind",
                help=FEATURE_KIND_HELP,
            )
            colormap = top[2].selectbox(
                "Colour map", COLORMAPS, index=COLORMAPS.index(base.colormap), key="render_colormap"
            )
            row = st.columns(4)
            n_fft = row[0].number_input("FFT length", 16, 65536, base.n_fft, key="render_n_fft")
            hop_length = row[1].number_input(
                "Hop length", 1, 65536, base.hop_length, key="render_hop_length"
            )
            n_mels = row[2].number_input(
                "Filters (mel / lfcc)", 1, 65536, base.n_mels, key="render_n_mels"
            )
            n_coeffs = row[3].number_input(
                "Coefficients (mfcc / lfcc)", 1, 65536, base.n_coeffs, key="render_n_coeffs"
            )
            row = st.columns(5)
            fmin = row[0].number_input(
                "Lowest Hz", 0.0, 192000.0, float(base.fmin), key="render_fmin"
            )
            fmax = row[1].number_input(
                "Highest Hz (0: Nyquist)", 0.0, 192000.0, float(base.fmax or 0.0), key="render_fmax"
            )
            top_db = row[2].number_input(
                "Range (dB)", 1.0, 300.0, float(base.top_db), key="render_top_db"
            )
            height = row[3].number_input(
                "Image rows", 16, 4096, base.image_height, key="render_height"
            )
            width = row[4].number_input(
                "Image columns", 16, 4096, base.image_width, key="render_width"
            )
            submitted = st.form_submit_button(
                "Render", icon=":material/play_arrow:", key="render_submit"
            )
    if not submitted:
        return
    overrides = {
        "kind": kind,
        "colormap": colormap,
        "n_fft": int(n_fft),
        "hop_length": int(hop_length),
        "n_mels": int(n_mels),
        "n_coeffs": int(n_coeffs),
        "fmin": float(fmin),
        "fmax": float(fmax) or None,
        "top_db": float(top_db),
        "image_height": int(height),
        "image_width": int(width),
    }
    try:
        run = services.submit_render(user.actor, name, new_name.strip(), overrides)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    st.success(
        f"Queued: '{run.spec['name']}', {kind} images of '{name}'. Follow it below; it goes on "
        "when you leave this page."
    )


def _renders(actor: Actor | None) -> None:
    """Administrators: their latest renders, followed while one is queued or running."""
    if actor is None or not actor.is_admin:
        return
    job_list.panel(
        "Your renders",
        lambda: services.list_renders(actor, limit=SHOWN_RENDERS),
        lambda run: _render_row(actor, run),
    )


def _render_row(actor: Actor, run: RunRecord) -> None:
    features = run.spec.get("feature_spec", {})
    size = f"{features.get('image_height')}x{features.get('image_width')}"
    what = f"{features.get('kind')} images ({size} pixels) of '{run.spec.get('source')}'."
    job_list.dataset_job_row(
        actor,
        run,
        done="rendered",
        key="render",
        stop=lambda: services.stop_render(actor, run.id),
        clear=lambda: services.clear_render(actor, run.id),
        caption=run.notice if run.status == "succeeded" and run.notice else what,
    )


def _delete(actor: Actor | None, name: str, owner_id: int | None) -> None:
    """The owner (or an administrator) may delete a dataset; shared ones: administrators only."""
    if actor is None or not (
        actor.is_admin or (owner_id is not None and actor.can_write(owner_id))
    ):
        return
    with st.expander("Delete this dataset", icon=":material/delete:"):
        st.caption(
            "Its clips, images and manifest are removed from the server. Models trained on it "
            "stay. This cannot be undone."
        )
        sure = st.checkbox(f"Yes, delete '{name}'", key=f"delete_sure:{name}")
        if st.button("Delete", key=f"delete:{name}", disabled=not sure, type="primary"):
            try:
                services.delete_dataset(actor, name)
            except FakeVoiceError as exc:
                st.error(str(exc))
                return
            st.session_state.pop(DATASET_KEY, None)
            st.query_params.pop(DATASET_KEY, None)
            st.toast(f"Deleted the dataset '{name}'.")
            st.rerun()


def _shortcuts(actor: Actor | None, name: str, audit: ShortcutAudit | None) -> None:
    """The dataset's shortcut audit, made here on request for one built before builds kept one
    (or that keeps an older version's)."""
    with st.expander(
        "Shortcuts: what simple cues alone give away",
        icon=":material/rule:",
        expanded=audit is not None and audit.severity != "none",
    ):
        if audit is None:
            st.caption(
                "This dataset was built before builds checked whether silence, level or "
                "bandwidth alone tell its human clips from its machine ones, or its check was "
                "made by an older version of the audit, which measures these cues otherwise."
            )
            if not st.button("Check for shortcuts", key=f"shortcuts:{name}"):
                return
            try:
                with st.spinner("Measuring every clip's silence, level and bandwidth..."):
                    audit = services.dataset_shortcuts(name, actor=actor)
            except FakeVoiceError as exc:
                st.error(str(exc))
                return
        shortcut_audit.render(audit, key=name)


def main() -> None:
    st.title("Datasets")
    actor = auth.current_actor()
    try:
        names = services.dataset_names(actor=actor)
        if actor is not None:
            dataset_build.render(actor, expanded=not names)
        if not names:
            _no_datasets()
            return
        name = _choose_dataset(actor, names)
        overview = services.dataset_overview(name, actor=actor)
        if overview.owner_id is not None:
            whose = "your" if actor and overview.owner_id == actor.user_id else "a user's"
            st.caption(f"Built from {whose} recordings: only its owner and administrators see it.")
        if overview.render_notice:
            st.warning(overview.render_notice, icon=":material/history:")
        dataset_view.render_metrics(overview)
        dataset_view.render_counts(overview)
        dataset_view.render_details(overview)
        _shortcuts(actor, name, overview.shortcuts)
        _compare(actor, name, overview.noise_levels)
        _render_form(name, overview.feature_spec)
        _renders(actor)
        _delete(actor, name, overview.owner_id)
    except FakeVoiceError as exc:
        st.error(str(exc))


navigation.through_app(Path(__file__).name)
main()
