"""The worker's side of a dataset build: uploaded recordings -> a dataset of the user's.

A job of kind ``dataset`` (queued by :func:`fakevoice.services.dataset_builds.submit_dataset_build`)
runs :func:`fakevoice.datasets.builder.import_folder` on the staged upload, reporting progress
(which is also the heartbeat) after each recording and checking the stop flag. The new folder is
recorded in the store as the user's as soon as the builder has claimed it, before its manifest
exists, so nobody else ever sees it. A stopped or failed build leaves nothing behind: its folder,
its record and the upload are removed. A build whose worker dies is continued by the next worker
(the builder resumes from its per-recording markers).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from fakevoice import store
from fakevoice.datasets.manifest import write_owner_marker
from fakevoice.errors import FakeVoiceError
from fakevoice.jobs.progress import JobLost, JobProgress, end_on_error
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, RunRecord

logger = logging.getLogger(__name__)


def execute_dataset_build(run: RunRecord, worker_id: str) -> str:
    """Build the dataset of job ``run`` (claimed as running by ``worker_id``) to a final status.

    Returns:
        The final status written to the store.
    """
    from fakevoice.datasets.builder import import_folder
    from fakevoice.datasets.noise import parse_noise_name
    from fakevoice.datasets.uploads import DatasetBuildSpec, remove_upload
    from fakevoice.features import FeatureSpec

    settings = get_settings()
    out_dir = settings.dataset_dir / "?"
    claimed = False
    try:
        spec = DatasetBuildSpec.from_dict(run.spec)
        out_dir = settings.dataset_dir / spec.name
        owner = Actor(user_id=run.owner_id)
        progress = JobProgress(run.id, worker_id)

        def on_progress(done: int, total: int) -> None:
            nonlocal claimed
            if not claimed:  # the builder has made (or found its own) folder: record the owner
                with store.session_scope() as session:
                    _record(session, owner, spec.name, out_dir, 0, {})
                claimed = True
            progress.report(done / max(total, 1), force=done >= total)

        report = import_folder(
            spec.source,
            out_dir,
            labelled=spec.labelled,
            seed=spec.seed,
            generators=spec.generators,
            noise_levels=[parse_noise_name(n) for n in spec.noise_levels],
            feature_spec=FeatureSpec.from_dict(spec.feature_spec),
            workers=settings.build_workers,
            progress=False,
            on_progress=on_progress,
        )
    except Exception as exc:  # the job must end, and a stopped or failed one leaves nothing
        if not isinstance(exc, JobLost):  # a lost one is another worker's to continue
            _clean_up(run, out_dir if claimed else None)
        return end_on_error(run.id, worker_id, exc, "build", settings.dataset_dir)
    info = json.loads((out_dir / "dataset.json").read_text(encoding="utf-8"))
    with store.session_scope() as session:
        _record(session, owner, spec.name, out_dir, report.items, info)
        notes = [*spec.skipped, *report.skipped]
        if notes:
            store.set_run_info(session, run.id, notice=_notice(notes))
        store.set_status(session, run.id, "succeeded", worker_id=worker_id)
    remove_upload(spec)
    logger.info("dataset job %d built %s: %s", run.id, spec.name, report.summary())
    return "succeeded"


def _record(
    session: Session, owner: Actor, name: str, folder: Path, items: int, info: dict[str, Any]
) -> None:
    """The folder is the owner's dataset (only they and administrators see it)."""
    write_owner_marker(folder, owner.user_id)  # first: private even if the record fails
    store.register_dataset(
        session, owner, name=name, path=store.folder_key(folder), items=items, spec=info
    )


def _notice(notes: list[str], most: int = 5) -> str:
    shown = "; ".join(notes[:most])
    more = f" (and {len(notes) - most} more)" if len(notes) > most else ""
    return f"Left out: {shown}{more}."


def _clean_up(run: RunRecord, out_dir: Path | None) -> None:
    """Remove what a stopped or failed build made: its folder, its record and the upload."""
    from fakevoice.datasets.uploads import DatasetBuildSpec, remove_upload

    if out_dir is not None:
        shutil.rmtree(out_dir, ignore_errors=True)
        with store.session_scope() as session:
            store.forget_dataset_folder(session, store.folder_key(out_dir))
    try:
        remove_upload(DatasetBuildSpec.from_dict(run.spec))
    except FakeVoiceError:
        pass  # a damaged spec names no upload to remove
