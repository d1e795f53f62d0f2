"""The settings object: values checked together, and variables that are no setting said."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fakevoice.errors import ServerConfigError
from fakevoice.settings import get_settings


def test_a_stale_time_shorter_than_three_heartbeats_is_refused(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers would take each other's live jobs for dead."""
    monkeypatch.setenv("FAKEVOICE_STALE_SECONDS", "1")
    monkeypatch.setenv("FAKEVOICE_HEARTBEAT_SECONDS", "30")
    get_settings.cache_clear()
    with pytest.raises(ServerConfigError) as refused:
        get_settings()
    assert str(refused.value) == (
        "The workbench's settings are not valid: FAKEVOICE_STALE_SECONDS (1) must be at least 3 "
        "times the longer of FAKEVOICE_HEARTBEAT_SECONDS (30) and FAKEVOICE_WORKER_POLL_SECONDS "
        "(1), or workers take live jobs from each other."
    )
    monkeypatch.setenv("FAKEVOICE_STALE_SECONDS", "90")
    get_settings.cache_clear()
    assert get_settings().stale_seconds == 90
    # A worker beats once per pass of its loop: a long poll counts as a long heartbeat.
    monkeypatch.setenv("FAKEVOICE_WORKER_POLL_SECONDS", "40")
    get_settings.cache_clear()
    with pytest.raises(ServerConfigError, match=r"FAKEVOICE_WORKER_POLL_SECONDS \(40\)"):
        get_settings()


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "auto"), ("Auto", "auto"), ("0", 0), ("12", 12), ("64", 64)]
)
def test_train_loader_workers_are_auto_or_a_bounded_count(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, expected: object
) -> None:
    if value is not None:
        monkeypatch.setenv("FAKEVOICE_TRAIN_LOADER_WORKERS", value)
    get_settings.cache_clear()
    assert get_settings().train_loader_workers == expected


@pytest.mark.parametrize("value", ["-1", "65", "2.5", "all"])
def test_train_loader_workers_out_of_bounds_are_refused_in_one_sentence(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FAKEVOICE_TRAIN_LOADER_WORKERS", value)
    get_settings.cache_clear()
    with pytest.raises(ServerConfigError) as refused:
        get_settings()
    assert str(refused.value) == (
        "The workbench's settings are not valid: FAKEVOICE_TRAIN_LOADER_WORKERS: must be auto "
        "or a whole number from 0 to 64."
    )


def test_a_misspelt_variable_is_named_with_the_setting_it_may_mean(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAKEVOICE_JOB_BACKEN", "ray")
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING, logger="fakevoice.settings"):
        assert get_settings().job_backend == "local"  # left at its default...
    # ...and said.
    assert (
        "FAKEVOICE_JOB_BACKEN is not a setting of the workbench: ignored; "
        "did you mean FAKEVOICE_JOB_BACKEND?"
    ) in caplog.messages
    assert not any("FAKEVOICE_DATA_DIR" in line for line in caplog.messages)


def test_a_misspelt_line_of_the_env_file_is_named_too(
    isolated_settings: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The ``.env`` file beside the workbench is read with the environment: its lines are
    checked the same way."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FAKEVOICE_MAX_EPOCH=5\nFAKEVOICE_API_PORT=8123\nOTHER=1\n")
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING, logger="fakevoice.settings"):
        assert get_settings().api_port == 8123  # the file is read...
    assert (
        "FAKEVOICE_MAX_EPOCH (in .env) is not a setting of the workbench: ignored; "
        "did you mean FAKEVOICE_MAX_EPOCHS?"
    ) in caplog.messages
    assert len(caplog.messages) == 1, caplog.messages
