"""One typed settings object, read from ``FAKEVOICE_*`` environment variables or a ``.env`` file.

Nothing else in the package reads ``os.environ``: code asks :func:`get_settings`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
    # Training and jobs.
    job_backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    max_epochs: int = Field(default=50, ge=1, le=1000)
    max_concurrent_jobs: int = Field(default=1, ge=1, le=64)
    max_concurrent_runs_per_user: int = Field(default=2, ge=1, le=64)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    heartbeat_seconds: float = Field(default=2.0, gt=0, le=60)
    stale_seconds: float = Field(
        default=30.0, gt=0, description="a running job without heartbeat this long is interrupted"
    )
    auto_resume: bool = Field(
        default=True, description="the worker resumes interrupted runs from their last epoch"
    )
    cli_user: str = Field(default="local", description="the account the CLI acts as")
    # Dataset building.
    build_workers: int = Field(default=0, ge=0, description="0 = all available cores")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fakevoice.sqlite').as_posix()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()
