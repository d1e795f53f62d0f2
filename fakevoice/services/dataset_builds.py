"""Datasets built from a user's own recordings: upload, queue as a job, follow, stop, delete.

The recordings arrive as uploaded files: loose audio files of one speaker, and/or zips whose
folders name the speakers (``<speaker>/<file>``: spoofs are generated from them) or the classes
(``bonafide/``, ``<generator>/``: used as labelled). Zips are expanded with the batch rules
(count, size and expansion-ratio limits; absolute and ``..`` paths refused). The files are written
into a staging folder under ``<data dir>/uploads/`` with names made here (``safe_id`` of the
client's, which is never used as a path itself), then a job of kind ``dataset`` is queued; a
worker builds the dataset (:mod:`fakevoice.jobs.dataset_job`), which belongs to the user who
uploaded it: only they and administrators see it.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fakevoice import store
from fakevoice.archives import Source
from fakevoice.batch import open_upload
from fakevoice.datasets.folder import class_names, folder_recordings
from fakevoice.datasets.generators import all_generators, get_generator
from fakevoice.datasets.noise import noise_name, parse_noise_name
from fakevoice.datasets.uploads import (
    DatasetBuildSpec,
    remove_upload,
    stage_entries,
    uploads_dir,
)
from fakevoice.errors import ConflictError, DatasetError, InvalidSpecError, LimitExceededError
from fakevoice.features import FeatureSpec
from fakevoice.services.dataset_changes import check_name_is_free, check_new_dataset_name
from fakevoice.services.runs import delete_run, get_job, queue_job, stop_run
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, RunRecord

logger = logging.getLogger(__name__)

JOB_PREFIX = "dataset "  # a build's job is named after its dataset: "dataset <name>"
DEFAULT_BUILD_GENERATORS: tuple[str, ...] = ("world", "griffinlim", "mel_griffinlim", "lpc")
DEFAULT_BUILD_NOISE: tuple[str, ...] = ("snr_inf", "snr_20db", "snr_10db")


def submit_dataset_build(
    actor: Actor,
    name: str,
    files: Sequence[tuple[str, Source]],
    *,
    speaker: str = "",
    generators: Sequence[str] = DEFAULT_BUILD_GENERATORS,
    noise_levels: Sequence[str] = DEFAULT_BUILD_NOISE,
    feature_overrides: dict[str, Any] | None = None,
) -> RunRecord:
    """Stage uploaded recordings and queue the job that builds them into a dataset of the actor's.

    Args:
        name: the new dataset's name (letters, digits, ``-``, ``_``, ``.``).
        files: ``(client file name, bytes or binary file)`` per uploaded file; zips are
            expanded. Files are read and written to the staging folder a chunk at a time.
        speaker: the speaker of the loose (not zipped) audio files; needed when there are some.
        generators: spoof generators for speaker recordings (ignored for labelled zips).
        noise_levels: noise folder names (``snr_inf`` is clean).
        feature_overrides: spectrogram settings that differ from the defaults.

    Raises:
        InvalidSpecError: a bad name, generator, noise level or feature value, or loose files
            without a speaker name.
        ConflictError: a dataset (or a queued build) of that name exists already.
        LimitExceededError / FileTooLargeError: the upload is over the limits, or the actor
            owns ``max_datasets_per_user`` datasets already.
        DatasetError: the upload holds no usable audio file or an unknown class folder.
    """
    name = check_new_dataset_name(name)
    check_name_is_free(name)
    _check_quota(actor)
    chosen = tuple(dict.fromkeys(get_generator(g).name for g in generators))
    vocoders = copy_synthesis_generators()
    if text_to_speech := [g for g in chosen if g not in vocoders]:
        raise InvalidSpecError(
            f"'{text_to_speech[0]}' speaks text, it does not copy recordings; choose from "
            f"{', '.join(vocoders)}."
        )
    levels = tuple(dict.fromkeys(noise_name(parse_noise_name(n)) for n in noise_levels))
    if not levels:
        raise InvalidSpecError("Choose at least one noise level (clean is 'snr_inf').")
    features = FeatureSpec.from_dict(dict(feature_overrides or {})).to_dict()
    settings = get_settings()
    entries = open_upload(
        files,
        max_files=settings.dataset_upload_max_files,
        max_total_bytes=settings.dataset_upload_max_bytes,
        what="dataset upload",
    )
    staging = uploads_dir() / uuid.uuid4().hex
    try:
        count, skipped = stage_entries(entries, staging, speaker)
        _check_layout(staging)
        recordings, labelled = folder_recordings(staging)
        if not labelled and not chosen:
            raise InvalidSpecError(
                "Choose at least one generator: speaker recordings need machine copies."
            )
        spec = DatasetBuildSpec(
            name=name,
            source=str(staging),
            labelled=labelled,
            generators=() if labelled else chosen,
            noise_levels=levels,
            feature_spec=features,
            recordings=len(recordings),
            skipped=tuple(skipped),
        )
        # "dataset x (2)" when built, deleted and built again, or after a failed try
        run = queue_job(actor, JOB_PREFIX + name, spec.to_dict(), "dataset")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info(
        "dataset build %d (%s) queued by user %d: %d recordings", run.id, name, actor.user_id, count
    )
    return run


def copy_synthesis_generators() -> dict[str, str]:
    """The generators that can copy uploaded recordings (name -> description), registry order.

    TTS voices are not offered: the language of uploaded speech is unknown.
    """
    return {g.name: g.description for g in all_generators() if g.kind == "copy-synthesis"}


def list_dataset_builds(actor: Actor, *, limit: int | None = None) -> list[RunRecord]:
    """The actor's dataset builds, newest first (the newest ``limit`` when given)."""
    with store.session_scope(readonly=True) as session:
        return store.list_runs(session, actor, kind="dataset", limit=limit)


def stop_dataset_build(actor: Actor, run_id: int) -> RunRecord:
    """Stop one of the actor's builds (a queued one is cancelled at once and its upload removed).

    Raises:
        NotFoundError: no such build that the actor may see.
    """
    get_job(actor, run_id, "dataset")
    return stop_run(actor, run_id)


def clear_dataset_build(actor: Actor, run_id: int) -> None:
    """Take a finished build off the actor's list (a built dataset stays). An interrupted build's
    upload and half-built folder are removed with it: nobody will continue it.

    Raises:
        NotFoundError: no such build that the actor may see.
        ConflictError: the build is queued or running (stop it first).
    """
    run = get_job(actor, run_id, "dataset")
    if run.is_active:
        raise ConflictError(
            f"The build of {run.spec.get('name')!r} is {run.status}; stop it first."
        )
    if run.status != "succeeded":
        spec = DatasetBuildSpec.from_dict(run.spec)
        remove_upload(spec)
        folder = get_settings().dataset_dir / spec.name
        with store.session_scope() as session:
            ours = store.dataset_owners(session).get(store.folder_key(folder)) == run.owner_id
            if ours and not (folder / "manifest.csv").is_file():  # half-built: never listed
                store.forget_dataset_folder(session, store.folder_key(folder))
                shutil.rmtree(folder, ignore_errors=True)
    delete_run(actor, run_id)


def _check_layout(staging: Path) -> None:
    """Refuse an upload whose folders mix class names and speaker names (surely a mistake)."""
    folders = sorted(p.name for p in staging.iterdir() if p.is_dir())
    classes = [f for f in folders if f in class_names()]
    others = [f for f in folders if f not in class_names()]
    if classes and others:
        raise DatasetError(
            f"Some folders are class names ({', '.join(classes)}) and some are not "
            f"({', '.join(others)}): name every folder after a speaker (spoofs are made), or "
            "every folder after a class (bonafide, spoof or a generator)."
        )


def _check_quota(actor: Actor) -> None:
    """Refuse a build beyond ``max_datasets_per_user`` (datasets owned plus builds under way)."""
    limit = get_settings().max_datasets_per_user
    with store.session_scope(readonly=True) as session:
        owned = sum(owner == actor.user_id for owner in store.dataset_owners(session).values())
        building = store.list_runs(session, actor, statuses=("queued", "running"), kind="dataset")
    if owned + len(building) >= limit:
        raise LimitExceededError(
            f"You may keep at most {limit} datasets on this server; delete one on the Datasets "
            "page first."
        )
