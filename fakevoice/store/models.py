"""Stored detectors: register, read, list, share, rename, delete, and find by file checksum.

Reading: the owner, administrators and (for public models) everyone. Writing: the owner and
administrators. A private model of someone else is NotFoundError (its existence is not revealed);
a public model someone else owns is PermissionDeniedError on writes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, case, func, or_, select, true
from sqlalchemy.orm import Session

from fakevoice.errors import ConflictError, NotFoundError, PermissionDeniedError
from fakevoice.store.db import lower_text
from fakevoice.store.records import (
    Actor,
    ModelRecord,
    field_names,
    record_from_row,
    record_id,
    to_record,
)
from fakevoice.store.runs import clean_name, visible_run_row
from fakevoice.store.tables import ModelFileRow, ModelRow

logger = logging.getLogger(__name__)


def add_model(
    session: Session,
    actor: Actor,
    *,
    name: str,
    arch: str,
    class_names: Sequence[str],
    sample_rate: int,
    clip_samples: int,
    path: str,
    files: Mapping[str, str],
    feature_spec: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    run_id: int | None = None,
    is_public: bool = False,
) -> ModelRecord:
    """Register a stored model owned by ``actor``.

    Args:
        name: unique among the actor's models.
        class_names: output classes in logit order, e.g. ``["bonafide", "world"]``.
        sample_rate: Hz the model expects; clip_samples: window length in samples.
        path: the model's folder; files: file name in that folder -> sha256 hex digest.
        feature_spec: ``FeatureSpec.to_dict()`` for image models, None for waveform models.
        run_id: the run that trained it (must be visible to the actor).

    Raises:
        ConflictError: the actor already has a model with this name.
        NotFoundError: ``run_id`` is not a run of the actor's.
    """
    name = clean_name(name, "model")
    if run_id is not None:
        visible_run_row(session, actor, run_id)
    check_model_name_free(session, actor.user_id, name)
    row = ModelRow(
        owner_id=actor.user_id,
        run_id=run_id,
        name=name,
        is_public=is_public,
        arch=arch,
        class_names=list(class_names),
        feature_spec=None if feature_spec is None else dict(feature_spec),
        sample_rate=int(sample_rate),
        clip_samples=int(clip_samples),
        path=path,
        files={str(k): str(v).lower() for k, v in files.items()},
        metrics=dict(metrics or {}),
    )
    session.add(row)
    session.flush()
    session.add_all(
        ModelFileRow(model_id=row.id, file_name=name, sha256=digest)
        for name, digest in row.files.items()
    )
    session.flush()
    logger.info("model %d %r registered for user %d", row.id, name, actor.user_id)
    return to_record(ModelRecord, row)


def get_model(session: Session, actor: Actor, model_id: int) -> ModelRecord:
    """The model when the actor owns it, is an administrator, or it is public; else NotFoundError."""
    return to_record(ModelRecord, _readable_row(session, actor, model_id))


def list_models(
    session: Session,
    actor: Actor,
    *,
    all_users: bool = False,
    run_id: int | None = None,
    run_ids: Collection[int] | None = None,
    own: bool = False,
    public_only: bool = False,
    name: str = "",
    limit: int | None = None,
    offset: int = 0,
) -> list[ModelRecord]:
    """The actor's models and everyone's public ones, newest first.

    Args:
        all_users: every model, private ones included (administrators only).
        run_id: only the models this training run stored; run_ids: those these runs stored.
        own: only the actor's own models (not the public ones of others).
        public_only: only public models (the actor's private ones left out).
        name: only models whose name holds this text (any case; "" or blanks: every model).
        limit, offset: one page of them: at most ``limit`` (None: all), after the first
            ``offset``.
    """
    query = (
        select(ModelRow)
        .where(*_model_conditions(actor, all_users, own, name, public_only))
        .order_by(ModelRow.created_at.desc(), ModelRow.id.desc())
        .offset(offset)
    )
    if run_id is not None:
        query = query.where(ModelRow.run_id == run_id)
    if run_ids is not None:
        query = query.where(ModelRow.run_id.in_(run_ids))
    if limit is not None:
        query = query.limit(limit)
    return [to_record(ModelRecord, row) for row in session.scalars(query)]


def count_models(
    session: Session,
    actor: Actor,
    *,
    all_users: bool = False,
    own: bool = False,
    public_only: bool = False,
    name: str = "",
) -> int:
    """How many models :func:`list_models` lists with the same arguments (for paging)."""
    conditions = _model_conditions(actor, all_users, own, name, public_only)
    return int(session.scalar(select(func.count(ModelRow.id)).where(*conditions)) or 0)


def _model_conditions(
    actor: Actor, all_users: bool, own: bool, name: str, public_only: bool = False
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [ModelRow.is_public == true()] if public_only else []
    if own:
        conditions.append(ModelRow.owner_id == actor.user_id)
    elif all_users:
        if not actor.is_admin:
            raise PermissionDeniedError("Only an administrator may list everyone's models.")
    else:
        conditions.append(or_(ModelRow.owner_id == actor.user_id, ModelRow.is_public))
    if text := name.replace("\x00", "").strip().lower():  # PostgreSQL text holds no NUL
        conditions.append(lower_text(ModelRow.name).contains(text, autoescape=True))
    return conditions


def model_names(
    session: Session, actor: Actor, model_ids: Collection[int] | None = None
) -> dict[int, str]:
    """The names of the models the actor may read (their own and the public ones), by id; only
    of ``model_ids`` when given (ids of models the actor may not read are left out). Names only:
    no model's files, metrics or spec are read."""
    query = select(ModelRow.id, ModelRow.name).where(
        or_(ModelRow.owner_id == actor.user_id, ModelRow.is_public)
    )
    if model_ids is not None:
        query = query.where(ModelRow.id.in_(model_ids))
    return {model_id: name for model_id, name in session.execute(query)}


def find_model_by_key(session: Session, actor: Actor, key: str) -> ModelRecord | None:
    """The model a user names by name or id, in one query: the actor's model called ``key``, else
    the newest public one of that name, else (``key`` being digits) the model with that id when
    the actor may read it, else None. A name wins over an id, so a model named ``"42"`` is found
    by its name.
    """
    text = key.strip()
    model_id = record_id(text)
    query = _model_by_key_query(with_id=model_id is not None, any_id=actor.is_admin)
    values: dict[str, Any] = {"name": text, "user_id": actor.user_id}
    if model_id is not None:
        values["model_id"] = model_id
    row = session.execute(query, values).first()
    return None if row is None else record_from_row(ModelRecord, row)


@functools.cache
def _model_by_key_query(*, with_id: bool, any_id: bool) -> Select[Any]:
    """The statement of :func:`find_model_by_key`, built once per shape: the verdict path runs
    it on every API request, on table columns (see :func:`~fakevoice.store.records.record_from_row`).

    Args:
        with_id: the key may also be an id.
        any_id: by id, any model is found (administrators), not only readable ones.
    """
    columns = ModelRow.__table__.c
    mine = columns.owner_id == bindparam("user_id")
    readable = or_(mine, columns.is_public)
    by_name = columns.name == bindparam("name")
    wanted = by_name & readable
    if with_id:
        by_id = columns.id == bindparam("model_id")
        wanted = wanted | (by_id if any_id else by_id & readable)
    return (
        select(*(columns[name] for name in field_names(ModelRecord)))
        .where(wanted)
        .order_by(by_name.desc(), mine.desc(), columns.created_at.desc())
        .limit(1)
    )


def set_public(session: Session, actor: Actor, model_id: int, is_public: bool) -> ModelRecord:
    """Share the model with everyone (True) or make it private again (False)."""
    row = _writable_row(session, actor, model_id)
    row.is_public = bool(is_public)
    session.flush()
    return to_record(ModelRecord, row)


def rename_model(session: Session, actor: Actor, model_id: int, name: str) -> ModelRecord:
    """Give the model a new name (unique among its owner's models; ConflictError otherwise)."""
    row = _writable_row(session, actor, model_id)
    name = clean_name(name, "model")
    if name != row.name:
        check_model_name_free(session, row.owner_id, name)
        row.name = name
        session.flush()
    return to_record(ModelRecord, row)


def delete_model(session: Session, actor: Actor, model_id: int) -> ModelRecord:
    """Delete the model's row (the caller removes its folder). Analyses made with it keep their
    verdicts, with no model. Returns the deleted model."""
    row = _writable_row(session, actor, model_id)
    model = to_record(ModelRecord, row)
    session.delete(row)
    session.flush()
    logger.info("model %d deleted by user %d", model_id, actor.user_id)
    return model


def models_in_folder(session: Session, run_id: int, path: str) -> list[ModelRecord]:
    """The models run ``run_id`` stored whose files live in ``path``, whoever owns them: for job
    backends (a resumed run moves them aside before it writes there again), and for a run's own
    bundle once the run was read for its actor (its models are its owner's)."""
    query = select(ModelRow).where(ModelRow.run_id == run_id, ModelRow.path == path)
    return [to_record(ModelRecord, row) for row in session.scalars(query)]


def move_model_files(session: Session, model_id: int, path: str) -> None:
    """Point the model at the folder its (unchanged) files were copied to (job backends only)."""
    row = session.get(ModelRow, model_id)
    if row is None:
        raise NotFoundError(f"There is no model with id {model_id}.")
    row.path = path
    session.flush()


def relink_model(session: Session, actor: Actor, model_id: int, run_id: int) -> ModelRecord:
    """Link a model that lost its run to the run again (administrators only: the operator's
    repair of the links earlier upgrades cut; the caller checks that the run's folder holds the
    model's files).

    Raises:
        PermissionDeniedError: the actor is no administrator.
        NotFoundError: there is no such model or run.
        ConflictError: the model has a run already, or the run is another user's.
    """
    if not actor.is_admin:
        raise PermissionDeniedError("Only an administrator may link a model to its run again.")
    row = _readable_row(session, actor, model_id)
    run = visible_run_row(session, actor, run_id)
    if row.run_id is not None:
        raise ConflictError(f"Model {row.name!r} is linked to run {row.run_id} already.")
    if run.owner_id != row.owner_id:
        raise ConflictError(f"Run {run_id} is not the run of model {row.name!r}: another owner's.")
    row.run_id = run_id
    session.flush()
    logger.info("model %d linked to run %d again by user %d", model_id, run_id, actor.user_id)
    return to_record(ModelRecord, row)


def find_model_by_sha256(
    session: Session, actor: Actor, sha256: str, file_name: str
) -> ModelRecord | None:
    """A model the actor may read whose file ``file_name`` has this sha256 (the actor's own
    first, then the lowest id), or None.

    Server-side only (the upload check: an uploaded fastai ``.pkl`` is loaded only when this
    server wrote it). Models the actor may not read are passed over: another user's private copy
    of the same file neither hides a readable one nor is revealed.
    """
    query = (
        select(ModelRow)
        .join(ModelFileRow, ModelFileRow.model_id == ModelRow.id)
        .where(ModelFileRow.sha256 == sha256.strip().lower(), ModelFileRow.file_name == file_name)
        .order_by(case((ModelRow.owner_id == actor.user_id, 0), else_=1), ModelRow.id)
        .limit(1)
    )
    if not actor.is_admin:
        query = query.where(or_(ModelRow.owner_id == actor.user_id, ModelRow.is_public))
    row = session.scalar(query)
    return None if row is None else to_record(ModelRecord, row)


def _readable_row(session: Session, actor: Actor, model_id: int) -> ModelRow:
    row = session.get(ModelRow, model_id)
    if row is None or not actor.can_read(row.owner_id, is_public=row.is_public):
        raise NotFoundError(f"There is no model with id {model_id}.")
    return row


def _writable_row(session: Session, actor: Actor, model_id: int) -> ModelRow:
    row = _readable_row(session, actor, model_id)
    if not actor.can_write(row.owner_id):
        raise PermissionDeniedError(
            f"Model {row.name!r} is shared with you, but only its owner may change it."
        )
    return row


def check_model_name_free(session: Session, owner_id: int, name: str) -> str:
    """``name`` as a model of user ``owner_id`` would be called (stripped), when none is so far.

    Raises:
        InvalidSpecError: the name is empty, too long or holds control characters.
        ConflictError: the user has a model of that name already.
    """
    name = clean_name(name, "model")
    taken = select(ModelRow.id).where(ModelRow.owner_id == owner_id, ModelRow.name == name)
    if session.scalar(taken) is not None:
        raise ConflictError(f"There is already a model named {name!r}; choose another name.")
    return name
