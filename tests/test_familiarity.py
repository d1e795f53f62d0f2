"""How familiar a clip is to a model (fakevoice.metrics.familiarity): the reference's known
behaviour on Gaussian features, its manifest form, the features it reads from every kind of
network, and a trained model's verdicts with and without the caution."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import speechlike, tone
from test_training import make_tiny_dataset, quick_spec

from fakevoice.audio import load_audio
from fakevoice.cautions import familiarity_cautions
from fakevoice.inference import Detector
from fakevoice.metrics.familiarity import (
    MIN_ITEMS,
    UNFAMILIAR,
    Familiarity,
    _folds,
    captured_features,
    fit_familiarity,
    logit_layer,
)
from fakevoice.models.registry import get_arch
from fakevoice.training import train
from fakevoice.training_callbacks import MemorySink

DIMS = 48


def gaussian(rng: np.random.Generator, n: int, label: int, mixing: np.ndarray) -> np.ndarray:
    """Correlated Gaussian features of class ``label`` (the classes differ along one axis)."""
    x = rng.standard_normal((n, DIMS)) @ mixing
    x[:, 0] += 4.0 * label
    return x


@pytest.fixture(scope="module")
def world() -> tuple[Familiarity, np.random.Generator, np.ndarray]:
    rng = np.random.default_rng(7)
    mixing = rng.standard_normal((DIMS, DIMS)) / 3
    x = np.vstack([gaussian(rng, 300, 0, mixing), gaussian(rng, 300, 1, mixing)])
    y = np.repeat([0, 1], 300)
    reference = fit_familiarity(x, y, np.repeat(np.arange(150), 4))
    assert reference is not None
    return reference, rng, mixing


def test_new_items_like_the_validation_ones_are_spread_evenly(world) -> None:
    reference, rng, mixing = world
    x = np.vstack([gaussian(rng, 1000, 0, mixing), gaussian(rng, 1000, 1, mixing)])
    typicality = reference.typicality(reference.distances(x))
    # Out-of-fold percentiles: about uniform, about 1 % under the caution's level.
    assert 0.4 < np.median(typicality) < 0.6
    assert np.mean(typicality < UNFAMILIAR) < 0.03
    assert np.mean(typicality < 0.1) == pytest.approx(0.1, abs=0.04)


@pytest.mark.parametrize(("items", "dims"), [(100, 512), (120, 256)])
def test_the_spread_holds_with_about_as_many_items_as_features(items: int, dims: int) -> None:
    """A fastai head reads 512 features and a run may have 100 validation items: new items like
    them must still spread evenly (a reference fitted on all the items would see them closer
    than the held-out ones it was judged against)."""
    rng = np.random.default_rng(3)
    mixing = rng.standard_normal((dims, dims)) / np.sqrt(dims)

    def draw(n: int, label: int) -> np.ndarray:
        x = rng.standard_normal((n, dims)) @ mixing
        x[:, 0] += 3.0 * label
        return x

    x = np.vstack([draw(items // 2, 0), draw(items // 2, 1)])
    reference = fit_familiarity(x, np.repeat([0, 1], items // 2), np.arange(items) // 2)
    assert reference is not None
    new = np.vstack([draw(1000, 0), draw(1000, 1)])
    typicality = reference.typicality(reference.distances(new))
    assert 0.35 < np.median(typicality) < 0.65
    assert 0.03 < np.mean(typicality < 0.1) < 0.17


def test_items_unlike_every_class_are_unfamiliar(world) -> None:
    reference, rng, mixing = world
    louder = 3.0 * gaussian(rng, 200, 0, mixing)
    shifted = gaussian(rng, 200, 1, mixing) + 2.0 * rng.standard_normal(DIMS)
    between = gaussian(rng, 200, 0, mixing)
    between[:, 0] += 2.0  # half way between the classes: near neither, but not far
    assert np.all(reference.typicality(reference.distances(louder)) < UNFAMILIAR)
    assert np.mean(reference.typicality(reference.distances(shifted)) < UNFAMILIAR) > 0.9
    assert np.mean(reference.typicality(reference.distances(between)) < UNFAMILIAR) < 0.2


def test_the_manifest_form_keeps_the_distances(world) -> None:
    reference, rng, mixing = world
    kept = json.loads(json.dumps(reference.to_dict()))
    again = Familiarity.from_dict(kept, n_classes=2)
    assert again is not None and again.items == 600 and again.dims == DIMS
    x = gaussian(rng, 50, 1, mixing)
    np.testing.assert_allclose(again.distances(x), reference.distances(x), rtol=1e-4)
    with pytest.raises(ValueError, match="dimensions"):
        again.distances(x[:, :10])


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("components"),
        lambda d: d.update(means=[[1.0, 2.0]]),  # another number of features
        lambda d: d.update(residual=0.0),
        lambda d: d.update(reference=d["reference"][::-1]),  # not increasing
        lambda d: d.update(variances=[float("nan")] * len(d["variances"])),
        lambda d: d.update(items="many"),
    ],
)
def test_a_damaged_reference_is_ignored(world, damage) -> None:
    kept = world[0].to_dict()
    damage(kept)
    assert Familiarity.from_dict(kept, n_classes=2) is None
    assert Familiarity.from_dict(None) is None
    assert Familiarity.from_dict(world[0].to_dict(), n_classes=1) is None  # more means than classes


def test_too_few_items_or_one_class_give_no_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((MIN_ITEMS - 1, 8))
    assert fit_familiarity(x, np.arange(len(x)) % 2) is None
    x = rng.standard_normal((200, 8))
    assert fit_familiarity(x, np.zeros(200, dtype=int)) is None
    assert fit_familiarity(np.ones((200, 8)), np.arange(200) % 2) is None  # never varies
    # One utterance (nothing to hold out), or a feature that is not a number: none, no error.
    assert fit_familiarity(x, np.arange(200) % 2, np.zeros(200)) is None
    x[3, 2] = np.nan
    assert fit_familiarity(x, np.arange(200) % 2) is None


def test_an_utterance_stays_in_one_fold() -> None:
    groups = np.repeat([f"u{i}" for i in range(40)], 5)
    folds = _folds(len(groups), groups, 5, seed=3)
    for name in set(groups):
        assert len(set(folds[groups == name])) == 1
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]


def test_the_caution_names_the_share_and_the_items() -> None:
    assert familiarity_cautions(0.5, 300) == []
    assert familiarity_cautions(UNFAMILIAR, 300) == []
    (caution,) = familiarity_cautions(0.0004, 3000)
    assert "unlike the audio this model learned from" in caution
    assert "99.96% of the 3000 clips it was validated on" in caution
    (caution,) = familiarity_cautions(0.0, 300)
    assert "than any of the 300 clips" in caution


@pytest.mark.parametrize("arch", ["specnet", "resnet18", "aasist-l"])
def test_the_features_are_what_the_class_scores_are_read_from(arch: str) -> None:
    """For every kind of network (our CNN, fastai's body and head, AASIST), the captured
    features through the last linear layer give the model's logits."""
    entry = get_arch(arch)
    if entry.fastai_vision:
        from fakevoice.models.learners import vision_model

        model = vision_model(arch, 3)
    else:
        model = entry.build(3)[0]
    model.eval()
    batch = torch.randn(2, *((3, 64, 64) if entry.input_kind == "image" else (16000,)))
    with torch.inference_mode(), captured_features(model) as features:
        logits = model(batch)
    layer = logit_layer(model)
    assert layer is not None and len(features) == 1
    assert features[0].shape == (2, layer.in_features)
    with torch.inference_mode():
        torch.testing.assert_close(layer(features[0]), logits, rtol=1e-4, atol=1e-5)
    with torch.inference_mode():
        model(batch)
    assert len(features) == 1  # the hook is gone after the block


# --- a trained model -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A specnet trained for 3 epochs on 144 synthetic clips (1.5 s), 40 % of the utterances
    held out: enough validation items for a reference."""
    root = tmp_path_factory.mktemp("familiar")
    make_tiny_dataset(root / "tiny", speakers=("spk_a", "spk_b", "spk_c", "spk_d"),
                      utterances_per_speaker=12)  # fmt: skip
    run = root / "run"
    spec = quick_spec(epochs=3, batch_size=16, clip_samples=24000, valid_fraction=0.4)
    result = train(spec, run, MemorySink(), root)
    assert result.status == "succeeded"
    assert result.metrics["familiarity_items"] == result.metrics["valid_items"] >= MIN_ITEMS
    return run


def test_a_trained_model_keeps_its_reference_and_judges_clips(trained: Path) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["familiarity"]["items"] >= MIN_ITEMS
    detector = Detector.from_bundle(trained)
    assert detector.familiarity is not None
    like = [detector.predict_samples(speechlike(1.5, seed=s), 16000) for s in (9001, 9002)]
    assert all(v.typicality is not None and v.typicality > UNFAMILIAR for v in like)
    noise = 0.3 * np.random.default_rng(0).standard_normal(24000).astype(np.float32)
    for samples in (tone(440, 1.5), noise):
        verdict = detector.predict_samples(samples, 16000)
        assert verdict.typicality is not None and verdict.typicality < UNFAMILIAR


def test_the_caution_reaches_the_verdict_of_a_file(trained: Path, tmp_path: Path) -> None:
    import soundfile as sf

    detector = Detector.from_bundle(trained)
    sf.write(tmp_path / "tone.wav", tone(440, 1.5), 16000)
    sf.write(tmp_path / "voice.wav", speechlike(1.5, seed=9003), 16000)
    odd = detector.predict(load_audio(tmp_path / "tone.wav", 16000))
    assert any("unlike the audio this model learned from" in c for c in odd.cautions)
    usual = detector.predict(load_audio(tmp_path / "voice.wav", 16000))
    assert not any("unlike the audio" in c for c in usual.cautions)
    assert usual.to_dict()["typicality"] == usual.typicality


def test_a_model_without_a_reference_says_nothing(trained: Path, tmp_path: Path) -> None:
    """Older and imported models have no reference: no typicality, no caution."""
    shutil.copytree(trained, tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text())
    del manifest["familiarity"]
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest))
    verdict = Detector.from_bundle(tmp_path / "old").predict_samples(tone(440, 1.5), 16000)
    assert verdict.typicality is None


def test_an_image_models_reference_from_tiled_short_clips_is_not_used(
    trained: Path, tmp_path: Path
) -> None:
    """References made before short clips were rendered whole (no ``short_clips``) measured
    another picture of such clips: an image model's detector leaves them out."""
    shutil.copytree(trained, tmp_path / "older")
    manifest = json.loads((tmp_path / "older" / "manifest.json").read_text())
    assert manifest["familiarity"].pop("short_clips") == "whole"
    (tmp_path / "older" / "manifest.json").write_text(json.dumps(manifest))
    assert Detector.from_bundle(tmp_path / "older").familiarity is None
    assert Detector.from_bundle(trained).familiarity is not None


def test_a_tests_unfamiliar_shares_and_their_words() -> None:
    """The share of a test's human and machine items the model finds unlike its own data."""
    from fakevoice.services.evaluation import unfamiliar_shares, unfamiliar_words

    typicality = [0.5, 0.0005, 0.0, 0.3, 0.2, 0.0002]
    human = [True, True, True, True, False, False]
    shares = unfamiliar_shares(typicality, human)
    assert shares == {
        "below": UNFAMILIAR,
        "human": 0.5,
        "human_items": 4,
        "machine": 0.5,
        "machine_items": 2,
    }
    words = unfamiliar_words(shares)
    assert words is not None and "50 % of the 4 human items and 50 % of the 2 machine" in words
    assert unfamiliar_shares([0.5, None], [True, False]) is None  # a model without a reference
    assert unfamiliar_words(None) is None
    only_human = unfamiliar_shares([0.5, 0.0001], [True, True])
    assert only_human is not None and only_human["machine"] is None
    assert "machine" not in (unfamiliar_words(only_human) or "")


def test_a_test_of_a_familiar_model_on_new_clips_of_its_kind(
    trained: Path, isolated_settings: Path
) -> None:
    """New clips of the kind it learned from (other voices, the same generators) are mostly
    familiar to it; the report keeps the shares and the items behind them."""
    from test_uploads import make_user, register_run_model

    from fakevoice.services.evaluation import evaluate_on_dataset

    make_tiny_dataset(
        isolated_settings / "datasets" / "fresh",
        speakers=("new_a", "new_b"),
        utterances_per_speaker=4,
        first_seed=50_000,
    )
    alice = make_user("alice")
    model = register_run_model(alice, trained, "familiar")
    report = evaluate_on_dataset(alice, model.id, "fresh", "all").report
    shares = report["unfamiliar"]
    assert (shares["human_items"], shares["machine_items"]) == (8, 16) and report["n"] == 24
    # A reference of a few dozen validation items is coarse: at most a quarter, not about none.
    assert shares["human"] <= 0.25 and shares["machine"] <= 0.25


def test_the_evaluate_page_shows_the_typicality_and_the_caution(
    trained: Path, isolated_settings: Path
) -> None:
    """A fraud analyst sees how familiar the clip is to the model, beside the verdict."""
    import io

    import soundfile as sf
    from test_page_evaluate import assert_no_exception, evaluate_page, upload_clip
    from test_uploads import make_user, register_run_model

    alice = make_user("alice")
    register_run_model(alice, trained, "familiar")
    buffer = io.BytesIO()
    sf.write(buffer, tone(440, 1.5), 16000, format="WAV")
    at = upload_clip(evaluate_page(alice), "tone.wav", buffer.getvalue())
    assert_no_exception(at)
    assert any(re.match(r"Typicality (under 0\.0001|0\.000\d):", c.value) for c in at.caption)
    assert any("unlike the audio this model learned from" in w.value for w in at.warning)


def test_the_history_keeps_how_familiar_each_clip_was(
    trained: Path, isolated_settings: Path
) -> None:
    """An analyst reading the history later sees each verdict's typicality: in the record, the
    API's entry, the CSV and the report (none for a model without a reference)."""
    import csv
    import io

    import soundfile as sf
    from test_uploads import make_user, register_run_model

    from fakevoice import services
    from fakevoice.api.history import AnalysisOut
    from fakevoice.services import reports
    from fakevoice.services.history import analyses_csv

    alice = make_user("alice")
    familiar = register_run_model(alice, trained, "familiar")
    buffer = io.BytesIO()
    sf.write(buffer, tone(440, 1.5), 16000, format="WAV")
    scored = services.score_clip(alice, familiar.id, buffer.getvalue(), file_name="tone.wav")
    assert scored.verdict.typicality is not None and scored.verdict.typicality < UNFAMILIAR
    kept = services.get_verdict(alice, scored.analysis.id)
    assert kept.typicality == pytest.approx(scored.verdict.typicality)
    assert AnalysisOut.of(kept).typicality == kept.typicality
    report = reports.history_report(alice, kept.id)
    assert report["verdict"]["typicality"] == kept.typicality
    assert "**Typicality** under 0.0001" in reports.report_markdown(report) or (
        "**Typicality** 0.000" in reports.report_markdown(report)
    )

    plain_dir = isolated_settings / "plain"
    shutil.copytree(trained, plain_dir)
    manifest = json.loads((plain_dir / "manifest.json").read_text())
    del manifest["familiarity"]
    (plain_dir / "manifest.json").write_text(json.dumps(manifest))
    plain = register_run_model(alice, plain_dir, "plain")
    other = services.score_clip(alice, plain.id, buffer.getvalue(), file_name="tone.wav")
    assert services.get_verdict(alice, other.analysis.id).typicality is None
    assert "Typicality" not in reports.report_markdown(
        reports.history_report(alice, other.analysis.id)
    )

    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(analyses_csv(alice)))}
    assert float(rows[str(kept.id)]["typicality"]) == pytest.approx(kept.typicality, abs=1e-4)
    assert rows[str(other.analysis.id)]["typicality"] == ""
