"""The Profile and Home pages' tables: runs, models and public models as rows of figures (no
streamlit here: the pages show them)."""

from __future__ import annotations

from typing import Any

from fakevoice.services.profile import PublicModel, RunEntry
from fakevoice.store.records import ModelRecord


def percent(fraction: float | None) -> float | None:
    """A fraction (0-1) as a percentage rounded to 0.01, for tables; None stays None."""
    return None if fraction is None else round(100.0 * fraction, 2)


def eer_interval_text(metrics: dict[str, Any]) -> str | None:
    """A model's EER interval as ``"8.1-14.0"`` (percent; its validation utterances drawn again),
    or None when it has none (a table's placeholder dash, as for any missing figure)."""
    interval = metrics.get("eer_interval")
    if not isinstance(interval, dict):
        return None
    return f"{100 * interval['low']:.1f}-{100 * interval['high']:.1f}"


def public_model_rows(models: list[PublicModel], *, owner: bool = True) -> list[dict[str, Any]]:
    """Public models as table rows: model, arch, owner, EER (%) and its 95 % interval,
    accuracy (%), shared since.

    Args:
        owner: Whether to give the owner column; not on one user's public page, where every
            row would name the user the page is about.
    """
    return [
        {
            "model": m.model.name,
            "arch": m.model.arch,
            **({"owner": m.owner} if owner else {}),
            "EER (%)": percent(m.eer),
            "EER 95 % interval": eer_interval_text(m.model.metrics),
            "accuracy (%)": percent(m.accuracy),
            "created": m.model.created_at.strftime("%Y-%m-%d %H:%M"),
        }
        for m in models
    ]


def run_rows(entries: list[RunEntry]) -> list[dict[str, Any]]:
    """Runs as table rows: run, arch, dataset, status, EER (%), accuracy (%), date."""
    return [
        {
            "run": e.run.name,
            "arch": e.arch,
            "dataset": e.dataset,
            "status": e.run.status,
            "EER (%)": percent(e.eer),
            "accuracy (%)": percent(e.accuracy),
            "date": e.run.created_at.strftime("%Y-%m-%d %H:%M"),
        }
        for e in entries
    ]


def model_rows(models: list[ModelRecord]) -> list[dict[str, Any]]:
    """Models as table rows: model, arch, public, EER (%) and its 95 % interval, accuracy (%),
    date."""
    return [
        {
            "model": m.name,
            "arch": m.arch,
            "public": m.is_public,
            "EER (%)": percent(m.metrics.get("eer")),
            "EER 95 % interval": eer_interval_text(m.metrics),
            "accuracy (%)": percent(m.metrics.get("accuracy")),
            "date": m.created_at.strftime("%Y-%m-%d %H:%M"),
        }
        for m in models
    ]
