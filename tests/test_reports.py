"""Verdict reports: a real verdict of a real (tiny) model, written as JSON and Markdown."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import soundfile as sf
from conftest import speechlike
from test_uploads import make_user, register_run_model, trained_run_dir, wav_bytes

from fakevoice import services
from fakevoice.artefacts import BUNDLE_WEIGHTS
from fakevoice.explain import KEPT_HEATMAP_CELLS
from fakevoice.inference import decide
from fakevoice.services import reports
from fakevoice.store.records import Actor


@pytest.fixture
def scored(isolated_settings: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    alice = make_user("alice")
    # Measured (its own validation EER, a good one): no caution about the model itself.
    model = register_run_model(
        alice,
        trained_run_dir(tmp_path_factory),
        name="bank | `model`",
        metrics={"eer": 0.05, "valid_items": 60},
    )
    clip = wav_bytes(3.0, seed=11)
    result = services.score_clip(alice, model.id, clip, file_name="call\n| 1.wav", threshold=0.6)
    return result, hashlib.sha256(clip).hexdigest()


def test_report_names_the_file_the_model_and_the_verdict(scored: tuple) -> None:
    result, digest = scored
    report = reports.verdict_report(result)
    assert report["file"]["sha256"] == digest == result.analysis.file_sha256
    assert report["file"]["duration_seconds"] == pytest.approx(3.0)
    assert report["file"]["codec"] == "pcm_s16le" and report["file"]["sample_rate"] == 16000
    assert report["model"]["weights_sha256"] == result.model.files[BUNDLE_WEIGHTS]
    assert report["model"]["validation"].get("eer") == result.model.metrics.get("eer")
    verdict = report["verdict"]
    assert verdict["label"] == result.verdict.label == result.analysis.verdict
    assert verdict["probabilities"] == result.verdict.probabilities
    assert len(verdict["windows"]) == len(result.verdict.windows) >= 2
    written = json.loads(reports.report_json(report))
    signature = written.pop("signature")  # the server's signature (test_signing.py)
    assert written == report and signature["algorithm"] == "Ed25519"


def test_a_chosen_threshold_decides_again_and_the_logged_one_is_kept(scored: tuple) -> None:
    result, _ = scored
    report = reports.verdict_report(result, threshold=0.99)
    label, generator = decide(result.verdict.probabilities, "bonafide", 0.99)
    assert report["verdict"]["label"] == label and report["verdict"]["generator"] == generator
    assert report["verdict"]["threshold"] == 0.99 and report["verdict"]["logged_threshold"] == 0.6


def test_markdown_report_is_readable_and_names_cannot_break_it(scored: tuple) -> None:
    result, digest = scored
    text = reports.report_markdown(reports.verdict_report(result))
    assert text.startswith("# Verdict: ")
    assert f"SHA-256: `{digest}`" in text
    # Client-chosen names cannot open a code span, start a table cell or a new line.
    # (The line end never reached the store: file names are kept printable.)
    assert "`call?/ 1.wav`" in text and "bank / 'model'" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and "." in line]
    assert all(line.count("|") in {3, 5} for line in table)
    assert reports.CAVEAT in text
    assert "## Cautions" not in text  # a wide-band clip longer than the window


def test_names_of_a_shared_model_cannot_become_links_in_a_report(scored: tuple) -> None:
    """A shared model's name and class names are its owner's words, printed in the reports of
    everyone who used it: outside a code span, a Markdown viewer showed them as links and images."""
    result, _ = scored
    report = reports.verdict_report(result)
    lure = "[Open the case](https://evil.example) ![](https://evil.example/p.png)"
    report["model"]["name"] = lure
    report["model"]["classes"] = ["bonafide", lure]
    report["verdict"].update(label="machine-generated", generator=lure)
    report["verdict"]["probabilities"] = {"bonafide": 0.2, lure: 0.8}
    for window in report["verdict"]["windows"]:
        window["top_class"] = lure
    text = reports.report_markdown(report)
    assert text.count(lure) == 4 + len(report["verdict"]["windows"])
    assert text.count(f"`{lure}`") == text.count(lure)


def test_cautions_are_in_both_reports(
    isolated_settings: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    alice = make_user("alice")
    model = register_run_model(alice, trained_run_dir(tmp_path_factory))
    buffer = io.BytesIO()
    sf.write(buffer, speechlike(3.0, 8000), 8000, format="WAV", subtype="PCM_16")
    result = services.score_clip(alice, model.id, buffer.getvalue(), file_name="call.wav")
    report = reports.verdict_report(result)
    caution, unmeasured = report["verdict"]["cautions"]
    assert caution.startswith("The file was recorded at 8 kHz")
    assert unmeasured.startswith("This model's error rate is unknown")  # no figures of its own
    assert report["verdict"]["cautions"] == result.verdict.cautions
    text = reports.report_markdown(report)
    assert f"## Cautions\n\n- {caution}\n- {unmeasured}\n" in text


def test_an_explanation_asked_for_goes_into_both_reports(scored: tuple) -> None:
    result, _ = scored
    plain = reports.verdict_report(result)
    assert "explanation" not in plain
    assert "## Why" not in reports.report_markdown(plain)
    clip = wav_bytes(3.0, seed=11)
    owner = Actor(user_id=result.analysis.owner_id, is_admin=False)
    explanation = services.explain_clip(owner, result.model, clip)
    report = reports.verdict_report(result, explanation=explanation.explanation)
    kept_cells = KEPT_HEATMAP_CELLS  # the report carries the heatmap as the history keeps it
    assert report["explanation"] == explanation.explanation.to_dict(heatmap_size=kept_cells)
    written = json.loads(reports.report_json(report))
    assert {k: v for k, v in written.items() if k != "signature"} == report
    text = reports.report_markdown(report)
    assert "## Why: where the decision is most sensitive" in text
    for band in explanation.explanation.bands:
        assert f"| {band.label()} | {100 * band.share:.1f} % |" in text
