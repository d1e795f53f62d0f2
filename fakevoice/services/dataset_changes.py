"""Use-cases that change datasets: record a user's dataset, delete one, render one again with
other features (the read-only views are in :mod:`fakevoice.services.datasets`).

A dataset folder registered in the store with an owner is that user's (only they and
administrators see it); one without a record is shared by everyone. Shared datasets are changed
by administrators and the command line only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakevoice import store
from fakevoice.datasets.catalog import DatasetSummary
from fakevoice.datasets.catalog import list_datasets as catalog_list_datasets
from fakevoice.datasets.manifest import write_owner_marker
from fakevoice.errors import (
    ConflictError,
    DatasetError,
    InvalidSpecError,
    NotFoundError,
    PermissionDeniedError,
)
from fakevoice.services.datasets import BUILD_HINT, find_dataset, owner_of_folder
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, RunKind

if TYPE_CHECKING:
    from fakevoice.datasets.render import RenderReport

logger = logging.getLogger(__name__)


def record_owner(
    owner_id: int, name: str, folder: Path, *, items: int, spec: Mapping[str, Any] | None = None
) -> None:
    """Record ``folder`` (a dataset being made, or made) as the user's: only they and
    administrators will see it."""
    write_owner_marker(folder, owner_id)  # first: private even if the record fails
    with store.session_scope() as session:
        store.register_dataset(
            session,
            Actor(user_id=owner_id),
            name=name,
            path=store.folder_key(folder),
            items=items,
            spec=dict(spec or {}),
        )


def delete_dataset(actor: Actor, name: str) -> None:
    """Delete a dataset's folder: the owner's own, or (administrators) any.

    Models trained on it stay. Datasets shared by everyone (built with the command line) may be
    deleted by administrators only.

    Raises:
        NotFoundError: no such dataset that the actor may see.
        PermissionDeniedError: a shared dataset, and the actor is not an administrator.
        ConflictError: a queued or running training run, test or render uses it.
    """
    import shutil

    summary = find_dataset(name, actor)
    key = store.folder_key(summary.path)
    with store.session_scope() as session:
        owner_id = owner_of_folder(store.dataset_owners(session), summary.path)
        if owner_id is None and not actor.is_admin:
            raise PermissionDeniedError(
                "Only an administrator may delete a dataset that everyone shares."
            )
        if not actor.can_write(owner_id):
            raise PermissionDeniedError("Only its owner or an administrator may delete a dataset.")
        users = store.active_job_specs(session, ("train", "evaluate"))
        if any(spec.get("dataset") == name for spec in users):
            raise ConflictError(
                f"A queued or running training run or test uses {name!r}; stop it first or wait."
            )
        if any(spec.get("source") == name for spec in store.active_job_specs(session, "render")):
            raise ConflictError(
                f"{name!r} is being rendered again as a new dataset; stop that first or wait."
            )
        store.forget_dataset_folder(session, key)
    shutil.rmtree(summary.path, ignore_errors=True)
    logger.info("dataset %s deleted by user %d", name, actor.user_id)


NEW_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_new_dataset_name(name: str) -> str:
    """A new dataset's name (trimmed), if it is one: it becomes a folder under the dataset dir.

    Raises:
        InvalidSpecError: not 1 to 64 letters, digits, ``-``, ``_`` or ``.``, or starts with a dot.
    """
    name = name.strip()
    if not name or name.startswith(".") or not set(name) <= NEW_NAME_CHARS or len(name) > 64:
        raise InvalidSpecError(
            f"A dataset name is 1 to 64 letters, digits, '-', '_' or '.', not starting with a "
            f"dot; got {name!r}."
        )
    return name


RESERVED_NAMES = frozenset({"demo"})  # `make run` builds the shared demo there when it is missing
MAKING_KINDS: tuple[RunKind, ...] = ("dataset", "render")  # the jobs that make a dataset


def check_name_is_free(name: str) -> None:
    """Refuse a new dataset's name that is taken: reserved, a dataset or folder on disk, or the
    dataset of a queued or running build or render.

    Raises:
        ConflictError: the name is taken.
    """
    if name.lower() in RESERVED_NAMES:
        raise ConflictError(
            f"The name {name!r} is kept for the server's demo dataset; choose another name."
        )
    if any(d.name == name for d in catalog_list_datasets(get_settings().dataset_dir)):
        raise ConflictError(f"A dataset called {name!r} exists already; choose another name.")
    if (get_settings().dataset_dir / name).exists():
        raise ConflictError(f"The name {name!r} is taken on this server; choose another name.")
    with store.session_scope(readonly=True) as session:
        pending = store.active_job_specs(session, kind=MAKING_KINDS)
    if any(spec.get("name") == name for spec in pending):
        raise ConflictError(f"A dataset called {name!r} is being made; choose another name.")


def render_dataset(
    source: str,
    name: str,
    overrides: Mapping[str, Any],
    *,
    actor: Actor | None = None,
    workers: int = 0,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> RenderReport:
    """Render dataset ``source`` again as dataset ``name`` with other spectrogram features.

    Datasets belong to the server, not to a user: from a page (``actor`` given) only an
    administrator may add one; the command line runs as the server's operator (``actor`` None).

    Args:
        source: an existing dataset's name.
        name: the new dataset's name (letters, digits, ``-``, ``_``, ``.``; not starting with a dot).
        overrides: feature spec fields that differ from ``source``'s (e.g. ``{"kind": "lfcc"}``).
        workers: parallel processes (0 = every core).
        progress: show a progress bar on stderr.
        on_progress: told ``(clips done, clips)`` after each clip.

    Raises:
        PermissionDeniedError: ``actor`` is not an administrator.
        NotFoundError: no dataset ``source``.
        InvalidSpecError: a bad name or feature value.
        DatasetError: a dataset ``name`` exists already, or the source's clips are unreadable.
    """
    from fakevoice.datasets.render import render_dataset as render
    from fakevoice.features import FeatureSpec

    if actor is not None and not actor.is_admin:
        raise PermissionDeniedError(
            "Only an administrator can add datasets: they are shared by everyone on this server."
        )
    # The command line (actor None) is the server's operator and sees every dataset.
    summary = find_dataset(source, actor) if actor is not None else find_dataset_on_disk(source)
    name = check_new_dataset_name(name)
    spec = FeatureSpec.from_dict({**dict(summary.feature_spec or {}), **dict(overrides)})
    target = get_settings().dataset_dir / name
    if target.exists():
        raise DatasetError(
            f"A dataset or folder called {name!r} already exists; choose another name."
        )
    with store.session_scope(readonly=True) as session:
        owner_id = owner_of_folder(store.dataset_owners(session), summary.path)
    if owner_id is not None:
        # A user's dataset rendered again stays theirs; recorded first, so that nobody else
        # sees the new folder for a moment.
        record_owner(owner_id, name, target, items=0)
    try:
        report = render(
            summary.path,
            target,
            spec,
            workers=workers,
            progress=progress,
            on_progress=on_progress,
        )
    except BaseException:
        if owner_id is not None and not (target / "manifest.csv").is_file():
            with store.session_scope() as session:
                store.forget_dataset_folder(session, store.folder_key(target))
        raise
    if owner_id is not None:
        record_owner(owner_id, name, target, items=report.images)
    return report


def find_dataset_on_disk(name: str) -> DatasetSummary:
    """Any dataset on disk by name, whoever owns it (for the command line)."""
    for summary in catalog_list_datasets(get_settings().dataset_dir):
        if summary.name == name:
            return summary
    raise NotFoundError(
        f"There is no dataset named {name!r} in {get_settings().dataset_dir}. {BUILD_HINT}"
    )
