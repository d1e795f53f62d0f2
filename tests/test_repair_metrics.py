"""``fakevoice runs repair-metrics`` on a real SQLite file: the epochs and model links that earlier
upgrades deleted (SQLite's cascades, before migrations ran with foreign keys off), restored from
the run folders."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from fakevoice import store
from fakevoice.accounts import OPERATOR
from fakevoice.artefacts import HISTORY_COLUMNS, read_history_csv, sha256_file, write_history_csv
from fakevoice.cli import main
from fakevoice.cli_runs import BATCHES_LOST
from fakevoice.errors import InvalidSpecError, PermissionDeniedError
from fakevoice.jobs.runner import StoreSink, run_dir_for
from fakevoice.services.metric_repair import repair_lost_metrics
from fakevoice.store.records import Actor, EpochMetric, ModelRecord, RunRecord, RunStatus
from fakevoice.training_history import EpochRecord

ADMIN = OPERATOR  # whom the command line repairs as


@pytest.fixture
def users(isolated_settings: Path) -> Iterator[tuple[Actor, Actor]]:
    """alice and bob, two plain users of the test's own store."""
    store.init_db()
    with store.session_scope() as session:
        alice, bob = store.create_user(session, "alice"), store.create_user(session, "bob")
    yield alice.actor, bob.actor
    store.dispose_engines()


def history(epochs: int) -> list[EpochRecord]:
    return [
        EpochRecord(
            epoch=e,
            train_loss=0.9 / (e + 1),
            valid_loss=0.8 / (e + 1) + 0.013,
            accuracy=0.5 + e / 17,
            macro_f1=0.45 + e / 19,
            eer=0.4 - e / 23,
            seconds=2.5 + e,
        )
        for e in range(epochs)
    ]


def finished_run(
    actor: Actor, name: str, epochs: int, *, status: RunStatus = "succeeded"
) -> RunRecord:
    """A training run ended as a worker ends one: claimed, each epoch stored by the worker's
    sink, its ``history.csv`` written into its folder (none when it trained no epoch)."""
    with store.session_scope() as session:
        run = store.create_run(session, actor, name, {"epochs": max(epochs, 1)})
    with store.session_scope() as session:
        claimed = store.claim_next_queued_run(session, "w1")
    assert claimed is not None and claimed.id == run.id
    sink = StoreSink(run.id, "w1")
    for record in history(epochs):
        sink.on_epoch(record)
    if epochs:
        run_dir_for(run.id).mkdir(parents=True)
        write_history_csv(history(epochs), run_dir_for(run.id) / "history.csv")
    with store.session_scope() as session:
        store.set_status(session, run.id, status, worker_id="w1")
    return run


def stored_model(actor: Actor, run: RunRecord) -> ModelRecord:
    """The model a run stores when it succeeds: its files in the run's folder."""
    folder = run_dir_for(run.id)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "manifest.json").write_text("{}")
    files = {n: sha256_file(folder / n) for n in ("model.safetensors", "manifest.json")}
    with store.session_scope() as session:
        return store.add_model(
            session,
            actor,
            name=run.name,
            arch="specnet",
            class_names=["bonafide", "spoof"],
            sample_rate=16000,
            clip_samples=64000,
            path=str(folder),
            files=files,
            run_id=run.id,
        )


def lose_metrics(*runs: RunRecord) -> None:
    """What an upgrade across revision 0005, 0007 or 0009 did with SQLite's foreign keys on."""
    with store.get_engine().begin() as connection:
        for run in runs:
            for table in ("epoch_metrics", "batch_metrics"):
                connection.execute(text(f"DELETE FROM {table} WHERE run_id = :id"), {"id": run.id})
            connection.execute(
                text("UPDATE models SET run_id = NULL WHERE run_id = :id"), {"id": run.id}
            )


def epochs_of(run: RunRecord) -> list[EpochMetric]:
    with store.session_scope(readonly=True) as session:
        return store.list_epoch_metrics(session, ADMIN, run.id)


def run_of(model: ModelRecord) -> int | None:
    with store.session_scope(readonly=True) as session:
        return store.get_model(session, ADMIN, model.id).run_id


def repair(capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str]:
    code = main(["runs", "repair-metrics", *options])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out


def test_lost_epochs_and_links_come_back_once(
    users: tuple[Actor, Actor], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = users
    lost = finished_run(alice, "lost", 3)
    model = stored_model(alice, lost)
    bobs = finished_run(bob, "bob's", 2, status="cancelled")
    kept = finished_run(alice, "kept", 2)  # crossed no broken upgrade
    code, out = repair(capsys)
    assert code == 0 and "Every ended training run has its epochs: nothing to restore." in out
    failed = finished_run(alice, "failed early", 0, status="failed")
    lost_epochs, bobs_epochs, kept_epochs = epochs_of(lost), epochs_of(bobs), epochs_of(kept)
    assert len(lost_epochs) == 3 and len(bobs_epochs) == 2
    lose_metrics(lost, bobs)
    assert epochs_of(lost) == [] and run_of(model) is None

    code, out = repair(capsys)
    assert code == 0, out
    assert f"run {lost.id} 'lost': 3 epochs restored from history.csv" in out
    assert f"run {bobs.id} 'bob's': 2 epochs restored from history.csv" in out
    assert f"run {failed.id} 'failed early': no history.csv, nothing to restore" in out
    assert f"model {model.id} 'lost': linked to run {lost.id} again" in out
    assert "3 ended training runs missing epochs: 2 restored (5 epochs), 1 not" in out
    assert f"run {kept.id} " not in out
    assert out.count(BATCHES_LOST) == 1
    # Equal to what the worker stored, float for float (history.csv keeps each float's repr).
    assert epochs_of(lost) == lost_epochs and epochs_of(bobs) == bobs_epochs
    assert epochs_of(kept) == kept_epochs and run_of(model) == lost.id
    with store.session_scope() as session:  # a run with epochs: none is replaced or added
        assert store.restore_epoch_metrics(session, ADMIN, lost.id, [EpochMetric(epoch=7)]) == 0
    with store.session_scope(readonly=True) as session:  # the run's page shows them again
        assert [e.eer for e in store.list_epoch_metrics(session, alice, lost.id)] == [
            r.eer for r in history(3)
        ]

    code, out = repair(capsys)  # a second repair: nothing left to do
    assert code == 0, out
    assert "restored from history.csv" not in out and "linked" not in out
    assert "1 ended training run missing epochs: 0 restored (0 epochs), 1 not" in out
    assert epochs_of(lost) == lost_epochs and epochs_of(bobs) == bobs_epochs


def test_a_dry_run_says_what_it_would_do_and_changes_nothing(
    users: tuple[Actor, Actor], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, _ = users
    lost = finished_run(alice, "lost", 4)
    model = stored_model(alice, lost)
    lose_metrics(lost)

    code, out = repair(capsys, "--dry-run")
    assert code == 0, out
    assert f"run {lost.id} 'lost': 4 epochs would be restored from history.csv" in out
    assert f"model {model.id} 'lost': would be linked to run {lost.id} again" in out
    assert "Dry run: nothing was changed." in out
    assert epochs_of(lost) == [] and run_of(model) is None

    code, out = repair(capsys, "--dry-run", "--json")
    assert code == 0, out
    reply = json.loads(out)
    assert reply["dry_run"] is True and reply["batch_metrics"] == BATCHES_LOST
    assert reply["runs"] == [
        {
            "id": lost.id,
            "name": "lost",
            "owner_id": alice.user_id,
            "epochs_restored": 4,
            "kept_from_epoch": None,
            "skipped": None,
            "unreadable": False,
        }
    ]
    assert reply["models"] == [
        {"id": model.id, "name": "lost", "run_id": lost.id, "linked": True, "skipped": None}
    ]
    assert epochs_of(lost) == [] and run_of(model) is None


def test_a_malformed_history_is_said_in_words_and_the_others_go_on(
    users: tuple[Actor, Actor], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, _ = users
    few_columns, wrong_value, half_epoch, good = (
        finished_run(alice, name, 2) for name in ("few columns", "wrong value", "half", "good")
    )
    lose_metrics(few_columns, wrong_value, half_epoch, good)
    (run_dir_for(few_columns.id) / "history.csv").write_text("epoch,train_loss\n0,0.5\n")
    with (run_dir_for(wrong_value.id) / "history.csv").open("a") as handle:
        handle.write("2,0.1,0.2,abc,0.5,0.1,3.0\n")
    (run_dir_for(half_epoch.id) / "history.csv").write_text(
        "epoch,train_loss,valid_loss,accuracy,macro_f1,eer,seconds\n0.5,1,1,1,1,1,1\n"
    )

    code, out = repair(capsys)
    assert code == 1, out  # an unreadable file is the operator's to look at
    assert (
        f"run {few_columns.id} 'few columns': history.csv lacks the column(s) valid_loss, accuracy, "
        "macro_f1, eer, seconds; skipped"
    ) in out
    assert (
        f"run {wrong_value.id} 'wrong value': history.csv line 4: accuracy is not a number "
        "('abc'); skipped"
    ) in out
    assert "history.csv line 2: epoch must be a whole number from 0; got 0.5" in out
    assert f"run {good.id} 'good': 2 epochs restored from history.csv" in out
    assert epochs_of(few_columns) == epochs_of(wrong_value) == epochs_of(half_epoch) == []
    assert len(epochs_of(good)) == 2

    reply = json.loads(repair(capsys, "--json")[1])
    assert {r["id"]: r["unreadable"] for r in reply["runs"]} == {
        few_columns.id: True,
        wrong_value.id: True,
        half_epoch.id: True,
    }


def test_an_earlier_attempts_history_is_not_restored(
    users: tuple[Actor, Actor], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run started again from scratch that failed before its first epoch keeps the history.csv
    of its earlier attempt: those epochs are not this attempt's."""
    alice, _ = users
    again = finished_run(alice, "again", 2, status="failed")
    lose_metrics(again)
    path = run_dir_for(again.id) / "history.csv"
    an_hour_before = path.stat().st_mtime - 3600
    os.utime(path, (an_hour_before, an_hour_before))

    code, out = repair(capsys)
    assert code == 0, out
    assert f"run {again.id} 'again': its history.csv is older than its last start" in out
    assert epochs_of(again) == []


def test_a_run_resumed_after_losing_its_first_epochs_gets_them_back(
    users: tuple[Actor, Actor], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run interrupted, upgraded across a broken revision, then resumed from its checkpoint
    stores its epochs from the resume on; its history.csv holds every epoch: the earlier ones
    come back, the later ones stay as the worker stored them."""
    alice, _ = users
    with store.session_scope() as session:
        run = store.create_run(session, alice, "resumed", {"epochs": 5})
    with store.session_scope() as session:
        assert store.claim_next_queued_run(session, "w1") is not None
    sink = StoreSink(run.id, "w1")
    for record in history(2):
        sink.on_epoch(record)
    with store.session_scope() as session:
        store.set_status(session, run.id, "interrupted", worker_id="w1")
    lose_metrics(run)
    with store.session_scope() as session:
        assert store.resume_interrupted_run(session, run.id, resume_from_epoch=2)
    with store.session_scope() as session:
        assert store.claim_next_queued_run(session, "w2") is not None
    sink = StoreSink(run.id, "w2")
    for record in history(5)[2:]:
        sink.on_epoch(record)
    run_dir_for(run.id).mkdir(parents=True)
    write_history_csv(history(5), run_dir_for(run.id) / "history.csv")
    with store.session_scope() as session:
        store.set_status(session, run.id, "succeeded", worker_id="w2")
    later = epochs_of(run)
    assert [e.epoch for e in later] == [2, 3, 4]

    code, out = repair(capsys, "--dry-run", "--json")
    assert code == 0 and json.loads(out)["runs"][0]["kept_from_epoch"] == 2, out
    code, out = repair(capsys)
    assert code == 0, out
    line = f"run {run.id} 'resumed': 2 epochs restored from history.csv (it kept those from epoch 3 on)"
    assert line in out and "1 ended training run missing epochs: 1 restored (2 epochs)" in out
    restored = epochs_of(run)
    assert [e.epoch for e in restored] == [0, 1, 2, 3, 4] and restored[2:] == later
    assert [e.eer for e in restored] == [r.eer for r in history(5)]
    code, out = repair(capsys)  # nothing lost any more: the run is not listed again
    assert code == 0 and f"run {run.id} " not in out, out


def test_a_model_is_linked_only_to_its_own_run(
    users: tuple[Actor, Actor], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run's id could come back after its run was deleted (before revision 0017): a model is
    linked to the run of its folder only when that run is older than the model, its owner's, and
    the folder still holds the model's files."""
    alice, bob = users
    reused, others, emptied = (finished_run(alice, name, 1) for name in ("reused", "o", "e"))
    older = stored_model(alice, reused)
    bobs = stored_model(alice, others)
    gone = stored_model(alice, emptied)
    lose_metrics(reused, others, emptied)
    with store.get_engine().begin() as connection:
        connection.execute(
            text("UPDATE models SET created_at = '2001-01-01 00:00:00' WHERE id = :id"),
            {"id": older.id},
        )
        connection.execute(
            text("UPDATE runs SET owner_id = :bob WHERE id = :id"),
            {"bob": bob.user_id, "id": others.id},
        )
    (run_dir_for(emptied.id) / "model.safetensors").unlink()

    code, out = repair(capsys)
    assert code == 0, out
    assert f"not linked to run {reused.id}: run {reused.id} is newer than the model" in out
    assert f"run {others.id} is not a training run of the model's owner" in out
    assert "its files are no longer all in run" in out and "(model.safetensors)" in out
    assert run_of(older) is None and run_of(bobs) is None and run_of(gone) is None


def test_only_an_administrator_may_repair(users: tuple[Actor, Actor]) -> None:
    """The command line acts as the operator (an administrator); a user may not repair, even
    their own run."""
    alice, _ = users
    lost = finished_run(alice, "lost", 2)
    model = stored_model(alice, lost)
    lose_metrics(lost)
    with pytest.raises(PermissionDeniedError, match="Only an administrator"):
        repair_lost_metrics(alice)
    with store.session_scope() as session, pytest.raises(PermissionDeniedError):
        store.restore_epoch_metrics(session, alice, lost.id, [EpochMetric(epoch=0)])
    with store.session_scope() as session, pytest.raises(PermissionDeniedError):
        store.relink_model(session, alice, model.id, lost.id)
    assert epochs_of(lost) == [] and run_of(model) is None


def test_history_csv_reads_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    write_history_csv(history(3), path)
    assert read_history_csv(path) == [EpochMetric(**r.to_dict()) for r in history(3)]
    header = ",".join(HISTORY_COLUMNS) + "\n"
    path.write_text((header + "0,1,1,1,1,1,1\n") * 2)
    with pytest.raises(InvalidSpecError, match="line 3: epoch is not a number"):
        read_history_csv(path)  # a second header is a row like another
    path.write_text(header + "0,1,1,1,1,1,1\n" * 2)
    with pytest.raises(InvalidSpecError, match="gives an epoch twice"):
        read_history_csv(path)
    path.write_bytes(b"\xff\xfe not text")
    with pytest.raises(InvalidSpecError, match="history.csv cannot be read"):
        read_history_csv(path)


def test_deleting_before_the_repair_keeps_the_other_ones_files(users: tuple[Actor, Actor]) -> None:
    """Before the repair, a model and its run do not know each other: deleting the model keeps
    the run's folder (its history, the repair's source), deleting the run keeps the model's
    files (it still gives verdicts)."""
    from fakevoice.services import profile

    alice, _ = users
    first, second = finished_run(alice, "first", 2), finished_run(alice, "second", 2)
    model_of_first, model_of_second = stored_model(alice, first), stored_model(alice, second)
    lose_metrics(first, second)

    profile.delete_model(alice, model_of_first.id)
    assert (run_dir_for(first.id) / "history.csv").is_file()
    assert len(repair_lost_metrics(ADMIN, dry_run=True).runs) == 2  # it still finds their epochs

    profile.delete_run(alice, second.id)
    assert (Path(model_of_second.path) / "model.safetensors").is_file()
    with store.session_scope(readonly=True) as session:
        assert store.get_model(session, alice, model_of_second.id).path == model_of_second.path
    # Once nothing else lives there, the folder goes with the last of them.
    profile.delete_model(alice, model_of_second.id)
    assert not run_dir_for(second.id).exists()
