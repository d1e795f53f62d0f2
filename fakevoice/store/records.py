"""What the store hands out: the acting user and frozen, plain-data records.

Repository functions never return ORM objects. A record is a frozen dataclass copied from a row
inside the session, so it stays valid after the session closes, can be pickled to a worker
process or a Ray task, and changing it cannot write to the database by accident.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from fakevoice.errors import InvalidSpecError

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
RunBackend = Literal["local", "ray"]
RunKind = Literal["train", "dataset", "evaluate", "render"]
AnalysisSource = Literal["page", "api", "cli"]

MAX_ID = 2**63 - 1  # the largest id a database integer holds
ACTIVE_STATUSES: tuple[RunStatus, ...] = ("queued", "running")
FINAL_STATUSES: tuple[RunStatus, ...] = ("succeeded", "failed", "cancelled", "interrupted")
STATUS_WORDS: dict[str, str] = {  # "Run 'x' <words>": a status in a sentence
    "queued": "is queued",
    "running": "is running",
    "succeeded": "has finished",
    "failed": "has failed",
    "cancelled": "was stopped",
    "interrupted": "was interrupted",
}


def record_id(text: str | None) -> int | None:
    """The record id a person typed or a URL gave (``"12"``), or None for anything else: ASCII
    digits only (``"²"`` passes ``str.isdigit``), from 1 to :data:`MAX_ID` (a larger number would
    overflow the database's integer)."""
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


@dataclass(frozen=True)
class Actor:
    """The user on whose behalf a repository function runs.

    Attributes:
        user_id: id of the user in the ``users`` table.
        is_admin: administrators may read and change everyone's runs, models and users.
    """

    user_id: int
    is_admin: bool = False

    def can_read(self, owner_id: int | None, *, is_public: bool = False) -> bool:
        """Whether this actor may see an object owned by ``owner_id``."""
        return is_public or self.is_admin or owner_id == self.user_id

    def can_write(self, owner_id: int | None) -> bool:
        """Whether this actor may change or delete an object owned by ``owner_id``."""
        return self.is_admin or owner_id == self.user_id


@dataclass(frozen=True)
class UserRecord:
    id: int
    username: str
    display_name: str
    email: str | None
    is_admin: bool
    created_at: datetime
    password_hash: str | None = field(default=None, repr=False)
    password_changed_at: datetime | None = None
    sessions_ended_at: datetime | None = None

    @property
    def actor(self) -> Actor:
        """This user as the acting user of repository calls."""
        return Actor(user_id=self.id, is_admin=self.is_admin)


@dataclass(frozen=True)
class DatasetRecord:
    id: int
    name: str
    path: str
    owner_id: int | None
    created_at: datetime
    items: int
    spec: dict[str, Any]


@dataclass(frozen=True)
class WorkerRecord:
    """A job worker as it last reported itself (see :mod:`fakevoice.store.workers`)."""

    id: str
    backend: RunBackend
    host: str
    pid: int
    concurrency: int
    running: int
    started_at: datetime
    seen_at: datetime
    stopped_at: datetime | None

    def is_alive(self, now: datetime, stale_seconds: float) -> bool:
        """Not shut down, and seen within ``stale_seconds`` (the time after which its jobs are
        taken for orphans too)."""
        return self.stopped_at is None and (now - self.seen_at).total_seconds() <= stale_seconds


@dataclass(frozen=True)
class RunRecord:
    """A job: a training run (``kind`` train), a dataset build (``dataset``) or a test of models
    on a dataset (``evaluate``). ``progress`` is 0-1; times are UTC."""

    id: int
    owner_id: int
    name: str
    spec: dict[str, Any]
    status: RunStatus
    progress: float
    current_epoch: int
    total_epochs: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    worker_id: str | None
    heartbeat_at: datetime | None
    stop_requested: bool
    notice: str | None
    mlflow_run_id: str | None
    artefact_dir: str | None
    backend: RunBackend
    resume_from_epoch: int | None
    kind: RunKind = "train"
    queued_at: datetime | None = None  # when it was made, or last queued again
    worker_deaths: int = 0  # its worker died under it, since its last completed epoch

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def dataset(self) -> str | None:
        """The dataset the job reads (a run, a test) or makes (a build, a render)."""
        value = self.spec.get("name" if self.kind in ("dataset", "render") else "dataset")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class BatchMetric:
    """One training batch: ``step`` counts batches over the whole run (0-based)."""

    epoch: int
    batch: int
    step: int
    train_loss: float
    lr: float | None = None
    recorded_at: datetime | None = None


@dataclass(frozen=True)
class EpochMetric:
    """One epoch's figures; ``eer`` and ``accuracy`` are fractions (0-1), ``seconds`` wall time."""

    epoch: int
    train_loss: float | None = None
    valid_loss: float | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    eer: float | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class ModelRecord:
    """A stored detector. ``files`` maps file name (in ``path``) to its sha256 hex digest."""

    id: int
    owner_id: int
    run_id: int | None
    name: str
    is_public: bool
    arch: str
    class_names: list[str]
    feature_spec: dict[str, Any] | None
    sample_rate: int
    clip_samples: int
    path: str
    files: dict[str, str]
    metrics: dict[str, Any]
    created_at: datetime

    @property
    def version(self) -> str:
        """The first 12 hex digits of its weights' sha256 (``model.safetensors``, the safe
        bundle's weights: :data:`fakevoice.artefacts.BUNDLE_WEIGHTS`): which weights gave a
        verdict, as every face names them."""
        return str(self.files.get("model.safetensors", ""))[:12]


@dataclass(frozen=True)
class AnalysisRecord:
    """One verdict. ``file_name`` is the client's name, for display only, never a path."""

    id: int
    owner_id: int
    model_id: int | None
    file_name: str
    duration: float
    sample_rate: int
    verdict: str
    probabilities: dict[str, float]
    threshold: float
    created_at: datetime
    source: AnalysisSource
    file_sha256: str | None = None  # of the bytes judged; None for verdicts older than it
    cautions: list[str] = field(default_factory=list)  # why to trust the verdict less
    outcome: str | None = None  # what the clip really was, when its owner has said: human | machine
    note: str | None = None  # the owner's note, e.g. a case number
    # The per-window timeline the verdict was made of: {"start", "end" (s), "p_human",
    # "top_class"} each, in time order; None for verdicts older than it.
    windows: list[dict[str, Any]] | None = None
    # Why it was made, when its owner asked: the explained window's "start", "end", "p_human",
    # "bands" ({"low", "high", "unit", "share"} each), "segments" and "method"; None otherwise.
    explanation: dict[str, Any] | None = None
    # How familiar the clip was to the model (0 to 1, :mod:`fakevoice.metrics.familiarity`);
    # None when the model keeps no reference or the verdict is older than it.
    typicality: float | None = None


VERDICT_LABELS: tuple[str, ...] = ("human", "machine-generated", "inconclusive")
ANALYSIS_OUTCOMES: tuple[str, ...] = VERDICT_LABELS[:2]  # what a judged clip really was
MAX_SEARCH_LENGTH = 200
MIN_HASH_PREFIX = 6  # hex digits that make a search text also a SHA-256 prefix


@dataclass(frozen=True)
class AnalysisFilter:
    """Which verdicts of a history to list (every field narrows; the defaults keep all).

    Attributes:
        text: a part of the file name (any case), or the start of the SHA-256 of the bytes
            judged (at least :data:`MIN_HASH_PREFIX` hex digits).
        verdicts: only these verdict labels.
        model_id: only verdicts of this model.
        since / until: only verdicts made at or after ``since`` and before ``until`` (naive
            times are UTC).
        file_sha256: only verdicts on exactly these bytes (64 hex digits).
        before_id: only verdicts older than this one.
        outcome: ``"known"`` (the owner has said what the clip really was), ``"unknown"``, or
            one outcome (``"human"``, ``"machine-generated"``); empty: any.

    The search text also matches the owner's notes (a case number, say).
    """

    text: str = ""
    verdicts: tuple[str, ...] = ()
    model_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    file_sha256: str | None = None
    before_id: int | None = None
    outcome: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or len(self.text) > MAX_SEARCH_LENGTH:
            raise InvalidSpecError(f"Search for at most {MAX_SEARCH_LENGTH} characters.")
        unknown = [v for v in self.verdicts if v not in VERDICT_LABELS]
        if unknown:
            raise InvalidSpecError(
                f"{unknown[0]!r} is not a verdict; choose from {', '.join(VERDICT_LABELS)}."
            )
        if self.outcome not in ("", "known", "unknown", *ANALYSIS_OUTCOMES):
            raise InvalidSpecError(
                f"outcome must be known, unknown, human or machine-generated; got {self.outcome!r}."
            )
        digest = self.file_sha256
        if digest is not None and not is_sha256(digest.lower()):
            raise InvalidSpecError("A SHA-256 is 64 hexadecimal digits.")
        for name in ("since", "until"):  # naive times are taken to be UTC, as in the store
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_utc(value))
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise InvalidSpecError("The end of the time range must come after its start.")

    @property
    def hash_prefix(self) -> str | None:
        """The search text as a SHA-256 prefix (lower case), when it can be one."""
        text = self.text.strip().lower()
        return text if _is_hex(text) and MIN_HASH_PREFIX <= len(text) <= 64 else None


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def is_sha256(text: str) -> bool:
    """Whether ``text`` is a SHA-256 as the store keeps it: 64 lowercase hexadecimal digits."""
    return len(text) == 64 and _is_hex(text)


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC time (a naive one is taken to be UTC already)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


RecordT = TypeVar("RecordT")


def to_record(record_type: type[RecordT], row: object) -> RecordT:
    """Copy the attributes a record declares from an ORM row (inside its session)."""
    # JSON values are copied so that changing a record never touches the session's state.
    names = field_names(record_type)  # type: ignore[arg-type]
    return record_type(**{name: _copy_json(getattr(row, name)) for name in names})


def record_from_row(record_type: type[RecordT], row: Any) -> RecordT:
    """A record from a Core result row that has a column for each of its fields.

    For the statements of the verdict path (:func:`fakevoice.store.find_active_token`,
    :func:`~fakevoice.store.find_model_by_key`), which select table columns instead of ORM
    entities: the ORM's per-row bookkeeping cost more than the query itself there. The row's
    JSON values were just decoded and belong to no session, so they are not copied.
    """
    mapping = row._mapping
    return record_type(**{name: mapping[name] for name in field_names(record_type)})  # type: ignore[arg-type]


@functools.cache
def field_names(record_type: type) -> tuple[str, ...]:
    """The field names of a record class (looked up once per class)."""
    return tuple(f.name for f in dataclasses.fields(record_type))


def _copy_json(value: Any) -> Any:
    """A copy of the containers of a JSON-like value (the API reads records on every request, and
    ``copy.deepcopy`` costs ten times as much); anything else is returned as it is (strings,
    numbers, datetimes are immutable)."""
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    if isinstance(value, (str, int, float, bool, type(None), datetime)):
        return value
    return copy.deepcopy(value)
