"""The Evaluate page (AppTest, in-process): verdicts on uploaded and recorded clips, the threshold,
batch and compare modes, model uploads, ``?model=`` and access, bad input.

Models are real: a specnet trained for one epoch on the session's tiny dataset (1 s windows, so a
3 s clip has a timeline) and, where /work/shared/aasist holds it, the official AASIST-L checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import REPO, speechlike
from streamlit.testing.v1 import AppTest
from test_shortcuts import cue_frame
from test_training import DATASET, make_tiny_dataset, tiny_dataset_root
from test_uploads import (
    AASIST_L,
    FileCreatingPayload,
    bundle_zip,
    make_user,
    register_run_model,
    wav_bytes,
)

from components.user_text import plain
from fakevoice import services, store
from fakevoice.audio import load_audio
from fakevoice.datasets.shortcuts import audit_cues, write_audit
from fakevoice.errors import ConflictError, InvalidSpecError
from fakevoice.inference import decide
from fakevoice.services import profile
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, ModelRecord

USER_KEY = "fakevoice_user_id"
OTHER = "fresh"  # a dataset the page tests' model was not trained on
TITLES = {
    "Human": "human",
    "Machine-generated": "machine-generated",
    "Inconclusive": "inconclusive",
}


@pytest.fixture
def specnet(alice: Actor, run_dir: Path) -> ModelRecord:
    return register_run_model(alice, run_dir)


def evaluate_page(actor: Actor | None, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    if actor is not None:
        at.session_state[USER_KEY] = actor.user_id
    at.run()
    at.switch_page("pages/evaluate.py")
    for name, value in (query or {}).items():
        at.query_params[name] = value
    return at.run()


def datasets_dir() -> Path:
    return get_settings().dataset_dir


def assert_no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def verdicts_shown(at: AppTest) -> list[str]:
    """The labels of the verdict cards on the page, in order."""
    shown = []
    for markdown in at.markdown:
        for title, label in TITLES.items():
            if markdown.value.startswith("### :") and markdown.value.endswith(f" {title}]"):
                shown.append(label)
    return shown


def charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


def upload_clip(at: AppTest, name: str, data: bytes, key: str = "eval_upload") -> AppTest:
    return at.file_uploader(key=key).set_value((name, data, "audio/wav")).run()


# --- signed out, no models -----------------------------------------------------------------------


def test_signed_out_visitors_are_asked_to_sign_in(isolated_settings: Path) -> None:
    at = evaluate_page(None)
    assert_no_exception(at)
    assert any("Sign in" in info.value for info in at.info)
    assert not at.file_uploader and not at.selectbox


def test_a_chosen_model_deleted_meanwhile_is_named_not_swapped_silently(
    alice: Actor, specnet: ModelRecord, run_dir: Path
) -> None:
    other = register_run_model(alice, run_dir, name="other *model*")
    at = evaluate_page(alice)
    at.selectbox(key="eval_model").set_value(other.id).run()
    assert not at.warning
    profile.delete_model(alice, other.id)  # in another tab, say
    at.run()
    assert_no_exception(at)
    assert [w.value for w in at.warning] == [
        "Model 'other \\*model\\*' is no longer among the models you may use (deleted, or no "
        "longer shared); the first of the list is chosen instead."
    ]
    assert at.selectbox(key="eval_model").value == specnet.id
    assert not at.run().warning  # said once


def test_without_models_the_page_says_how_to_get_one(alice: Actor) -> None:
    at = evaluate_page(alice)
    assert_no_exception(at)
    assert at.title[0].value == "Evaluate"
    assert any("no model yet" in info.value for info in at.info)
    assert at.file_uploader(key="eval_model_upload") is not None
    assert any("No verdicts yet" in caption.value for caption in at.caption)


# --- one clip -------------------------------------------------------------------------------------


def test_an_uploaded_clip_gets_a_verdict_timeline_and_spectrogram(
    alice: Actor, specnet: ModelRecord
) -> None:
    at = evaluate_page(alice)
    assert at.selectbox(key="eval_model").value == specnet.id
    (summary,) = [c.value for c in at.caption if c.value.startswith("Classes: ")]
    assert ", ".join(specnet.class_names) in summary
    assert "no validation figures" in summary and "probabilities uncalibrated" in summary
    clip = wav_bytes(3.0, seed=5)
    at = upload_clip(at, "call from bank.wav", clip)
    assert_no_exception(at)
    assert not at.error
    (analysis,) = services.list_analyses(alice)
    assert analysis.file_name == "call from bank.wav" and analysis.model_id == specnet.id
    assert analysis.duration == pytest.approx(3.0) and analysis.source == "page"
    # The page's verdict is the model's: same probabilities as the detector on the same clip.
    expected = services.detector_for(specnet).predict(load_audio(clip, 16000), 0.6)
    for name, probability in expected.probabilities.items():
        assert analysis.probabilities[name] == pytest.approx(probability, abs=1e-5)
    assert verdicts_shown(at) == [expected.label] == [analysis.verdict]
    assert expected.cautions == []  # nothing about this clip to warn of, but of the model:
    (unmeasured,) = [w.value for w in at.warning]
    assert unmeasured.startswith(
        "This model's error rate is unknown: it has no validation EER measured on this "
        "server, and you have not tested it on a dataset here."
    )
    assert analysis.cautions == [unmeasured]
    assert len(at.get("audio")) == 1
    # Class probabilities and the per-window timeline; the history's form shows the timeline too.
    assert len(charts(at)) == 3
    probabilities = json.loads(charts(at)[0].proto.spec)["encoding"]["x"]
    assert probabilities["scale"]["domain"] == [0, 1]  # every model's chart on the same axis
    assert any("Timeline" in header.value for header in at.subheader)
    # The timeline spans the whole clip (not its windows' middles) under one title for P(human).
    timeline = json.loads(charts(at)[1].proto.spec)
    x_axis = timeline["layer"][0]["encoding"]["x"]
    assert x_axis["scale"]["domain"] == [0, pytest.approx(max(w.end for w in expected.windows))]
    assert {layer["encoding"]["y"].get("title") for layer in timeline["layer"]} <= {
        None,
        "P(human)",
    }
    assert timeline["layer"][1]["encoding"]["y"]["title"] == "P(human)"
    assert analysis.windows == [
        {
            "start": round(w.start, 3),
            "end": round(w.end, 3),
            "p_human": round(w.p_human, 6),
            "top_class": w.top_class,
        }
        for w in expected.windows
    ]
    assert any("sees" in caption for image in at.image for caption in image.captions)
    history = at.dataframe[-1].value
    assert list(history["file"]) == ["call from bank.wav"]
    assert list(history["model"]) == [specnet.name]
    # The verdict names its file by the hash of its bytes, and can be kept as a report.
    digest = hashlib.sha256(clip).hexdigest()
    assert analysis.file_sha256 == digest and list(history["SHA-256"]) == [digest[:16]]
    assert any(digest in caption.value for caption in at.caption)
    labels = {b.proto.id.rsplit("-", 1)[-1]: b.proto.label for b in at.get("download_button")}
    assert labels == {
        "eval_report_md": "Verdict report (Markdown)",
        "eval_report_json": "Verdict report (JSON)",
        # A verdict of the history's, as kept there: the same report, by the same name.
        "history_report_md": "Verdict report (Markdown)",
        "history_report_json": "Verdict report (JSON)",
        "history_csv": "Verdict history (CSV)",
    }

    # Another threshold re-decides from the stored probabilities: nothing is scored again, and
    # the history keeps the verdict as the page now shows it (so do both reports of it).
    at.slider(key="eval_threshold").set_value(0.99).run()
    assert_no_exception(at)
    redecided = decide(analysis.probabilities, "bonafide", 0.99)[0]
    assert verdicts_shown(at) == [redecided]
    (kept,) = services.list_analyses(alice)
    assert (kept.id, kept.threshold, kept.verdict) == (analysis.id, 0.99, redecided)
    assert kept.probabilities == analysis.probabilities
    assert any("kept in your history at threshold 0.99" in c.value for c in at.caption)
    from fakevoice.services import reports

    page_report = reports.history_report(alice, kept.id)["verdict"]
    assert (page_report["label"], page_report["threshold"]) == (redecided, 0.99)


def test_a_telephone_clip_gets_its_verdict_with_a_caution(
    alice: Actor, specnet: ModelRecord
) -> None:
    buffer = io.BytesIO()
    sf.write(buffer, speechlike(2.0, 8000), 8000, format="WAV", subtype="PCM_16")
    at = upload_clip(evaluate_page(alice), "phone call.wav", buffer.getvalue())
    assert_no_exception(at)
    assert len(verdicts_shown(at)) == 1
    warning, unmeasured = [w.value for w in at.warning]
    assert warning.startswith("The file was recorded at 8 kHz, so it holds nothing above 4 kHz")
    assert unmeasured.startswith("This model's error rate is unknown")
    # and in the history
    assert list(at.dataframe[-1].value["cautions"]) == [f"{warning} {unmeasured}"]


def test_a_browser_recording_gets_a_verdict(alice: Actor, specnet: ModelRecord) -> None:
    at = evaluate_page(alice)
    at.radio(key="eval_source").set_value("Record in the browser").run()
    at.audio_input(key="eval_record").set_value(("recording.wav", wav_bytes(0.8), "audio/wav"))
    at.run()
    assert_no_exception(at)
    (analysis,) = services.list_analyses(alice)
    assert analysis.file_name == "recording.wav"
    assert verdicts_shown(at) == [analysis.verdict]
    assert len(charts(at)) == 1  # a clip of about one window has no timeline


def test_recording_what_a_clip_really_was_is_confirmed(alice: Actor, specnet: ModelRecord) -> None:
    at = upload_clip(evaluate_page(alice), "call_1.wav", wav_bytes(1.5, seed=5))
    (analysis,) = services.list_analyses(alice)
    assert at.selectbox(key="history_label_choice").value == analysis.id  # the verdict just made
    at.radio(key=f"history_label_outcome:{analysis.id}").set_value("machine-generated")
    at.button(key="history_label_save").click().run()
    assert_no_exception(at)
    assert services.get_verdict(alice, analysis.id).outcome == "machine-generated"
    # Told after the rerun the save causes, beside the form; once.
    assert [m.value for m in at.success] == [
        f"Saved: verdict #{analysis.id} (call\\_1\\.wav) really was machine-generated."
    ]
    assert not at.run().success
    at.radio(key=f"history_label_outcome:{analysis.id}").set_value("unknown")
    at.button(key="history_label_save").click().run()
    assert [m.value for m in at.success] == [
        f"Saved: verdict #{analysis.id} (call\\_1\\.wav) has no recorded outcome."
    ]
    assert services.get_verdict(alice, analysis.id).outcome is None


@pytest.mark.parametrize(
    ("data", "limit", "message"),
    [
        (b"these are notes, not a recording", None, "not a recording in a format we can read"),
        (b"", None, "The file is empty"),
        (wav_bytes(2.0, seed=9), 60_000, "files up to"),  # over the limit; the 1.5 s one is not
    ],
)
def test_bad_audio_is_a_message_and_earlier_work_stays(
    alice: Actor,
    specnet: ModelRecord,
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    limit: int | None,
    message: str,
) -> None:
    if limit is not None:  # set before the page is drawn: the uploader is made with its limit
        monkeypatch.setenv("FAKEVOICE_MAX_UPLOAD_BYTES", str(limit))
        get_settings.cache_clear()
    at = upload_clip(evaluate_page(alice), "good.wav", wav_bytes(1.5))
    first = verdicts_shown(at)
    assert len(first) == 1
    at = upload_clip(at, "bad.wav", data)
    assert_no_exception(at)
    assert any(message in error.value for error in at.error), [e.value for e in at.error]
    assert verdicts_shown(at) == []
    assert [a.file_name for a in services.list_analyses(alice)] == ["good.wav"]
    assert list(at.dataframe[-1].value["file"]) == ["good.wav"]
    at = upload_clip(at, "good again.wav", wav_bytes(1.5))  # the page still works
    assert_no_exception(at)
    assert len(verdicts_shown(at)) == 1
    assert len(services.list_analyses(alice)) == 2


def test_the_verdict_is_explained_on_request_and_kept_with_it(
    alice: Actor, specnet: ModelRecord
) -> None:
    clip = wav_bytes(3.0, seed=5)
    at = upload_clip(evaluate_page(alice), "clip.wav", clip)
    assert any(header.value == "Why this verdict?" for header in at.subheader)
    before = len(charts(at))
    at.button(key="eval_explain").click().run()
    assert_no_exception(at)
    expected = services.explain_clip(alice, specnet, clip).explanation
    window = f"Window {expected.start:.2f}–{expected.end:.2f} s, P(human) {expected.p_human:.3f}"
    assert any(c.value.startswith(window) for c in at.caption)
    # The frequency bands and the time slices, here and (kept with the verdict) in the history's
    # form below, whose newest verdict it is, with the kept heatmap there (the overlay here is an
    # image, not a chart).
    assert len(charts(at)) == before + 5
    assert any("as kept with the verdict (32 x" in c.value for c in at.caption)
    specs = [json.loads(c.proto.spec) for c in charts(at)]
    fields = [s.get("encoding", {}).get("y", {}).get("field") for s in specs]
    assert fields.count("band") == 2  # the bands chart: band by share
    assert any("most sensitive (red)" in c for image in at.image for c in image.captions)
    (analysis,) = services.list_analyses(alice)  # the verdict; the explanation is not one
    kept = services.get_verdict(alice, analysis.id).explanation
    assert kept is not None and kept["start"] == pytest.approx(expected.start)
    assert [b["share"] for b in kept["bands"]] == pytest.approx([b.share for b in expected.bands])
    # It stays while the threshold moves, without being made again.
    at.slider(key="eval_threshold").set_value(0.9).run()
    assert_no_exception(at)
    assert any(c.value.startswith(window) for c in at.caption)
    assert not [b for b in at.button if b.key == "eval_explain"]


@pytest.mark.skipif(not AASIST_L.is_file(), reason="needs /work/shared/aasist/AASIST-L.pth")
def test_a_waveform_model_shows_the_waveform_and_says_the_mel_view_is_for_people(
    alice: Actor,
) -> None:
    model = services.import_aasist(alice, AASIST_L, "AASIST-L official")
    at = upload_clip(evaluate_page(alice), "clip.wav", wav_bytes(2.0))
    assert_no_exception(at)
    assert at.selectbox(key="eval_model").value == model.id
    (analysis,) = services.list_analyses(alice)
    assert set(analysis.probabilities) == {"spoof", "bonafide"}
    assert verdicts_shown(at) == [analysis.verdict]
    assert any("raw waveform" in caption for image in at.image for caption in image.captions)
    assert len(charts(at)) == 2  # probabilities and the waveform (one window: no timeline)


# --- compare and batch ---------------------------------------------------------------------------


def test_compare_mode_puts_models_side_by_side(
    alice: Actor, specnet: ModelRecord, run_dir: Path
) -> None:
    from fakevoice.services import uploads

    copy = uploads.import_uploaded_model(alice, "copy", "bundle.zip", bundle_zip(run_dir))
    at = evaluate_page(alice)
    at.radio(key="eval_mode").set_value("Compare models").run()
    assert any("at least two models" in info.value for info in at.info)
    at.multiselect(key="eval_compare_models").set_value([specnet.id, copy.id]).run()
    at = upload_clip(at, "same clip.wav", wav_bytes(2.0, seed=2), key="eval_compare_upload")
    assert_no_exception(at)
    analyses = services.list_analyses(alice)
    assert sorted(a.model_id for a in analyses) == sorted([specnet.id, copy.id])
    assert {a.file_name for a in analyses} == {"same clip.wav"}
    # The same weights give the same verdict in both columns, and together the same P(human).
    assert verdicts_shown(at) == [analyses[0].verdict] * 2
    assert {"tiny specnet", "copy"} <= {header.value for header in at.subheader}
    p_human = analyses[0].probabilities["bonafide"]
    (together,) = [m.value for m in at.markdown if m.value.startswith("**Together:**")]
    assert f"2 {analyses[0].verdict}." in together
    assert f"P(human) **{p_human:.3f}**" in together


def test_the_model_line_gives_its_eer_with_the_interval(specnet: ModelRecord) -> None:
    from dataclasses import replace

    from components.verdict_view import model_summary

    interval = {"eer": 0.12, "low": 0.08, "high": 0.17, "level": 0.95, "groups": 40}
    shown = model_summary(
        replace(specnet, metrics={"eer": 0.12, "valid_items": 300, "eer_interval": interval})
    )
    assert "validation EER 12.0% (8.0% to 17.0%) on 300 items" in shown
    assert "validation EER 12.0% on 300 items" in model_summary(
        replace(specnet, metrics={"eer": 0.12, "valid_items": 300})
    )


def test_the_chosen_model_s_card_is_folded_under_it(alice: Actor, run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["generator_eer"] = {"griffinlim": 0.45, "world": 0.05}
    register_run_model(alice, run_dir, name="carded", metrics=metrics)
    at = evaluate_page(alice)
    assert_no_exception(at)
    (about,) = [e for e in at.expander if e.label.startswith("About this model")]
    shown = "\n".join(m.value for m in about.markdown)
    assert shown.startswith("- Architecture: specnet")  # the card, less its title
    assert "#### Weak spots and limits" in shown and "often misses `griffinlim`" in shown


def test_fused_p_human_is_the_mean_of_the_log_odds() -> None:
    import math

    from fakevoice.services.fusion import fused_p_human

    assert fused_p_human([0.8]) == pytest.approx(0.8)
    assert fused_p_human([0.9, 0.1]) == pytest.approx(0.5)  # opposite views cancel
    assert fused_p_human([0.9, 0.99]) == pytest.approx(
        1 / (1 + math.exp(-(math.log(9) + math.log(99)) / 2))
    )
    assert 0.0 < fused_p_human([0.0, 1e-9]) < 1e-5  # certainty is clipped, never infinite


def test_batch_mode_scores_files_and_a_zip_and_offers_a_csv(
    alice: Actor, specnet: ModelRecord
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inside.wav", wav_bytes(1.0, seed=7))
        archive.writestr("../escape.wav", wav_bytes(1.0, seed=8))
    at = evaluate_page(alice)
    at.radio(key="eval_mode").set_value("Batch").run()
    files = [
        ("one.wav", wav_bytes(1.0, seed=1), "audio/wav"),
        ("broken.wav", b"not audio", "audio/wav"),
        ("clips.zip", buffer.getvalue(), "application/zip"),
    ]
    at.file_uploader(key="eval_batch").set_value(files).run()
    at.button(key="eval_batch_run").click().run()
    assert_no_exception(at)
    table = at.dataframe[0].value
    assert list(table["name"]) == [
        "one.wav",
        "broken.wav",
        "clips.zip/inside.wav",
        "clips.zip/../escape.wav",
    ]
    assert table["verdict"].notna().tolist() == [True, False, True, False]
    assert "not a recording" in table["error"][1] and "leaves its folder" in table["error"][3]
    assert any(c.value.startswith("2 of 4 file(s) scored with") and "2 could not" in c.value
               for c in at.caption)  # fmt: skip
    labels = [b.proto.label for b in at.get("download_button")]
    # The batch's, then the history's (a report of one verdict, and every verdict).
    assert labels == [
        "Batch verdicts (CSV)",
        "Verdict report (Markdown)",
        "Verdict report (JSON)",
        "Verdict history (CSV)",
    ]
    logged = {a.file_name for a in services.list_analyses(alice)}
    assert logged == {"one.wav", "clips.zip/inside.wav"}
    at.slider(key="eval_threshold").set_value(0.7).run()  # a rerun keeps the table
    assert len(at.dataframe[0].value) == 4 and len(services.list_analyses(alice)) == 2


def run_queued_jobs() -> list[str]:
    """Run every queued job to its end here, with the worker's own job function (as a worker
    process does after claiming it); the statuses they end in."""
    from fakevoice.jobs.runner import execute_run

    statuses = []
    while True:
        with store.session_scope() as session:
            run = store.claim_next_queued_run(session, "page-test-worker")
        if run is None:
            return statuses
        statuses.append(execute_run(run.id, "page-test-worker"))


def test_dataset_test_mode_queues_a_job_and_shows_its_results(
    alice: Actor, specnet: ModelRecord, isolated_settings: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    at = evaluate_page(alice)
    at.radio(key="eval_mode").set_value("Test on a dataset").run()
    assert_no_exception(at)
    assert "There is no built dataset to test on" in " ".join(i.value for i in at.info)

    # The tiny set's layout with other voices, under another name: not the dataset the model was
    # trained on (a calibration on items it learnt from is refused).
    make_tiny_dataset(datasets_dir() / OTHER, speakers=("new_a", "new_b"), first_seed=50_000)
    at.run()
    at.radio(key="eval_test_split").set_value("all")
    at.number_input(key="eval_test_limit").set_value(20)
    at.button(key="eval_test_run").click().run()
    assert_no_exception(at)
    assert not at.error, [e.value for e in at.error]
    (queued,) = services.list_evaluations(alice)
    assert queued.status == "queued" and queued.kind == "evaluate"
    assert queued.name == f"test tiny specnet on {OTHER}"
    named = f"test tiny specnet on {OTHER} (#{queued.id})"  # the number a caution names it by
    # Shown as written: a test is named after models, another user's among them.
    assert any(f"Queued '{plain(named)}'" in s.value for s in at.success)
    assert at.get("progress")  # followed in the list while it waits for a worker
    assert run_queued_jobs() == ["succeeded"]

    at.run()
    assert_no_exception(at)
    assert any(s.value.startswith(f"{plain(named)}: done · ") for s in at.success)
    assert f"**Results of {named}**" in [m.value for m in at.markdown]
    assert any(f"20 of 30 items of **{OTHER}**" in c.value for c in at.caption)
    assert {m.label for m in at.metric} >= {"Accuracy", "Macro F1", "EER", "AUC"}
    assert any("Expected calibration error here: " in c.value for c in at.caption)
    assert "**Reliability** (how sure against how often right)" in [m.value for m in at.markdown]
    by_generator = [f.value for f in at.dataframe if "generator" in f.value.columns]
    assert set(by_generator[0]["generator"]) == {"griffinlim", "world"}
    (by_noise,) = [f.value for f in at.dataframe if "noise" in f.value.columns]
    assert list(by_noise["noise"]) == ["clean"]
    labels = {b.proto.label for b in at.get("download_button")}
    assert labels == {"Scores per item (CSV)", "Metrics (JSON)"}
    assert services.list_analyses(alice) == []  # a test of the model is not a verdict
    # What the dataset's shortcut audit found is said beside the results (nothing kept: nothing).
    assert not any("Shortcut" in w.value for w in at.warning)
    planted = cue_frame(0, tts_lead_in=0.0)
    planted["class"] = planted["class"].replace({"tts": "griffinlim", "copy": "world"})
    write_audit(datasets_dir() / OTHER, audit_cues(planted))
    at.run()
    (note,) = [w.value for w in at.warning if "Shortcut" in w.value]
    assert note.startswith("Shortcut in this dataset") and "griffinlim (0% EER)" in note
    (by_generator,) = [f.value for f in at.dataframe if "simple cues alone" in f.value.columns]
    cues = dict(zip(by_generator["generator"], by_generator["simple cues alone"], strict=True))
    assert cues["griffinlim"] == 0.0 and cues["world"] > 0.25  # as the planted audit has it

    # A copy of the model calibrated on these 20 items: the original stays as it was.
    assert at.text_input(key="eval_test_calibrate_name").value == f"tiny specnet on {OTHER}"
    at.text_input(key="eval_test_calibrate_name").set_value("specnet tuned")
    at.button(key="eval_test_calibrate").click().run()
    assert_no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Model 'specnet tuned' is yours" in s.value for s in at.success)
    (copy,) = [m for m in services.list_models(alice) if m.name == "specnet tuned"]
    kept = copy.metrics["calibration"]
    assert kept["dataset"] == OTHER and kept["items"] == 20 and kept["split"] == "all"
    assert services.get_model(alice, specnet.id).metrics.get("calibration") is None
    # The copy scores through the kept calibration; the same weights underneath.
    samples = load_audio(wav_bytes(2.0, seed=8), 16000).samples
    raw, _ = services.detector_for(specnet).window_log_probs(samples)
    scaled = raw / kept["temperature"] + np.asarray(kept["bias"])
    expected = scaled - np.logaddexp.reduce(scaled, axis=1, keepdims=True)
    got, _ = services.detector_for(copy).window_log_probs(samples)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    at.button(key="eval_test_calibrate").click().run()  # the same name again: words, no copy
    assert any("already" in e.value for e in at.error)

    # A damaged dataset: one clip gone. The new test fails with the reason in the list, and the
    # earlier result stays on the page.
    (clip,) = list((datasets_dir() / OTHER / "clips").rglob("new_a_u0.wav"))[:1]
    clip.unlink()
    at.number_input(key="eval_test_limit").set_value(30)
    at.button(key="eval_test_run").click().run()
    assert run_queued_jobs() == ["failed"]
    at.run()
    assert_no_exception(at)
    assert "cannot be read" in " ".join(e.value for e in at.error)
    first = next(b for b in at.button if b.key == f"eval_test_show:{queued.id}")
    first.click().run()
    assert any(f"20 of 30 items of **{OTHER}**" in c.value for c in at.caption)

    # Clear takes a test and its files away.
    folder = services.get_evaluation(alice, queued.id).artefact_dir
    assert folder is not None and Path(folder, "0-report.json").is_file()
    next(b for b in at.button if b.key == f"eval_test_clear:{queued.id}").click().run()
    assert_no_exception(at)
    assert [r.id for r in services.list_evaluations(alice)] != [] and not Path(folder).exists()
    assert queued.id not in [r.id for r in services.list_evaluations(alice)]


def queue_test_of_two_models(
    alice: Actor,
    specnet: ModelRecord,
    run_dir: Path,
    root: Path,
    limit: int = 500,
    owner: Actor | None = None,
) -> tuple[AppTest, ModelRecord]:
    """The page after "Run the test" of specnet and an uploaded copy of it on every item of the
    tiny dataset (copied from ``root``); the copy's record (``owner``'s public model, when given;
    else alice's)."""
    from fakevoice.services import uploads

    copy = uploads.import_uploaded_model(owner or alice, "copy", "bundle.zip", bundle_zip(run_dir))
    if owner is not None:
        copy = profile.set_model_public(owner, copy.id, True)
    shutil.copytree(root / DATASET, datasets_dir() / DATASET)
    at = evaluate_page(alice)
    at.selectbox(key="eval_model").set_value(specnet.id).run()
    at.radio(key="eval_mode").set_value("Test on a dataset").run()
    at.radio(key="eval_test_split").set_value("all")
    at.number_input(key="eval_test_limit").set_value(limit)
    at.multiselect(key="eval_test_others").set_value([copy.id])
    at.button(key="eval_test_run").click().run()
    return at, copy


def test_a_test_on_the_model_s_own_validation_items_says_whether_it_was_calibrated_there(
    alice: Actor, specnet: ModelRecord, run_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tiny_dataset_root(tmp_path_factory)
    shutil.copytree(root / DATASET, datasets_dir() / DATASET)
    assert specnet.metrics.get("calibration") is None  # too few validation items to fit one
    at = evaluate_page(alice)
    at.selectbox(key="eval_model").set_value(specnet.id).run()
    at.radio(key="eval_mode").set_value("Test on a dataset").run()
    at.radio(key="eval_test_split").set_value("valid")
    at.button(key="eval_test_run").click().run()
    assert run_queued_jobs() == ["succeeded"]
    at.run()
    assert_no_exception(at)
    (note,) = [c.value for c in at.caption if "own validation items" in c.value]
    assert "this one kept no calibration" in note and "calibrated it on them already" not in note


def test_dataset_test_puts_several_models_side_by_side(
    alice: Actor, specnet: ModelRecord, run_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    at, _ = queue_test_of_two_models(alice, specnet, run_dir, tiny_dataset_root(tmp_path_factory))
    assert_no_exception(at)
    (queued,) = services.list_evaluations(alice)
    assert queued.name == f"test tiny specnet and 1 more on {DATASET}"
    assert run_queued_jobs() == ["succeeded"]
    at.run()
    assert not at.error, [e.value for e in at.error]
    assert any(
        f"2 models on the same 30 of 30 items of **{DATASET}**" in c.value for c in at.caption
    )
    # Each model's own view says what it was scored on in plain words.
    assert f"30 of 30 items of **{DATASET}** scored with **copy**." in [c.value for c in at.caption]
    (table,) = [f.value for f in at.dataframe if "model_id" in f.value.columns]
    assert list(table["model"]) == [
        "tiny specnet",
        "copy",
        "fusion: tiny specnet + copy",
        "fusion, learnt weights: tiny specnet + copy",
    ]
    assert list(table["items"]) == [30, 30, 30, 30]
    # The same weights on the same items: the same figures, fused or not, and scores alike.
    assert table["eer"].iloc[0] == pytest.approx(table["eer"].iloc[1])
    assert table["eer"].iloc[2] == pytest.approx(table["eer"].iloc[0])
    assert pd.isna(table["accuracy"].iloc[2]) and pd.isna(table["accuracy"].iloc[3])
    (alike,) = [f.value for f in at.dataframe if list(f.value.columns) == ["tiny specnet", "copy"]]
    assert alike.to_numpy().min() == pytest.approx(1.0)
    assert any("The fusion rows combine the models' scores" in c.value for c in at.caption)
    assert list(table.columns)[-3:] == ["eer@snr_inf", "eer@griffinlim", "eer@world"]
    # Which is better: the same scores cannot be told apart, however often they are drawn.
    assert "**Which is better?**" in [m.value for m in at.markdown]
    (pairs,) = [f.value for f in at.dataframe if "EER difference (points)" in f.value.columns]
    assert list(pairs["pair"]) == ["tiny specnet - copy"]
    assert pairs["EER difference (points)"].iloc[0] == 0.0
    assert pairs["verdict"].iloc[0] == "the test cannot tell them apart"
    # Each model's EER with its interval over the tiny dataset's 10 utterances.
    assert any("interval" in c.value and "10 utterances" in c.value for c in at.caption)
    assert len(at.get("vega_lite_chart")) >= 1  # the ROC curves on one chart (and the details)
    details = [e.label for e in at.expander if e.label.endswith(" in detail")]
    assert details == ["tiny specnet in detail", "copy in detail"]
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels.count("Side by side (CSV)") == 1 and labels.count("Scores per item (CSV)") == 2


def test_dataset_test_names_the_owner_of_another_user_s_model(
    alice: Actor, specnet: ModelRecord, run_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Bob's public model is called "copy" too: the results tell it from one of alice's by owner.
    bob = make_user("bob")
    at, _ = queue_test_of_two_models(
        alice, specnet, run_dir, tiny_dataset_root(tmp_path_factory), limit=10, owner=bob
    )
    assert run_queued_jobs() == ["succeeded"]
    at.run()
    assert not at.error, [e.value for e in at.error]
    (table,) = [f.value for f in at.dataframe if "model_id" in f.value.columns]
    assert list(table["model"]) == ["tiny specnet", "copy · shared by bob"]
    details = [e.label for e in at.expander if e.label.endswith(" in detail")]
    assert details == ["tiny specnet in detail", "copy · shared by bob in detail"]


def test_dataset_evaluation_scores_every_item_and_writes_a_csv(
    alice: Actor, specnet: ModelRecord, tmp_path_factory: pytest.TempPathFactory
) -> None:
    shutil.copytree(tiny_dataset_root(tmp_path_factory) / DATASET, datasets_dir() / DATASET)
    seen: list[tuple[int, int]] = []
    evaluation = services.evaluate_on_dataset(
        alice, specnet.id, DATASET, "all", on_progress=lambda done, n: seen.append((done, n))
    )
    assert seen[-1] == (30, 30) and len(seen) == 30
    scores = evaluation.scores
    assert len(scores) == evaluation.report["n"] == 30
    assert set(scores["class"]) == {"bonafide", "griffinlim", "world"}
    assert scores["p_human"].between(0, 1).all()
    csv_text = evaluation.scores_csv().decode()
    assert csv_text.splitlines()[0] == (
        "item,speaker,class,noise,p_human,predicted,p:bonafide,p:griffinlim,p:world"
    )
    assert json.loads(evaluation.report_json())["split"] == "all"
    with pytest.raises(InvalidSpecError, match="limit must be"):
        services.evaluate_on_dataset(alice, specnet.id, DATASET, "all", limit=0)
    assert evaluation.report["unseen"] == {}


def test_a_generator_the_model_has_no_class_for_is_tested_not_dropped(
    alice: Actor, specnet: ModelRecord, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A multi-class model (human, griffinlim, world) on a set whose griffinlim clips are
    named as another generator: they are scored as machine speech in the EER per generator, and
    the report says the pooled figures leave them out (they were dropped without a word)."""
    from fakevoice.services.evaluation import unseen_words

    folder = datasets_dir() / "renamed"
    shutil.copytree(tiny_dataset_root(tmp_path_factory) / DATASET, folder)
    manifest = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.loc[manifest["class"] == "griffinlim", "class"] = "piper"
    manifest.to_csv(folder / "manifest.csv", index=False)
    evaluation = services.evaluate_on_dataset(alice, specnet.id, "renamed", "all")
    report = evaluation.report
    assert report["unseen"] == {"piper": 10} and report["n"] == 20
    # Every item is in the scores; comparisons and fusions take those the pooled figures do.
    assert len(evaluation.scores) == 30 and len(evaluation.judged_scores()) == 20
    assert "piper" not in set(evaluation.judged_scores()["class"])
    assert set(report["generator_eer"]) == {"piper", "world"}
    assert report["eer_items"]["generator"]["piper"] == [10, 10]
    words = unseen_words(report["unseen"])
    assert words is not None and words.startswith("10 items of generators this model has no")


# --- which model: URL, upload, access -------------------------------------------------------------


def test_model_in_the_url_is_selected_and_private_models_of_others_are_not_found(
    alice: Actor, run_dir: Path
) -> None:
    first = register_run_model(alice, run_dir, "first")
    second = register_run_model(alice, run_dir, "second")
    at = evaluate_page(alice, {"model": str(first.id)})
    assert_no_exception(at)
    assert at.selectbox(key="eval_model").value == first.id != second.id

    bob = make_user("bob")
    at = evaluate_page(bob, {"model": str(first.id)})
    assert_no_exception(at)
    assert any(f"no model with id {first.id}" in error.value for error in at.error)
    assert any("no model yet" in info.value for info in at.info)
    assert not services.list_analyses(bob)
    for odd in ("abc", "1" * 30, "²"):  # too large for the database, a digit only to Unicode
        at = evaluate_page(bob, {"model": odd})
        assert_no_exception(at)
        assert any(f"no model with id {odd!r}" in error.value for error in at.error)
    # A link in the URL is shown as typed, never as a link in the page's own error box.
    at = evaluate_page(bob, {"model": "[Sign in again](https://evil.example)"})
    assert any("\\[Sign in again\\]\\(https\\:" in error.value for error in at.error)

    with store.session_scope() as session:
        store.set_public(session, alice, second.id, True)
    at = evaluate_page(bob, {"model": str(second.id)})
    assert not at.error
    assert at.selectbox(key="eval_model").options == ["second · specnet · shared by alice"]
    # Two people's public models of one name: the picker says whose is whose.
    register_run_model(make_user("carol"), run_dir, "second", public=True)
    at = evaluate_page(bob)
    assert at.selectbox(key="eval_model").options == [
        "second · specnet · shared by carol",  # newest first
        "second · specnet · shared by alice",
    ]


def test_a_model_uploaded_on_the_page_is_selected(
    alice: Actor, specnet: ModelRecord, run_dir: Path
) -> None:
    at = evaluate_page(alice)
    at.file_uploader(key="eval_model_upload").set_value(
        ("my-bundle.zip", bundle_zip(run_dir), "application/zip")
    ).run()
    at.button(key="eval_model_import").click().run()
    assert_no_exception(at)
    assert any("'my-bundle'" in success.value for success in at.success)
    assert not at.warning  # a bundle without figures: nothing failed a check
    new = at.selectbox(key="eval_model").value
    assert new != specnet.id
    assert services.get_model(alice, new).name == "my-bundle"


def test_a_bundle_whose_figures_fail_their_check_is_stored_with_a_warning(
    alice: Actor, specnet: ModelRecord, run_dir: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("model.safetensors", "manifest.json"):
            archive.write(run_dir / name, name)
        archive.writestr("validation.json", b"\xff not json")
    at = evaluate_page(alice)
    at.file_uploader(key="eval_model_upload").set_value(
        ("edited.zip", buffer.getvalue(), "application/zip")
    ).run()
    at.button(key="eval_model_import").click().run()
    assert_no_exception(at)
    assert any("Model 'edited' (specnet) is ready" in success.value for success in at.success)
    assert [w.value for w in at.warning] == [
        "Its bundle carried validation figures (validation.json) that failed their check (the "
        "file is not JSON); they were not kept."
    ]
    new = services.get_model(alice, at.selectbox(key="eval_model").value)
    assert new.name == "edited" and "eer" not in new.metrics
    (summary,) = [c.value for c in at.caption if c.value.startswith("Classes: ")]
    assert (
        "no validation figures (those of its bundle failed their check and were not kept)"
    ) in summary
    assert not at.run().warning  # said at the upload; the model's line and card keep it


def test_a_foreign_pickle_uploaded_on_the_page_is_refused_unopened(
    alice: Actor, specnet: ModelRecord, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    at = evaluate_page(alice)
    at.file_uploader(key="eval_model_upload").set_value(
        ("model.pkl", pickle.dumps(FileCreatingPayload(marker)), "application/octet-stream")
    ).run()
    at.text_input(key="eval_model_name").input("evil").run()
    at.button(key="eval_model_import").click().run()
    assert_no_exception(at)
    assert any("never unpickles" in error.value for error in at.error)
    assert not marker.exists()
    assert [m.id for m in services.list_models(alice)] == [specnet.id]
    assert at.selectbox(key="eval_model").value == specnet.id


def test_a_test_that_failed_halfway_shows_the_models_done(
    alice: Actor, specnet: ModelRecord, run_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from fakevoice.services import profile

    root = tiny_dataset_root(tmp_path_factory)
    at, copy = queue_test_of_two_models(alice, specnet, run_dir, root, limit=10)
    with pytest.raises(ConflictError, match="test of models uses model 'copy'"):
        profile.delete_model(alice, copy.id)  # not while a test is to score it
    # Its weights changed on disk before the worker reaches it: the test fails there.
    (Path(copy.path) / "model.safetensors").write_bytes(b"not the weights that were stored")
    assert run_queued_jobs() == ["failed"]
    at.run()
    assert_no_exception(at)
    assert any("1 of 2 models were done when it ended" in c.value for c in at.caption)
    (test,) = services.list_evaluations(alice)
    assert at.button(key=f"eval_test_show:{test.id}") is not None
    assert any(f"10 of 30 items of **{DATASET}**" in c.value for c in at.caption)


def _card_of_a_shared_model() -> None:
    from components.verdict_view import verdict_card

    # A shared model's class names are its uploader's words (its bundle's manifest).
    verdict_card("machine-generated", "[support](https://evil.example) :red[x]", 0.1, 0.6)


def test_a_shared_models_class_name_is_shown_as_typed_never_as_markdown() -> None:
    """Anyone may share an uploaded bundle whose class names are links or images: the verdict
    card of everyone who used it rendered them."""
    at = AppTest.from_function(_card_of_a_shared_model)
    at.run()
    assert not at.exception
    (named,) = [m.value for m in at.markdown if m.value.startswith("Synthetic")]
    assert named == (
        "Synthetic or converted speech (most likely generator: "
        "**\\[support\\]\\(https\\:\\/\\/evil\\.example\\) \\:red\\[x\\]**)."
    )
