"""The shortcut audit: each clip's cues (fakevoice/datasets/cues.py) with known answers, the audit
of planted and absent shortcuts (fakevoice/datasets/shortcuts.py) and its findings in words
(fakevoice/datasets/shortcut_findings.py), and its faces: the service that keeps it, the Datasets
page (AppTest), ``fakevoice dataset audit``.

The API's ``GET /v1/datasets/{name}/shortcuts`` is tested over HTTP in test_api_training.py and
the audit a build keeps in test_builder.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import speechlike, tone
from test_page_datasets import assert_no_exception, datasets_page, write_fixture_dataset

from fakevoice import services
from fakevoice.cli import main
from fakevoice.datasets.cues import CUE_NAMES, clip_cues
from fakevoice.datasets.shortcut_findings import AUDIT_VERSION, ShortcutAudit
from fakevoice.datasets.shortcuts import (
    SHORTCUTS_NAME,
    audit_cues,
    audit_dataset,
    read_audit,
    tied_eer,
    write_audit,
)
from fakevoice.errors import DatasetError, NotFoundError
from fakevoice.metrics import compute_eer

RATE = 16000


# --- one clip's cues ----------------------------------------------------------------------------


def test_silence_zeros_length_and_peak_of_a_tone_between_silences() -> None:
    clip = np.concatenate(
        [np.zeros(RATE // 2), tone(440.0, amplitude=0.5), np.zeros(RATE // 4)]
    ).astype(np.float32)
    cues = clip_cues(clip, RATE)
    assert set(cues) == set(CUE_NAMES)
    assert cues["duration_s"] == pytest.approx(1.75)
    # Frames are 25 ms every 10 ms: the first one touching the tone starts up to 25 ms early.
    assert 0.47 <= cues["leading_silence_s"] <= 0.5
    assert 0.22 <= cues["trailing_silence_s"] <= 0.25
    assert cues["peak_dbfs"] == pytest.approx(20 * np.log10(0.5), abs=0.05)
    # A 0.5 sine has mean power 0.125 over one second of the 1.75.
    assert cues["level_dbfs"] == pytest.approx(10 * np.log10(0.125 / 1.75), abs=0.05)
    assert cues["digital_zeros"] == pytest.approx(0.75 / 1.75, abs=0.005)
    assert 400 <= cues["bandwidth_hz"] <= 560  # the tone, with the window's leakage
    assert cues["clipped"] == 0.0 and abs(cues["dc_offset"]) < 1e-3
    assert cues["noise_floor_db"] < -100  # the quietest frames are digital silence


def test_bandwidth_clipping_and_noise_floor() -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(2 * RATE)
    spectrum = np.fft.rfft(noise)
    spectrum[np.fft.rfftfreq(noise.size, 1 / RATE) > 2000] = 0
    low = (0.1 * np.fft.irfft(spectrum, n=noise.size) / np.std(noise)).astype(np.float32)
    full = (0.1 * noise).astype(np.float32)
    assert 1800 <= clip_cues(low, RATE)["bandwidth_hz"] <= 2050
    assert clip_cues(full, RATE)["bandwidth_hz"] >= 7500
    loud = np.clip(tone(440.0, amplitude=3.0), -1.0, 1.0)
    assert clip_cues(loud, RATE)["clipped"] > 0.5
    assert clip_cues(loud, RATE)["digital_zeros"] == 0.0  # flat tops are clipping, no silence
    quiet_floor = np.concatenate([tone(440.0, 0.5, amplitude=0.5), 0.001 * full[: RATE // 2]])
    assert clip_cues(quiet_floor, RATE)["noise_floor_db"] == pytest.approx(-80, abs=3)


def test_a_clip_shorter_than_a_frame_and_a_silent_one() -> None:
    short = clip_cues(tone(440.0, 0.01), RATE)
    assert short["duration_s"] == pytest.approx(0.01)
    silent = clip_cues(np.zeros(RATE, dtype=np.float32), RATE)
    assert silent["digital_zeros"] == 1.0 and silent["bandwidth_hz"] == 0.0
    assert all(np.isfinite(v) for v in silent.values())


def test_an_offset_moves_the_dc_offset_cue_and_no_other() -> None:
    clip = np.concatenate(
        [np.zeros(RATE // 2), tone(440.0, amplitude=0.5), np.zeros(RATE // 4)]
    ).astype(np.float32)
    plain, shifted = clip_cues(clip, RATE), clip_cues(clip + np.float32(0.05), RATE)
    assert shifted["dc_offset"] == pytest.approx(plain["dc_offset"] + 0.05, abs=1e-6)
    for cue in set(CUE_NAMES) - {"dc_offset"}:
        assert shifted[cue] == pytest.approx(plain[cue], rel=1e-4, abs=1e-4), cue


def test_a_dc_offset_is_found_once_not_again_as_level_silence_or_band() -> None:
    """Machine clips that are the human ones plus a DC offset: only the ``dc_offset`` cue tells
    them apart. Measured with the offset in, the silences (quiet noise under the offset), the
    noise floor, the level and the peak would each give the answer away again."""
    rng = np.random.default_rng(3)
    rows = []
    for index in range(24):
        speech = rng.uniform(0.2, 1.0) * speechlike(1.0, RATE, seed=index)
        lead, tail = (rng.uniform(0.1, 0.5, size=2) * RATE).astype(int)
        quiet = 1e-4 * rng.standard_normal(lead + speech.size + tail)
        human = (quiet + np.concatenate([np.zeros(lead), speech, np.zeros(tail)])).astype(
            np.float32
        )
        for label, clip in (("bonafide", human), ("world", human + np.float32(0.05))):
            rows.append(
                {
                    **clip_cues(clip, RATE),
                    "class": label,
                    "speaker": f"s{index % 6}",
                    "utterance": f"u{index}",
                }
            )
    pooled = audit_cues(pd.DataFrame(rows)).pooled
    eers = {c.cue: c.eer for c in pooled.cues}
    assert pooled.best_cue.cue == "dc_offset" and eers["dc_offset"] == 0.0
    assert pooled.best_cue.spoof_median == pytest.approx(0.05, abs=0.01)
    assert all(eer > 0.4 for cue, eer in eers.items() if cue != "dc_offset"), eers


# --- EER with ties --------------------------------------------------------------------------------


def test_tied_scores_are_never_split_by_class() -> None:
    # Every clip of both classes has 0 s of silence: the cue says nothing, whichever way (the
    # official ASVspoof ranking would split the tie by class and call it worse than chance).
    assert tied_eer(np.zeros(50), np.zeros(80)) == 0.5
    assert tied_eer(np.ones(10), np.zeros(10)) == 0.0
    # 30 % of the human clips tie with every machine clip, the rest are higher: the best
    # threshold rejects the tied human clips and accepts no machine clip (FRR 0.3, FAR 0).
    bonafide = np.r_[np.zeros(30), np.ones(70)]
    assert tied_eer(bonafide, np.zeros(100)) == pytest.approx(0.15)
    rng = np.random.default_rng(1)
    b, s = rng.normal(1, 1, 400), rng.normal(0, 1, 600)  # no ties: the ASVspoof EER
    assert tied_eer(b, s) == pytest.approx(compute_eer(b, s)[0], abs=1 / 400)


# --- the audit ------------------------------------------------------------------------------------


def cue_frame(
    seed: int, *, tts_lead_in: float | None = None, speakers: int = 8, per_speaker: int = 12
) -> pd.DataFrame:
    """Clips of human, ``copy`` and ``tts`` classes whose cues are noise, except (when given)
    the tts clips' silence before the speech, which is ``tts_lead_in`` while every other clip
    has 0.3 +- 0.05 s."""
    rng = np.random.default_rng(seed)
    rows = []
    for speaker in range(speakers):
        for utterance in range(per_speaker):
            for label in ("bonafide", "copy", "tts"):
                cues = {name: float(rng.normal()) for name in CUE_NAMES}
                cues["leading_silence_s"] = float(rng.normal(0.3, 0.05))
                if label == "tts" and tts_lead_in is not None:
                    cues["leading_silence_s"] = tts_lead_in
                rows.append(
                    {
                        **cues,
                        "class": label,
                        "speaker": f"s{speaker}",
                        "utterance": f"s{speaker}-u{utterance}",
                    }
                )
    return pd.DataFrame(rows)


def test_a_planted_shortcut_is_found_named_and_placed() -> None:
    audit = audit_cues(cue_frame(0, tts_lead_in=0.0))
    assert audit.severity == "strong" and audit.held_out == "speaker"
    assert audit.worst.spoof == "tts"
    tts, copy = audit.generators["tts"], audit.generators["copy"]
    assert tts.best_cue.cue == "leading_silence_s" and tts.best_cue.eer == 0.0
    assert tts.best_cue.spoof_median == 0.0
    assert tts.combined_eer is not None and tts.combined_eer < 0.05
    assert copy.combined_eer is not None and copy.combined_eer > 0.3  # noise, held out
    assert copy.best_cue.eer > 0.3
    # Pooled, a third of the machine clips carry the cue.
    assert audit.pooled.best_cue.cue == "leading_silence_s"
    summary = audit.summary()
    assert summary.startswith("Shortcut:") and "tts" in summary
    assert "silence before the speech" in summary or "together" in summary


def test_a_run_on_the_flagged_classes_is_warned_and_one_without_them_is_not() -> None:
    audit = audit_cues(cue_frame(0, tts_lead_in=0.0))
    assert [s.spoof for s in audit.flagged()] == ["tts"]
    warning = audit.warning()
    assert warning is not None and "tts (0% EER)" in warning and "copy" not in warning
    assert audit.warning(["bonafide", "tts"]) == warning
    assert audit.warning(["bonafide", "copy"]) is None
    assert audit_cues(cue_frame(1)).warning() is None


def test_cues_that_say_nothing_find_no_shortcut() -> None:
    audit = audit_cues(cue_frame(1))
    assert audit.severity == "none", audit.summary()
    assert audit.summary().startswith("No shortcut found")
    assert all(s.lowest_eer > 0.25 for s in [audit.pooled, *audit.generators.values()])


def test_the_cues_together_find_what_no_cue_alone_does() -> None:
    """Machine clips have a little less silence than human ones of the same loudness: the
    loudness alone says nothing, the silence alone little (it varies far more with loudness
    than between the classes), the two together give it away."""
    rng = np.random.default_rng(2)
    frame = cue_frame(3)
    level = rng.normal(size=len(frame))
    human = (frame["class"] == "bonafide").to_numpy()
    frame["level_dbfs"] = level
    frame["leading_silence_s"] = (
        np.where(human, 0.3, -0.3) - 3 * level + 0.05 * rng.normal(size=len(frame))
    )
    audit = audit_cues(frame)
    pooled = audit.pooled
    assert pooled.combined_eer is not None and pooled.combined_eer < 0.05
    assert pooled.best_cue.eer > 0.3
    assert "together" in audit.summary()


def test_speakers_that_cannot_be_held_out_fall_back_to_utterances() -> None:
    frame = cue_frame(4)
    frame["speaker"] = np.where(frame["class"] == "bonafide", "real-person", "machine")
    assert audit_cues(frame).held_out == "utterance"


def test_too_few_clips_of_a_generator_are_said_not_judged() -> None:
    frame = cue_frame(5, speakers=2, per_speaker=6)  # 12 clips of each class
    audit = audit_cues(frame)
    assert audit.generators == {} and audit.too_few == ["copy", "tts"]
    assert audit.pooled.bonafide_clips == 12 and audit.pooled.spoof_clips == 24
    assert audit.pooled.combined_eer is None  # 12 human clips are too few to fit and hold out
    assert audit.severity == "none"
    assert audit.summary().startswith("Too few clips for a firm answer (12 human, 24 machine")


def test_a_cue_that_separates_too_few_human_clips_raises_no_alarm() -> None:
    """Two human clips and many machine ones (a user's small upload): one cue may split them
    perfectly by chance. The audit shows it but neither flags nor warns."""
    frame = cue_frame(7, tts_lead_in=0.0)
    human = frame.index[frame["class"] == "bonafide"]
    frame = frame.drop(human[2:])  # 2 human clips left, 96 of each generator
    audit = audit_cues(frame)
    assert audit.pooled.bonafide_clips == 2 and not audit.pooled.judged
    assert audit.pooled.lowest_eer < 0.25  # what the cues do on these few clips...
    assert audit.severity == "none" and audit.flagged() == [] and audit.warning() is None
    assert audit.summary().startswith("Too few clips for a firm answer (2 human")


def test_a_dataset_without_one_class_is_refused_in_words() -> None:
    frame = cue_frame(6)
    with pytest.raises(DatasetError, match="no human clips"):
        audit_cues(frame[frame["class"] != "bonafide"])
    with pytest.raises(DatasetError, match="no machine clips"):
        audit_cues(frame[frame["class"] == "bonafide"])


def test_the_audit_reads_back_from_its_json() -> None:
    audit = audit_cues(cue_frame(7, tts_lead_in=0.0), sampled_from=999, unreadable=2)
    data = json.loads(json.dumps(audit.to_dict()))
    assert data["severity"] == "strong" and data["summary"] == audit.summary()
    assert ShortcutAudit.from_dict(data) == audit
    with pytest.raises(DatasetError, match="cannot be read"):
        ShortcutAudit.from_dict({**data, "pooled": {"spoof": "all"}})
    with pytest.raises(DatasetError, match="another version"):
        ShortcutAudit.from_dict({**data, "version": 99})


# --- a dataset on disk, the service, the page, the CLI --------------------------------------------


@pytest.fixture
def tiny(isolated_settings: Path) -> Path:
    services.ensure_database()
    write_fixture_dataset(isolated_settings / "datasets")
    return isolated_settings / "datasets" / "tiny"


def test_a_dataset_is_audited_on_its_clean_clips_and_the_audit_is_kept(tiny: Path) -> None:
    direct = audit_dataset(tiny)
    manifest = pd.read_csv(tiny / "manifest.csv")
    assert direct.clips == direct.sampled_from == manifest["clip_path"].nunique()
    assert read_audit(tiny) is None
    assert services.dataset_overview("tiny", actor=None).shortcuts is None
    audit = services.dataset_shortcuts("tiny", actor=None)
    assert audit == direct and read_audit(tiny) == audit
    assert services.dataset_overview("tiny", actor=None).shortcuts == audit
    # A kept audit is read, not measured again, unless asked.
    (tiny / SHORTCUTS_NAME).write_text(
        json.dumps({**audit.to_dict(), "sampled_from": 12345}), encoding="utf-8"
    )
    assert services.dataset_shortcuts("tiny", actor=None).sampled_from == 12345
    assert services.dataset_shortcuts("tiny", actor=None, recompute=True) == direct
    # A broken file is ignored and measured again.
    (tiny / SHORTCUTS_NAME).write_text("{not json", encoding="utf-8")
    assert services.dataset_shortcuts("tiny", actor=None) == direct
    with pytest.raises(NotFoundError):
        services.dataset_shortcuts("../tiny", actor=None)


def test_an_audit_an_older_version_kept_is_made_again_on_every_path(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An audit of version 1 measured the level and silence with the DC offset in: no face
    shows it or warns from it as current; asking for the audit measures it again."""
    planted = cue_frame(0, tts_lead_in=0.0)
    planted["class"] = planted["class"].replace({"tts": "piper", "copy": "world"})
    stale = {**audit_cues(planted).to_dict(), "version": AUDIT_VERSION - 1}
    (tiny / SHORTCUTS_NAME).write_text(json.dumps(stale), encoding="utf-8")
    assert read_audit(tiny) is None
    assert services.dataset_overview("tiny", actor=None).shortcuts is None
    assert services.kept_shortcuts("tiny", actor=None) is None
    assert services.shortcut_warning("tiny", None, actor=None) is None
    assert main(["dataset", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["shortcuts"] is None and listed["shortcuts_outdated"] is True
    assert main(["dataset", "list"]) == 0
    assert "shortcuts: audit outdated" in capsys.readouterr().out
    at = datasets_page().run()
    assert_no_exception(at)
    assert any(b.key == "shortcuts:tiny" for b in at.button)
    assert "older version of the audit" in " ".join(c.value for c in at.caption)
    assert main(["dataset", "audit", "tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == AUDIT_VERSION
    kept = read_audit(tiny)
    assert kept is not None and kept.version == AUDIT_VERSION
    assert kept.generators == {}  # the tiny dataset's own clips, not the stale planted audit


def test_the_warning_for_a_run_reads_the_kept_audit_and_never_measures(tiny: Path) -> None:
    assert services.shortcut_warning("tiny", None, actor=None) is None  # no audit kept
    assert read_audit(tiny) is None
    planted = cue_frame(0, tts_lead_in=0.0)
    planted["class"] = planted["class"].replace({"tts": "piper", "copy": "world"})
    write_audit(tiny, audit_cues(planted))
    assert "piper" in (services.shortcut_warning("tiny", None, actor=None) or "")
    assert services.shortcut_warning("tiny", ["bonafide", "world"], actor=None) is None


def test_a_training_job_audits_a_dataset_that_keeps_no_current_audit(tiny: Path) -> None:
    """The submission never measures; the job does, once, and keeps the audit."""
    planted = cue_frame(0, tts_lead_in=0.0)
    planted["class"] = planted["class"].replace({"tts": "piper", "copy": "world"})
    stale = {**audit_cues(planted).to_dict(), "version": AUDIT_VERSION - 1}
    (tiny / SHORTCUTS_NAME).write_text(json.dumps(stale), encoding="utf-8")
    # The stale audit's planted shortcut is no finding: the dataset's own clips are audited.
    assert services.audited_shortcut_warning("tiny", None, actor=None) is None
    kept = read_audit(tiny)
    assert kept is not None and kept.version == AUDIT_VERSION and kept.generators == {}
    # A current kept audit is read, not measured again, and warns as at submission.
    write_audit(tiny, audit_cues(planted))
    warning = services.audited_shortcut_warning("tiny", None, actor=None)
    assert warning is not None and warning == services.shortcut_warning("tiny", actor=None)
    assert "piper" in warning
    assert services.audited_shortcut_warning("tiny", ["bonafide", "world"], actor=None) is None
    assert services.audited_shortcut_warning("gone", None, actor=None) is None


def test_a_sample_and_an_unreadable_clip(tiny: Path) -> None:
    clip = pd.read_csv(tiny / "manifest.csv")["clip_path"].iloc[-1]
    (tiny / clip).write_bytes(b"not a wav")
    audit = audit_dataset(tiny)
    assert audit.unreadable == 1 and audit.clips == audit.sampled_from - 1
    sampled = audit_dataset(tiny, max_clips=6)
    assert sampled.sampled_from == audit.sampled_from and sampled.clips <= 6


def test_page_checks_a_dataset_on_request_and_shows_a_kept_audit(tiny: Path) -> None:
    at = datasets_page().run()
    assert_no_exception(at)
    button = at.button(key="shortcuts:tiny")
    assert "built before builds checked" in " ".join(c.value for c in at.caption)
    at = button.click().run()
    assert_no_exception(at)
    audit = read_audit(tiny)
    assert audit is not None  # kept for the next visitor
    shown = [n.value for n in (*at.warning, *at.info, *at.success)]
    assert audit.summary() in shown
    table = at.dataframe[-2].value
    assert list(table.index) == ["all machine clips"]  # the generators have too few clips
    assert table.iloc[0]["strongest cue alone"] == audit.pooled.best_cue.label
    cues = at.dataframe[-1].value
    assert len(cues) == len(CUE_NAMES) and cues.index[0] == audit.pooled.best_cue.label
    # Next time the kept audit is shown at once.
    again = datasets_page().run()
    assert not any(b.key == "shortcuts:tiny" for b in again.button)
    assert audit.summary() in [n.value for n in (*again.warning, *again.info, *again.success)]


def test_cli_audit_prints_words_or_json(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "audit", "tiny", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["severity"] in {"strong", "some", "none"}
    assert data["pooled"]["bonafide_clips"] == 3
    assert main(["dataset", "audit", "tiny"]) == 0
    out = capsys.readouterr().out
    assert data["summary"] in out and "every cue, human vs all machine" in out
    assert main(["dataset", "list", "--json"]) == 0  # the kept audit's finding, per dataset
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["shortcuts"]) == ("tiny", data["severity"])
    # Three clips of each: no comparison could be judged, which is not "none found".
    assert listed["shortcuts_judged"] is False
    assert main(["dataset", "list"]) == 0
    assert "shortcuts: too few clips" in capsys.readouterr().out
    assert main(["dataset", "audit", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no dataset named 'nosuch'" in err


def test_cli_train_warns_of_a_shortcut_in_its_classes(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    planted = cue_frame(0, tts_lead_in=0.0)
    planted["class"] = planted["class"].replace({"tts": "piper", "copy": "world"})
    write_audit(tiny, audit_cues(planted))
    train = ["train", "--dataset", "tiny", "--arch", "specnet", "--epochs", "1"]
    assert main([*train, "--name", "all classes"]) == 0
    assert "warning: Shortcut in this choice" in capsys.readouterr().err
    assert main([*train, "--name", "no piper", "--classes", "bonafide,world"]) == 0
    assert "Shortcut" not in capsys.readouterr().err
