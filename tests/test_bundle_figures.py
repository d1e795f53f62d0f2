"""Validation figures that travel with a safe bundle, signed (``fakevoice.bundle_figures``).

A real one-epoch specnet (the session's run folder) is stored with its own ``metrics.json`` as
figures, handed out as a bundle and uploaded again: on this server, on this server after its key
was rotated, and on another server (another data folder, so another database and signing key).
The figures come back as the model's own only where this server signed them; another server's
come back as reported, checked and apart; changed ones are dropped.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from test_cli_workflow import run_in_process
from test_uploads import make_user, register_run_model, wav_bytes

from components.verdict_view import model_summary
from fakevoice import services, signing
from fakevoice.bundle_figures import (
    CLEARED_VALUES,
    DROPPED,
    DROPPED_FROM,
    FIGURES_FILE,
    REPORTED,
    DroppedFigures,
    copied_metrics,
    dropped_parts_text,
    read_figures,
    signed_figures,
)
from fakevoice.services import model_files
from fakevoice.services.uploads import import_uploaded_model, upload_warning
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, ModelRecord


def trained_figures(run_dir: Path) -> dict[str, Any]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    classes = json.loads((run_dir / "manifest.json").read_text())["class_names"]
    # Figures the tiny run cannot promise by itself: a generator it misses, one it catches.
    machine = [name for name in classes if name != "bonafide"]
    metrics["generator_eer"] = {machine[0]: 0.45, machine[-1]: 0.05}
    metrics["source"] = "trained here"
    return metrics


def bundle_files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def another_server(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """From here on, the test runs on another server: its own data folder, database and key."""
    monkeypatch.setenv("FAKEVOICE_DATA_DIR", str(data_dir))
    get_settings.cache_clear()


@pytest.fixture
def exported(alice: Actor, run_dir: Path) -> tuple[ModelRecord, bytes]:
    model = register_run_model(alice, run_dir, metrics=trained_figures(run_dir), public=True)
    return model, model_files.model_bundle(alice, model.id).data


def test_this_servers_figures_come_back_as_the_models_own(
    alice: Actor, exported: tuple[ModelRecord, bytes]
) -> None:
    original, data = exported
    files = bundle_files(data)
    assert sorted(files) == ["manifest.json", "model.safetensors", FIGURES_FILE]
    document = json.loads(files[FIGURES_FILE])
    assert document["signature"]["key_id"] == signing.key_id()
    assert "source" not in document["figures"] and "calibration" not in document["figures"]

    bob = make_user("bob")
    copy = import_uploaded_model(bob, "from alice", "alice.zip", data)
    assert copy.metrics["eer"] == pytest.approx(original.metrics["eer"])
    assert copy.metrics["generator_eer"] == original.metrics["generator_eer"]
    assert copy.metrics["valid_items"] == original.metrics["valid_items"]
    assert copy.metrics["source"] == "uploaded bundle (alice.zip)"
    assert REPORTED not in copy.metrics
    card = model_files.model_card(bob, copy.id).data.decode()
    assert f"- EER {100 * original.metrics['eer']:.1f} %" in card
    assert "it often misses" in card and "No validation figures" not in card

    # Exported again, the copy's figures are this server's still: they travel on.
    again = import_uploaded_model(
        bob, "again", "b.zip", model_files.model_bundle(bob, copy.id).data
    )
    assert again.metrics["eer"] == pytest.approx(original.metrics["eer"])


def test_figures_signed_before_a_key_rotation_are_still_this_servers(
    alice: Actor, exported: tuple[ModelRecord, bytes]
) -> None:
    original, data = exported
    old, new = signing.rotate_key()
    assert old != new
    copy = import_uploaded_model(alice, "after rotation", "a.zip", data)
    assert copy.metrics["eer"] == pytest.approx(original.metrics["eer"])


def test_another_servers_figures_are_kept_apart_as_reported(
    alice: Actor,
    exported: tuple[ModelRecord, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original, data = exported
    their_key = signing.key_id()
    another_server(monkeypatch, tmp_path / "another-server")
    assert signing.key_id() != their_key
    carol = make_user("carol")
    copy = import_uploaded_model(carol, "shared with me", "s.zip", data)

    assert "eer" not in copy.metrics  # never this model's own figures here
    reported = copy.metrics[REPORTED]
    assert reported["key_id"] == their_key
    assert reported["eer"] == pytest.approx(original.metrics["eer"])
    assert reported["generator_eer"] == original.metrics["generator_eer"]
    assert reported["valid_items"] == original.metrics["valid_items"]
    card = model_files.model_card(carol, copy.id).data.decode()
    assert f"signed by key `{their_key}`, another server's" in card
    assert f"- EER {100 * original.metrics['eer']:.1f} %" in card
    # Not this server's figures, so not the weak spots it names.
    assert "it often misses" not in card
    # Evaluate's line under the chosen model says whose they are.
    line = model_summary(copy)
    assert f"validation EER {original.metrics['eer']:.1%} as its bundle reports" in line
    assert "not measured here" in line and "it often misses" not in line
    own = model_summary(original)
    assert f"validation EER {original.metrics['eer']:.1%}" in own and "reports" not in own
    # Exported from here, the reported figures are not signed again as this server's.
    files = bundle_files(model_files.model_bundle(carol, copy.id).data)
    assert FIGURES_FILE not in files
    # A copy made here (a calibrated copy) holds the same reported figures, of the bundle its
    # source was uploaded in, not of one of its own: it was never uploaded.
    from dataclasses import replace

    from fakevoice.cautions import model_cautions

    made_here = replace(copy, id=copy.id + 1, metrics=copied_metrics(copy.metrics, copy.id))
    bundle_of = f"the uploaded bundle of model {copy.id}"
    assert f"as {bundle_of} reports" in model_summary(made_here)
    (caution,) = model_cautions(made_here.metrics)
    assert f"that {bundle_of} reports was measured and signed by another server" in caution
    assert "its bundle" not in model_summary(made_here) + caution


def test_changed_figures_or_a_changed_manifest_lose_the_figures(
    alice: Actor, exported: tuple[ModelRecord, bytes]
) -> None:
    original, data = exported
    files = bundle_files(data)

    flattered = json.loads(files[FIGURES_FILE])
    flattered["figures"]["eer"] = 0.0123  # signature left as it was
    tampered = import_uploaded_model(
        alice, "flattered", "f.zip", rezip({**files, FIGURES_FILE: json.dumps(flattered).encode()})
    )
    assert "eer" not in tampered.metrics and REPORTED not in tampered.metrics
    # The upload succeeds, and says what became of the figures, as the model does from then on.
    changed = (
        "Its bundle carried validation figures (validation.json) that failed their check (their "
        "signature does not fit them: they were changed after they were signed, or the signature "
        "was); they were not kept."
    )
    assert upload_warning(tampered) == changed
    card = model_files.model_card(alice, tampered.id).data.decode()
    assert f"No validation figures were kept with this model. {changed}" in card
    assert model_summary(tampered).endswith(
        "no validation figures (those of its bundle failed their check and were not kept) · "
        "probabilities uncalibrated."
    )

    manifest = json.loads(files["manifest.json"])
    manifest["feature_spec"]["colormap"] = "gray"  # another model's input, the same weights
    other_input = import_uploaded_model(
        alice,
        "other input",
        "o.zip",
        rezip({**files, "manifest.json": json.dumps(manifest).encode()}),
    )
    assert "eer" not in other_input.metrics and REPORTED not in other_input.metrics
    assert (
        other_input.metrics[DROPPED] == "they were signed for another manifest than this bundle's"
    )

    # A bundle without figures (as every bundle was before) is stored as it always was.
    plain = {k: v for k, v in files.items() if k != FIGURES_FILE}
    old_style = import_uploaded_model(alice, "old style", "p.zip", rezip(plain))
    assert "eer" not in old_style.metrics and REPORTED not in old_style.metrics
    assert DROPPED not in old_style.metrics and upload_warning(old_style) is None
    assert "failed their check" not in model_files.model_card(alice, old_style.id).data.decode()
    assert upload_warning(original) is None
    assert original.metrics["eer"] is not None


def test_another_servers_figures_are_checked_before_they_are_shown(
    isolated_settings: Path, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = (run_dir / "manifest.json").read_bytes()
    weights = (run_dir / "model.safetensors").read_bytes()
    classes = json.loads(manifest)["class_names"]
    machine = [name for name in classes if name != "bonafide"][0]
    hostile = {
        "eer": 0.1,
        "auc": 7.0,  # not a rate
        "accuracy": float("nan"),
        "valid_items": True,  # not a count
        "generator_eer": {machine: 0.2, "![x](https://evil.example/p.png)": 0.3},
        "noise_eer": {"clean": 0.1, "snr_10": 2.0, "[link](https://evil.example)": 0.1},
        "eer_interval": {"eer": 0.1, "low": 0.05, "high": 0.2, "level": 0.95, "groups": "40"},
        "roc": {"fpr": [0, 1], "tpr": [0, 1]},
    }
    another_server(monkeypatch, tmp_path / "their-server")
    raw = signed_figures(hostile, manifest, weights)
    assert raw is not None  # NaN signs as null: JSON has no NaN
    assert json.loads(raw)["figures"]["accuracy"] is None
    another_server(monkeypatch, tmp_path / "our-server")

    found = read_figures(raw, manifest, weights, classes)
    assert not isinstance(found, DroppedFigures) and not found.own
    assert found.metrics == {
        "eer": 0.1,
        "generator_eer": {machine: 0.2},
        "noise_eer": {"clean": 0.1},
        "key_id": found.key_id,
    }
    # Their public key swapped for ours (to pass as this server's figures): no signature fits.
    forged = json.loads(raw)
    forged["public_key"] = signing.public_key_pem()
    assert read_figures(json.dumps(forged).encode(), manifest, weights, classes) == DroppedFigures(
        "their signature does not fit them: they were changed after they were signed, or the "
        "signature was"
    )
    assert read_figures(raw, manifest, weights[:-1] + b"\0", classes) == DroppedFigures(
        "they were signed for other weights than this bundle's"
    )
    assert read_figures(b"\xff not json", manifest, weights, classes) == DroppedFigures(
        "the file is not JSON"
    )
    unsigned = {k: v for k, v in json.loads(raw).items() if k != "signature"}
    assert read_figures(json.dumps(unsigned).encode(), manifest, weights, classes) == (
        DroppedFigures("they are not signed")
    )


def test_a_model_without_figures_of_its_own_signs_none(run_dir: Path) -> None:
    manifest = (run_dir / "manifest.json").read_bytes()
    weights = (run_dir / "model.safetensors").read_bytes()
    assert signed_figures({"source": "uploaded bundle (x.zip)"}, manifest, weights) is None
    reported = {"eer": 0.1, REPORTED: {"eer": 0.1, "key_id": "0" * 16}}
    assert signed_figures(reported, manifest, weights) is None


def test_the_cli_says_whose_figures_they_are(
    alice: Actor,
    exported: tuple[ModelRecord, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    original, data = exported
    their_key = signing.key_id()
    (tmp_path / "shared.zip").write_bytes(data)
    another_server(monkeypatch, tmp_path / "another-server")
    done = run_in_process(capsys, "models", "import", str(tmp_path / "shared.zip"), "--name", "x")
    assert done.returncode == 0, done.stderr
    shown = run_in_process(capsys, "models", "show", "x")
    assert shown.returncode == 0, shown.stderr
    assert (
        f"validation EER {100 * original.metrics['eer']:.2f} % as its bundle reports, signed by "
        f"key {their_key} (another server's): not measured here"
    ) in shown.stdout


def test_the_cli_says_when_a_bundles_figures_failed_their_check(
    alice: Actor,
    exported: tuple[ModelRecord, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, data = exported
    files = bundle_files(data)
    (tmp_path / "unsigned.zip").write_bytes(
        rezip({**files, FIGURES_FILE: json.dumps({"figures": {"eer": 0.01}}).encode()})
    )
    why = (
        "Its bundle carried validation figures (validation.json) that failed their check (the "
        "file is not in the fakevoice-validation/1 format); they were not kept."
    )
    done = run_in_process(
        capsys, "models", "import", str(tmp_path / "unsigned.zip"), "--name", "u", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["warning"] == why
    assert f"warning: {why}" in done.stderr
    shown = run_in_process(capsys, "models", "show", "u")
    assert shown.returncode == 0, shown.stderr
    assert f"  {why}" in shown.stdout.splitlines()
    # Its verdicts say that nobody measured it here.
    (tmp_path / "clip.wav").write_bytes(wav_bytes(2.0, seed=1))
    judged = run_in_process(capsys, "predict", "--model", "u", str(tmp_path / "clip.wav"))
    assert judged.returncode == 0, judged.stderr
    assert (
        "  caution: This model's error rate is unknown: it has no validation EER measured on "
        "this server, and you have not tested it on a dataset here."
    ) in judged.stdout
    # A bundle whose figures are kept stores without a word of warning.
    (tmp_path / "good.zip").write_bytes(data)
    good = run_in_process(capsys, "models", "import", str(tmp_path / "good.zip"), "--name", "g")
    assert good.returncode == 0 and "warning" not in good.stderr, good.stderr
    # Parts of its manifest that fail their check are named too, after the figures.
    manifest = json.loads(files["manifest.json"])
    manifest["familiarity"] = {"means": [[1.0]]}
    (tmp_path / "edited.zip").write_bytes(
        rezip({**files, "manifest.json": json.dumps(manifest).encode()})
    )
    edited = run_in_process(
        capsys, "models", "import", str(tmp_path / "edited.zip"), "--name", "e", "--json"
    )
    assert edited.returncode == 0, edited.stderr
    warning = json.loads(edited.stdout)["warning"]
    assert warning == (
        "Its bundle carried validation figures (validation.json) that failed their check (they "
        "were signed for another manifest than this bundle's); they were not kept. Not kept "
        "from its bundle: its familiarity reference (familiarity in manifest.json), because its "
        "numbers are missing, malformed or out of bounds; so its verdicts carry no typicality, "
        "and no caution for a clip unlike its training audio."
    )
    assert f"warning: {warning}" in edited.stderr
    # Once stored, its summaries name the part left out too, briefly, as well as the figures.
    shown = run_in_process(capsys, "models", "show", "e")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert warning.split(" Not kept")[0] in " ".join(lines)
    assert (
        "  Familiarity reference not kept from its bundle (its card says why: "
        "`fakevoice models export --card`)"
    ) in lines
    assert "not kept from its bundle" not in run_in_process(capsys, "models", "show", "g").stdout
    stored = services.find_model(services.cli_actor(), "e")
    assert model_summary(stored).endswith(
        "no validation figures (those of its bundle failed their check and were not kept) · "
        "probabilities uncalibrated · familiarity reference not kept from its bundle."
    )


def test_values_cleared_from_a_calibration_stay_said_of_the_uploaded_bundle() -> None:
    """A copy made here keeps the words for a calibration's cleared values, said of the bundle
    that was uploaded, until it holds a calibration of its own."""
    uploaded = {"eer": 0.1, CLEARED_VALUES: {"calibration": ["split", "ece_before"]}}
    (said,) = dropped_parts_text(uploaded)
    assert said == (
        "Changed from its bundle: its calibration (calibration in manifest.json) is kept, but "
        "not its split (neither valid nor all) or its fit figure ece_before (out of range: an "
        "ECE outside 0 to 1, a negative NLL); they were cleared."
    )
    copy = copied_metrics(uploaded, 7)
    assert copy[CLEARED_VALUES] == uploaded[CLEARED_VALUES] and copy[DROPPED_FROM] == 7
    assert dropped_parts_text(copy) == [
        said.replace("from its bundle", "from the uploaded bundle of model 7")
    ]
    calibrated = copied_metrics(uploaded, 7, renewed={"calibration"})
    assert calibrated == {"eer": 0.1} and dropped_parts_text(calibrated) == []
