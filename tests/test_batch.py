"""Batch reading and scoring: zips expanded under limits, attacks refused, errors kept per clip."""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from test_api import noise_wav, store_specnet, wav_bytes, zip_of

from fakevoice import services, store
from fakevoice.archives import DamagedFileError
from fakevoice.batch import (
    BatchEntry,
    BatchResult,
    open_upload,
    read_batch,
    results_csv,
    results_frame,
    score_batch,
)
from fakevoice.errors import FileTooLargeError, InvalidSpecError, LimitExceededError, NotFoundError
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor

MiB = 1024 * 1024


@pytest.fixture
def limits(isolated_settings: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAKEVOICE_BATCH_MAX_FILES", "4")
    monkeypatch.setenv("FAKEVOICE_BATCH_MAX_TOTAL_BYTES", str(2 * MiB))
    monkeypatch.setenv("FAKEVOICE_BATCH_MAX_ZIP_RATIO", "20")
    monkeypatch.setenv("FAKEVOICE_MAX_UPLOAD_BYTES", str(MiB))
    get_settings.cache_clear()
    return isolated_settings


def test_plain_files_pass_through_with_display_names(limits: Path) -> None:
    entries = read_batch([("a.wav", b"one"), ("evil\x00\n\x1b.wav", b"two"), ("", b"3")])
    assert [e.name for e in entries] == ["a.wav", "evil???.wav", "unnamed"]
    assert [e.data for e in entries] == [b"one", b"two", b"3"]
    assert all(e.error is None for e in entries)
    assert read_batch([("x" * 400, b"a")])[0].name == "x" * 255


def test_zip_is_expanded_in_order_without_folders_or_archiver_noise(limits: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("calls/", b"")
        archive.writestr("calls/b.wav", b"bee")
        archive.writestr("a.wav", b"ay")
        archive.writestr("__MACOSX/calls/._b.wav", b"resource fork")
    entries = read_batch([("in.wav", b"x"), ("set.zip", buffer.getvalue())])
    assert [(e.name, e.data) for e in entries] == [
        ("in.wav", b"x"),
        ("set.zip/calls/b.wav", b"bee"),
        ("set.zip/a.wav", b"ay"),
    ]


def test_zip_judged_by_content_not_name(limits: Path) -> None:
    archive = zip_of({"a.wav": b"ay"})
    assert [e.name for e in read_batch([("not-a-zip.wav", archive)])] == ["not-a-zip.wav/a.wav"]
    assert read_batch([("fake.zip", b"plain bytes")])[0].data == b"plain bytes"


def test_dangerous_entries_are_refused_one_by_one(limits: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../up.wav", b"a")
        archive.writestr("/etc/abs.wav", b"b")
        archive.writestr("dir\\..\\..\\back.wav", b"d")
        link = zipfile.ZipInfo("link.wav")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    entries = read_batch([("bad.zip", buffer.getvalue())])
    assert len(entries) == 4 and all(e.data is None for e in entries)
    for entry in entries[:3]:
        assert entry.error is not None and "absolute or leaves its folder" in entry.error
    assert entries[3].error is not None and "symbolic link" in entries[3].error
    drive = read_batch([("win.zip", zip_of({"C:/windows/drive.wav": b"c"}))])
    assert drive[0].data is None and "absolute" in str(drive[0].error)


def test_encrypted_entry_is_refused(limits: Path) -> None:
    archive = bytearray(zip_of({"secret.wav": b"pretend ciphertext", "open.wav": b"fine"}))
    central = archive.index(b"PK\x01\x02")  # the first entry's central directory header
    archive[central + 8] |= 0x1  # general purpose flag bit 0: encrypted
    entries = read_batch([("mixed.zip", bytes(archive))])
    assert entries[0].error is not None and "encrypted" in entries[0].error
    assert entries[1].data == b"fine"


def test_zip_bomb_by_ratio_is_refused(limits: Path) -> None:
    bomb = zip_of({"zeros.wav": b"\0" * MiB})
    with pytest.raises(FileTooLargeError, match="zip bomb"):
        read_batch([("bomb.zip", bomb)])


def test_zip_bomb_with_lying_sizes_is_stopped_while_reading(limits: Path) -> None:
    """Headers that understate the size do not let more than the declared bytes through."""
    payload = b"\0" * MiB
    bomb = bytearray(zip_of({"zeros.wav": payload}))
    declared = len(payload).to_bytes(4, "little")
    assert bomb.count(declared) == 2  # the local header and the central directory
    bomb = bomb.replace(declared, (1000).to_bytes(4, "little"))
    entries = read_batch([("liar.zip", bytes(bomb))])
    assert len(entries) == 1
    assert entries[0].data is None and entries[0].error == "This file in the zip is damaged."


def test_total_size_and_count_are_bounded(limits: Path) -> None:
    heavy = zip_of({f"{i}.wav": noise_wav(20.0, seed=i) for i in range(4)})  # ~640 KB each
    with pytest.raises(FileTooLargeError, match="more than 2 MiB of audio"):
        read_batch([("heavy.zip", heavy)])
    with pytest.raises(FileTooLargeError, match="more than 2 MiB"):
        read_batch([("a", b"x" * MiB), ("b", b"x" * MiB), ("c", b"x")])
    with pytest.raises(LimitExceededError, match="holds 5 files"):
        read_batch([("many.zip", zip_of({f"{i}.wav": b"x" for i in range(5)}))])
    with pytest.raises(LimitExceededError, match="at most 4 clips"):
        read_batch([(f"{i}.wav", b"x") for i in range(5)])
    with pytest.raises(LimitExceededError, match="no clip"):
        read_batch([])
    big_entry = zip_of({"big.wav": noise_wav(40.0)}, zipfile.ZIP_STORED)  # ~1.3 MB > 1 MiB
    with pytest.raises(FileTooLargeError, match="larger than 1 MiB"):
        read_batch([("one.zip", big_entry)])


def test_files_are_listed_unread_and_saved_whole_or_not_at_all(
    limits: Path, tmp_path: Path
) -> None:
    """open_upload reads nothing until a file is read or saved; a save that fails (a damaged
    entry, an entry found too large while decompressing) leaves no half-written file."""
    payload = noise_wav(2.0)
    on_disk = tmp_path / "upload.zip"
    on_disk.write_bytes(zip_of({"a/one.wav": payload, "a/two.wav": payload}))
    with on_disk.open("rb") as handle:
        files = open_upload([("upload.zip", handle), ("loose.wav", b"loose")])
        assert [(f.name, f.path) for f in files] == [
            ("upload.zip/a/one.wav", "a/one.wav"),
            ("upload.zip/a/two.wav", "a/two.wav"),
            ("loose.wav", None),
        ]
        assert files[1].save(tmp_path / "two.wav") == len(payload)
        assert (tmp_path / "two.wav").read_bytes() == payload
        assert files[2].read() == b"loose" and files[0].read() == payload

    liar = bytearray(zip_of({"zeros.wav": b"\0" * MiB}))
    liar = liar.replace(MiB.to_bytes(4, "little"), (1000).to_bytes(4, "little"))
    (damaged,) = open_upload([("liar.zip", bytes(liar))])
    with pytest.raises(DamagedFileError, match="damaged"):
        damaged.save(tmp_path / "liar.wav")
    assert not (tmp_path / "liar.wav").exists()

    big = zip_of({"big.wav": noise_wav(40.0)}, zipfile.ZIP_STORED)  # ~1.3 MB > 1 MiB an entry
    (too_big,) = open_upload([("big.zip", big)])
    with pytest.raises(FileTooLargeError, match="larger than 1 MiB"):
        too_big.save(tmp_path / "big.wav")
    assert not (tmp_path / "big.wav").exists()


def test_damaged_zip_is_one_error_entry(limits: Path) -> None:
    archive = zip_of({"a.wav": wav_bytes(1.0)})
    entries = read_batch([("cut.zip", archive[: len(archive) // 2]), ("ok.wav", b"x")])
    assert entries[0].name == "cut.zip" and entries[0].data is None
    assert entries[0].error == "This zip archive is damaged and cannot be opened."
    assert entries[1].data == b"x"


# --- scoring -------------------------------------------------------------------------------------


@pytest.fixture
def alice(limits: Path) -> Iterator[Actor]:
    services.ensure_database()
    with store.session_scope() as session:
        actor = store.create_user(session, "alice").actor
    yield actor
    store.dispose_engines()


def test_score_batch_keeps_errors_per_clip_and_logs_verdicts(alice: Actor) -> None:
    model = store_specnet(alice, "net")
    entries = [
        BatchEntry("good.wav", wav_bytes(1.3, seed=2)),
        BatchEntry("text.wav", b"not audio at all"),
        BatchEntry("refused.wav", None, "Refused: the entry is a symbolic link."),
        BatchEntry("also-good.wav", wav_bytes(0.8, 8000, seed=3)),
    ]
    results = score_batch(alice, model.id, entries, threshold=0.7, origin="page")
    assert [r.name for r in results] == [e.name for e in entries]
    good, text, refused, other = results
    assert good.error is None and good.label in {"human", "machine-generated", "inconclusive"}
    assert good.duration == pytest.approx(1.3) and good.sample_rate == 16000
    assert set(good.probabilities) == {"bonafide", "griffinlim", "world"}
    assert other.sample_rate == 8000 and other.error is None
    assert text.label is None and text.error is not None and "not a recording" in text.error
    assert refused.error == "Refused: the entry is a symbolic link."
    assert (text.error_code, refused.error_code, good.error_code) == (
        "not_audio",
        "refused_entry",
        None,
    )
    logged = services.list_analyses(alice)
    assert sorted(a.file_name for a in logged) == ["also-good.wav", "good.wav"]
    # Each verdict names its entry in the history; a clip without one, none.
    by_name = {a.file_name: a.id for a in logged}
    assert (good.analysis_id, other.analysis_id) == (by_name["good.wav"], by_name["also-good.wav"])
    assert text.analysis_id is None and refused.analysis_id is None
    assert {a.source for a in logged} == {"page"} and {a.threshold for a in logged} == {0.7}


def test_a_batch_reads_the_users_tests_of_its_model_once(
    alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model without a validation EER of its own is judged by the user's newest test of it:
    every clip of a batch read the user's tests again. A batch reads them once, and each clip
    carries the caution a verdict on its own carries."""
    model = store_specnet(alice, "net")  # not trained here, no EER: its tests are read
    single = services.score_clip(alice, model.id, wav_bytes(1.0), file_name="a.wav")
    (alone,) = [c for c in single.verdict.cautions if c.startswith("This model's error rate is")]
    reads: list[object] = []
    list_runs = store.list_runs

    def counted(*args: object, **kwargs: object) -> object:
        reads.append(kwargs.get("kind"))
        return list_runs(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "list_runs", counted)
    entries = [BatchEntry(f"{i}.wav", wav_bytes(1.0, seed=i)) for i in range(4)]
    results = score_batch(alice, model.id, entries, threshold=0.6, origin="api")
    assert reads == ["evaluate"]  # the user's tests on a dataset, once for the four clips
    assert [r.error for r in results] == [None] * 4
    assert all(alone in r.cautions for r in results)
    logged = services.list_analyses(alice, limit=4)
    assert [a.cautions for a in reversed(logged)] == [r.cautions for r in results]


def test_score_batch_refuses_a_bad_model_or_threshold_as_a_whole(alice: Actor) -> None:
    model = store_specnet(alice, "net")
    entries = [BatchEntry("a.wav", wav_bytes(1.0))]
    with pytest.raises(InvalidSpecError, match="threshold"):
        score_batch(alice, model.id, entries, threshold=0.2, origin="api")
    with store.session_scope() as session:
        bob = store.create_user(session, "bob").actor
    with pytest.raises(NotFoundError):
        score_batch(bob, model.id, entries, threshold=0.6, origin="api")
    assert services.list_analyses(alice) == [] and services.list_analyses(bob) == []


def test_results_frame_and_csv() -> None:
    results = [
        BatchResult(
            "=HYPERLINK(1).wav",
            "machine-generated",
            0.1,
            "world",
            {"bonafide": 0.1, "world": 0.9},
            2.0,
            16000,
        ),
        BatchResult("b.wav", error="This file is empty."),
        BatchResult(
            "c.wav",
            "human",
            0.8,
            None,
            {"bonafide": 0.8, "lpc": 0.2},
            1.0,
            8000,
            cautions=["Recorded at 8 kHz.", "-Clipped."],
            typicality=0.25,
        ),
    ]
    frame = results_frame(results)
    assert list(frame.columns) == [
        "name",
        "verdict",
        "p_human",
        "generator",
        "duration",
        "sample_rate",
        "error",
        "error_code",
        "file_sha256",
        "analysis_id",
        "typicality",
        "cautions",
        "p_bonafide",
        "p_world",
        "p_lpc",
    ]
    assert frame["name"][0] == "=HYPERLINK(1).wav"  # the frame is for display as it is
    back = pd.read_csv(io.StringIO(results_csv(results)))
    assert back["name"].tolist() == ["'=HYPERLINK(1).wav", "b.wav", "c.wav"]
    assert back["p_world"][0] == 0.9 and pd.isna(back["p_world"][2])
    assert back["error"][1] == "This file is empty." and pd.isna(back["verdict"][1])
    assert frame["cautions"].tolist() == ["", "", "Recorded at 8 kHz. -Clipped."]
    assert back["typicality"][2] == 0.25 and pd.isna(back["typicality"][0])
    assert pd.isna(back["cautions"][0]) and back["cautions"][2] == "Recorded at 8 kHz. -Clipped."
    assert results_csv([]).strip() == ",".join(frame.columns[:12])
