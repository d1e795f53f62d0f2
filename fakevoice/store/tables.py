"""The database schema as typed SQLAlchemy 2 declarative models (``*Row`` classes).

These classes never leave :mod:`fakevoice.store`: repository functions turn rows into the frozen
dataclasses of :mod:`fakevoice.store.records` before returning. The schema is kept portable
(SQLite by default, PostgreSQL by URL): generic ``JSON``, timezone-aware UTC datetimes through
:class:`UTCDateTime`, named constraints, no dialect-only SQL. Every change here needs an Alembic
revision in ``fakevoice/store/migrations/versions``; ``tests/test_migrations.py`` fails when the
migrated schema and these models differ.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from fakevoice.store.records import ANALYSIS_OUTCOMES, as_utc

RUN_STATUSES: tuple[str, ...] = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "interrupted",
)
RUN_BACKENDS: tuple[str, ...] = ("local", "ray")
RUN_KINDS: tuple[str, ...] = ("train", "dataset", "evaluate", "render")
ANALYSIS_SOURCES: tuple[str, ...] = ("page", "api", "cli")
TOKEN_SCOPES: tuple[str, ...] = ("full", "verdicts")  # what an API token may do
MAX_NOTE_LENGTH = 500

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored in UTC and always read back timezone-aware (UTC).

    PostgreSQL keeps ``timestamp with time zone``; SQLite has no time zones, so the UTC wall time
    is stored without offset (ISO strings compare in time order). Naive datetimes given to the
    database are taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so constraints have the same names everywhere."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        str: String(255),
    }


# SQLite reuses the largest rowid after a delete unless AUTOINCREMENT is asked for; run and model
# ids name folders on disk, so an id must never come back.
_NO_ID_REUSE = {"sqlite_autoincrement": True}


class UserRow(Base):
    """A person who owns runs, models and analyses."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("username"), _NO_ID_REUSE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(128), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    password_hash: Mapped[str | None]
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A forgotten password's one-time code (sha256 hex) and when it stops working.
    reset_code_hash: Mapped[str | None] = mapped_column(String(64))
    reset_code_expires_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]
    # "Sign out everywhere": sign-ins (cookies, open tabs) from before this time are over.
    sessions_ended_at: Mapped[datetime | None]


class DatasetRow(Base):
    """A built dataset folder (manifest.csv + images + clips) known to the workbench."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("path"), _NO_ID_REUSE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(String(1024))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    items: Mapped[int] = mapped_column(Integer, default=0)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RunRow(Base):
    """A job the worker executes: a training run (``kind`` train), a dataset build (``dataset``)
    or a test of models on a dataset (``evaluate``)."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("owner_id", "name"),
        CheckConstraint(_in_list("status", RUN_STATUSES), name="status"),
        CheckConstraint(_in_list("backend", RUN_BACKENDS), name="backend"),
        CheckConstraint(_in_list("kind", RUN_KINDS), name="kind"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress"),
        Index(None, "status"),
        Index(None, "owner_id", "kind", "created_at"),  # a user's jobs of a kind, newest first
        _NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    spec: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    current_epoch: Mapped[int] = mapped_column(Integer, default=0)
    total_epochs: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(default=utcnow)  # made, or queued again
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None]
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    notice: Mapped[str | None] = mapped_column(Text)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    artefact_dir: Mapped[str | None] = mapped_column(String(1024))
    backend: Mapped[str] = mapped_column(String(16), default="local")
    resume_from_epoch: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default="train", server_default="train")
    # Its worker died under it this many times since its last completed epoch (see job_queue).
    worker_deaths: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class BatchMetricRow(Base):
    """One training batch's loss and learning rate (the live loss chart)."""

    __tablename__ = "batch_metrics"
    __table_args__ = (Index(None, "run_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class EpochMetricRow(Base):
    """One epoch's summary: losses and validation figures."""

    __tablename__ = "epoch_metrics"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    train_loss: Mapped[float | None] = mapped_column(Float)
    valid_loss: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    macro_f1: Mapped[float | None] = mapped_column(Float)
    eer: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)


class ModelRow(Base):
    """A stored detector: a folder with the fastai export and the safe bundle."""

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("owner_id", "name"),
        Index(None, "is_public"),
        Index(None, "run_id"),  # a run's models; deleting a run sets theirs to NULL
        _NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(128))
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    arch: Mapped[str] = mapped_column(String(64))
    class_names: Mapped[list[str]]
    feature_spec: Mapped[dict[str, Any] | None]
    sample_rate: Mapped[int] = mapped_column(Integer)
    clip_samples: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1024))
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelFileRow(Base):
    """One file of a stored model with its SHA-256, as ``ModelRow.files`` lists them (written
    with the model, gone with it): a model is found by a file's checksum in one indexed lookup
    (an uploaded ``model.pkl`` is one of ours?) instead of a read of every model's list."""

    __tablename__ = "model_files"
    __table_args__ = (Index(None, "sha256", "file_name"),)

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    file_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))


class AnalysisRow(Base):
    """One verdict asked for by a user (the history on the evaluate page)."""

    __tablename__ = "analyses"
    __table_args__ = (
        CheckConstraint(_in_list("source", ANALYSIS_SOURCES), name="source"),
        CheckConstraint(_in_list("outcome", ANALYSIS_OUTCOMES), name="outcome"),
        Index(None, "owner_id", "created_at"),
        Index(None, "owner_id", "file_sha256"),  # "was this exact file judged before?"
        Index(None, "model_id"),  # deleting a model sets its verdicts' model to NULL
        _NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    file_name: Mapped[str] = mapped_column(String(255))
    duration: Mapped[float] = mapped_column(Float)
    sample_rate: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(String(32))
    probabilities: Mapped[dict[str, Any]]
    threshold: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(8), default="page")
    file_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    cautions: Mapped[list[str]] = mapped_column(default=list, server_default=text("'[]'"))
    # What the clip really was, as its owner learnt later (None: not known), and their note.
    outcome: Mapped[str | None] = mapped_column(String(20), default=None)
    note: Mapped[str | None] = mapped_column(String(MAX_NOTE_LENGTH), default=None)
    # The per-window timeline ({"start", "end", "p_human", "top_class"} each); None: not kept.
    windows: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSON(none_as_null=True), default=None
    )
    # Why the verdict was made, when its owner asked (fakevoice.explain's Explanation.to_dict(),
    # its heatmap at most 32 cells a side); None: never explained.
    explanation: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), default=None
    )
    # How familiar the clip was to the model (fakevoice.metrics.familiarity), 0 to 1; None: the
    # model keeps no reference, or the verdict is older than the column.
    typicality: Mapped[float | None] = mapped_column(Float, default=None)


class ApiTokenRow(Base):
    """A bearer token for the HTTP API: only its sha256 is kept, with a prefix for display."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        UniqueConstraint("token_hash"),
        Index(None, "owner_id"),
        CheckConstraint(_in_list("scope", TOKEN_SCOPES), name="scope"),
        _NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # What it may do: "full" (all its owner may) or "verdicts" (ask for verdicts, read and label
    # the history, read models, runs and datasets).
    scope: Mapped[str] = mapped_column(String(16), default="full", server_default="full")


class EndedCookieRow(Base):
    """A sign-in cookie refused from now on ("Sign out" in that browser), known by its user and
    its signed expiry (epoch seconds, unique per sign-in); kept until that expiry passes."""

    __tablename__ = "ended_cookies"
    __table_args__ = (UniqueConstraint("user_id", "cookie_expires"), _NO_ID_REUSE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    cookie_expires: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[datetime] = mapped_column(default=utcnow)


class SignInFailureRow(Base):
    """Wrong passwords typed for one user name (existing or not, so that a pause tells nobody
    which accounts exist) since the last sign-in: after ``sign_in_max_failures`` of them, sign-ins
    with that name pause until ``sign_in_pause_minutes`` after the last one."""

    __tablename__ = "sign_in_failures"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failed_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkerRow(Base):
    """A job worker as it last reported itself: written when it starts and at each heartbeat
    (idle or not), ``stopped_at`` set when it shuts down. A worker killed outright just stops
    being seen. Rows of workers unseen for a day are removed by the next worker that looks."""

    __tablename__ = "workers"
    __table_args__ = (
        CheckConstraint(_in_list("backend", RUN_BACKENDS), name="backend"),
        Index(None, "seen_at"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # the worker id runs carry
    backend: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer, default=0)  # jobs in hand at its last report
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]
