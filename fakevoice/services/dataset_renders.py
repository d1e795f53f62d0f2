"""A dataset rendered again with other spectrogram features, as a background job: queue, follow,
stop, clear.

Rendering takes from seconds (the small demo) to many minutes (tens of thousands of clips), so the
Datasets page queues a job of kind ``render`` and a worker renders it
(:mod:`fakevoice.jobs.render_job`), with progress, a stop flag and recovery when a worker dies;
before, the page's own script rendered, and closing the tab stopped it. Datasets belong to the
server, so only administrators queue renders (as with :func:`~fakevoice.services.dataset_changes.
render_dataset`, which the job runs). The new dataset's name is reserved from the moment the job is
queued: no build or other render may take it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fakevoice import store
from fakevoice.errors import ConflictError, InvalidSpecError, PermissionDeniedError
from fakevoice.features import FeatureSpec
from fakevoice.services.dataset_changes import check_name_is_free, check_new_dataset_name
from fakevoice.services.datasets import find_dataset
from fakevoice.services.runs import delete_run, get_job, queue_job, stop_run
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, RunKind, RunRecord

logger = logging.getLogger(__name__)

KIND: RunKind = "render"
JOB_PREFIX = "render "  # a render's job is named after the new dataset: "render <name>"


@dataclass(frozen=True)
class RenderSpec:
    """Render dataset ``source`` again as dataset ``name`` with the features ``feature_spec``
    (every field, as checked by :class:`~fakevoice.features.FeatureSpec`)."""

    source: str
    name: str
    feature_spec: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise InvalidSpecError("Name the dataset to render again.")
        check_new_dataset_name(self.name)
        if not isinstance(self.feature_spec, Mapping):
            raise InvalidSpecError("The features of a render are a mapping of field to value.")

    def features(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self.feature_spec)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as stored in the job's row (``kind`` tells job backends what it is)."""
        return {
            "kind": KIND,
            "source": self.source,
            "name": self.name,
            "feature_spec": dict(self.feature_spec),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RenderSpec:
        """The spec of a stored job (InvalidSpecError when it is not one)."""
        try:
            return cls(data["source"], data["name"], dict(data["feature_spec"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSpecError(f"This is not the spec of a render: {exc}") from None


def submit_render(actor: Actor, source: str, name: str, overrides: Mapping[str, Any]) -> RunRecord:
    """Queue the render of dataset ``source`` as the new dataset ``name`` with the features of
    ``source`` changed by ``overrides`` (e.g. ``{"kind": "lfcc"}``); a worker renders it.

    Raises:
        PermissionDeniedError: the actor is not an administrator.
        NotFoundError: no dataset ``source`` the actor may see.
        InvalidSpecError: a bad name or feature value.
        ConflictError: the name is taken (a dataset, a folder, or one being made).
        LimitExceededError: the actor has too many jobs queued or running.
    """
    if not actor.is_admin:
        raise PermissionDeniedError(
            "Only an administrator can add datasets: they are shared by everyone on this server."
        )
    summary = find_dataset(source, actor)
    name = check_new_dataset_name(name)
    features = FeatureSpec.from_dict({**dict(summary.feature_spec or {}), **dict(overrides)})
    check_name_is_free(name)
    spec = RenderSpec(summary.name, name, features.to_dict())
    run = queue_job(actor, JOB_PREFIX + name, spec.to_dict(), KIND)
    logger.info(
        "render %d (%s from %s, %s) queued by user %d",
        run.id,
        name,
        summary.name,
        features.kind,
        actor.user_id,
    )
    return run


def list_renders(actor: Actor, *, limit: int | None = None) -> list[RunRecord]:
    """The actor's renders, newest first (the newest ``limit`` when given)."""
    with store.session_scope(readonly=True) as session:
        return store.list_runs(session, actor, kind=KIND, limit=limit)


def stop_render(actor: Actor, run_id: int) -> RunRecord:
    """Stop a queued or running render (within a second); nothing of the new dataset stays.

    Raises:
        NotFoundError: no such render that the actor may see.
    """
    get_job(actor, run_id, KIND)
    return stop_run(actor, run_id)


def clear_render(actor: Actor, run_id: int) -> None:
    """Take a finished render off the actor's list (a rendered dataset stays). What an
    interrupted render left (its staging folder; the record of a user's dataset rendered again)
    is removed with it: nobody will continue it.

    Raises:
        NotFoundError: no such render that the actor may see.
        ConflictError: the render is queued or running (stop it first).
    """
    run = get_job(actor, run_id, KIND)
    if run.is_active:
        raise ConflictError(
            f"The render of {run.spec.get('name')!r} is {run.status}; stop it first."
        )
    name = run.spec.get("name")
    if run.status != "succeeded" and isinstance(name, str) and name:
        from fakevoice.datasets.render import remove_unfinished

        folder = get_settings().dataset_dir / check_new_dataset_name(name)
        remove_unfinished(folder)
        if not folder.exists():  # never renamed into place: a record of it would be stale
            with store.session_scope() as session:
                store.forget_dataset_folder(session, store.folder_key(folder))
    delete_run(actor, run_id)
