"""A model card: what a stored model is, what it was trained and checked on, how well it did and
where it is weak, as a Markdown document that goes with the model when it is shared.

It is written from what the workbench keeps, never typed by hand: the model's manifest (the
architecture, classes, input, the training recipe, the fingerprints of its training clips) and
its validation figures (EER with its interval, EER per generator and per noise level, the
calibration). Names people chose (the model's, its classes', datasets', an uploaded file's) go in
code spans, so a Markdown viewer never turns them into links or images.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fakevoice.bundle_figures import (
    REPORTED,
    dropped_figures_text,
    dropped_parts_text,
    whose_bundle,
)
from fakevoice.cautions import weak_model_sentence
from fakevoice.datasets.fingerprints import TRAINING_AUDIO
from fakevoice.datasets.noise import noise_label, noise_sort_key
from fakevoice.markdown_text import code_span
from fakevoice.metrics.bootstrap import interval_words
from fakevoice.metrics.calibration import calibration_line
from fakevoice.store.records import ModelRecord

WEAK_GENERATOR_EER = 0.2
"""A generator whose validation EER is at least this is named among the model's weak spots."""
MAGNITUDE_KINDS = {"mel", "linear", "mfcc", "lfcc", "cqt"}
"""Spectrogram kinds that keep magnitudes only (the ``phase`` kind keeps phase too)."""


def _percent(value: object) -> str:
    return f"{100 * float(value):.1f} %" if isinstance(value, int | float) else "–"


def model_card_markdown(
    model: ModelRecord, manifest: Mapping[str, Any], owner: str | None = None
) -> str:
    """The card of ``model`` (its record, and its bundle's ``manifest.json``) as Markdown.

    Args:
        owner: the owner's user name, for a shared model's readers.
    """
    metrics = model.metrics or {}
    spec = manifest.get("train_spec") if isinstance(manifest.get("train_spec"), dict) else None
    lines = [
        f"# Model card: {code_span(model.name)}",
        "",
        *_summary_lines(model, manifest, owner),
        "",
        "## Training data",
        "",
        *_data_lines(manifest, metrics, spec),
        "",
        "## Validation",
        "",
        *_validation_lines(metrics),
        "",
        "## Weak spots and limits",
        "",
        *_limit_lines(model, manifest, metrics),
    ]
    if spec is not None:
        lines += [
            "",
            "## Recipe",
            "",
            "The training options, as `fakevoice train --spec FILE` and `POST /v1/runs` take them:",
            "",
            "```json",
            json.dumps(spec, indent=2, sort_keys=True),
            "```",
        ]
        chosen = metrics.get("learning_rate")
        if spec.get("learning_rate") is None and isinstance(chosen, int | float):
            lines += [
                "",
                f"The learning rate was left to fastai's finder, which chose {chosen:.3g} at the "
                "start of the run (set it to train this model again without the finder).",
            ]
    return "\n".join(lines) + "\n"


def _summary_lines(model: ModelRecord, manifest: Mapping[str, Any], owner: str | None) -> list[str]:
    classes = ", ".join(code_span(name) for name in model.class_names)
    kind = "binary" if len(model.class_names) == 2 else f"{len(model.class_names)} classes"
    if manifest.get("input_kind") == "waveform":
        heard = f"raw {model.sample_rate} Hz waveform, windows of {model.clip_samples:,} samples"
    else:
        heard = _feature_words(model.feature_spec or {})
    versions = manifest.get("versions")
    versions = versions if isinstance(versions, dict) else {}
    made = ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))
    source = (model.metrics or {}).get("source")
    return [
        f"- Architecture: {model.arch} ({kind}: {classes})",
        f"- Input: {heard}",
        f"- Model id {model.id}, stored {model.created_at:%Y-%m-%d}"
        + (f" by {code_span(owner)}" if owner else "")
        + (", public" if model.is_public else ", private"),
        f"- Weights SHA-256: `{model.files.get('model.safetensors', 'not recorded')}`",
        *([f"- Source: {code_span(source)}"] if source else []),
        *([f"- Made with {made}"] if made else []),
    ]


def _feature_words(feature: Mapping[str, Any]) -> str:
    """A feature spec in a line, e.g. "mel spectrogram (128 bands, n_fft 512, hop 160 samples)
    as a 224 x 224 magma image"."""
    kind = str(feature.get("kind", "?"))
    bands = (
        f"{feature.get('n_mels')} bands, "
        if kind in ("mel", "linear", "lfcc", "mfcc") and feature.get("n_mels")
        else ""
    )
    return (
        f"{kind} spectrogram ({bands}n_fft {feature.get('n_fft', '?')}, hop "
        f"{feature.get('hop_length', '?')} samples, at {feature.get('sample_rate', '?')} Hz) as a "
        f"{feature.get('image_height', '?')} x {feature.get('image_width', '?')} "
        f"{feature.get('colormap', '')} image"
    ).replace("  ", " ")


def _data_lines(
    manifest: Mapping[str, Any], metrics: Mapping[str, Any], spec: Mapping[str, Any] | None
) -> list[str]:
    if spec is None:
        return [
            "Not trained here: the workbench knows nothing of its training data beyond its "
            "source (above)."
        ]
    chosen = [
        f"{what} {', '.join(code_span(v) for v in values)}"
        for what, values in (
            ("noise levels", spec.get("noise_levels")),
            ("speakers", spec.get("speakers")),
            ("classes", spec.get("classes")),
        )
        if values
    ]
    heard = manifest.get(TRAINING_AUDIO)
    return [
        f"- Dataset {code_span(spec.get('dataset'))}"
        + (f", {'; '.join(chosen)}" if chosen else ", every item"),
        f"- Split by {spec.get('split_by', 'utterance')}"
        + (
            f", held out: {', '.join(code_span(h) for h in spec['holdout'])}"
            if spec.get("holdout")
            else ""
        )
        + f"; {metrics.get('train_items', '?')} items to train on, "
        f"{metrics.get('valid_items', '?')} to validate on (seed {spec.get('seed', '?')})",
        f"- Fingerprints of its {len(heard):,} training clips are kept: a test on any dataset "
        "counts the items whose audio it was trained on"
        if isinstance(heard, list)
        else "- No fingerprints of its training clips: a test on another dataset cannot tell "
        "whether it holds audio the model was trained on",
    ]


def _validation_lines(metrics: Mapping[str, Any]) -> list[str]:
    if isinstance(metrics.get("eer"), int | float):
        return _figure_lines(metrics, metrics.get("calibration"))
    reported = metrics.get(REPORTED)
    if not isinstance(reported, dict):
        dropped = dropped_figures_text(metrics)
        return [
            "No validation figures were kept with this model." + (f" {dropped}" if dropped else "")
        ]
    return [
        f"No validation figures of its own here. {whose_bundle(metrics).capitalize()} reports "
        f"these, signed by key {code_span(reported.get('key_id'))}, another server's: they were "
        "not measured here. Compare the key's id with the one the sharing server publishes "
        "(`GET /v1/reports/key`, `fakevoice report key`) before you trust them, and test the "
        "model on your own data.",
        "",
        *_figure_lines(reported, metrics.get("calibration")),
    ]


def _figure_lines(metrics: Mapping[str, Any], calibration: object) -> list[str]:
    lines = [
        f"- EER {_percent(metrics['eer'])}, AUC "
        + (f"{metrics['auc']:.3f}" if isinstance(metrics.get("auc"), int | float) else "–")
        + f", accuracy {_percent(metrics.get('accuracy'))}, macro F1 "
        + (
            f"{metrics['macro_f1']:.3f}"
            if isinstance(metrics.get("macro_f1"), int | float)
            else "–"
        )
        + f" on {metrics.get('valid_items', '?')} validation items",
    ]
    if isinstance(metrics.get("eer_interval"), dict):
        lines.append(f"- {interval_words(metrics['eer_interval'])}")
    lines.append(f"- Probabilities {calibration_line(calibration)}")
    counts = metrics.get("eer_items") if isinstance(metrics.get("eer_items"), dict) else {}
    for title, key, label, order in (
        ("generator", "generator_eer", str, str),
        ("noise level", "noise_eer", noise_label, noise_sort_key),
    ):
        eers = metrics.get(key)
        if not isinstance(eers, dict) or not eers:
            continue
        items = counts.get(key.split("_")[0], {}) if isinstance(counts, dict) else {}
        lines += ["", f"| {title} | EER | human, machine items |", "| --- | --- | --- |"]
        # Sorted: a bundle's signed figures come back with their keys in alphabetical order.
        for name, eer in sorted(eers.items(), key=lambda pair: order(pair[0])):
            pair = items.get(name) if isinstance(items, dict) else None
            shown = f"{pair[0]}, {pair[1]}" if isinstance(pair, list) and len(pair) == 2 else "–"
            lines.append(f"| {code_span(label(name))} | {_percent(eer)} | {shown} |")
    return lines


def _limit_lines(
    model: ModelRecord, manifest: Mapping[str, Any], metrics: Mapping[str, Any]
) -> list[str]:
    lines = []
    # In the words of the verdict's caution (fakevoice.cautions.model_cautions), said before use.
    eer = metrics.get("eer")
    judged = (
        weak_model_sentence(eer, f"Its validation EER is {_percent(eer)}", own=True)
        if isinstance(eer, int | float)
        else None
    )
    if judged is not None:
        lines.append(f"- {judged}")
    eers = metrics.get("generator_eer")
    if isinstance(eers, dict):
        weak = [
            f"{code_span(name)} ({_percent(eer)} EER)"
            for name, eer in eers.items()
            if isinstance(eer, int | float) and eer >= WEAK_GENERATOR_EER
        ]
        if weak:
            lines.append(f"- On its own validation split it often misses {', '.join(weak)}.")
        lines.append(
            "- It was checked only against the generators above: a new generator, voice "
            "conversion, another language, microphone or a phone channel can fool it either way."
        )
    kind = (model.feature_spec or {}).get("kind")
    if manifest.get("input_kind") != "waveform" and kind in MAGNITUDE_KINDS:
        lines.append(
            "- It sees spectrogram magnitudes only: copy-synthesis that keeps the magnitude "
            "(Griffin-Lim from the full STFT, HiFi-GAN from the mel spectrogram) looks like the "
            "original to it. A waveform model (AASIST) or `phase` features see the phase."
        )
    lines += [f"- {sentence}" for sentence in dropped_parts_text(metrics, manifest)]
    lines.append(
        "- A verdict is evidence to weigh, not proof; validation figures are on audio like its "
        "training data, and a test on recordings from elsewhere (Evaluate > Test on a dataset, "
        "`fakevoice evaluate`) shows how it does out of its depth."
    )
    return lines
