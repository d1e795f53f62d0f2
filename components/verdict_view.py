"""Streamlit views of a verdict: the coloured card, class probabilities, the per-window timeline,
what the model sees of the clip, and the verdict history.

Each function renders what :mod:`fakevoice.services` returned; :func:`model_view` prepares the
pictures through the same audio and feature code the model uses (no torch here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from components.user_text import plain
from fakevoice.audio import load_audio
from fakevoice.bundle_figures import DROPPED, REPORTED, dropped_parts_summary, whose_bundle
from fakevoice.cautions import typicality_text
from fakevoice.errors import FakeVoiceError
from fakevoice.features import FeatureSpec, remove_dc, render_image
from fakevoice.inference import BONAFIDE, VerdictLabel, WindowScore, decide
from fakevoice.preprocess import model_windows
from fakevoice.services import model_files
from fakevoice.services.history import verdict_model_name
from fakevoice.store.records import Actor, AnalysisRecord, ModelRecord

WAVEFORM_POINTS = 2000
CARD_STYLE: dict[str, tuple[str, str, str]] = {
    "human": ("green", ":material/person:", "Human"),
    "machine-generated": ("red", ":material/smart_toy:", "Machine-generated"),
    "inconclusive": ("orange", ":material/help:", "Inconclusive"),
}


@dataclass(frozen=True)
class ModelView:
    """What the model is shown of a clip, ready to draw.

    Attributes:
        image: ``(H, W, 3)`` uint8 spectrogram of the first window: the model's own input for
            image models, a mel view for people for waveform models.
        waveform: ``(n,)`` float32 first window at the model's rate, reduced to at most
            :data:`WAVEFORM_POINTS` points (waveform models only; None otherwise).
        seconds: length of that window, seconds.
        input_kind: ``"image"`` or ``"waveform"``.
    """

    image: np.ndarray
    waveform: np.ndarray | None
    seconds: float
    input_kind: str


def model_label(model: ModelRecord, user_id: int, owners: Mapping[int, str]) -> str:
    """``"resnet on demo · resnet18 · public"`` for pickers; another user's model names its owner
    (``"... · shared by bob"``), as two people's public models may share a name.

    Args:
        owners: The owner's user name by model id (``profile.model_owners``).
    """
    parts = [model.name, model.arch]
    if (shared := shared_by(model, user_id, owners)) is not None:
        parts.append(shared)
    elif model.is_public:
        parts.append("public")
    return " · ".join(parts)


def shared_by(model: ModelRecord, user_id: int, owners: Mapping[int, str]) -> str | None:
    """``"shared by bob"`` for another user's model (``"shared"`` when its owner is gone), None
    for the user's own."""
    if model.owner_id == user_id:
        return None
    owner = owners.get(model.id)
    return f"shared by {owner}" if owner else "shared"


def model_summary(model: ModelRecord) -> str:
    """What a model's own figures say, in a line: its classes, its validation EER, what its
    probabilities mean (calibrated or not), and which parts of its bundle were not kept."""
    eer = model.metrics.get("eer")
    items = model.metrics.get("valid_items")
    interval = model.metrics.get("eer_interval")
    how_good = (
        f"validation EER {eer:.1%}"
        + (
            f" ({interval['low']:.1%} to {interval['high']:.1%})"
            if isinstance(interval, dict)
            else ""
        )
        + (f" on {items} items" if items else "")
        if isinstance(eer, int | float)
        else _reported_figures(model.metrics)
    )
    calibrated = model.metrics.get("calibration")
    probabilities = (
        "probabilities calibrated" if isinstance(calibrated, dict) else "probabilities uncalibrated"
    )
    classes = ", ".join(model.class_names)
    said = [f"Classes: {classes}", how_good, probabilities, dropped_parts_summary(model.metrics)]
    return " · ".join(words for words in said if words) + "."


def _reported_figures(metrics: Mapping[str, object]) -> str:
    """What a model uploaded without figures of this server's says of itself, if anything."""
    reported = metrics.get(REPORTED)
    if not isinstance(reported, dict) or not isinstance(reported.get("eer"), int | float):
        if DROPPED in metrics:
            return (
                f"no validation figures (those of {whose_bundle(metrics)} failed their check and "
                "were not kept)"
            )
        return "no validation figures"
    return (
        f"validation EER {reported['eer']:.1%} as {whose_bundle(metrics)} reports (signed by "
        "another server's key, not measured here)"
    )


def model_card(actor: Actor, model: ModelRecord) -> None:
    """The model's card (:mod:`fakevoice.services.model_cards`) in a folded expander: what it
    was trained and checked on, its EER per generator and noise level, and its weak spots, for
    whoever weighs its verdicts."""
    with st.expander("About this model: its data, figures and weak spots"):
        try:
            text = model_files.model_card(actor, model).data.decode("utf-8")
        except FakeVoiceError as exc:
            st.caption(str(exc))
            return
        body = text.split("\n", 1)[1] if text.startswith("# ") else text
        st.markdown(body.replace("\n## ", "\n#### "))


def redecide(probabilities: dict[str, float], threshold: float) -> tuple[VerdictLabel, str | None]:
    """The verdict for another threshold, from the stored class probabilities (no re-scoring)."""
    return decide(probabilities, BONAFIDE, threshold)


def model_view(model: ModelRecord, data: bytes) -> ModelView:
    """Decode a clip and render its first model window as the model sees it.

    Raises:
        AudioError and its kin: the clip cannot be decoded.
    """
    audio = load_audio(data, model.sample_rate)
    image = bool(model.feature_spec)
    stacked, _ = model_windows(audio.samples, model.clip_samples, tiled=not image)
    first = stacked[0]
    if image:
        return ModelView(
            image=render_image(first, FeatureSpec.from_dict(model.feature_spec)),
            waveform=None,
            seconds=first.size / model.sample_rate,
            input_kind="image",
        )
    step = max(1, first.size // WAVEFORM_POINTS)
    return ModelView(
        image=render_image(first, FeatureSpec(sample_rate=model.sample_rate)),
        waveform=remove_dc(first)[::step],  # as the model gets it, less its mean
        seconds=first.size / model.sample_rate,
        input_kind="waveform",
    )


def verdict_card(
    label: VerdictLabel,
    generator: str | None,
    p_human: float,
    threshold: float,
    cautions: Sequence[str] = (),
    typicality: float | None = None,
) -> None:
    """The verdict in a bordered card, coloured green / red / orange, with how familiar the clip
    is to the model (when it keeps a reference) and the reasons to trust it less
    (:mod:`fakevoice.cautions`) under it."""
    colour, icon, title = CARD_STYLE[label]
    with st.container(border=True):
        st.markdown(f"### :{colour}[{icon} {title}]")
        if label == "machine-generated":
            named = (
                f"most likely generator: **{plain(generator)}**"
                if generator
                else "no generator named"
            )
            st.markdown(f"Synthetic or converted speech ({named}).")
        elif label == "inconclusive":
            st.markdown(
                f"Neither side reaches the threshold of {threshold:.0%}: "
                "the model is not sure enough."
            )
        else:
            st.markdown("This sounds like a real person.")
        st.caption(f"P(human) = {p_human:.1%} · P(machine) = {1 - p_human:.1%}")
        if typicality is not None:
            st.caption(
                f"Typicality {typicality_text(typicality)}: how usual this clip is for the model, "
                "against the clips it was checked on. Clips like the audio it learned from score "
                "anywhere from 0 to 1; under 0.001 the clip is unlike all of them (another kind "
                "of line, room, language or generator, or not speech).",
                help="fakevoice.metrics.familiarity: Mahalanobis distance to the nearest class "
                "mean of the features the model's last layer reads, against its validation "
                "clips' (out of fold).",
            )
        for caution in cautions:
            st.warning(caution, icon=":material/warning:")


def probability_chart(probabilities: dict[str, float]) -> None:
    """Class probabilities as a horizontal bar chart (bona fide first)."""
    frame = pd.DataFrame(
        {"class": list(probabilities), "probability": list(probabilities.values())}
    )
    chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            # Always 0 to 1: two charts side by side compare at a glance.
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("class:N", sort=list(probabilities), title=None),
            tooltip=["class", alt.Tooltip("probability:Q", format=".3f")],
        )
    )
    st.altair_chart(chart, width="stretch", height=max(140, 40 * len(frame)))


def timeline_chart(scores: Sequence[WindowScore], threshold: float) -> None:
    """P(human) per model window over time, with the two decision lines."""
    frame = pd.DataFrame(
        {
            "time (s)": [(w.start + w.end) / 2 for w in scores],
            "P(human)": [w.p_human for w in scores],
            "top class": [w.top_class for w in scores],
        }
    )
    # The whole clip on the time axis (points sit at their windows' middles), one title for P.
    end = max((w.end for w in scores), default=0.0)
    line = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("time (s):Q", scale=alt.Scale(domain=[0, end], nice=False)),
            y=alt.Y("P(human):Q", scale=alt.Scale(domain=[0, 1])),
            tooltip=["time (s)", "P(human)", "top class"],
        )
    )
    rules = (
        alt.Chart(pd.DataFrame({"level": [threshold, 1 - threshold]}))
        .mark_rule(strokeDash=[4, 4], color="gray")
        .encode(y=alt.Y("level:Q", title="P(human)"))
    )
    st.altair_chart(line + rules, width="stretch")
    st.caption(
        "Each point is one model window (they overlap by half). Above the upper line a window "
        "sounds human, below the lower line machine-made."
    )


def show_model_view(view: ModelView, model: ModelRecord) -> None:
    """The spectrogram (and for waveform models the waveform) of the first model window."""
    if view.input_kind == "image":
        caption = f"The spectrogram {plain(model.name)} sees (first {view.seconds:.2f} s window)"
        if (model.feature_spec or {}).get("kind") == "phase":
            caption += (
                ": red the level, green and blue how steady the phase is over time and over "
                "frequency where there is sound (dim where a vocoder scattered it)"
            )
        st.image(view.image, caption=caption, width=min(448, max(224, view.image.shape[1] * 2)))
        return
    assert view.waveform is not None
    times = np.linspace(0, view.seconds, view.waveform.size, endpoint=False)
    st.line_chart(pd.DataFrame({"time (s)": times, "amplitude": view.waveform}), x="time (s)")
    st.image(
        view.image,
        caption=(
            f"{model.arch} reads the raw waveform above (first {view.seconds:.2f} s window); "
            "this mel spectrogram is only for your eyes."
        ),
        width=448,
    )


def history_table(analyses: Iterable[AnalysisRecord], models: Iterable[ModelRecord]) -> None:
    """The actor's recent verdicts, newest first."""
    names = {m.id: m.name for m in models}
    rows = [
        {
            "time": a.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "file": a.file_name,
            "model": verdict_model_name(a, names),
            "verdict": a.verdict,
            "really": a.outcome or "",
            "P(human)": round(a.probabilities.get(BONAFIDE, float("nan")), 4),
            "duration (s)": round(a.duration, 2),
            "sample rate": a.sample_rate,
            "threshold": a.threshold,
            "via": a.source,
            "SHA-256": (a.file_sha256 or "")[:16],
            "typicality": None if a.typicality is None else typicality_text(a.typicality),
            "cautions": " ".join(a.cautions),
            "note": a.note or "",
        }
        for a in analyses
    ]
    if not rows:
        st.caption("No verdicts yet.")
        return
    # Free text is cut to a column of its own width (the whole text shows on hover): one long
    # file name pushed every other column out of sight.
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        placeholder="—",
        column_config={
            name: st.column_config.TextColumn(width="medium") for name in ("file", "note")
        },
    )
