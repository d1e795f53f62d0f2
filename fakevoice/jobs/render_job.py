"""The worker's side of a dataset rendered again with other features (a job of kind ``render``).

Queued by :func:`fakevoice.services.dataset_renders.submit_render`. The worker runs
:func:`fakevoice.services.dataset_changes.render_dataset` as the job's owner (who must still be an
administrator), with ``build_workers`` processes; progress (which is also the heartbeat, and the
stop check) is written after each clip, at most once a second. The renderer writes into a hidden
staging folder and renames it into place at the end, so a stopped or failed render leaves no
dataset behind. A render whose worker dies is queued again by the next worker and starts over: the
dead one's staging folder is removed first, and a render that had already been renamed into place
counts as done.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fakevoice import store
from fakevoice.datasets.manifest import DATASET_INFO_NAME, MANIFEST_NAME
from fakevoice.errors import PermissionDeniedError
from fakevoice.jobs.progress import JobProgress, end_on_error, finish_job
from fakevoice.settings import get_settings
from fakevoice.store.records import RunRecord

logger = logging.getLogger(__name__)


def execute_render(run: RunRecord, worker_id: str) -> str:
    """Render the dataset of job ``run`` (claimed as running by ``worker_id``) to a final status.

    Returns:
        The final status written to the store.
    """
    from fakevoice.datasets.render import remove_unfinished
    from fakevoice.services.dataset_changes import render_dataset
    from fakevoice.services.dataset_renders import RenderSpec

    settings = get_settings()
    try:
        spec = RenderSpec.from_dict(run.spec)
        out_dir = settings.dataset_dir / spec.name
        if _already_rendered(out_dir, spec.source, spec.feature_spec):
            logger.info("render %d: %s was rendered before its worker died", run.id, spec.name)
            return finish_job(run.id, worker_id, "succeeded")
        remove_unfinished(out_dir)
        with store.session_scope() as session:
            owner = store.get_user(session, run.owner_id).actor
        if not owner.is_admin:
            raise PermissionDeniedError(
                "Only an administrator can add datasets, and the user who queued this render is "
                "no longer one."
            )
        progress = JobProgress(run.id, worker_id)
        report = render_dataset(
            spec.source,
            spec.name,
            spec.feature_spec,
            actor=owner,
            workers=settings.build_workers,
            on_progress=lambda done, total: progress.report(
                done / max(total, 1), force=done >= total
            ),
        )
    except Exception as exc:  # the job must end, whatever happened
        return end_on_error(run.id, worker_id, exc, "render", settings.dataset_dir)
    summary = report.summary().replace(str(report.out_dir), f"'{report.out_dir.name}'")
    with store.session_scope() as session:
        store.set_run_info(session, run.id, notice=summary)
    logger.info("render %d: %s", run.id, summary)
    return finish_job(run.id, worker_id, "succeeded")


def _already_rendered(out_dir: Path, source: str, feature_spec: dict[str, object]) -> bool:
    """Whether ``out_dir`` is this render's dataset, complete (renamed into place by a worker that
    died before it could say so)."""
    try:
        info = json.loads((out_dir / DATASET_INFO_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        (out_dir / MANIFEST_NAME).is_file()
        and info.get("rendered_from") == source
        and info.get("feature_spec") == feature_spec
    )
