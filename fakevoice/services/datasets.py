"""Use-cases shared by the pages, the API and the CLI (this module never imports streamlit).

Datasets part: which datasets are built, what is in one (counts per noise level, speaker and
class) and what its shortcut audit found (side-by-side comparisons of an utterance:
:mod:`fakevoice.services.dataset_comparisons`; changes: :mod:`fakevoice.services.dataset_changes`).
Dataset names are checked against the folders that really exist under
``get_settings().dataset_dir``; any other name (``'../x'`` included) raises
:class:`~fakevoice.errors.NotFoundError`, so a name never becomes a path by itself.

Every function takes the acting user (``actor``; None for a visitor who is not signed in):
datasets built from a user's uploaded recordings are theirs (the store records the owner of the
folder), and a dataset someone may not see is reported as not existing.

Settings are read on every call, never at import time, so a process (or a test) that changes
``FAKEVOICE_DATASET_DIR`` and clears the settings cache sees the new folder at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from fakevoice import store
from fakevoice.datasets.catalog import DatasetSummary
from fakevoice.datasets.catalog import list_datasets as catalog_list_datasets
from fakevoice.datasets.manifest import (
    BONAFIDE,
    OWNER_MARKER_NAME,
    read_manifest,
    read_owner_marker,
    write_owner_marker,
)
from fakevoice.datasets.noise import noise_sort_key
from fakevoice.datasets.shortcut_findings import ShortcutAudit
from fakevoice.datasets.shortcuts import audit_dataset, read_audit, write_audit
from fakevoice.errors import DatasetError, NotFoundError
from fakevoice.features import RENDER_VERSION
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor
from fakevoice.trainspec import WAVEFORM_ARCHS

logger = logging.getLogger(__name__)

ATTRIBUTION_NAME = "ATTRIBUTION"  # licence notices the builder writes beside the manifest
MAX_ATTRIBUTION_BYTES = 256 * 1024
BUILD_HINT = "Build the demo dataset with `fakevoice dataset build-demo` (or `make run`)."


@dataclass(frozen=True)
class DatasetOverview:
    """What one built dataset holds.

    Attributes:
        name: Dataset folder name.
        items: Manifest rows (one image per row).
        clips: Distinct wav clips (an utterance per class; noise levels share a clip).
        speakers: Distinct speakers.
        classes: Class names, ``"bonafide"`` first, then generators alphabetically.
        noise_levels: Noise names (``"snr_inf"``, ``"snr_20db"``...), clean first, then by
            falling SNR.
        audio_hours: Total duration of the distinct clips, in hours.
        by_noise: Index ``noise`` (in ``noise_levels`` order); columns ``items``, ``clips``.
        by_speaker: Index ``speaker`` (sorted); columns ``items``, ``clips``.
        by_class: Index ``class`` (in ``classes`` order); columns ``items``, ``clips``.
        feature_spec: The feature spec dict the images were rendered with.
        info: The catalog summary of the dataset (``dataset.json`` contents and more).
        attribution: Text of the dataset's ATTRIBUTION file, or ``None`` when it has none.
        owner_id: The user it belongs to (built from their recordings); None when shared.
        shortcuts: The shortcut audit its build kept (:func:`dataset_shortcuts`), or None when it
            has none yet.
        render_notice: :func:`older_renderer_note`: what to do when an older renderer made its
            images, else None.
    """

    name: str
    items: int
    clips: int
    speakers: int
    classes: list[str]
    noise_levels: list[str]
    audio_hours: float
    by_noise: pd.DataFrame
    by_speaker: pd.DataFrame
    by_class: pd.DataFrame
    feature_spec: dict[str, Any]
    info: dict[str, Any]
    attribution: str | None
    owner_id: int | None = None
    shortcuts: ShortcutAudit | None = None
    render_notice: str | None = None


# --- listing and name checks ---------------------------------------------------------------------


def list_datasets(*, actor: Actor | None) -> list[DatasetSummary]:
    """The built datasets under the configured dataset folder that ``actor`` may see, by name.

    Datasets built with the command line are shared by everyone; one built from a user's
    uploaded recordings belongs to that user, and only they and administrators see it.

    Args:
        actor: who is looking; None for a visitor who is not signed in (shared datasets only).

    Returns:
        One summary per folder that holds a ``manifest.csv``; empty when the folder is missing.
    """
    summaries = catalog_list_datasets(get_settings().dataset_dir)
    if not summaries:
        return []
    with store.session_scope(readonly=True) as session:
        owners = store.dataset_owners(session)
    return [s for s in summaries if _may_see(actor, owner_of_folder(owners, s.path))]


def owner_of_folder(owners: Mapping[str, int | None], folder: Path) -> int | None:
    """Whose dataset ``folder`` is (None: everyone's), from the store's records (``owners``,
    :func:`store.dataset_owners`) or, for a folder no record names (the data folder moved, was
    restored elsewhere), from the owner marker a user's dataset keeps: never everyone's because
    its record was lost. A recorded private folder without a marker (made before markers) gets
    one here."""
    key = store.folder_key(folder)
    if key in owners:
        owner = owners[key]
        if owner is not None and not (folder / OWNER_MARKER_NAME).exists():
            try:
                write_owner_marker(folder, owner)
            except OSError as error:  # a read-only dataset folder: the record still holds
                logger.warning("cannot mark the owner of %s: %s", folder.name, error)
        return owner
    return read_owner_marker(folder)


def _owner_of(folder: Path) -> int | None:
    with store.session_scope(readonly=True) as session:
        return owner_of_folder(store.dataset_owners(session), folder)


def _may_see(actor: Actor | None, owner_id: int | None) -> bool:
    return owner_id is None or (actor is not None and actor.can_read(owner_id))


def dataset_names(*, actor: Actor | None) -> list[str]:
    """Names of the built datasets ``actor`` may see, sorted."""
    return [summary.name for summary in list_datasets(actor=actor)]


def find_dataset(name: str, actor: Actor | None) -> DatasetSummary:
    """The summary of the dataset called ``name``; NotFoundError for any other string and for
    a dataset of someone else's."""
    summaries = list_datasets(actor=actor)
    for summary in summaries:
        if summary.name == name:
            return summary
    if not summaries:
        raise NotFoundError(f"There is no dataset named {name!r}: none is built yet. {BUILD_HINT}")
    names = ", ".join(repr(s.name) for s in summaries[:10]) + (
        ", ..." if len(summaries) > 10 else ""
    )
    whose = "" if actor is not None and actor.is_admin else " that you may use"
    raise NotFoundError(f"There is no dataset named {str(name)[:80]!r}{whose}; these are: {names}.")


def dataset_path(name: str, *, actor: Actor | None) -> Path:
    """The folder of the dataset called ``name`` (only names of datasets ``actor`` may see).

    Raises:
        NotFoundError: ``name`` is not one of :func:`dataset_names` (e.g. ``'../x'``).
    """
    return find_dataset(name, actor).path


# --- manifest ------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _cached_manifest(folder: str, mtime_ns: int, size: int) -> pd.DataFrame:
    # mtime and size are in the key so a rebuilt dataset is read again.
    return read_manifest(Path(folder))


def dataset_manifest(folder: Path) -> pd.DataFrame:
    """The dataset's manifest (a copy: callers may change it freely)."""
    try:
        stat = (folder / "manifest.csv").stat()
    except OSError as exc:
        raise DatasetError(f"The dataset in {folder} has no readable manifest.csv.") from exc
    return _cached_manifest(str(folder), stat.st_mtime_ns, stat.st_size).copy()


def ordered_classes(classes: list[str] | set[str]) -> list[str]:
    """``"bonafide"`` first, then the generator classes alphabetically."""
    return sorted(set(classes), key=lambda c: (c != BONAFIDE, c))


def _counts(frame: pd.DataFrame, column: str, order: list[str]) -> pd.DataFrame:
    """Items and distinct clips per value of ``column``, in ``order``."""
    grouped = frame.groupby(column, sort=False)
    counts = pd.DataFrame({"items": grouped.size(), "clips": grouped["clip_path"].nunique()})
    counts = counts.reindex(order).fillna(0).astype(int)
    counts.index.name = column
    return counts


def _read_attribution(folder: Path) -> str | None:
    path = folder / ATTRIBUTION_NAME
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        return handle.read(MAX_ATTRIBUTION_BYTES).decode("utf-8", errors="replace")


def dataset_overview(name: str, *, actor: Actor | None) -> DatasetOverview:
    """Counts and metadata of one dataset, for the header metrics and the count tables.

    Args:
        name: A dataset name from :func:`dataset_names`.

    Raises:
        NotFoundError: No dataset has that name.
        DatasetError: Its manifest is missing or corrupt.
    """
    summary = find_dataset(name, actor)
    frame = dataset_manifest(summary.path)
    noise_levels = sorted(frame["noise"].unique(), key=noise_sort_key)
    classes = ordered_classes(set(frame["class"].unique()))
    speakers = sorted(frame["speaker"].unique())
    unique_clips = frame.drop_duplicates("clip_path")
    seconds = float(pd.to_numeric(unique_clips["duration"], errors="coerce").fillna(0.0).sum())
    return DatasetOverview(
        name=summary.name,
        items=len(frame),
        clips=len(unique_clips),
        speakers=len(speakers),
        classes=classes,
        noise_levels=noise_levels,
        audio_hours=seconds / 3600.0,
        by_noise=_counts(frame, "noise", noise_levels),
        by_speaker=_counts(frame, "speaker", speakers),
        by_class=_counts(frame, "class", classes),
        feature_spec=dict(summary.feature_spec or {}),
        info=summary.to_dict(),
        attribution=_read_attribution(summary.path),
        owner_id=_owner_of(summary.path),
        shortcuts=read_audit(summary.path),
        render_notice=older_renderer_note(summary),
    )


def render_again_command(name: str) -> str:
    """The command that renders dataset ``name``'s clips again with the same features."""
    return f"fakevoice dataset render {name} {name}-r{RENDER_VERSION}"


def older_renderer_note(summary: DatasetSummary) -> str | None:
    """What to know and do when an older renderer made the dataset's images (before each clip's
    DC offset was taken off, :data:`~fakevoice.features.RENDER_VERSION`); None otherwise."""
    if not summary.older_renderer:
        return None
    return (
        f"The images of '{summary.name}' were made by an older renderer, which left each clip's "
        "DC offset in them; verdicts now take it off, so a model trained on these images sees "
        "slightly different inputs from those its verdicts give it (AASIST reads the clips and "
        "is not affected). An administrator renders it again with the same features ('Render "
        "these clips' on the Datasets page, or on the server "
        f"`{render_again_command(summary.name)}`); train on the new dataset."
    )


def render_warning(name: str, arch: str, *, actor: Actor | None) -> str | None:
    """:func:`older_renderer_note` for a run of ``arch`` on dataset ``name``; None for a model
    that reads the clips (AASIST), a current dataset and one that is gone."""
    if arch in WAVEFORM_ARCHS:
        return None
    try:
        return older_renderer_note(find_dataset(name, actor))
    except NotFoundError:
        return None


def kept_shortcuts(name: str, *, actor: Actor | None) -> ShortcutAudit | None:
    """The shortcut audit a dataset keeps, or None (none kept, or the dataset is gone): never
    measures, so a results view can show it beside a model's EERs for free."""
    try:
        return read_audit(dataset_path(name, actor=actor))
    except NotFoundError:
        return None


def shortcut_warning(
    name: str,
    classes: Sequence[str] | None = None,
    *,
    actor: Actor | None,
    use: Literal["train", "test"] = "train",
) -> str | None:
    """A warning for a run on ``classes`` of the dataset (None: all), or a test of a model on it
    (``use="test"``), when its kept shortcut audit found simple cues that tell some of them from
    the human clips; None otherwise, for a dataset without an audit (this never measures) and
    for one gone since (a test outlives its dataset)."""
    audit = kept_shortcuts(name, actor=actor)
    return None if audit is None else audit.warning(classes, use=use)


def audited_shortcut_warning(
    name: str, classes: Sequence[str] | None = None, *, actor: Actor | None
) -> str | None:
    """:func:`shortcut_warning` for a background job about to train on the dataset, which first
    audits a dataset that keeps no current audit (built before there were audits, or audited by
    an older version of the checks) and keeps it: a few seconds per thousand clips that cost
    nobody a wait, where the pages and the API never measure. None when the dataset is gone or
    cannot be audited (one class only): the run goes on."""
    try:
        audit = dataset_shortcuts(name, actor=actor)
    except (NotFoundError, DatasetError) as error:
        logger.info("no shortcut audit for %s: %s", name, error)
        return None
    except Exception:  # an audit informs; it never stops the run that asked for it
        logger.exception("the shortcut audit of %s failed", name)
        return None
    return audit.warning(classes, use="train")


def dataset_shortcuts(name: str, *, actor: Actor | None, recompute: bool = False) -> ShortcutAudit:
    """How well simple cues (silence, level, bandwidth...) alone tell the dataset's human clips
    from its machine ones (:mod:`fakevoice.datasets.shortcuts`).

    The audit every build keeps beside the manifest, or, for a dataset built before there was
    one (or with ``recompute``), made now (about 2 s per thousand clips) and kept.

    Raises:
        NotFoundError: no dataset of that name that ``actor`` may see.
        DatasetError: its clips cannot be read, or it lacks human or machine clips.
    """
    folder = dataset_path(name, actor=actor)
    audit = None if recompute else read_audit(folder)
    if audit is None:
        audit = audit_dataset(folder)
        try:
            write_audit(folder, audit)
        except OSError as error:  # a read-only dataset folder: the audit is still answered
            logger.warning("cannot keep the shortcut audit of %s: %s", name, error)
    return audit
