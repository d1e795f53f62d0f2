"""What the profile and home pages show: a user's runs with their results, models, downloads,
sharing, renaming and deleting; the public models anyone may see; removing users (admins).

Every call takes the acting user and goes through the store's ownership checks; a run or model
the actor may not see is NotFoundError, whatever id a page or URL hands in. Downloads go through
:mod:`fakevoice.services.results`, which checks the same way before it reads a file.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from fakevoice import store
from fakevoice.datasets.uploads import DatasetBuildSpec, remove_upload
from fakevoice.errors import ConflictError, FakeVoiceError, NotFoundError, PermissionDeniedError
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, ModelRecord, RunRecord, RunStatus, UserRecord

ANONYMOUS = Actor(user_id=0, is_admin=False)
"""The visitor who is not signed in: sees public models only (no user has id 0)."""


@dataclass(frozen=True)
class RunEntry:
    """One run as the profile lists it.

    Attributes:
        run: The run record.
        model: The model it produced, if it finished with one.
        arch: Architecture name from the spec; dataset: dataset name from the spec.
        eer, accuracy: Final validation figures as fractions (0-1), None when unknown.
    """

    run: RunRecord
    model: ModelRecord | None
    arch: str
    dataset: str
    eer: float | None
    accuracy: float | None


@dataclass(frozen=True)
class PublicModel:
    """A model with its owner's user name and headline figures (fractions 0-1 or None)."""

    model: ModelRecord
    owner: str
    eer: float | None
    accuracy: float | None


def _figure(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) else None


def run_folder(run_id: int) -> Path:
    """Where a run's files live (``<data dir>/runs/<id>``); callers check visibility first."""
    from fakevoice.jobs.runner import run_dir_for

    return run_dir_for(run_id)


def my_active_jobs(actor: Actor) -> list[RunRecord]:
    """The actor's queued and running jobs of every kind (training, dataset builds, tests),
    oldest first: the order the workers take them in."""
    with store.session_scope(readonly=True) as session:
        jobs = store.list_runs(session, actor, statuses=("queued", "running"), kind=None)
    return jobs[::-1]


def my_runs(
    actor: Actor,
    *,
    name: str = "",
    run_ids: Collection[int] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[RunEntry]:
    """The actor's own runs, newest first, each with its model and figures: the model's, else
    the run's last epoch's. A few queries however many runs.

    Args:
        name: only runs whose name holds this text (any case).
        run_ids: only these runs (those of them that are the actor's own).
        limit, offset: one page of them: at most ``limit`` (None: all), after the first
            ``offset``.
    """
    with store.session_scope(readonly=True) as session:
        runs = store.list_runs(
            session, actor, name=name, run_ids=run_ids, limit=limit, offset=offset
        )
        # All of them: no list of thousands of ids in one statement.
        shown = None if limit is None and run_ids is None else [run.id for run in runs]
        # Newest first, so that of a run's several models the oldest is kept, as always.
        models = {
            m.run_id: m
            for m in store.list_models(session, actor, own=True, run_ids=shown)
            if m.run_id is not None
        }
        last_epochs = store.last_epoch_metrics(session, actor, shown)
    entries = []
    for run in runs:
        model = models.get(run.id)
        if model is not None and model.metrics:
            eer, accuracy = _figure(model.metrics, "eer"), _figure(model.metrics, "accuracy")
        else:
            last = last_epochs.get(run.id)
            eer = last.eer if last else None
            accuracy = last.accuracy if last else None
        entries.append(
            RunEntry(
                run=run,
                model=model,
                arch=str(run.spec.get("arch", "")),
                dataset=str(run.spec.get("dataset", "")),
                eer=eer,
                accuracy=accuracy,
            )
        )
    return entries


def my_models(
    actor: Actor, *, name: str = "", limit: int | None = None, offset: int = 0
) -> list[ModelRecord]:
    """The models the actor owns (not the public ones of others), newest first: only those whose
    name holds ``name`` (any case); one page of them with ``limit`` (None: all) and
    ``offset``."""
    with store.session_scope(readonly=True) as session:
        return store.list_models(session, actor, own=True, name=name, limit=limit, offset=offset)


def public_models(owner: str | None = None) -> list[PublicModel]:
    """Public models (of everyone, or of the user named ``owner``), newest first.

    Raises:
        NotFoundError: ``owner`` names no user.
    """
    with store.session_scope(readonly=True) as session:
        owner_id: int | None = None
        if owner is not None:
            user = store.get_user_by_username(session, owner)
            if user is None:
                raise NotFoundError(f"There is no user called {owner!r}.")
            owner_id = user.id
        models = [
            m
            for m in store.list_models(session, ANONYMOUS)
            if m.is_public and (owner_id is None or m.owner_id == owner_id)
        ]
        owners = _owner_names(session, models)
    return [
        PublicModel(
            model=m,
            owner=owners[m.id],
            eer=_figure(m.metrics, "eer"),
            accuracy=_figure(m.metrics, "accuracy"),
        )
        for m in models
        if m.id in owners
    ]


def model_owners(models: Sequence[ModelRecord]) -> dict[int, str]:
    """The user name of each model's owner, by model id, to tell apart models of several people
    where they are listed together (one's own and the public ones: a public model's owner is
    named wherever it is listed). A model whose owner is gone meanwhile is left out."""
    with store.session_scope(readonly=True) as session:
        return _owner_names(session, models)


def _owner_names(session: Session, models: Sequence[ModelRecord]) -> dict[int, str]:
    names = store.usernames(session, {m.owner_id for m in models})
    return {m.id: names[m.owner_id] for m in models if m.owner_id in names}


def public_user(username: str) -> UserRecord:
    """A user for the public profile view (NotFoundError when there is none)."""
    with store.session_scope(readonly=True) as session:
        user = store.get_user_by_username(session, username)
    if user is None:
        raise NotFoundError(f"There is no user called {username!r}.")
    return user


def set_model_public(actor: Actor, model_id: int, is_public: bool) -> ModelRecord:
    """Share a model with everyone, or make it private again (owner or administrator)."""
    return change_model(actor, model_id, public=is_public)


def rename_model(actor: Actor, model_id: int, name: str) -> ModelRecord:
    """Rename a model (owner or administrator; ConflictError when the name is taken)."""
    return change_model(actor, model_id, name=name)


def change_model(
    actor: Actor, model_id: int, *, name: str | None = None, public: bool | None = None
) -> ModelRecord:
    """Rename and/or share a model in one transaction: either both changes are made or neither
    (owner or administrator; ConflictError when the name is taken)."""
    with store.session_scope() as session:
        model = store.get_model(session, actor, model_id)
        if public is not None:
            model = store.set_public(session, actor, model_id, public)
        if name is not None:
            model = store.rename_model(session, actor, model_id, name)
        return model


def delete_run(actor: Actor, run_id: int) -> RunRecord:
    """Delete a finished run with the model it produced, their rows, the run's folder and its
    MLflow run (in the background: a tracking server that is down holds nothing up).

    Raises:
        NotFoundError: the actor may not see the run.
        ConflictError: the run is queued or running (stop it first), or a queued or running
            test of models uses its model.
    """
    with store.session_scope() as session:
        store.get_run(session, actor, run_id)
        # Every model of the run, private ones included when an administrator deletes another
        # user's run: the folder removed below is where they live.
        kept = False
        for model in store.list_models(session, actor, run_id=run_id, all_users=actor.is_admin):
            if actor.can_write(model.owner_id):
                _refuse_if_under_test(session, store.delete_model(session, actor, model.id))
            else:
                kept = True
        # A model whose link to the run an old upgrade cut (`fakevoice runs repair-metrics`
        # links it again) still has its files here: they stay.
        kept = kept or any(
            folder_run_id(Path(m.path)) == run_id
            for m in store.list_models(session, actor, all_users=actor.is_admin)
            if m.run_id is None
        )
        run = store.delete_run(session, actor, run_id)
    if not kept:  # a model still stored from it keeps its files
        remove_data_folder(run_folder(run_id))
    if run.mlflow_run_id:  # its copy in the experiment tracker goes too, without waiting on it
        from fakevoice.tracking import forget_runs_later

        forget_runs_later([run.mlflow_run_id])
    return run


def delete_job(actor: Actor, run_id: int) -> RunRecord:
    """Delete a job that has ended, the way its page does: a training run with the model it
    stored (:func:`delete_run`); a test of models with its results; a dataset build or render
    off the list (the dataset stays).

    Raises:
        NotFoundError: the actor may not see the job.
        ConflictError: it is queued or running, or a queued or running test uses its model.
    """
    from fakevoice.services.dataset_builds import clear_dataset_build
    from fakevoice.services.dataset_renders import clear_render
    from fakevoice.services.evaluation_jobs import clear_evaluation
    from fakevoice.services.runs import get_run

    run = get_run(actor, run_id)
    if run.kind == "train":
        return delete_run(actor, run_id)
    if run.kind == "evaluate":
        clear_evaluation(actor, run_id)
    elif run.kind == "dataset":
        clear_dataset_build(actor, run_id)
    else:
        clear_render(actor, run_id)
    return run


def delete_model(actor: Actor, model_id: int) -> ModelRecord:
    """Delete a model; its folder goes too unless it is a run's folder and the run remains.

    Raises:
        NotFoundError / PermissionDeniedError: the actor may not see / change the model.
        ConflictError: a queued or running test of models uses it (stop it first or wait).
    """
    with store.session_scope() as session:
        model = store.delete_model(session, actor, model_id)
        _refuse_if_under_test(session, model)
        run_remains = False
        # Its run's id, or, for a model whose link an old upgrade cut, the run whose folder
        # holds it: that run's history and figures must not go with the model.
        run_id = model.run_id if model.run_id is not None else folder_run_id(Path(model.path))
        if run_id is not None:
            try:
                store.get_run(session, actor, run_id)
                run_remains = True
            except NotFoundError:
                pass
    if not run_remains:
        remove_data_folder(Path(model.path))
    return model


def folder_run_id(path: Path) -> int | None:
    """The id of the run whose folder (``<data dir>/runs/<id>``) holds ``path``, if any."""
    runs = (get_settings().data_dir / "runs").resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(runs) or resolved == runs:
        return None
    first = resolved.relative_to(runs).parts[0]
    return int(first) if first.isdigit() else None


def _refuse_if_under_test(session: Session, model: ModelRecord) -> None:
    """ConflictError (which rolls the deletion back) when a queued or running test of models,
    anyone's, is to score ``model``: it would fail when it reached it."""
    for spec in store.active_job_specs(session, "evaluate"):
        if model.id in spec.get("models", ()):
            raise ConflictError(
                f"A queued or running test of models uses model {model.name!r}; stop it first "
                "or wait for it to finish."
            )


def all_runs(
    actor: Actor,
    *,
    name: str = "",
    statuses: tuple[RunStatus, ...] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[tuple[RunRecord, str]]:
    """Every user's jobs (training runs, dataset builds, tests) with the owner's user name, newest
    first (administrators only): only those whose name holds ``name`` (any case) and those in
    ``statuses`` when given; one page of them with ``limit`` (None: all) and ``offset``."""
    with store.session_scope(readonly=True) as session:
        runs = store.list_runs(
            session,
            actor,
            all_users=True,
            kind=None,
            name=name,
            statuses=statuses,
            limit=limit,
            offset=offset,
        )
        names = store.usernames(session, {run.owner_id for run in runs})
    return [(run, names.get(run.owner_id, "?")) for run in runs]


def delete_user(actor: Actor, user_id: int) -> UserRecord:
    """Delete a user with their runs, models, verdicts, datasets and uploads, rows and folders,
    and their runs' MLflow runs (administrators only). Their datasets go too: without an owner
    they would be everyone's.

    Raises:
        PermissionDeniedError: the actor is not an administrator, or tries to delete themself.
        NotFoundError: there is no such user.
        ConflictError: the user has jobs queued or running (stop them first).
    """
    if actor.user_id == user_id:
        raise PermissionDeniedError("You cannot delete your own account while signed in with it.")
    with store.session_scope() as session:
        jobs = [
            r
            for r in store.list_runs(session, actor, all_users=True, kind=None)
            if r.owner_id == user_id
        ]
        active = [r.name for r in jobs if r.is_active]
        if active:
            # A job still going would write into folders about to be removed (and a build that
            # ended after its owner's row went would leave a dataset nobody owns).
            raise ConflictError(
                f"This user has {len(active)} job(s) queued or running ("
                + ", ".join(repr(n) for n in active[:3])
                + (", ..." if len(active) > 3 else "")
                + "); stop them first, then delete the account."
            )
        # Training runs and tests of models keep files in their job folders; builds, uploads.
        runs = [r for r in jobs if r.kind != "dataset"]
        builds = [r for r in jobs if r.kind == "dataset"]
        models = [
            m for m in store.list_models(session, actor, all_users=True) if m.owner_id == user_id
        ]
        datasets = [
            path for path, owner in store.dataset_owners(session).items() if owner == user_id
        ]
        for path in datasets:
            store.forget_dataset_folder(session, path)
        user = store.delete_user(session, actor, user_id)
    for folder in [run_folder(run.id) for run in runs] + [Path(model.path) for model in models]:
        remove_data_folder(folder)
    from fakevoice.tracking import forget_runs_later

    forget_runs_later([run.mlflow_run_id for run in runs if run.mlflow_run_id])
    dataset_dir = get_settings().dataset_dir.resolve()
    for path in datasets:
        if Path(path).resolve().is_relative_to(dataset_dir) and Path(path).resolve() != dataset_dir:
            shutil.rmtree(path, ignore_errors=True)
    for build in builds:
        with contextlib.suppress(FakeVoiceError):
            remove_upload(DatasetBuildSpec.from_dict(build.spec))
    return user


def remove_data_folder(folder: Path) -> None:
    """Delete a folder of the data dir (a run's or a model's); anything outside it is left."""
    data_dir = get_settings().data_dir.resolve()
    resolved = folder.resolve()
    if resolved != data_dir and resolved.is_relative_to(data_dir):
        shutil.rmtree(resolved, ignore_errors=True)
