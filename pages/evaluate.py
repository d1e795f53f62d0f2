"""Evaluate page: choose (or upload) a model, give a clip, read the verdict.

Four modes: one clip (upload or browser recording, with the spectrogram the model sees and a
timeline for long clips), a batch of files or one zip (table + CSV), one clip through several
models side by side, and a test of models on a built dataset, run by a worker as a background job
(metrics, confusion matrix, ROC, EER per generator and per noise level, per-item scores). Every verdict on a clip is logged in the
user's history by the services; a dataset test is not a verdict and is not logged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from components import (
    AUDIO_HELP,
    batch_scoring,
    dataset_test,
    explanation_view,
    model_choice,
    navigation,
    upload_megabytes,
    verdict_history,
)
from components.auth import require_actor
from components.user_text import plain
from components.verdict_history import PICK_IN_HISTORY, REPORT_JSON, REPORT_MARKDOWN
from components.verdict_view import (
    ModelView,
    model_label,
    model_view,
    probability_chart,
    redecide,
    show_model_view,
    timeline_chart,
    verdict_card,
)
from fakevoice import services
from fakevoice.errors import FakeVoiceError
from fakevoice.explain import Explanation, most_machine_like
from fakevoice.inference import BONAFIDE, DEFAULT_THRESHOLD, decide
from fakevoice.services import profile, reports
from fakevoice.services.fusion import fused_p_human
from fakevoice.services.verdicts import ScoredClip
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, ModelRecord

MODES = ("One clip", "Batch", "Compare models", "Test on a dataset")

SOURCES = ("Upload a file", "Record in the browser")
MAX_COMPARE = 4


@dataclass(frozen=True)
class Clip:
    """One clip the user gave: its display name, bytes, the browser's MIME type, upload id."""

    name: str
    data: bytes
    mime: str
    file_id: str


@dataclass(frozen=True)
class Outcome:
    """A scored clip (or the message why it could not be) with its model view."""

    scored: ScoredClip | None
    view: ModelView | None
    error: str | None


def _clip_input(prefix: str) -> Clip | None:
    source = st.radio("Audio", SOURCES, key=f"{prefix}_source", horizontal=True)
    if source == SOURCES[0]:
        given = st.file_uploader(
            "Audio file",
            key=f"{prefix}_upload",
            help=AUDIO_HELP,
            max_upload_size=upload_megabytes(get_settings().max_upload_bytes),
        )
    else:
        given = st.audio_input("Record a clip", key=f"{prefix}_record")
    if given is None:
        return None
    return Clip(given.name, given.getvalue(), given.type or "audio/wav", given.file_id)


def _score(
    actor: Actor, model: ModelRecord, clip: Clip, threshold: float, with_view: bool
) -> Outcome:
    try:
        scored = services.score_clip(
            actor, model.id, clip.data, file_name=clip.name, threshold=threshold
        )
    except FakeVoiceError as exc:
        return Outcome(None, None, str(exc))
    # The history's form picks the verdict just made (components/verdict_history.py).
    st.session_state[PICK_IN_HISTORY] = scored.analysis.id
    view = None
    if with_view:
        try:
            view = model_view(model, clip.data)
        except FakeVoiceError:  # the verdict stands; only the picture is missing
            view = None
    return Outcome(scored, view, None)


def _settled(actor: Actor, outcome: Outcome, threshold: float) -> Outcome:
    """The outcome with its history entry at the page's threshold: moving the slider after a
    verdict re-decides it, and the history (and every report of it) keeps what the page shows."""
    scored = outcome.scored
    if scored is None or scored.analysis.threshold == threshold:
        return outcome
    try:
        analysis = services.rethreshold_verdict(actor, scored.analysis.id, threshold)
    except FakeVoiceError:  # deleted meanwhile: the page still shows what it can
        return outcome
    return dataclasses.replace(outcome, scored=dataclasses.replace(scored, analysis=analysis))


def _cached(key: str, ident: tuple[Any, ...], compute: Any) -> Any:
    """``compute()`` once per ``ident`` (reruns, e.g. moving the threshold, do not score again)."""
    stored = st.session_state.get(key)
    if stored is None or stored[0] != ident:
        stored = (ident, compute())
        st.session_state[key] = stored
    return stored[1]


def _show_outcome(
    outcome: Outcome, threshold: float, *, details: bool, actor: Actor | None = None
) -> None:
    if outcome.error is not None or outcome.scored is None:
        st.error(outcome.error or "No verdict.")
        return
    verdict = outcome.scored.verdict
    label, generator = redecide(verdict.probabilities, threshold)
    verdict_card(label, generator, verdict.p_human, threshold, verdict.cautions, verdict.typicality)
    probability_chart(verdict.probabilities)
    if not details:
        return
    info = outcome.scored.info
    st.caption(
        f"{info.duration:.2f} s · {info.sample_rate} Hz · {info.channels} channel(s) · "
        f"{info.codec} in {info.container}"
    )
    if len(verdict.windows) > 1:
        st.subheader("Timeline")
        timeline_chart(verdict.windows, threshold)
    if outcome.view is not None:
        st.subheader("What the model sees")
        show_model_view(outcome.view, outcome.scored.model)
    if actor is not None:
        _seen_before(actor, outcome.scored)


def _seen_before(actor: Actor, scored: ScoredClip) -> None:
    """Say when these exact bytes were judged before (by SHA-256), and what was said then."""
    earlier = services.earlier_verdicts(actor, scored.analysis)
    if earlier.latest is None:
        return
    latest = earlier.latest
    times = "once" if earlier.count == 1 else f"{earlier.count} times"
    model = earlier.latest_model or "a model you can no longer see"
    st.info(
        f"You had this exact file (same SHA-256) judged {times} before; the latest, on "
        f"{latest.created_at:%Y-%m-%d %H:%M} UTC, said **{latest.verdict}** with {model}.",
        icon=":material/history:",
    )
    st.button(
        "Show them in the history",
        key="eval_seen_before",
        on_click=_find_in_history,
        args=(scored.analysis.file_sha256,),
        icon=":material/manage_search:",
    )


def _find_in_history(digest: str) -> None:
    """Narrow the verdict history to one file's bytes (a button's callback)."""
    st.session_state["history_find"] = digest
    for key in ("history_verdicts", "history_model", "history_dates", "history_page"):
        st.session_state.pop(key, None)


def _report_downloads(
    scored: ScoredClip, threshold: float, explanation: Explanation | None = None
) -> None:
    """The verdict as a report to keep with a case (Markdown for people, JSON for tools, signed
    by the server)."""
    report = reports.verdict_report(scored, threshold, explanation)
    st.caption(
        f"SHA-256 of the file: `{report['file']['sha256']}` · analysis {report['analysis_id']}, "
        f"kept in your history at threshold {scored.analysis.threshold:.2f}"
    )
    stem = f"verdict-{report['analysis_id']}"
    left, right = st.columns(2)
    left.download_button(
        REPORT_MARKDOWN,
        reports.report_markdown(report),
        file_name=f"{stem}.md",
        mime="text/markdown",
        key="eval_report_md",
        icon=":material/description:",
        on_click="ignore",
    )
    try:
        signed = reports.report_json(report)
    except FakeVoiceError as exc:  # the server's signing key is unusable: say so, keep the rest
        right.error(str(exc))
        return
    right.download_button(
        REPORT_JSON,
        signed,
        file_name=f"{stem}.json",
        mime="application/json",
        key="eval_report_json",
        icon=":material/data_object:",
        on_click="ignore",
    )


def _one_clip(actor: Actor, model: ModelRecord, threshold: float) -> None:
    clip = _clip_input("eval")
    if clip is None:
        st.info("Upload a recording or record one to get a verdict.")
        return
    st.audio(clip.data, format=clip.mime)
    ident = (model.id, clip.file_id)
    outcome: Outcome = _cached(
        "eval_result", ident, lambda: _score(actor, model, clip, threshold, with_view=True)
    )
    outcome = _settled(actor, outcome, threshold)
    st.session_state["eval_result"] = (ident, outcome)
    _show_outcome(outcome, threshold, details=True, actor=actor)
    if outcome.scored is not None:
        explanation = _why(actor, model, clip, outcome.scored)
        _report_downloads(outcome.scored, threshold, explanation)


def _why(actor: Actor, model: ModelRecord, clip: Clip, scored: ScoredClip) -> Explanation | None:
    """On request, which parts of the most machine-like window of the verdict's timeline moved
    the verdict (kept for the clip, so that it goes into the report too, and with the verdict in
    the history)."""
    st.subheader("Why this verdict?")
    ident = (model.id, clip.file_id)
    stored = st.session_state.get("eval_explanation")
    if stored is None or stored[0] != ident:
        st.caption(
            "Where in time and in which frequency bands the model's decision is most sensitive, "
            "in the clip's most machine-like window. It takes a few seconds (longer for AASIST "
            "and the large CNNs on a CPU); it is kept with the verdict in your history, and the "
            "report below includes it."
        )
        if not st.button("Explain the verdict", key="eval_explain", icon=":material/psychology:"):
            return None
        try:
            with st.spinner("Explaining…"):
                explained = services.explain_clip(
                    actor, model, clip.data, window=most_machine_like(scored.verdict.windows)
                )
                services.keep_explanation(actor, scored.analysis.id, explained.explanation)
        except FakeVoiceError as exc:
            st.error(str(exc))
            return None
        st.session_state["eval_explanation"] = (ident, explained.explanation)
        st.rerun()  # drawn by the next run, without this run's button and note
    explanation: Explanation = stored[1]
    explanation_view.render(explanation, model.name)
    return explanation


def _compare(
    actor: Actor,
    models: list[ModelRecord],
    owners: Mapping[int, str],
    current: ModelRecord,
    threshold: float,
) -> None:
    by_id = {m.id: m for m in models}
    chosen = st.multiselect(
        "Models to compare",
        list(by_id),
        default=[current.id],
        format_func=lambda i: model_label(by_id[i], actor.user_id, owners),
        max_selections=MAX_COMPARE,
        key="eval_compare_models",
    )
    if len(chosen) < 2:
        st.info("Choose at least two models.")
        return
    clip = _clip_input("eval_compare")
    if clip is None:
        st.info("Upload a recording or record one; every chosen model will judge it.")
        return
    st.audio(clip.data, format=clip.mime)
    ident = (tuple(chosen), clip.file_id)
    outcomes: list[Outcome] = _cached(
        "eval_compare_result",
        ident,
        lambda: [_score(actor, by_id[i], clip, threshold, with_view=False) for i in chosen],
    )
    outcomes = [_settled(actor, outcome, threshold) for outcome in outcomes]
    st.session_state["eval_compare_result"] = (ident, outcomes)
    for column, model_id, outcome in zip(st.columns(len(chosen)), chosen, outcomes, strict=True):
        with column:
            st.subheader(plain(by_id[model_id].name))
            st.caption(by_id[model_id].arch)
            _show_outcome(outcome, threshold, details=False)
    _together([o.scored for o in outcomes if o.scored is not None], threshold)


def _together(scored: list[ScoredClip], threshold: float) -> None:
    """What the models say together: how many say what, and their P(human) fused (the mean of
    their log-odds, as a test of several models fuses them)."""
    if len(scored) < 2:
        return
    labels = [decide(s.verdict.probabilities, BONAFIDE, threshold)[0] for s in scored]
    counts = ", ".join(f"{labels.count(label)} {label}" for label in dict.fromkeys(labels))
    p_human = fused_p_human([s.verdict.p_human for s in scored])
    label, _ = decide({BONAFIDE: p_human, "spoof": 1.0 - p_human}, BONAFIDE, threshold)
    st.markdown(
        f"**Together:** {counts}. Their log-odds averaged give P(human) **{p_human:.3f}**: "
        f"**{label}** at this threshold."
    )
    st.caption(
        "A plain average, not a trained fusion; when the models disagree, the clip deserves a "
        "closer look. Testing them on a labelled dataset shows how well they do together."
    )


def main() -> None:
    st.title("Evaluate")
    actor = require_actor("get verdicts on recordings")
    model_choice.model_from_url(actor)
    model_choice.upload_model(actor)
    try:
        models = services.list_models(actor)
        owners = profile.model_owners(models)  # yours and the public ones: whose is whose
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    if not models:
        st.info("There is no model yet: train one on the Train page, or upload one above.")
    else:
        model = model_choice.choose_model(actor, models, owners)
        threshold = st.slider(
            "Threshold",
            min_value=0.5,
            max_value=0.99,
            value=DEFAULT_THRESHOLD,
            step=0.01,
            key="eval_threshold",
            help="Below this confidence either way the verdict is 'inconclusive'.",
        )
        mode = st.radio("Mode", MODES, key="eval_mode", horizontal=True)
        if mode == MODES[0]:
            _one_clip(actor, model, threshold)
        elif mode == MODES[1]:
            batch_scoring.render(actor, model, threshold)
        elif mode == MODES[2]:
            _compare(actor, models, owners, model, threshold)
        else:
            dataset_test.render(actor, model, models, owners)
    verdict_history.render(actor, models, owners)
    verdict_history.check_report()


navigation.through_app(Path(__file__).name)
main()
