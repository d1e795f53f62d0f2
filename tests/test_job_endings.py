"""How a job that is not training ends when it raises (fakevoice/jobs/progress.end_on_error):
lost jobs stay another worker's, stops are cancelled, user errors fail with their words, and bugs
fail with their type while the traceback goes to the log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from workbench import active_workbench, get_run, make_user

from fakevoice import store
from fakevoice.errors import DatasetError
from fakevoice.jobs.progress import JobLost, JobStopped, end_on_error, unexpected_error_text


@pytest.fixture
def workbench(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {"FAKEVOICE_DATA_DIR": str(tmp_path / "data"), "FAKEVOICE_DATASET_DIR": str(tmp_path)}
    with active_workbench(env) as active:
        yield active


def running_job() -> int:
    with store.session_scope() as session:
        alice = make_user("alice")
        name = store.unused_run_name(session, alice, "a render")
        run = store.create_run(session, alice, name, {"kind": "render"}, kind="render")
        assert store.claim_next_queued_run(session, "worker-1") is not None
    return run.id


def ended(error: Exception) -> tuple[str, str, str | None]:
    """The status end_on_error returns, and the job's status and message in the store."""
    run_id = running_job()
    try:
        raise error
    except Exception as exc:
        returned = end_on_error(run_id, "worker-1", exc, "render")
    run = get_run(make_user("alice"), run_id)
    return returned, run.status, run.error


def test_each_kind_of_error_ends_a_job_as_it_should(
    workbench: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    assert ended(JobStopped("Stopped on request.")) == (
        "cancelled",
        "cancelled",
        "Stopped on request.",
    )
    assert ended(DatasetError("The clip x.wav is missing.")) == (
        "failed",
        "failed",
        "The clip x.wav is missing.",
    )
    # Lost: the store is left to whoever holds the job now.
    assert ended(JobLost("no longer held")) == ("interrupted", "running", None)
    with caplog.at_level(logging.ERROR, logger="fakevoice.jobs.progress"):
        returned, status, message = ended(ZeroDivisionError("division by zero"))
    assert (returned, status) == ("failed", "failed")
    assert message == (
        "The render stopped because of an internal error (ZeroDivisionError: division by zero)."
    )
    assert "Traceback" in caplog.text and "ZeroDivisionError" in caplog.text


def test_a_killed_data_loader_worker_is_said_to_be_one() -> None:
    """torch's words when a loader worker dies (the out-of-memory killer, mostly), however
    fastai wraps them, become advice; other errors keep their own words."""
    for words in (
        "DataLoader worker (pid 4242) is killed by signal: Killed. ",
        "DataLoader worker (pid(s) 4242, 4243) exited unexpectedly",
    ):
        try:
            try:
                raise RuntimeError(words)
            except RuntimeError as exc:
                raise RuntimeError("Exception occured in 'RunSinkCallback'") from exc
        except RuntimeError as exc:
            said = unexpected_error_text(exc, "training")
        assert said.startswith("The training stopped because one of its data-loader processes")
        assert "FAKEVOICE_TRAIN_LOADER_WORKERS" in said and "resume it" in said
    said = unexpected_error_text(RuntimeError("a worker (pid 7) said no"), "training")
    assert (
        said
        == "The training stopped because of an internal error (RuntimeError: a worker (pid 7) said no)."
    )


def test_a_full_disk_is_said_to_be_one(
    workbench: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """However deep the library that met it hides the ENOSPC, or when it does not say it at all
    (torch's checkpoint writer says "unexpected pos") while the disk has next to nothing free."""
    import errno
    import shutil
    from collections import namedtuple

    def save() -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("Exception occured in 'RunSinkCallback'") from exc

    try:
        save()
    except RuntimeError as exc:
        words = unexpected_error_text(exc, "training")
    assert words.startswith("The training stopped because a disk the server writes to is full.")
    assert "resume it" in words

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(2**30, 2**30 - 2**20, 2**20))
    run_id = running_job()
    try:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1115072")
    except RuntimeError as exc:
        end_on_error(run_id, "worker-1", exc, "render", tmp_path / "not-made-yet")
    run = get_run(make_user("alice"), run_id)
    assert run.status == "failed"
    assert run.error == (
        "The render stopped because the server's disk is full (1 MiB free). Once its operator "
        "has freed space, resume it (or start it again)."
    )
    assert str(tmp_path) not in run.error  # the server's paths stay in its log
