"""One typed settings object, read from ``FAKEVOICE_*`` environment variables or a ``.env`` file.

Nothing else in the package reads ``os.environ``: code asks :func:`get_settings`.
"""

from __future__ import annotations

import difflib
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from fakevoice.errors import ServerConfigError

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A job is taken for dead after this many of its worker's heartbeats are missed, at the least.
MISSED_HEARTBEATS = 3
MAX_LOADER_WORKERS = 64  # data-loader processes per training run
# FAKEVOICE_ variables that are no settings on purpose: the test suite's own.
NOT_SETTINGS = ("FAKEVOICE_TEST_", "FAKEVOICE_UPDATE_SCREENSHOTS")


class Settings(BaseSettings):
    """Workbench configuration; every field can be set as ``FAKEVOICE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FAKEVOICE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=PROJECT_ROOT / "data", description="runs, models, database")
    dataset_dir: Path = Field(default=PROJECT_ROOT / "dataset", description="built datasets")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite (WAL) under data_dir"
    )
    # Audio limits, enforced by fakevoice.audio for every way audio comes in.
    max_audio_seconds: float = Field(default=600.0, gt=0)
    min_audio_seconds: float = Field(default=0.5, ge=0)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    # A model file (safe bundle, AASIST checkpoint, fastai export) uploaded or imported: the
    # bundles of resnet50 and vgg19_bn are about 100 MB.
    max_model_upload_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    # Training and jobs.
    job_backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    max_epochs: int = Field(default=50, ge=1, le=1000)
    max_concurrent_jobs: int = Field(default=1, ge=1, le=64)
    max_concurrent_runs_per_user: int = Field(default=2, ge=1, le=64)
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="auto (CUDA when present), cpu, or cuda: where this process trains runs "
        "whose device is auto, and runs HiFi-GAN in dataset builds",
    )
    verdict_device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="auto (CUDA when present), cpu, or cuda: where this process (app, API, CLI, "
        "tests of models) scores clips and tries learning rates; cpu keeps a GPU for training",
    )
    train_loader_workers: int | Literal["auto"] = Field(
        default="auto",
        description="processes that read, decode and augment a training run's items beside it "
        "(for each run); 0 = in the run's own process; auto = 0 on a CPU, one per core but one "
        "(at most 8) on CUDA",
    )
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    heartbeat_seconds: float = Field(default=2.0, gt=0, le=60)
    stale_seconds: float = Field(
        default=30.0,
        gt=0,
        description="a running job without heartbeat this long is interrupted (at least 3 times "
        "the longer of heartbeat_seconds and worker_poll_seconds)",
    )
    stop_grace_seconds: float = Field(
        default=3600.0,
        gt=0,
        le=86400,
        description="a job that has not ended this long after it was asked to stop (stuck) has "
        "its process ended by the worker; a stopped run still scores its validation split "
        "(minutes for AASIST on a CPU), so keep it long",
    )
    auto_resume: bool = Field(
        default=True, description="the worker resumes interrupted runs from their last epoch"
    )
    job_start_method: Literal["forkserver", "spawn"] = Field(
        default="forkserver",
        description="how the local worker starts the process of a training run or a test of "
        "models: forked from a server that has imported torch and fastai once (fast), or a fresh "
        "interpreter (spawn); dataset builds and renders always start in a fresh interpreter",
    )
    cli_user: str = Field(default="local", description="the account the CLI acts as")
    # Experiment tracking (fakevoice.tracking): every training run is logged to MLflow.
    mlflow_tracking: bool = Field(default=True, description="log training runs to MLflow")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        max_length=2000,
        validation_alias=AliasChoices("FAKEVOICE_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow server or store URI; default a SQLite store under <data_dir>/mlruns",
    )
    mlflow_experiment: str = Field(
        default="fakevoice", min_length=1, max_length=200, description="MLflow experiment name"
    )
    # Accounts (fakevoice.accounts, fakevoice.sign_ins): the sign-in cookie, and the mail that
    # carries password resets.
    cookie_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="signs the sign-in cookie; unset = generated once into <data_dir>/cookie.key",
    )
    report_signing_key_file: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM) that signs verdict reports; unset = generated "
        "once into <data_dir>/report-signing.key",
    )
    cookie_name: str = Field(default="fakevoice_auth", min_length=1, max_length=64)
    cookie_expiry_days: float = Field(
        default=1.0, gt=0, le=30, description="days a sign-in cookie stays valid"
    )
    sign_in_max_failures: int = Field(
        default=5, ge=1, le=1000, description="wrong passwords for a user name before a pause"
    )
    sign_in_pause_minutes: float = Field(
        default=15.0,
        gt=0,
        le=24 * 60,
        description="how long sign-ins with that name pause, from the last wrong password",
    )
    mail_backend: Literal["log", "smtp"] = Field(
        default="log",
        description="log = keep mails in <data_dir>/outbox, owner-only, not sent (the log says "
        "where); smtp = send",
    )
    smtp_host: str | None = Field(default=None, max_length=255)
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str | None = Field(default=None, max_length=255)
    smtp_password: SecretStr | None = Field(default=None)
    smtp_from: str | None = Field(default=None, max_length=320, description="sender address")
    smtp_starttls: bool = Field(default=True, description="upgrade the SMTP connection with TLS")
    # Dataset building.
    build_workers: int = Field(default=0, ge=0, description="0 = all available cores")
    dataset_upload_max_files: int = Field(
        default=2000, ge=1, le=100000, description="recordings in one dataset upload"
    )
    dataset_upload_max_bytes: int = Field(
        default=1024 * 1024 * 1024, gt=0, description="uncompressed bytes of one dataset upload"
    )
    max_datasets_per_user: int = Field(
        default=10, ge=1, le=10000, description="datasets a user may own (built or being built)"
    )
    # HTTP API (`fakevoice api`) and batch scoring.
    api_host: str = Field(default="127.0.0.1", max_length=255, description="address to listen on")
    api_port: int = Field(default=8000, ge=1, le=65535, description="TCP port of the API")
    api_workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes")
    api_allow_anonymous: bool = Field(
        default=False, description="public models may be used without a token"
    )
    api_anonymous_user: str = Field(
        default="anonymous", max_length=64, description="account that logs anonymous verdicts"
    )
    api_max_request_bytes: int = Field(
        default=200 * 1024 * 1024, gt=0, description="largest batch request body (files, zips)"
    )
    model_cache_size: int = Field(default=4, ge=1, le=64, description="models kept loaded (LRU)")
    api_scoring_threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="requests one API process decodes and scores at once (others wait their "
        "turn); 0 = its CPU cores",
    )
    api_metrics: bool = Field(
        default=True, description="serve Prometheus metrics at /metrics (and count for them)"
    )
    api_metrics_token: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="when set, /metrics wants 'Authorization: Bearer <this>' (a scraper's secret)",
    )
    batch_max_files: int = Field(default=200, ge=1, le=10000, description="clips in one batch")
    batch_max_total_bytes: int = Field(
        default=500 * 1024 * 1024, gt=0, description="uncompressed bytes in one batch"
    )
    batch_max_zip_ratio: float = Field(
        default=100.0, ge=1, le=10000, description="largest zip expansion ratio (bomb guard)"
    )

    @field_validator("train_loader_workers", mode="before")
    @classmethod
    def _auto_or_count(cls, value: object) -> object:
        # One message for both halves of the union (pydantic gives one per half).
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if not text.isdigit() or int(text) > MAX_LOADER_WORKERS:
            raise ValueError(f"must be auto or a whole number from 0 to {MAX_LOADER_WORKERS}")
        return int(text)

    @model_validator(mode="after")
    def _heartbeats_fit(self) -> Settings:
        # A worker beats at most once per pass of its loop, which waits worker_poll_seconds.
        beat = max(self.heartbeat_seconds, self.worker_poll_seconds)
        if self.stale_seconds < MISSED_HEARTBEATS * beat:
            raise ValueError(
                f"FAKEVOICE_STALE_SECONDS ({self.stale_seconds:g}) must be at least "
                f"{MISSED_HEARTBEATS} times the longer of FAKEVOICE_HEARTBEAT_SECONDS "
                f"({self.heartbeat_seconds:g}) and FAKEVOICE_WORKER_POLL_SECONDS "
                f"({self.worker_poll_seconds:g}), or workers take live jobs from each other"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fakevoice.sqlite').as_posix()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``).

    Raises:
        ServerConfigError: a setting's value is wrong; the message names each such setting (as
            its environment variable) and what it must be, never the value of one that may be a
            secret (only numbers checked against each other are shown).
    """
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = [
            _problem(error["loc"], error["msg"].removeprefix("Value error, ").rstrip("."))
            for error in exc.errors()[:5]
        ]
        raise ServerConfigError(
            "The workbench's settings are not valid: " + "; ".join(problems) + "."
        ) from None
    _warn_of_unknown_variables()
    return settings


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """One setting's problem in words; one about several settings names them itself."""
    return f"{_variable(loc)}: {message}" if loc else message


def _warn_of_unknown_variables() -> None:
    """Log each ``FAKEVOICE_*`` environment variable, or line of the ``.env`` file read with
    them, that is no setting (a misspelt one would otherwise leave its setting at the default
    without a word), with the nearest name."""
    known = {f"FAKEVOICE_{name.upper()}" for name in Settings.model_fields}
    env_file = Path(str(Settings.model_config.get("env_file") or ".env"))
    in_file = set(dotenv_values(env_file)) if env_file.is_file() else set()
    for variable in sorted(set(os.environ) | in_file):
        if not variable.startswith("FAKEVOICE_") or variable.startswith(NOT_SETTINGS):
            continue
        if variable not in known:
            near = difflib.get_close_matches(variable, sorted(known), n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            where = f" (in {env_file})" if variable in in_file else ""
            logger.warning(
                "%s%s is not a setting of the workbench: ignored%s", variable, where, hint
            )


def _variable(loc: tuple[int | str, ...]) -> str:
    """The environment variable of a setting (``("api_port",)`` -> ``FAKEVOICE_API_PORT``)."""
    name = str(loc[0]) if loc else "settings"
    return f"FAKEVOICE_{name.upper()}" if name in Settings.model_fields else name
