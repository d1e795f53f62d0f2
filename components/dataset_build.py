"""Build a dataset from your own recordings: the upload form and the panel of your builds.

The page only stages the upload and queues a job (:func:`fakevoice.services.submit_dataset_build`);
a worker builds the dataset, and the panel follows it (refreshing while a build is queued or
running), with a stop button. The dataset is the user's: only they and administrators see it.
"""

from __future__ import annotations

import streamlit as st

from components import job_list
from fakevoice import services
from fakevoice.datasets.noise import DEFAULT_NOISE_LEVELS, noise_name
from fakevoice.errors import FakeVoiceError
from fakevoice.features import FEATURE_KIND_HELP, FEATURE_KINDS
from fakevoice.services.dataset_builds import DEFAULT_BUILD_GENERATORS, DEFAULT_BUILD_NOISE
from fakevoice.store.records import Actor, RunRecord

UPLOAD_TYPES = ["zip", "wav", "flac", "mp3", "ogg", "opus", "webm", "m4a", "mp4", "aac", "g722"]
SHOWN_BUILDS = 5


def render(actor: Actor, *, expanded: bool) -> None:
    """The form in an expander, then the actor's latest builds (when there are any)."""
    with st.expander(
        "Build a dataset from your recordings", expanded=expanded, icon=":material/upload:"
    ):
        _form(actor)
    job_list.panel(
        "Your dataset builds",
        lambda: services.list_dataset_builds(actor, limit=SHOWN_BUILDS),
        lambda run: _build_row(actor, run),
    )


def _form(actor: Actor) -> None:
    st.caption(
        "Upload human recordings: a zip with one folder per speaker (`alice/call1.wav`, ...), "
        "or audio files of one speaker. Machine copies are made of every recording with the "
        "generators you pick, noise is mixed in at each level, and spectrograms are rendered, "
        "in the background. A zip with folders `bonafide/` and `<generator>/` is used as "
        "labelled. The dataset is yours: only you (and administrators) see it."
    )
    generators = services.copy_synthesis_generators()
    noise_names = [noise_name(level) for level in DEFAULT_NOISE_LEVELS]
    with st.form("dataset_build", clear_on_submit=False):
        top = st.columns([2, 2])
        name = top[0].text_input(
            "Dataset name",
            key="build_name",
            max_chars=64,
            placeholder="my-calls",
            help="letters, digits, '-', '_' or '.'; it must not exist yet",
        )
        speaker = top[1].text_input(
            "Speaker of the loose files",
            key="build_speaker",
            max_chars=64,
            help="who speaks in the audio files that are not in a zip (zips name their "
            "speakers by their folders)",
        )
        files = st.file_uploader(
            "Recordings", type=UPLOAD_TYPES, accept_multiple_files=True, key="build_files"
        )
        chosen = st.multiselect(
            "Generators",
            list(generators),
            default=[g for g in DEFAULT_BUILD_GENERATORS if g in generators],
            key="build_generators",
            help="; ".join(f"{n}: {d}" for n, d in generators.items()),
        )
        row = st.columns([3, 1])
        noise = row[0].multiselect(
            "Noise levels",
            noise_names,
            default=list(DEFAULT_BUILD_NOISE),
            format_func=services.noise_label,
            key="build_noise",
            help="each recording and copy is rendered once per level",
        )
        kind = row[1].selectbox(
            "Features", FEATURE_KINDS, key="build_features", help=FEATURE_KIND_HELP
        )
        submitted = st.form_submit_button(
            "Build", icon=":material/play_arrow:", type="primary", key="build_submit"
        )
    if not submitted:
        return
    try:
        run = services.submit_dataset_build(
            actor,
            name,
            [(f.name, f) for f in files or []],
            speaker=speaker,
            generators=chosen,
            noise_levels=noise,
            feature_overrides={"kind": kind},
        )
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    recordings = run.spec.get("recordings", 0)
    st.success(
        f"Queued: '{name.strip()}' from {recordings} audio files (the worker leaves out any it "
        "cannot read and says so). Follow it below."
    )


def _build_row(actor: Actor, run: RunRecord) -> None:
    job_list.dataset_job_row(
        actor,
        run,
        done="built",
        key="build",
        stop=lambda: services.stop_dataset_build(actor, run.id),
        clear=lambda: services.clear_dataset_build(actor, run.id),
        caption=_what(run) + (f" {run.notice}" if run.notice else ""),
    )


def _what(run: RunRecord) -> str:
    """What a build makes, in a line: recordings, generators, noise levels, features."""
    spec = run.spec
    made = (
        "labelled recordings"
        if spec.get("labelled")
        else f"copies by {', '.join(spec.get('generators', [])) or 'no generator'}"
    )
    noise = ", ".join(services.noise_label(n) for n in spec.get("noise_levels", []))
    features = spec.get("feature_spec", {}).get("kind", "mel")
    return f"{spec.get('recordings', '?')} recordings, {made}; {noise}; {features} images."
