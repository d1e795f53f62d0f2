"""The store: SQLAlchemy models, Alembic migrations, and repository functions that enforce ownership.

Nothing else in the code writes SQL. Use it like this::

    from fakevoice import store

    store.init_db()                                  # migrate to head; once at start
    with store.session_scope() as session:           # commits at the end, rolls back on error
        run = store.create_run(session, actor, "resnet on demo", spec.to_dict())
    with store.session_scope(readonly=True) as session:
        runs = store.list_runs(session, actor)

Every repository function takes the session first; the user-facing ones take the acting user
(:class:`Actor`) next and check owner / administrator / public themselves, raising
:class:`~fakevoice.errors.NotFoundError` for objects the actor may not see (existence is not
revealed) and :class:`~fakevoice.errors.PermissionDeniedError` for writes to something they may
only read. They return frozen dataclass records (:mod:`fakevoice.store.records`), never ORM
objects: records survive the session, pickle to worker processes, and cannot write back.
Times are timezone-aware UTC.
"""

from __future__ import annotations

from fakevoice.store.analyses import (
    add_analysis,
    count_analyses,
    get_analysis,
    keep_explanation,
    label_analysis,
    list_analyses,
    rethreshold_analysis,
)
from fakevoice.store.datasets import (
    dataset_owners,
    delete_dataset,
    folder_key,
    forget_dataset_folder,
    get_dataset,
    list_datasets,
    register_dataset,
)
from fakevoice.store.db import (
    database_url,
    dispose_engines,
    get_engine,
    init_db,
    session_scope,
)
from fakevoice.store.job_queue import (
    active_job_counts,
    claim_next_queued_run,
    completed_epochs,
    get_run_for_worker,
    heartbeat,
    is_stop_requested,
    mark_orphans_interrupted,
    record_progress,
    resume_interrupted_run,
    set_run_info,
    set_status,
)
from fakevoice.store.metrics import (
    append_batch_metrics,
    append_epoch_metrics,
    last_epoch_metrics,
    list_batch_metrics,
    list_epoch_metrics,
    restore_epoch_metrics,
)
from fakevoice.store.migrate import (
    current_revision,
    head_revision,
    schema_differences,
    schema_drift,
    upgrade,
)
from fakevoice.store.models import (
    add_model,
    check_model_name_free,
    count_models,
    delete_model,
    find_model_by_key,
    find_model_by_sha256,
    get_model,
    list_models,
    model_names,
    models_in_folder,
    move_model_files,
    relink_model,
    rename_model,
    set_public,
)
from fakevoice.store.records import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    Actor,
    AnalysisRecord,
    AnalysisSource,
    BatchMetric,
    DatasetRecord,
    EpochMetric,
    ModelRecord,
    RunBackend,
    RunRecord,
    RunStatus,
    UserRecord,
    WorkerRecord,
)
from fakevoice.store.runs import (
    active_job_specs,
    count_active_runs,
    count_runs,
    create_run,
    delete_run,
    find_own_run,
    get_run,
    list_runs,
    request_stop,
    requeue_run,
    unused_run_name,
)
from fakevoice.store.users import (
    create_user,
    delete_user,
    get_or_create_user,
    get_user,
    get_user_by_username,
    list_users,
    usernames,
)
from fakevoice.store.workers import (
    forget_old_workers,
    last_worker_seen,
    list_workers,
    live_worker_counts,
    live_workers,
    worker_seen,
    worker_stopped,
)

__all__ = [
    "active_job_counts",
    "ACTIVE_STATUSES",
    "Actor",
    "AnalysisRecord",
    "AnalysisSource",
    "BatchMetric",
    "DatasetRecord",
    "EpochMetric",
    "FINAL_STATUSES",
    "ModelRecord",
    "RunBackend",
    "RunRecord",
    "RunStatus",
    "UserRecord",
    "WorkerRecord",
    "active_job_specs",
    "add_analysis",
    "forget_old_workers",
    "last_worker_seen",
    "list_workers",
    "live_worker_counts",
    "live_workers",
    "worker_seen",
    "worker_stopped",
    "add_model",
    "check_model_name_free",
    "append_batch_metrics",
    "append_epoch_metrics",
    "claim_next_queued_run",
    "completed_epochs",
    "count_active_runs",
    "count_models",
    "count_runs",
    "count_analyses",
    "create_run",
    "create_user",
    "current_revision",
    "database_url",
    "dataset_owners",
    "delete_dataset",
    "delete_model",
    "delete_run",
    "delete_user",
    "dispose_engines",
    "find_model_by_key",
    "find_model_by_sha256",
    "find_own_run",
    "models_in_folder",
    "move_model_files",
    "folder_key",
    "forget_dataset_folder",
    "get_analysis",
    "get_dataset",
    "get_engine",
    "get_model",
    "get_or_create_user",
    "get_run",
    "get_run_for_worker",
    "get_user",
    "get_user_by_username",
    "head_revision",
    "heartbeat",
    "init_db",
    "is_stop_requested",
    "keep_explanation",
    "last_epoch_metrics",
    "label_analysis",
    "rethreshold_analysis",
    "list_analyses",
    "list_batch_metrics",
    "list_datasets",
    "list_epoch_metrics",
    "list_models",
    "model_names",
    "list_runs",
    "unused_run_name",
    "list_users",
    "mark_orphans_interrupted",
    "record_progress",
    "register_dataset",
    "relink_model",
    "rename_model",
    "request_stop",
    "requeue_run",
    "restore_epoch_metrics",
    "resume_interrupted_run",
    "schema_differences",
    "schema_drift",
    "session_scope",
    "set_public",
    "set_run_info",
    "set_status",
    "upgrade",
    "usernames",
]
