"""Datasets built from uploaded recordings: staging, checks, a real worker building them, the
owner's privacy, stop, failure and delete (services/dataset_builds, jobs/dataset_job)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import soundfile as sf
from conftest import speechlike, zip_of
from workbench import FAKEVOICE, active_workbench, get_run, make_user, start_worker, wait_for

from fakevoice import services, store
from fakevoice.cli import main
from fakevoice.datasets.sources import safe_id
from fakevoice.datasets.uploads import DatasetBuildSpec, uploads_dir
from fakevoice.errors import (
    ConflictError,
    DatasetError,
    FileTooLargeError,
    InvalidSpecError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
)
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor
from fakevoice.trainspec import TrainSpec

STALE_SECONDS = 2.0


def wav(seed: int, seconds: float = 1.5) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, speechlike(seconds, 16000, seed=seed), 16000, format="WAV")
    return buffer.getvalue()


def flac(seed: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, speechlike(1.5, 22050, seed=seed), 22050, format="FLAC")
    return buffer.getvalue()


def two_speakers() -> bytes:
    """A zipped folder ``calls/`` with two speakers of two recordings each, and some clutter."""
    return zip_of(
        {
            "calls/Alice Smith/monday.wav": wav(1),
            "calls/Alice Smith/tuesday.wav": wav(2),
            "calls/bob/first call.flac": flac(3),
            "calls/bob/second.wav": wav(4),
            "calls/notes.txt": b"not audio",
            "calls/bob/readme.md": b"not audio either",
        }
    )


def build_env(root: Path) -> dict[str, str]:
    """Settings of a workbench under ``root`` for dataset jobs: one build process, a worker that
    polls and beats often, and a heartbeat that goes stale in seconds."""
    return {
        "FAKEVOICE_DATA_DIR": str(root / "data"),
        "FAKEVOICE_DATASET_DIR": str(root / "datasets"),
        "FAKEVOICE_BUILD_WORKERS": "1",
        "FAKEVOICE_WORKER_POLL_SECONDS": "0.2",
        "FAKEVOICE_HEARTBEAT_SECONDS": "0.5",
        "FAKEVOICE_STALE_SECONDS": str(STALE_SECONDS),
        "FAKEVOICE_MAX_CONCURRENT_RUNS_PER_USER": "8",
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture
def workbench(tmp_path: Path) -> Iterator[dict[str, str]]:
    with active_workbench(build_env(tmp_path)) as active:
        yield active


def run_worker(env: dict[str, str], timeout: float = 240) -> str:
    """A real ``fakevoice worker --once``: runs what is queued, then exits."""
    worker = subprocess.run(
        [str(FAKEVOICE), "worker", "--once"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr
    return worker.stdout + worker.stderr


def admin(name: str = "root") -> Actor:
    with store.session_scope() as session:
        user = store.create_user(session, name, is_admin=True)
    return user.actor


# --- the upload and the job's spec ---------------------------------------------------------------


def test_an_upload_is_staged_in_speaker_folders_with_names_made_here(
    workbench: dict[str, str],
) -> None:
    alice = make_user("alice")
    run = services.submit_dataset_build(
        alice, "calls", [("../../calls.zip", two_speakers())], generators=["lpc"]
    )
    assert run.kind == "dataset" and run.status == "queued" and run.name == "dataset calls"
    spec = DatasetBuildSpec.from_dict(run.spec)
    assert spec.name == "calls" and not spec.labelled and spec.generators == ("lpc",)
    assert spec.noise_levels == ("snr_inf", "snr_20db", "snr_10db") and spec.recordings == 4
    assert any("2 files without an audio file name" in note for note in spec.skipped)
    staged = Path(spec.source)
    assert staged.parent == uploads_dir()
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    # The zip's top folder is dropped; speakers and files get path-safe names made here.
    assert len(files) == 4 and all(f.count("/") == 1 for f in files)
    assert {f.split("/")[0] for f in files} == {safe_id("Alice Smith"), "bob"}
    assert all(c.isalnum() or c in "-_./" for f in files for c in f)
    # Training runs are listed apart from dataset builds.
    assert services.list_runs(alice) == []
    assert [r.id for r in services.list_dataset_builds(alice)] == [run.id]


def test_loose_files_are_one_speaker_and_need_the_speakers_name(
    workbench: dict[str, str],
) -> None:
    alice = make_user("alice")
    loose = [("one.wav", wav(1)), ("two.wav", wav(2))]
    with pytest.raises(InvalidSpecError, match="speaker's name"):
        services.submit_dataset_build(alice, "mine", loose)
    run = services.submit_dataset_build(alice, "mine", loose, speaker="Alice")
    staged = Path(DatasetBuildSpec.from_dict(run.spec).source)
    assert sorted(p.name for p in (staged / safe_id("Alice")).iterdir()) == ["one.wav", "two.wav"]
    assert list(uploads_dir().iterdir()) == [staged]  # the refused try left nothing


def test_bad_uploads_are_refused_in_words_and_leave_nothing(workbench: dict[str, str]) -> None:
    alice = make_user("alice")
    good = [("calls.zip", two_speakers())]
    cases: list[tuple[type[Exception], str, str, list[tuple[str, bytes]], dict[str, object]]] = [
        (InvalidSpecError, "../evil", "dataset name", good, {}),
        (InvalidSpecError, "ok", "at least one noise level", good, {"noise_levels": []}),
        (InvalidSpecError, "ok", "not a noise level", good, {"noise_levels": ["loud"]}),
        (InvalidSpecError, "ok", "generator", good, {"generators": ["no-such-vocoder"]}),
        (InvalidSpecError, "ok", "at least one generator", good, {"generators": []}),
        (InvalidSpecError, "ok", "speaks text", good, {"generators": ["espeak"]}),
        (DatasetError, "ok", "no audio file", [("x.zip", zip_of({"a/b.txt": b"x"}))], {}),
        (LimitExceededError, "ok", "holds no clip", [], {}),
    ]
    for error, name, message, files, options in cases:
        with pytest.raises(error, match=message):
            services.submit_dataset_build(alice, name, files, **options)  # type: ignore[arg-type]
    assert not uploads_dir().exists() or list(uploads_dir().iterdir()) == []
    assert services.list_dataset_builds(alice) == []


def test_upload_limits_come_from_the_settings(
    workbench: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakevoice.settings import get_settings

    alice = make_user("alice")
    monkeypatch.setenv("FAKEVOICE_DATASET_UPLOAD_MAX_FILES", "3")
    get_settings.cache_clear()
    with pytest.raises(LimitExceededError, match="dataset upload may hold at most 3"):
        services.submit_dataset_build(alice, "big", [("calls.zip", two_speakers())])
    monkeypatch.setenv("FAKEVOICE_DATASET_UPLOAD_MAX_FILES", "100")
    monkeypatch.setenv("FAKEVOICE_DATASET_UPLOAD_MAX_BYTES", "100000")
    get_settings.cache_clear()
    with pytest.raises(FileTooLargeError, match="dataset upload expands to more than"):
        services.submit_dataset_build(alice, "big", [("calls.zip", two_speakers())])
    # Entries leaving their folder are refused and reported, never written.
    evil = zip_of({"../outside/x.wav": wav(1), "bob/a.wav": wav(2)})
    run = services.submit_dataset_build(alice, "evil", [("evil.zip", evil)], generators=["lpc"])
    spec = DatasetBuildSpec.from_dict(run.spec)
    assert any("leaves its folder" in note for note in spec.skipped) and spec.recordings == 1
    assert not (Path(workbench["FAKEVOICE_DATA_DIR"]) / "outside").exists()


def test_a_large_upload_is_staged_a_chunk_at_a_time(
    workbench: dict[str, str], tmp_path: Path
) -> None:
    """A zip of 48 MB on disk reaches the staging folder whole, byte for byte, while Python
    never holds more than a few MiB of it (the API hands over the spooled files as they are)."""
    alice = make_user("alice")
    services.submit_dataset_build(alice, "warm-up", [("c.zip", two_speakers())])  # imports
    path, size = tmp_path / "big.zip", 16 * 2**20
    digests: dict[str, str] = {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for speaker in ("ann", "ben", "cy"):
            digest = hashlib.sha256()
            with archive.open(f"{speaker}/long.wav", "w", force_zip64=True) as entry:
                for _ in range(size // 2**20):
                    chunk = os.urandom(2**20)
                    digest.update(chunk)
                    entry.write(chunk)
            digests[speaker] = digest.hexdigest()
    tracemalloc.start()
    try:
        with path.open("rb") as handle:
            run = services.submit_dataset_build(
                alice, "big", [("big.zip", handle)], generators=["lpc"]
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB held while staging 48 MB"
    spec = DatasetBuildSpec.from_dict(run.spec)
    assert spec.recordings == 3
    for speaker, expected in digests.items():
        staged = Path(spec.source) / speaker / "long.wav"
        assert hashlib.sha256(staged.read_bytes()).hexdigest() == expected


def test_a_user_owns_at_most_max_datasets_per_user(
    workbench: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakevoice.settings import get_settings

    monkeypatch.setenv("FAKEVOICE_MAX_DATASETS_PER_USER", "2")
    get_settings.cache_clear()
    alice, bob = make_user("alice"), make_user("bob")
    folder = Path(workbench["FAKEVOICE_DATASET_DIR"]) / "built"
    services.record_owner(alice.user_id, "built", folder, items=1)  # one built already
    services.submit_dataset_build(alice, "second", [("c.zip", two_speakers())])
    with pytest.raises(LimitExceededError, match="at most 2 datasets"):
        services.submit_dataset_build(alice, "third", [("c.zip", two_speakers())])
    services.submit_dataset_build(bob, "bobs", [("c.zip", two_speakers())])  # per user


def test_a_name_is_taken_by_a_dataset_or_a_build_under_way(workbench: dict[str, str]) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    services.submit_dataset_build(alice, "calls", [("c.zip", two_speakers())], generators=["lpc"])
    with pytest.raises(ConflictError, match="is being made"):
        services.submit_dataset_build(bob, "calls", [("c.zip", two_speakers())])
    (Path(workbench["FAKEVOICE_DATASET_DIR"]) / "taken").mkdir(parents=True)
    with pytest.raises(ConflictError, match="taken"):
        services.submit_dataset_build(bob, "taken", [("c.zip", two_speakers())])
    with pytest.raises(ConflictError, match="demo dataset"):  # even before `make run` built it
        services.submit_dataset_build(bob, "Demo", [("c.zip", two_speakers())])


# --- the worker builds it -------------------------------------------------------------------------


def test_a_worker_builds_the_dataset_which_only_its_owner_and_admins_see(
    workbench: dict[str, str],
) -> None:
    alice, bob, root = make_user("alice"), make_user("bob"), admin()
    run = services.submit_dataset_build(
        alice,
        "calls",
        [("calls.zip", two_speakers())],
        generators=["lpc", "griffinlim"],
        noise_levels=["snr_inf", "snr_10db"],
    )
    staged = Path(DatasetBuildSpec.from_dict(run.spec).source)
    output = run_worker(workbench)
    done = get_run(alice, run.id)
    assert done.status == "succeeded", (done.error, output)
    assert done.progress == pytest.approx(1.0)
    assert "2 files without an audio file name" in (done.notice or "")
    assert not staged.exists()  # the upload is removed once built

    folder = Path(workbench["FAKEVOICE_DATASET_DIR"]) / "calls"
    manifest = pd.read_csv(folder / "manifest.csv")
    # 4 recordings x (bonafide + 2 generators) x 2 noise levels.
    assert len(manifest) == 4 * 3 * 2
    assert set(manifest["class"]) == {"bonafide", "lpc", "griffinlim"}
    assert manifest["speaker"].nunique() == 2

    assert services.dataset_names(actor=alice) == ["calls"]
    assert services.dataset_names(actor=root) == ["calls"]
    assert services.dataset_names(actor=bob) == [] == services.dataset_names(actor=None)
    assert services.dataset_overview("calls", actor=alice).owner_id == alice.user_id
    with pytest.raises(NotFoundError):
        services.dataset_overview("calls", actor=bob)
    spec = TrainSpec(dataset="calls", arch="specnet", epochs=1)
    services.check_spec(spec, actor=alice)  # alice may train on it
    with pytest.raises(NotFoundError):
        services.submit_run(bob, "steal", spec)
    with pytest.raises(PermissionDeniedError):
        services.render_dataset("calls", "copy", {"kind": "lfcc"}, actor=bob)

    # An administrator rendering it again keeps it alice's.
    services.render_dataset("calls", "calls-lfcc", {"kind": "lfcc"}, actor=root, workers=1)
    assert services.dataset_names(actor=alice) == ["calls", "calls-lfcc"]
    assert services.dataset_names(actor=bob) == []
    services.clear_dataset_build(alice, run.id)  # off the list of builds; the dataset stays
    assert services.list_dataset_builds(alice) == []
    assert services.dataset_names(actor=alice) == ["calls", "calls-lfcc"]

    with pytest.raises(NotFoundError):
        services.delete_dataset(bob, "calls")
    services.delete_dataset(alice, "calls")
    assert not folder.exists() and services.dataset_names(actor=alice) == ["calls-lfcc"]


def test_shared_datasets_are_deleted_by_administrators_only(workbench: dict[str, str]) -> None:
    from test_page_datasets import write_fixture_dataset

    write_fixture_dataset(Path(workbench["FAKEVOICE_DATASET_DIR"]), "shared")
    alice, root = make_user("alice"), admin()
    assert services.dataset_names(actor=None) == ["shared"]
    with pytest.raises(PermissionDeniedError, match="administrator"):
        services.delete_dataset(alice, "shared")
    with store.session_scope() as session:
        store.create_run(session, alice, "busy", TrainSpec(dataset="shared").to_dict())
    with pytest.raises(ConflictError, match="uses 'shared'"):
        services.delete_dataset(root, "shared")


def test_a_build_that_cannot_make_a_clip_fails_and_leaves_nothing(
    workbench: dict[str, str],
) -> None:
    alice = make_user("alice")
    broken = zip_of({"eve/a.wav": b"RIFF not really a wav", "eve/b.wav": b"\x00" * 4000})
    run = services.submit_dataset_build(alice, "broken", [("b.zip", broken)], generators=["lpc"])
    staged = Path(DatasetBuildSpec.from_dict(run.spec).source)
    run_worker(workbench)
    failed = get_run(alice, run.id)
    assert failed.status == "failed" and "No clip could be built" in (failed.error or "")
    assert not staged.exists()
    assert not (Path(workbench["FAKEVOICE_DATASET_DIR"]) / "broken").exists()
    with store.session_scope(readonly=True) as session:
        assert store.dataset_owners(session) == {}
    # The name is free again.
    services.submit_dataset_build(alice, "broken", [("c.zip", two_speakers())], generators=["lpc"])


def test_stopping_a_queued_build_cancels_it_and_removes_the_upload(
    workbench: dict[str, str],
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    run = services.submit_dataset_build(alice, "calls", [("c.zip", two_speakers())])
    staged = Path(DatasetBuildSpec.from_dict(run.spec).source)
    with pytest.raises(NotFoundError):
        services.stop_dataset_build(bob, run.id)
    stopped = services.stop_dataset_build(alice, run.id)
    assert stopped.status == "cancelled" and not staged.exists()
    run_worker(workbench)  # nothing left to do
    assert get_run(alice, run.id).status == "cancelled"
    assert not (Path(workbench["FAKEVOICE_DATASET_DIR"]) / "calls").exists()


def test_a_running_build_stops_on_request_and_leaves_nothing(workbench: dict[str, str]) -> None:
    alice = make_user("alice")
    many = zip_of({f"ann/{i}.wav": wav(i, seconds=3.0) for i in range(12)})
    run = services.submit_dataset_build(
        alice, "long", [("m.zip", many)], generators=["lpc", "griffinlim", "mel_griffinlim"]
    )
    staged = Path(DatasetBuildSpec.from_dict(run.spec).source)
    worker = start_worker(workbench, "--once")
    try:
        wait_for(lambda: get_run(alice, run.id).progress > 0, 120, "the build to make progress")
        services.stop_dataset_build(alice, run.id)
        output, _ = worker.communicate(timeout=120)
    finally:
        worker.kill()
    stopped = get_run(alice, run.id)
    assert stopped.status == "cancelled", output
    assert not staged.exists()
    assert not (Path(workbench["FAKEVOICE_DATASET_DIR"]) / "long").exists()
    with store.session_scope(readonly=True) as session:
        assert store.dataset_owners(session) == {}


def test_deleting_a_user_deletes_their_datasets_and_uploads(workbench: dict[str, str]) -> None:
    from test_page_datasets import write_fixture_dataset

    from fakevoice.services import profile

    alice, root = make_user("alice"), admin()
    folder = Path(workbench["FAKEVOICE_DATASET_DIR"]) / "hers"
    write_fixture_dataset(folder.parent, "hers")
    with store.session_scope() as session:
        store.register_dataset(
            session, alice, name="hers", path=store.folder_key(folder), items=1, spec={}
        )
    run = services.submit_dataset_build(alice, "more", [("c.zip", two_speakers())])
    staged = Path(DatasetBuildSpec.from_dict(run.spec).source)
    # Not while her build is queued: it would write into folders being removed.
    with pytest.raises(ConflictError, match="1 job\\(s\\) queued or running \\('dataset more'\\)"):
        profile.delete_user(root, alice.user_id)
    assert folder.exists()
    services.stop_run(alice, run.id)
    profile.delete_user(root, alice.user_id)
    # Without an owner the dataset would be everyone's: it goes with her.
    assert not folder.exists() and not staged.exists()
    assert services.dataset_names(actor=None) == [] == services.dataset_names(actor=root)


def test_a_build_whose_worker_died_is_continued_by_the_next_worker(
    workbench: dict[str, str],
) -> None:
    alice = make_user("alice")
    recordings = 6  # two built before the kill, the other four after
    many = zip_of({f"ann/{i}.wav": wav(i, seconds=3.0) for i in range(recordings)})
    run = services.submit_dataset_build(
        alice,
        "resumed",
        [("m.zip", many)],
        generators=["lpc", "griffinlim", "mel_griffinlim"],
        noise_levels=["snr_inf"],
    )
    markers = Path(workbench["FAKEVOICE_DATASET_DIR"]) / "resumed" / ".progress"
    worker = start_worker(workbench)
    try:  # the build file and two recordings' markers
        wait_for(lambda: len(list(markers.glob("*.json"))) >= 3, 120, "two recordings built")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
    assert get_run(alice, run.id).status == "running", "it finished before the kill"
    assert services.dataset_names(actor=None) == []  # half a dataset is nobody's to see

    time.sleep(STALE_SECONDS + 0.5)  # the heartbeat goes stale
    output = run_worker(workbench)
    done = get_run(alice, run.id)
    assert done.status == "succeeded", (done.error, output)
    assert "epoch" not in (done.notice or "")  # a build continues from its markers
    manifest = pd.read_csv(markers.parent / "manifest.csv")
    assert len(manifest) == recordings * 4
    assert services.dataset_names(actor=alice) == ["resumed"]
    assert services.dataset_names(actor=None) == []
    assert not Path(DatasetBuildSpec.from_dict(run.spec).source).exists()


def test_a_labelled_upload_is_built_as_labelled(workbench: dict[str, str]) -> None:
    alice = make_user("alice")
    labelled = zip_of(
        {
            "bonafide/call-1.wav": wav(1),
            "bonafide/call-2.wav": wav(2),
            "world/call-1.wav": wav(3),
            "my-tts/call-2.wav": wav(4),  # not a class name: the whole zip is refused
        }
    )
    with pytest.raises(DatasetError, match=r"class names \(bonafide, world\) and some are not"):
        services.submit_dataset_build(alice, "labelled", [("l.zip", labelled)])
    assert list(uploads_dir().iterdir()) == []
    labelled = zip_of(
        {"bonafide/call-1.wav": wav(1), "bonafide/call-2.wav": wav(2), "world/call-1.wav": wav(3)}
    )
    run = services.submit_dataset_build(
        alice, "labelled", [("l.zip", labelled)], noise_levels=["snr_inf"]
    )
    spec = DatasetBuildSpec.from_dict(run.spec)
    assert spec.labelled and spec.generators == () and spec.recordings == 3
    run_worker(workbench)
    assert get_run(alice, run.id).status == "succeeded"
    manifest = pd.read_csv(Path(workbench["FAKEVOICE_DATASET_DIR"]) / "labelled" / "manifest.csv")
    assert sorted(manifest["class"]) == ["bonafide", "bonafide", "world"]  # nothing generated
    # The same file name in two class folders is one utterance: a split keeps them together.
    assert manifest["utterance"].nunique() == 2


def test_clearing_an_interrupted_build_removes_its_upload_and_half_built_folder(
    workbench: dict[str, str],
) -> None:
    alice = make_user("alice")
    many = zip_of({f"ann/{i}.wav": wav(i, seconds=3.0) for i in range(6)})
    run = services.submit_dataset_build(
        alice,
        "half",
        [("m.zip", many)],
        generators=["lpc", "griffinlim", "mel_griffinlim"],
        noise_levels=["snr_inf"],  # the first recording's progress comes sooner
    )
    staged = Path(DatasetBuildSpec.from_dict(run.spec).source)
    folder = Path(workbench["FAKEVOICE_DATASET_DIR"]) / "half"
    worker = start_worker(workbench)
    try:
        wait_for(lambda: get_run(alice, run.id).progress > 0, 120, "the build to start")
        with pytest.raises(ConflictError, match="stop it first"):
            services.clear_dataset_build(alice, run.id)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
    time.sleep(STALE_SECONDS + 0.5)
    run_worker({**workbench, "FAKEVOICE_AUTO_RESUME": "false"})  # marks it, does not resume
    assert get_run(alice, run.id).status == "interrupted"
    assert staged.exists() and folder.exists()
    services.clear_dataset_build(alice, run.id)
    assert services.list_dataset_builds(alice) == []
    assert not staged.exists() and not folder.exists()
    with store.session_scope(readonly=True) as session:
        assert store.dataset_owners(session) == {}


def test_a_users_dataset_stays_private_when_the_data_folder_moves(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ownership is recorded by folder; a folder moved (a restore, another mount point) keeps
    its owner through the marker beside its manifest, and is never everyone's for lack of a
    record. One recorded before markers gets one when it is next listed."""
    from test_page_datasets import write_fixture_dataset

    from fakevoice.datasets.manifest import OWNER_MARKER_NAME
    from fakevoice.services.dataset_changes import record_owner

    store.init_db()
    alice, bob, root = make_user("alice"), make_user("bob"), admin()
    old_root = Path(get_settings().dataset_dir)
    write_fixture_dataset(old_root, "hers")
    write_fixture_dataset(old_root, "shared")  # built with the command line: everyone's
    record_owner(alice.user_id, "hers", old_root / "hers", items=1)
    assert (old_root / "hers" / OWNER_MARKER_NAME).is_file()
    (old_root / "hers" / OWNER_MARKER_NAME).unlink()  # as one recorded before markers
    assert services.dataset_names(actor=bob) == ["shared"]
    assert (old_root / "hers" / OWNER_MARKER_NAME).is_file()  # marked while listed

    new_root = isolated_settings / "moved"
    old_root.rename(new_root)
    monkeypatch.setenv("FAKEVOICE_DATASET_DIR", str(new_root))
    get_settings.cache_clear()
    assert services.dataset_names(actor=None) == ["shared"]
    assert services.dataset_names(actor=bob) == ["shared"]
    assert services.dataset_names(actor=alice) == ["hers", "shared"]
    assert services.dataset_names(actor=root) == ["hers", "shared"]

    def listed_owners() -> dict[str, str | None]:
        capsys.readouterr()
        assert main(["dataset", "list", "--json"]) == 0
        return {row["name"]: row["owner"] for row in json.loads(capsys.readouterr().out)}

    assert listed_owners() == {"hers": "alice", "shared": None}  # the operator's list too
    # A damaged marker: administrators only, never everyone.
    (new_root / "hers" / OWNER_MARKER_NAME).write_text("{")
    assert services.dataset_names(actor=alice) == ["shared"]
    assert services.dataset_names(actor=root) == ["hers", "shared"]
    assert listed_owners() == {"hers": "administrators only", "shared": None}


def test_a_build_starts_in_a_fresh_interpreter_and_its_worker_vouches_while_waiting(
    workbench: dict[str, str],
) -> None:
    """A build needs nothing of the training engine: its process is spawned, and the worker
    starts no fork server. While the worker's loop waits on something slow (the server's first
    imports, a child slow to end), a thread keeps saying that the worker is alive."""
    from fakevoice.jobs.local import LocalWorker

    alice = make_user("alice")
    run = services.submit_dataset_build(
        alice, "fresh", [("r.zip", two_speakers())], generators=["lpc"], noise_levels=["snr_inf"]
    )
    worker = LocalWorker(concurrency=1)

    def seen() -> Any:
        with store.session_scope(readonly=True) as session:
            (me,) = [w for w in store.list_workers(session) if w.id == worker.worker_id]
        return me

    try:
        with store.session_scope() as session:
            worker._report(session)
        worker._fill()
        assert list(worker.active) == [run.id]
        assert list(worker._contexts) == ["spawn"]  # no fork server
        before = seen().seen_at
        with worker._vouching():
            wait_for(lambda: seen().seen_at > before, 30, "a report while the loop waits")
    finally:
        worker._shutdown()
    assert seen().stopped_at is not None
    assert get_run(alice, run.id).status in {"interrupted", "succeeded"}
