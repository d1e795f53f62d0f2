"""A verdict as a report to keep with a case: which file, which model, what it said, how sure.

An analyst attaches the report to a case file: it names the judged file by the sha256 of its
bytes (the client's file name is only a label), the model by id, name and the sha256 of its
weights, gives the verdict with every probability, the threshold and the per-window timeline, and
says how well the model did on its own validation split. The same content comes as JSON (for
tools; signed by the server, :mod:`fakevoice.signing`) and as Markdown (for people).
"""

from __future__ import annotations

import json
from typing import Any

import fakevoice
from fakevoice import signing, store
from fakevoice.artefacts import BUNDLE_WEIGHTS
from fakevoice.audio import AudioInfo
from fakevoice.explain import Explanation
from fakevoice.inference import BONAFIDE, decide
from fakevoice.markdown_text import code_span, inline
from fakevoice.metrics.calibration import calibration_line
from fakevoice.services.history import GONE, get_verdict
from fakevoice.services.verdicts import ScoredClip
from fakevoice.store.records import Actor, AnalysisRecord, ModelRecord

CAVEAT = (
    "A detector's verdict is evidence to weigh, not proof. It holds for the kinds of synthetic "
    "speech the model was trained on; a new generator, heavy noise or a phone channel can fool "
    "it either way."
)


def verdict_report(
    scored: ScoredClip,
    threshold: float | None = None,
    explanation: Explanation | None = None,
) -> dict[str, Any]:
    """The JSON-ready report of one scored clip (see the module docstring).

    Args:
        threshold: the threshold the reader chose after scoring (the page's slider); the label
            is decided again from the same probabilities. Default: the one the verdict was
            logged with.
        explanation: where the decision was most sensitive, when the reader asked for it.
    """
    verdict, model, analysis, info = scored.verdict, scored.model, scored.analysis, scored.info
    threshold = verdict.threshold if threshold is None else float(threshold)
    label, generator = decide(verdict.probabilities, BONAFIDE, threshold)
    return {
        **_heading("Fake Voice Workbench verdict", analysis, info),
        "model": _model_part(model, model.id),
        "verdict": {
            "label": label,
            "generator": generator,
            "p_human": verdict.p_human,
            "p_machine": verdict.p_fake,
            "threshold": threshold,
            "logged_threshold": analysis.threshold,
            "probabilities": dict(verdict.probabilities),
            "windows": [vars(window).copy() for window in verdict.windows],
            "typicality": verdict.typicality,
            "cautions": list(verdict.cautions),
        },
        **({"explanation": explanation.to_dict()} if explanation is not None else {}),
        "caveat": CAVEAT,
    }


def history_report(actor: Actor, analysis_id: int) -> dict[str, Any]:
    """The report of a verdict in the actor's history, as kept there: the same content as
    :func:`verdict_report` (at the threshold it was made with) without what the history does
    not keep (the channels and codec; the timeline of verdicts made before it was kept), with
    the explanation kept with it when its owner asked why, plus what the owner recorded since:
    what the clip really was and their note.

    Raises:
        NotFoundError: no such verdict of the actor's (a history is personal).
    """
    analysis = get_verdict(actor, analysis_id)
    with store.session_scope(readonly=True) as session:
        visible = {m.id: m for m in store.list_models(session, actor)}
    model = visible.get(analysis.model_id) if analysis.model_id is not None else None
    label, generator = decide(analysis.probabilities, BONAFIDE, analysis.threshold)
    p_human = float(analysis.probabilities.get(BONAFIDE, 0.0))
    return {
        **_heading("Fake Voice Workbench verdict (from the history)", analysis, None),
        "model": _model_part(model, analysis.model_id),
        "verdict": {
            "label": label,
            "generator": generator,
            "p_human": p_human,
            "p_machine": 1.0 - p_human,
            "threshold": analysis.threshold,
            "logged_threshold": analysis.threshold,
            "probabilities": dict(analysis.probabilities),
            "windows": [dict(window) for window in analysis.windows or []],
            "typicality": analysis.typicality,
            "cautions": list(analysis.cautions),
        },
        **({"explanation": analysis.explanation} if analysis.explanation else {}),
        "outcome": {"really": analysis.outcome, "note": analysis.note},
        "caveat": CAVEAT,
    }


def _heading(title: str, analysis: AnalysisRecord, info: AudioInfo | None) -> dict[str, Any]:
    """What a report says first: which report, which verdict, which file (the decoded file's
    details when known; the history keeps its duration and rate only)."""
    return {
        "report": title,
        "tool_version": fakevoice.__version__,
        "analysis_id": analysis.id,
        "created_at": analysis.created_at.isoformat(timespec="seconds"),
        "file": {
            "name": analysis.file_name,
            "sha256": analysis.file_sha256,
            "duration_seconds": round(info.duration if info else analysis.duration, 4),
            "sample_rate": info.sample_rate if info else analysis.sample_rate,
            "channels": info.channels if info else None,
            "codec": info.codec if info else None,
            "container": info.container if info else None,
        },
    }


def _model_part(model: ModelRecord | None, model_id: int | None) -> dict[str, Any]:
    if model is None:
        return {
            "id": model_id,
            "name": GONE,
            "arch": None,
            "classes": [],
            "weights_sha256": None,
            "validation": {},
        }
    validation = {
        key: model.metrics.get(key)
        for key in ("eer", "accuracy", "auc", "ece", "valid_items", "calibration")
        if model.metrics.get(key) is not None
    }
    return {
        "id": model.id,
        "name": model.name,
        "arch": model.arch,
        "classes": list(model.class_names),
        "weights_sha256": model.files.get(BUNDLE_WEIGHTS),
        "validation": validation,
    }


def report_json(report: dict[str, Any]) -> str:
    """The report as indented JSON text, signed by this server (:mod:`fakevoice.signing`)."""
    return json.dumps(signing.sign(report), indent=2) + "\n"


def _typicality_lines(typicality: object) -> list[str]:
    """How familiar the clip was to the model, in words (none for a model without a reference)."""
    from fakevoice.cautions import typicality_text

    if not isinstance(typicality, int | float):
        return []
    return [
        f"- **Typicality** {typicality_text(typicality)}: the share of the model's validation clips at least "
        "as unlike its classes as this clip (under 0.001: unlike the audio it learned from)"
    ]


def report_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown document for people."""
    file, model, verdict = report["file"], report["model"], report["verdict"]
    label = str(verdict["label"]).capitalize()
    if verdict["generator"] and verdict["label"] == "machine-generated":  # not for inconclusive
        label += f" (most likely generator: {code_span(verdict['generator'])})"
    validation = model["validation"]
    eer = validation.get("eer")
    how_good = (
        f"equal error rate {100 * eer:.1f} % on its validation split "
        f"({validation.get('valid_items', '?')} items)"
        if isinstance(eer, int | float)
        else "no validation figures recorded"
    )
    lines = [
        f"# Verdict: {label}",
        "",
        f"- **P(human)** {verdict['p_human']:.3f} · **P(machine)** {verdict['p_machine']:.3f} · "
        f"threshold {verdict['threshold']:.2f} (below it either way: inconclusive)",
        *_typicality_lines(verdict.get("typicality")),
        f"- Analysis {report['analysis_id']}, {report['created_at']}, "
        f"Fake Voice Workbench {report['tool_version']}",
        "",
        "## File",
        "",
        f"- Name (as given, a label only): {code_span(file['name'])}",
        f"- SHA-256: `{file['sha256'] or 'not recorded'}`",
        f"- {file['duration_seconds']:.2f} s, {file['sample_rate']} Hz"
        + (
            f", {file['channels']} channel(s), {file['codec']} in {file['container']}"
            if file.get("channels")
            else ""
        ),
        "",
        *_outcome_lines(report.get("outcome")),
        "## Model",
        "",
        f"- {code_span(model['name'])} (id {model['id']}, {model['arch'] or 'unknown'}), classes: "
        f"{', '.join(code_span(name) for name in model['classes']) or 'unknown'}",
        f"- Weights SHA-256: `{model['weights_sha256'] or 'not recorded'}`",
        f"- How good: {how_good}",
        f"- Probabilities: {calibration_line(validation.get('calibration'))}",
        "",
        "## Class probabilities",
        "",
        "| class | probability |",
        "| --- | --- |",
        *(f"| {code_span(name)} | {p:.4f} |" for name, p in verdict["probabilities"].items()),
        "",
        *(
            ["## Cautions", "", *(f"- {caution}" for caution in verdict["cautions"]), ""]
            if verdict.get("cautions")
            else []
        ),
        *(_timeline_lines(verdict["windows"])),
        *_explanation_lines(report.get("explanation")),
        f"*{report['caveat']}*",
        "",
    ]
    return "\n".join(lines)


def _outcome_lines(outcome: dict[str, Any] | None) -> list[str]:
    if not outcome or not (outcome.get("really") or outcome.get("note")):
        return []
    lines = ["## What it really was", ""]
    if outcome.get("really"):
        lines.append(f"- Recorded by the analyst: **{outcome['really']}**")
    if outcome.get("note"):
        lines.append(f"- Note: {inline(outcome['note'])}")
    return [*lines, ""]


def _timeline_lines(windows: list[dict[str, Any]]) -> list[str]:
    if not windows:
        return [
            "## Timeline",
            "",
            "Not kept: this verdict was made before the history kept timelines.",
            "",
        ]
    return [
        "## Timeline",
        "",
        "| from (s) | to (s) | P(human) | most likely class |",
        "| --- | --- | --- | --- |",
        *(
            f"| {w['start']:.2f} | {w['end']:.2f} | {w['p_human']:.3f} | {code_span(w['top_class'])} |"
            for w in windows
        ),
        "",
    ]


def _explanation_lines(explanation: dict[str, Any] | None) -> list[str]:
    e = Explanation.from_dict(explanation)
    if e is None:
        return []
    return [
        "## Why: where the decision is most sensitive",
        "",
        f"Window {e.start:.2f}-{e.end:.2f} s, P(human) {e.p_human:.3f} in it. {e.method}. It "
        "shows where the model looks, not proof of how the clip was made.",
        "",
        "| band | share |",
        "| --- | --- |",
        *(f"| {band.label()} | {100 * band.share:.1f} % |" for band in e.bands),
        "",
    ]
