"""Datasets rendered again with other features, as background jobs: who may queue one, the name it
reserves, a real worker rendering it, stop, a dead worker, clearing (services/dataset_renders,
jobs/render_job)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from conftest import speechlike
from test_dataset_builds import admin, build_env, run_worker, two_speakers
from test_page_datasets import MANIFEST_COLUMNS, write_fixture_dataset
from test_page_evaluate import run_queued_jobs
from workbench import active_workbench, get_run, make_user, start_worker, wait_for

from fakevoice import services, store
from fakevoice.errors import ConflictError, InvalidSpecError, NotFoundError, PermissionDeniedError
from fakevoice.services.dataset_renders import RenderSpec
from fakevoice.store.tables import utcnow
from fakevoice.store.users import set_admin
from fakevoice.trainspec import TrainSpec

# Big linear images (about 0.2 s a clip here) make a render of SLOW_CLIPS clips last seconds.
SLOW = {"kind": "linear", "image_height": 2048, "image_width": 2048}
SLOW_CLIPS = 24


@pytest.fixture
def workbench(tmp_path: Path) -> Iterator[dict[str, str]]:
    with active_workbench(build_env(tmp_path)) as active:
        yield active


def dataset_dir(workbench: dict[str, str]) -> Path:
    return Path(workbench["FAKEVOICE_DATASET_DIR"])


def write_many_clips(root: Path, name: str, clips: int) -> None:
    """A dataset of ``clips`` two-second human clips at one noise level (no images needed: a
    render makes its own)."""
    folder = root / name
    rows = []
    for index in range(clips):
        clip = f"clips/s{index % 4}/bonafide/u{index}.wav"
        (folder / clip).parent.mkdir(parents=True, exist_ok=True)
        sf.write(folder / clip, speechlike(2.0, 16000, seed=index), 16000, subtype="PCM_16")
        item = f"u{index}__bonafide__snr_inf"
        rows.append(
            dict.fromkeys(MANIFEST_COLUMNS, "")
            | {
                "item": item,
                "utterance": f"u{index}",
                "speaker": f"s{index % 4}",
                "class": "bonafide",
                "noise": "snr_inf",
                "clip_path": clip,
                "image_path": f"snr_inf/s{index % 4}/bonafide/{item}.png",
                "duration": 2.0,
            }
        )
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(folder / "manifest.csv", index=False)
    info = {"name": name, "feature_spec": {"kind": "mel"}, "noise_levels": ["snr_inf"]}
    (folder / "dataset.json").write_text(json.dumps(info))


def staging_folders(workbench: dict[str, str], name: str) -> list[Path]:
    return list(dataset_dir(workbench).glob(f".{name}.rendering-*"))


def test_only_administrators_queue_renders_and_the_spec_is_checked_first(
    workbench: dict[str, str],
) -> None:
    write_fixture_dataset(dataset_dir(workbench), "tiny")
    alice, root = make_user("alice"), admin()
    with pytest.raises(PermissionDeniedError, match="Only an administrator"):
        services.submit_render(alice, "tiny", "tiny-lfcc", {"kind": "lfcc"})
    with pytest.raises(NotFoundError, match="no dataset named 'nowhere'"):
        services.submit_render(root, "nowhere", "x", {"kind": "lfcc"})
    with pytest.raises(InvalidSpecError, match="1 to 64 letters"):
        services.submit_render(root, "tiny", "../up", {"kind": "lfcc"})
    with pytest.raises(InvalidSpecError):
        services.submit_render(root, "tiny", "bad-size", {"image_height": 0})
    with pytest.raises(ConflictError, match="exists already"):
        services.submit_render(root, "tiny", "tiny", {"kind": "lfcc"})
    with pytest.raises(ConflictError, match="kept for the server's demo"):
        services.submit_render(root, "tiny", "demo", {"kind": "lfcc"})
    assert services.list_runs(root, kind=None) == []

    run = services.submit_render(root, "tiny", "tiny-lfcc", {"kind": "lfcc"})
    spec = RenderSpec.from_dict(run.spec)
    assert run.kind == "render" and run.name == "render tiny-lfcc"
    assert spec.source == "tiny" and spec.features().kind == "lfcc"
    assert spec.features().sample_rate == 16000  # the rest is the source's
    # The name is reserved while it is queued: no other render, no build may take it.
    with pytest.raises(ConflictError, match="is being made"):
        services.submit_render(root, "tiny", "tiny-lfcc", {"kind": "mfcc"})
    with pytest.raises(ConflictError, match="is being made"):
        services.submit_dataset_build(alice, "tiny-lfcc", [("c.zip", two_speakers())])
    # Its source may not be deleted under it.
    with pytest.raises(ConflictError, match="being rendered again"):
        services.delete_dataset(root, "tiny")
    with pytest.raises(ConflictError, match="stop it first"):
        services.clear_render(root, run.id)
    with pytest.raises(InvalidSpecError, match="is not a dataset rendered again"):
        services.stop_render(root, services.submit_run(root, "r", TrainSpec(dataset="tiny")).id)


def test_a_worker_renders_a_users_dataset_which_stays_theirs(workbench: dict[str, str]) -> None:
    write_fixture_dataset(dataset_dir(workbench), "calls")
    alice, bob, root = make_user("alice"), make_user("bob"), admin()
    services.record_owner(alice.user_id, "calls", dataset_dir(workbench) / "calls", items=20)
    run = services.submit_render(
        root, "calls", "calls-lfcc", {"kind": "lfcc", "n_mels": 20, "n_coeffs": 12}
    )
    assert run.progress == 0 and not (dataset_dir(workbench) / "calls-lfcc").exists()

    output = run_worker(workbench)
    done = get_run(root, run.id)
    assert done.status == "succeeded", (done.error, output)
    assert done.progress == pytest.approx(1.0)
    assert "Rendered 20 lfcc images" in (done.notice or "") and "'calls-lfcc'" in done.notice
    info = json.loads((dataset_dir(workbench) / "calls-lfcc" / "dataset.json").read_text())
    assert info["rendered_from"] == "calls" and info["feature_spec"]["n_mels"] == 20
    assert services.dataset_names(actor=alice) == ["calls", "calls-lfcc"]
    assert services.dataset_names(actor=bob) == [] == services.dataset_names(actor=None)
    assert services.dataset_overview("calls-lfcc", actor=alice).owner_id == alice.user_id

    services.clear_render(root, run.id)  # off the list; the dataset stays
    assert services.list_renders(root) == []
    assert services.dataset_names(actor=alice) == ["calls", "calls-lfcc"]


def test_a_render_fails_with_words_when_its_owner_is_no_longer_an_administrator(
    workbench: dict[str, str],
) -> None:
    write_fixture_dataset(dataset_dir(workbench), "tiny")
    root = admin()
    run = services.submit_render(root, "tiny", "tiny-mfcc", {"kind": "mfcc"})
    with store.session_scope() as session:
        set_admin(session, root.user_id, False)
    assert run_queued_jobs() == ["failed"]
    failed = get_run(root, run.id)
    assert failed.status == "failed"
    assert "no longer one" in (failed.error or "")
    assert not (dataset_dir(workbench) / "tiny-mfcc").exists()


def test_a_running_render_stops_on_request_and_leaves_nothing(workbench: dict[str, str]) -> None:
    write_many_clips(dataset_dir(workbench), "many", SLOW_CLIPS)
    root = admin()
    run = services.submit_render(root, "many", "many-big", SLOW)
    worker = start_worker(workbench, "--once")
    try:
        wait_for(lambda: get_run(root, run.id).progress > 0, 120, "the render to make progress")
        services.stop_render(root, run.id)
        output, _ = worker.communicate(timeout=120)
    finally:
        worker.kill()
    stopped = get_run(root, run.id)
    assert stopped.status == "cancelled", output
    assert stopped.progress < 1
    assert not (dataset_dir(workbench) / "many-big").exists()
    assert staging_folders(workbench, "many-big") == []
    assert services.dataset_names(actor=None) == ["many"]
    services.clear_render(root, run.id)
    # The name is free again.
    services.submit_render(root, "many", "many-big", {"kind": "lfcc"})


def test_a_render_whose_worker_died_starts_over_and_leaves_no_staging(
    workbench: dict[str, str],
) -> None:
    write_many_clips(dataset_dir(workbench), "many", SLOW_CLIPS)
    root = admin()
    run = services.submit_render(root, "many", "many-big", SLOW)
    worker = start_worker(workbench)
    try:
        wait_for(lambda: get_run(root, run.id).progress > 0, 120, "the render to make progress")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
    assert get_run(root, run.id).status == "running", "it finished before the kill"
    (dead,) = staging_folders(workbench, "many-big")
    assert services.dataset_names(actor=None) == ["many"]  # half a render is no dataset

    # What the next worker does on start (the build tests run that worker): the stale job is
    # marked interrupted and queued again; then its job function runs it.
    with store.session_scope() as session:
        assert store.mark_orphans_interrupted(session, 0.0, now=utcnow() + timedelta(1)) == [run.id]
    services.resume_run(root, run.id)
    assert run_queued_jobs() == ["succeeded"]
    assert not dead.exists() and staging_folders(workbench, "many-big") == []
    images = list((dataset_dir(workbench) / "many-big").rglob("*.png"))
    assert len(images) == SLOW_CLIPS
    assert services.dataset_names(actor=None) == ["many", "many-big"]


def test_clearing_an_interrupted_render_removes_what_it_left(workbench: dict[str, str]) -> None:
    write_fixture_dataset(dataset_dir(workbench), "calls")
    alice, root = make_user("alice"), admin()
    services.record_owner(alice.user_id, "calls", dataset_dir(workbench) / "calls", items=20)
    run = services.submit_render(root, "calls", "calls-lfcc", {"kind": "lfcc"})
    # What a worker killed mid-render leaves: the owner's record of the new name, a staging folder.
    services.record_owner(
        alice.user_id, "calls-lfcc", dataset_dir(workbench) / "calls-lfcc", items=0
    )
    staging = dataset_dir(workbench) / ".calls-lfcc.rendering-12345"
    (staging / "clips").mkdir(parents=True)
    with store.session_scope() as session:
        store.claim_next_queued_run(session, "dead-worker")
        store.set_status(session, run.id, "interrupted", worker_id="dead-worker")
    services.clear_render(root, run.id)
    assert not staging.exists()
    with store.session_scope(readonly=True) as session:
        assert list(store.dataset_owners(session).values()) == [alice.user_id]  # only "calls"
    assert services.dataset_names(actor=alice) == ["calls"]


def test_a_render_finished_before_its_worker_died_counts_as_done(
    workbench: dict[str, str],
) -> None:
    write_fixture_dataset(dataset_dir(workbench), "tiny")
    root = admin()
    run = services.submit_render(root, "tiny", "tiny-lfcc", {"kind": "lfcc"})
    spec = RenderSpec.from_dict(run.spec)
    # The dead worker had renamed the dataset into place, then died before saying so.
    services.render_dataset("tiny", "tiny-lfcc", spec.feature_spec, actor=root, workers=1)
    with store.session_scope() as session:
        store.claim_next_queued_run(session, "dead-worker")
        store.set_status(session, run.id, "interrupted", worker_id="dead-worker")
    services.resume_run(root, run.id)
    assert run_queued_jobs() == ["succeeded"]
