"""Built datasets known to the workbench. A dataset without owner is shared by everyone (the
demo dataset); one with an owner is seen by that user and administrators."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from fakevoice.errors import NotFoundError, PermissionDeniedError
from fakevoice.store.records import Actor, DatasetRecord, to_record
from fakevoice.store.runs import clean_name
from fakevoice.store.tables import DatasetRow

logger = logging.getLogger(__name__)


def register_dataset(
    session: Session,
    actor: Actor | None,
    *,
    name: str,
    path: str,
    items: int,
    spec: Mapping[str, Any],
) -> DatasetRecord:
    """Record a dataset folder, or update the record of the same folder (a rebuild).

    Args:
        actor: the owner; None registers a dataset shared by everyone.
        path: the dataset folder (absolute, POSIX); one record per folder.
        items: rows in its manifest; spec: its ``dataset.json`` contents.

    Raises:
        PermissionDeniedError: the folder is registered to someone else.
    """
    name = clean_name(name, "dataset")
    owner_id = None if actor is None else actor.user_id
    row = session.scalar(select(DatasetRow).where(DatasetRow.path == path))
    if row is None:
        row = DatasetRow(name=name, path=path, owner_id=owner_id)
        session.add(row)
    elif row.owner_id is not None and not (actor is not None and actor.can_write(row.owner_id)):
        raise PermissionDeniedError(f"The dataset folder {name!r} belongs to another user.")
    row.name = name
    row.items = int(items)
    row.spec = dict(spec)
    session.flush()
    return to_record(DatasetRecord, row)


def get_dataset(session: Session, actor: Actor, dataset_id: int) -> DatasetRecord:
    """A shared dataset or one of the actor's (administrators: any). Raises NotFoundError."""
    row = session.get(DatasetRow, dataset_id)
    if row is None or (row.owner_id is not None and not actor.can_read(row.owner_id)):
        raise NotFoundError(f"There is no dataset with id {dataset_id}.")
    return to_record(DatasetRecord, row)


def list_datasets(session: Session, actor: Actor) -> list[DatasetRecord]:
    """Shared datasets and the actor's (administrators: all), by name."""
    query = select(DatasetRow).order_by(DatasetRow.name, DatasetRow.id)
    if not actor.is_admin:
        query = query.where(
            or_(DatasetRow.owner_id.is_(None), DatasetRow.owner_id == actor.user_id)
        )
    return [to_record(DatasetRecord, row) for row in session.scalars(query)]


def folder_key(folder: Path) -> str:
    """How a dataset folder is named in the store: its resolved absolute POSIX path."""
    return folder.resolve().as_posix()


def dataset_owners(session: Session) -> dict[str, int | None]:
    """The owner of every registered dataset folder (path -> user id, None: shared).

    Not user-facing: the dataset services filter the folders on disk with it.
    """
    return {row.path: row.owner_id for row in session.scalars(select(DatasetRow))}


def forget_dataset_folder(session: Session, path: str) -> None:
    """Drop the record of a dataset folder (its build failed or the folder was deleted)."""
    session.execute(delete(DatasetRow).where(DatasetRow.path == path))


def delete_dataset(session: Session, actor: Actor, dataset_id: int) -> DatasetRecord:
    """Forget a dataset (the caller removes the folder). Shared ones: administrators only."""
    dataset = get_dataset(session, actor, dataset_id)
    if not actor.can_write(dataset.owner_id):
        raise PermissionDeniedError("Only an administrator may delete a shared dataset.")
    session.execute(delete(DatasetRow).where(DatasetRow.id == dataset_id))
    logger.info("dataset %d forgotten by user %d", dataset_id, actor.user_id)
    return dataset
