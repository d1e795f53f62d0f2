"""The HTTP API over real HTTP: a uvicorn server on a free loopback port, a real SQLite file,
real safe-bundle models in the store (a specnet, and the official AASIST-L when it is present).

The helpers at the top are shared with tests/test_api_fuzz.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import uvicorn
from conftest import REPO, SHARED, speechlike, zip_of

from fakevoice import services, store
from fakevoice.api import create_app
from fakevoice.api.app import JSON_BODY_LIMIT
from fakevoice.api.auth import REVOKED, TOKEN_HINT
from fakevoice.artefacts import (
    BUNDLE_MANIFEST,
    BUNDLE_WEIGHTS,
    MANIFEST_FORMAT,
    save_bundle,
    sha256_file,
)
from fakevoice.errors import PermissionDeniedError
from fakevoice.features import FeatureSpec
from fakevoice.models.registry import build_inference_model
from fakevoice.preprocess import window_starts
from fakevoice.services import tokens
from fakevoice.settings import Settings, get_settings
from fakevoice.store.records import Actor, ModelRecord

AASIST_L = SHARED / "aasist" / "AASIST-L.pth"
SPECNET_CLASSES = ["bonafide", "griffinlim", "world"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(base_url: str, seconds: float = 120.0, process: Any = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the API process exited with code {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API at {base_url} did not come up in {seconds} s")


@contextmanager
def thread_server(settings: Settings) -> Iterator[str]:
    """The app of these settings under uvicorn in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, 60.0)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def process_server(
    env: dict[str, str], log: Path, *args: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``fakevoice api [args]`` in its own process (the real command), its output in ``log``;
    yields the base URL and the process."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fakevoice.cli",
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *args,
            ],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, 180.0, process)
        yield base_url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def make_user(name: str, *, is_admin: bool = False) -> Actor:
    with store.session_scope() as session:
        return store.create_user(session, name, is_admin=is_admin).actor


def specnet_manifest(clip_samples: int = 16000) -> dict[str, Any]:
    features = FeatureSpec(image_height=64, image_width=64)
    return {
        "format": MANIFEST_FORMAT,
        "arch": "specnet",
        "task": "multiclass",
        "class_names": SPECNET_CLASSES,
        "input_kind": "image",
        "feature_spec": features.to_dict(),
        "normalize": "imagenet",
        "sample_rate": 16000,
        "clip_samples": clip_samples,
    }


def store_specnet(
    actor: Actor, name: str, *, public: bool = False, clip_samples: int = 16000
) -> ModelRecord:
    """A freshly initialised specnet saved as a safe bundle and registered as the actor's model."""
    torch.manual_seed(0)
    manifest = specnet_manifest(clip_samples)
    folder = get_settings().data_dir / "models" / f"{actor.user_id}-{name}"
    save_bundle(build_inference_model(manifest), manifest, folder)
    files = {n: sha256_file(folder / n) for n in (BUNDLE_WEIGHTS, BUNDLE_MANIFEST)}
    with store.session_scope() as session:
        return store.add_model(
            session,
            actor,
            name=name,
            arch="specnet",
            class_names=SPECNET_CLASSES,
            sample_rate=16000,
            clip_samples=clip_samples,
            path=str(folder),
            files=files,
            feature_spec=manifest["feature_spec"],
            is_public=public,
        )


def store_aasist_l(actor: Actor, name: str = "aasist-l", *, public: bool = True) -> ModelRecord:
    """The official AASIST-L checkpoint imported through the service (caller checks it exists)."""
    model = services.import_aasist(actor, AASIST_L, name)
    if public:
        with store.session_scope() as session:
            model = store.set_public(session, actor, model.id, True)
    return model


def wav_bytes(seconds: float = 1.5, sample_rate: int = 16000, seed: int = 0) -> bytes:
    samples = speechlike(seconds, sample_rate, seed=seed)
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def noise_wav(seconds: float, sample_rate: int = 16000, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    samples = (0.1 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def api_env(root: Path) -> dict[str, str]:
    """Environment of an isolated workbench under ``root`` with small API limits for tests."""
    return {
        "FAKEVOICE_DATA_DIR": str(root / "data"),
        "FAKEVOICE_DATASET_DIR": str(root / "datasets"),
        "FAKEVOICE_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
        "FAKEVOICE_MAX_AUDIO_SECONDS": "30",
        "FAKEVOICE_API_MAX_REQUEST_BYTES": str(6 * 1024 * 1024),
        "FAKEVOICE_BATCH_MAX_FILES": "6",
        "FAKEVOICE_BATCH_MAX_TOTAL_BYTES": str(4 * 1024 * 1024),
        "FAKEVOICE_BATCH_MAX_ZIP_RATIO": "50",
        "FAKEVOICE_MAX_CONCURRENT_RUNS_PER_USER": "4",  # a queued run, a build and a test
    }


# --- the served workbench ------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """A running API with two users, their tokens, models and a run."""

    url: str
    alice: Actor
    bob: Actor
    alice_token: str
    bob_token: str
    private: ModelRecord  # alice's, private
    public: ModelRecord  # alice's, shared with everyone
    run_id: int  # alice's


@contextmanager
def isolated_workbench(root: Path, **extra: str) -> Iterator[None]:
    """Settings pointing at ``root`` (module-scoped, unlike conftest's isolated_settings)."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**api_env(root), **extra}.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        services.ensure_database()
        try:
            yield
        finally:
            store.dispose_engines()
            get_settings.cache_clear()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with isolated_workbench(tmp_path_factory.mktemp("api")):
        alice, bob = make_user("alice"), make_user("bob")
        _, alice_token = tokens.create_token(alice, "tests")
        _, bob_token = tokens.create_token(bob, "tests")
        private = store_specnet(alice, "alice-private")
        public = store_specnet(alice, "shared", public=True)
        with store.session_scope() as session:
            run = store.create_run(session, alice, "first run", {"arch": "specnet", "epochs": 3})
        with thread_server(get_settings()) as url:
            yield World(url, alice, bob, alice_token, bob_token, private, public, run.id)


def predict(
    world: World,
    data: bytes,
    *,
    model: str | int | None = None,
    token: str | None = None,
    name: str = "clip.wav",
    **fields: Any,
) -> httpx.Response:
    form = {"model": str(world.private.id if model is None else model), **fields}
    return httpx.post(
        f"{world.url}/v1/predict",
        files={"file": (name, data, "application/octet-stream")},
        data=form,
        headers=auth(token or world.alice_token),
        timeout=120,
    )


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and len(message) > 10 and "Traceback" not in message
    return message


# --- happy paths ---------------------------------------------------------------------------------


def test_health_reports_database_and_model_cache(world: World) -> None:
    response = httpx.get(f"{world.url}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    head = store.head_revision()
    assert body["database"] == {"ok": True, "revision": head, "head": head, "schema_ok": True}
    assert body["models"]["capacity"] == get_settings().model_cache_size
    assert body["storage"]["ok"] is True and body["storage"]["free_mib"] > 64
    assert body["scoring"]["threads"] == len(os.sched_getaffinity(0))
    # The job workers alive, by backend: a worker's report counts until it stops.
    assert body["workers"] == {"local": 0, "ray": 0}
    with store.session_scope() as session:
        store.worker_seen(session, "ray-health-1", backend="ray", concurrency=1, running=0)
    assert httpx.get(f"{world.url}/health").json()["workers"] == {"local": 0, "ray": 1}
    with store.session_scope() as session:
        store.worker_stopped(session, "ray-health-1")
    assert httpx.get(f"{world.url}/health").json()["workers"] == {"local": 0, "ray": 0}


def test_requests_beyond_the_scoring_threads_wait_their_turn(world: World) -> None:
    """With one scoring thread, concurrent verdicts are scored one at a time and all succeed,
    while ``/health`` stays answerable and shows the queue."""
    settings = get_settings().model_copy(update={"api_scoring_threads": 1})
    audio = wav_bytes(20.0, seed=3)  # 39 one-second windows: long enough to queue behind
    seen: list[dict[str, int]] = []
    with thread_server(settings) as url:
        assert httpx.get(f"{url}/health").json()["scoring"] == {
            "threads": 1,
            "busy": 0,
            "waiting": 0,
        }
        with ThreadPoolExecutor(4) as pool:
            futures = [
                pool.submit(
                    httpx.post,
                    f"{url}/v1/predict",
                    files={"file": ("clip.wav", audio, "audio/wav")},
                    data={"model": str(world.private.id)},
                    headers=auth(world.alice_token),
                    timeout=120,
                )
                for _ in range(4)
            ]
            while not all(f.done() for f in futures):
                seen.append(httpx.get(f"{url}/health", timeout=30).json()["scoring"])
                time.sleep(0.005)
            responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert max(s["busy"] for s in seen) == 1
    assert max(s["waiting"] for s in seen) >= 1


def test_predict_returns_a_verdict_and_logs_it(world: World) -> None:
    seconds = 3.3
    audio = wav_bytes(seconds, 22050, seed=1)
    response = predict(world, audio, name="call.wav", threshold="0.55")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] in {"human", "machine-generated", "inconclusive"}
    assert set(body["probabilities"]) == set(SPECNET_CLASSES)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["p_human"] == pytest.approx(body["probabilities"]["bonafide"])
    assert body["threshold"] == 0.55
    assert body["duration"] == pytest.approx(seconds, abs=1e-3)
    assert body["sample_rate"] == 22050
    # 1-second windows every half second, the last aligned to the end.
    starts = [w["start"] for w in body["windows"]]
    assert starts == [pytest.approx(s / 16000) for s in window_starts(int(seconds * 16000), 16000)]
    assert body["model"] == {
        "id": world.private.id,
        "name": "alice-private",
        "arch": "specnet",
        "version": world.private.files[BUNDLE_WEIGHTS][:12],
    }
    assert body["elapsed_ms"] > 0
    if body["verdict"] == "machine-generated":
        assert body["generator"] in {"griffinlim", "world"}
    history = services.list_analyses(world.alice, limit=50)
    logged = next(a for a in history if a.id == body["analysis_id"])
    assert logged.source == "api" and logged.file_name == "call.wav"
    assert logged.model_id == world.private.id and logged.verdict == body["verdict"]
    # Which file the verdict is about: the hash of the bytes sent, in the answer and the history.
    assert body["file_sha256"] == hashlib.sha256(audio).hexdigest() == logged.file_sha256
    # Nothing about the clip (wide band, longer than the window, not clipped); the model keeps
    # no validation EER and nobody tested it here, so how often it errs is unknown.
    (unmeasured,) = body["cautions"]
    assert unmeasured.startswith(
        "This model's error rate is unknown: it has no validation EER measured on this server"
    )
    assert logged.cautions == body["cautions"]


def test_predict_names_the_reasons_to_trust_a_verdict_less(world: World) -> None:
    phone_call = predict(world, wav_bytes(0.8, 8000, seed=2), name="call.wav")
    assert phone_call.status_code == 200, phone_call.text
    cautions = phone_call.json()["cautions"]
    assert len(cautions) == 3, cautions
    assert cautions[0].startswith("The file was recorded at 8 kHz, so it holds nothing above 4 kHz")
    assert "shorter than the model's window (1.00 s)" in cautions[1]
    assert cautions[2].startswith("This model's error rate is unknown")  # the model's own
    history = httpx.get(f"{world.url}/v1/analyses", headers=auth(world.alice_token), timeout=30)
    logged = next(a for a in history.json()["items"] if a["id"] == phone_call.json()["analysis_id"])
    assert logged["cautions"] == cautions  # kept with the verdict
    clips = [("a.wav", wav_bytes(0.8, 8000)), ("b.wav", wav_bytes(2.0))]
    batch = predict_batch(world, clips, token=world.alice_token)  # Bob's history stays his own
    assert batch.status_code == 200, batch.text
    by_name = {r["name"]: r["cautions"] for r in batch.json()["results"]}
    assert len(by_name["a.wav"]) == 3 and by_name["b.wav"] == [cautions[2]]


def test_predict_finds_the_model_by_name_and_public_models_for_others(world: World) -> None:
    by_name = predict(world, wav_bytes(1.0), model="alice-private")
    assert by_name.status_code == 200 and by_name.json()["model"]["id"] == world.private.id
    shared = predict(world, wav_bytes(1.0), model="shared", token=world.bob_token)
    assert shared.status_code == 200, shared.text
    assert shared.json()["model"]["id"] == world.public.id
    # Bob's verdict is in Bob's history, not in Alice's.
    bob_history = services.list_analyses(world.bob)
    assert [a.id for a in bob_history] == [shared.json()["analysis_id"]]


@pytest.mark.skipif(not AASIST_L.is_file(), reason="official AASIST-L checkpoint not present")
def test_predict_with_the_official_aasist_l(world: World) -> None:
    model = store_aasist_l(world.alice)
    response = predict(world, wav_bytes(6.0, seed=4), model="aasist-l", token=world.bob_token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["probabilities"]) == {"spoof", "bonafide"}
    assert body["model"]["id"] == model.id and body["model"]["arch"] == "aasist-l"
    assert len(body["windows"]) == len(window_starts(6 * 16000, 64600)) == 2
    assert body["generator"] is None  # a binary model names no generator


def test_explain_says_where_the_decision_is_sensitive_and_logs_nothing(world: World) -> None:
    logged = services.count_analyses(world.alice)
    clip = wav_bytes(2.5, seed=9)  # 1 s windows every 0.5 s: 4 of them

    def explain(token: str, **fields: str) -> httpx.Response:
        return httpx.post(
            f"{world.url}/v1/explain",
            files={"file": ("clip.wav", clip, "audio/wav")},
            data={"model": str(world.private.id), **fields},
            headers=auth(token),
            timeout=120,
        )

    response = explain(world.alice_token)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = services.explain_clip(world.alice, world.private.id, clip).explanation
    assert body["model"]["id"] == world.private.id
    assert (body["start"], body["end"]) == (
        pytest.approx(expected.start),
        pytest.approx(expected.end),
    )
    assert [b["share"] for b in body["bands"]] == pytest.approx([b.share for b in expected.bands])
    assert body["bands"][0]["unit"] == "Hz" and len(body["segments"]) == len(expected.segments)
    heatmap = np.array(body["heatmap"])
    assert heatmap.shape == (64, 64) and 0 <= heatmap.min() and heatmap.max() <= 1
    assert services.count_analyses(world.alice) == logged

    later = explain(world.alice_token, window="3")
    assert later.status_code == 200 and later.json()["start"] == pytest.approx(1.5)
    assert later.json()["analysis_id"] is None
    beyond = explain(world.alice_token, window="4")
    assert "has 4 window(s)" in assert_error(beyond, 422, "invalid_spec")
    assert_error(explain(world.bob_token), 404, "not_found")


def test_an_explanation_is_kept_with_the_verdict_it_explains(world: World) -> None:
    clip = wav_bytes(2.5, seed=11)
    made = predict(world, clip, model=str(world.private.id), token=world.alice_token)
    assert made.status_code == 200, made.text
    analysis_id = made.json()["analysis_id"]
    detail = f"{world.url}/v1/analyses/{analysis_id}"
    alice = auth(world.alice_token)
    assert httpx.get(detail, headers=alice).json()["explanation"] is None

    def explain(data: bytes, token: str, model: int, analysis: int) -> httpx.Response:
        return httpx.post(
            f"{world.url}/v1/explain",
            files={"file": ("clip.wav", data, "audio/wav")},
            data={"model": str(model), "analysis": str(analysis)},
            headers=auth(token),
            timeout=120,
        )

    # Refused before any work: other bytes, another model, someone else's verdict.
    other_bytes = explain(wav_bytes(2.5, seed=12), world.alice_token, world.private.id, analysis_id)
    assert "other bytes" in assert_error(other_bytes, 422, "invalid_spec")
    other_model = explain(clip, world.alice_token, world.public.id, analysis_id)
    assert "another model" in assert_error(other_model, 422, "invalid_spec")
    bobs = explain(clip, world.bob_token, world.public.id, analysis_id)
    assert_error(bobs, 404, "not_found")
    assert httpx.get(detail, headers=alice).json()["explanation"] is None

    kept = explain(clip, world.alice_token, world.private.id, analysis_id)
    assert kept.status_code == 200, kept.text
    answer = kept.json()
    assert answer["analysis_id"] == analysis_id
    stored = httpx.get(detail, headers=alice).json()["explanation"]
    assert stored["bands"] == answer["bands"] and stored["segments"] == answer["segments"]
    assert (stored["start"], stored["end"]) == (answer["start"], answer["end"])
    kept_heat = stored["heatmap"]  # the answer's 64-cell heatmap, kept at 32 cells a side
    assert max(len(kept_heat), len(kept_heat[0])) == 32 and len(answer["heatmap"]) > 32
    listed = httpx.get(f"{world.url}/v1/analyses", headers=alice).json()["items"]
    assert all("explanation" not in item for item in listed)  # lists stay light
    report = httpx.get(f"{detail}/report", params={"format": "markdown"}, headers=alice)
    assert "## Why: where the decision is most sensitive" in report.text
    as_json = httpx.get(f"{detail}/report", params={"format": "json"}, headers=alice).json()
    assert as_json["explanation"]["bands"] == answer["bands"]


def test_models_lists_mine_and_public_only(world: World) -> None:
    mine = httpx.get(f"{world.url}/v1/models", headers=auth(world.alice_token)).json()
    theirs = httpx.get(f"{world.url}/v1/models", headers=auth(world.bob_token)).json()
    alice_ids = {m["id"] for m in mine}
    assert {world.private.id, world.public.id} <= alice_ids
    assert world.private.id not in {m["id"] for m in theirs}
    shared = next(m for m in theirs if m["id"] == world.public.id)
    assert shared["public"] and not shared["mine"] and shared["classes"] == SPECNET_CLASSES
    assert shared["clip_seconds"] == 1.0 and shared["sample_rate"] == 16000
    one = httpx.get(f"{world.url}/v1/models/{world.private.id}", headers=auth(world.alice_token))
    assert one.status_code == 200 and one.json()["mine"] is True


def test_runs_and_history_are_the_owners(world: World) -> None:
    run = httpx.get(f"{world.url}/v1/runs/{world.run_id}", headers=auth(world.alice_token))
    assert run.status_code == 200
    assert run.json()["status"] == "queued" and run.json()["total_epochs"] == 3
    assert run.json()["arch"] == "specnet" and run.json()["epochs"] == []
    assert run.json()["kind"] == "train"
    # A dataset build is a job too: its kind says so, and "dataset" names what it builds.
    with store.session_scope() as session:
        build = store.create_run(
            session, world.alice, "dataset calls", {"name": "calls"}, kind="dataset"
        )
    job = httpx.get(f"{world.url}/v1/runs/{build.id}", headers=auth(world.alice_token)).json()
    assert (job["kind"], job["dataset"], job["arch"]) == ("dataset", "calls", None)
    assert (
        httpx.get(f"{world.url}/v1/runs/{build.id}", headers=auth(world.bob_token)).status_code
        == 404
    )
    for _ in range(2):
        assert predict(world, wav_bytes(1.0)).status_code == 200
    first = httpx.get(
        f"{world.url}/v1/analyses", params={"limit": 1}, headers=auth(world.alice_token)
    ).json()
    assert len(first["items"]) == 1 and first["next_offset"] == 1
    second = httpx.get(
        f"{world.url}/v1/analyses",
        params={"limit": 1, "offset": 1},
        headers=auth(world.alice_token),
    ).json()
    assert second["items"][0]["id"] < first["items"][0]["id"]  # newest first
    everything = httpx.get(
        f"{world.url}/v1/analyses", params={"limit": 500}, headers=auth(world.alice_token)
    ).json()
    assert everything["next_offset"] is None
    assert all(len(a["file_sha256"]) == 64 for a in everything["items"])
    assert {a["id"] for a in everything["items"]} == {
        a.id for a in services.list_analyses(world.alice, limit=500)
    }


def test_history_is_searched_by_name_or_hash_and_exported_as_csv(world: World) -> None:
    clip = wav_bytes(1.2, seed=7)
    made = predict(world, clip, name="Interview 42.wav")
    assert made.status_code == 200, made.text
    verdict = made.json()["verdict"]
    digest = hashlib.sha256(clip).hexdigest()
    url, headers = f"{world.url}/v1/analyses", auth(world.alice_token)

    def search(**params: Any) -> dict[str, Any]:
        response = httpx.get(url, params=params, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return dict(response.json())

    by_name = search(q="interview 4")
    assert [a["file_name"] for a in by_name["items"]] == ["Interview 42.wav"]
    assert by_name["total"] == 1 and by_name["next_offset"] is None
    assert [a["file_sha256"] for a in search(q=digest[:12])["items"]] == [digest]
    others = [v for v in ("human", "machine-generated", "inconclusive") if v != verdict]
    assert search(q="interview", verdict=others)["total"] == 0
    assert search(q="interview", verdict=[verdict], model=world.private.id)["total"] == 1
    assert search(q="interview", since="2000-01-01T00:00:00Z", until="2001-01-01")["total"] == 0
    everything = search(limit=1)
    assert everything["total"] >= 1 and len(everything["items"]) == 1

    exported = httpx.get(url, params={"q": digest[:12], "format": "csv"}, headers=headers)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    (row,) = list(csv.DictReader(io.StringIO(exported.text)))
    assert row["file"] == "Interview 42.wav" and row["file_sha256"] == digest
    assert row["verdict"] == verdict and row["model"] == world.private.name
    # Nobody else finds it, and bad filters are refused in words.
    bob = httpx.get(url, params={"q": digest[:12]}, headers=auth(world.bob_token)).json()
    assert bob["total"] == 0 and bob["items"] == []
    wrong = assert_error(
        httpx.get(url, params={"verdict": "fake"}, headers=headers), 422, "invalid_request"
    )
    assert "The field 'verdict[0]' is not valid" in wrong  # not 'verdict.0'
    message = assert_error(
        httpx.get(url, params={"since": "2026-01-02", "until": "2026-01-01"}, headers=headers),
        422,
        "invalid_spec",
    )
    assert "must come after" in message

    # Its owner records what the clip really was; a field left out stays as it is.
    analysis_id = made.json()["analysis_id"]
    labelled = httpx.patch(
        f"{url}/{analysis_id}", json={"outcome": "human", "note": "case 7"}, headers=headers
    )
    assert labelled.status_code == 200, labelled.text
    assert (labelled.json()["outcome"], labelled.json()["note"]) == ("human", "case 7")
    kept = httpx.patch(f"{url}/{analysis_id}", json={"note": "case 7b"}, headers=headers).json()
    assert (kept["outcome"], kept["note"]) == ("human", "case 7b")
    assert [a["id"] for a in search(q="CASE 7B", outcome="human")["items"]] == [analysis_id]
    assert search(q="case 7b", outcome="unknown")["total"] == 0
    for body, status, code in [
        ({}, 422, "invalid_spec"),
        ({"outcome": "spoof"}, 422, "invalid_request"),
        ({"verdict": "human"}, 422, "invalid_request"),
    ]:
        assert_error(httpx.patch(f"{url}/{analysis_id}", json=body, headers=headers), status, code)
    refused = httpx.patch(f"{url}/{analysis_id}", json={"note": "x"}, headers=auth(world.bob_token))
    assert_error(refused, 404, "not_found")
    report = httpx.get(f"{url}/{analysis_id}/report", headers=headers)
    assert report.status_code == 200 and report.json()["outcome"]["note"] == "case 7b"
    assert report.json()["file"]["sha256"] == digest
    markdown = httpx.get(
        f"{url}/{analysis_id}/report", params={"format": "markdown"}, headers=headers
    )
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("# Verdict: ") and "- Note: case 7b" in markdown.text
    stranger = httpx.get(f"{url}/{analysis_id}/report", headers=auth(world.bob_token))
    assert_error(stranger, 404, "not_found")

    # The JSON report is signed: the server checks it, and so does anyone with its public key.
    signed = report.json()
    check = f"{world.url}/v1/reports/verify"
    verified = httpx.post(check, json=signed, headers=auth(world.bob_token))
    assert verified.status_code == 200 and verified.json()["valid"] is True, verified.text
    changed = {**signed, "outcome": {"really": "machine-generated", "note": "case 7b"}}
    refused_check = httpx.post(check, json=changed, headers=headers).json()
    assert refused_check["valid"] is False and "changed" in refused_check["message"]
    assert_error(httpx.post(check, json=signed), 401, "unauthorized")
    not_json = httpx.post(
        check,
        content=b"%PDF-1.7 not a report",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert "not valid JSON" in assert_error(not_json, 400, "bad_request")
    published = httpx.get(f"{world.url}/v1/reports/key").json()  # no token needed
    assert published["key_id"] == signed["signature"]["key_id"]
    from fakevoice import signing

    public = signing.load_public_key(published["public_key"].encode())
    assert signing.verify(signed, public).valid and not signing.verify(changed, public).valid

    # One verdict, with the timeline it was made of (lists leave timelines out).
    one = httpx.get(f"{url}/{analysis_id}", headers=headers)
    assert one.status_code == 200, one.text
    assert one.json()["note"] == "case 7b" and one.json()["file_sha256"] == digest
    windows = made.json()["windows"]
    assert [w["start"] for w in one.json()["windows"]] == [
        pytest.approx(w["start"], abs=1e-3) for w in windows
    ]
    assert [w["p_human"] for w in one.json()["windows"]] == [
        pytest.approx(w["p_human"], abs=1e-4) for w in windows
    ]
    assert "windows" not in search(q=digest[:12])["items"][0]
    assert_error(httpx.get(f"{url}/{analysis_id}", headers=auth(world.bob_token)), 404, "not_found")
    assert_error(httpx.get(f"{url}/{10**9}", headers=headers), 404, "not_found")


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when it is absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_metrics_count_requests_by_route_and_verdicts(world: World) -> None:
    before = httpx.get(f"{world.url}/metrics").text
    made = predict(world, wav_bytes(1.0, seed=21))
    assert made.status_code == 200
    verdict = made.json()["verdict"]
    for run_id in (world.run_id, 10**9):  # one route for every id, found or not
        httpx.get(f"{world.url}/v1/runs/{run_id}", headers=auth(world.alice_token))
    httpx.get(f"{world.url}/no/such/path")
    # Refused for its declared size before routing: still counted under its route.
    head = (
        "POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data\r\n"
        f"Content-Length: {10**10}\r\nConnection: close\r\n\r\n"
    )
    assert _raw_request(world, head, b"-")[0] == 413
    scraped = httpx.get(f"{world.url}/metrics")  # no token needed
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    after = scraped.text

    def grew(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    total = "fakevoice_http_requests_total"
    assert grew(total, method="POST", route="/v1/predict", status="200") == 1
    assert grew(total, method="GET", route="/v1/runs/{run_id}", status="200") == 1
    assert grew(total, method="GET", route="/v1/runs/{run_id}", status="404") == 1
    assert grew(total, route="unmatched", status="404") == 1
    assert grew(total, method="POST", route="/v1/predict", status="413") == 1
    assert "/no/such/path" not in after and str(10**9) not in after
    assert grew("fakevoice_verdicts_total", verdict=verdict, arch="specnet") == 1
    timed = "fakevoice_http_request_duration_seconds_count"
    assert grew(timed, method="POST", route="/v1/predict") == 2  # the verdict and the 413
    assert metric_value(after, "fakevoice_scoring_threads") >= 1
    assert metric_value(after, "fakevoice_scoring_busy") == 0
    assert metric_value(after, "fakevoice_models_loaded") >= 1
    # The server's job queue, from the database: the world's run waits for a worker.
    assert metric_value(after, "fakevoice_jobs", kind="train", status="queued") >= 1
    assert 'fakevoice_jobs{kind="evaluate",status="running"}' in after
    assert metric_value(after, "fakevoice_workers", backend="local") == 0  # none runs here
    assert 'fakevoice_workers{backend="ray"} 0.0' in after


def test_metrics_of_several_workers_are_summed_for_the_scraper_with_its_token(
    tmp_path: Path,
) -> None:
    scraper = "a scraper's secret of some length"
    env = {
        **api_env(tmp_path),
        "FAKEVOICE_API_SCORING_THREADS": "1",
        "FAKEVOICE_API_METRICS_TOKEN": scraper,
    }
    health = {"method": "GET", "route": "/health", "status": "200"}

    def counted(url: str) -> float:
        text = httpx.get(f"{url}/metrics", headers=auth(scraper), timeout=30).text
        return metric_value(text, "fakevoice_http_requests_total", **health)

    with process_server(env, tmp_path / "server.log", "--workers", "2") as (url, _):
        # With a scraper's token set, nobody else reads the metrics.
        message = assert_error(httpx.get(f"{url}/metrics"), 401, "unauthorized")
        assert "FAKEVOICE_API_METRICS_TOKEN" in message
        wrong = httpx.get(f"{url}/metrics", headers=auth(scraper + "x"))
        assert_error(wrong, 401, "unauthorized")
        (folder,) = (tmp_path / "data" / "prometheus").iterdir()
        first = counted(url)
        sent = 0
        # New connections until both workers have answered some (each keeps its own file).
        while sent < 20 or len({f.stem.split("_")[-1] for f in folder.glob("counter_*.db")}) < 2:
            assert sent < 400, "one worker answered every request"
            assert httpx.get(f"{url}/health", timeout=30).status_code == 200
            sent += 1
        # Whichever worker answers the scrape counts the other's requests too.
        assert [counted(url) - first for _ in range(3)] == [sent] * 3
    assert not folder.exists()  # the workers' files go with the server


def running(pid: int) -> bool:
    """The process exists and has not ended (a zombie nobody reaped yet has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def test_the_workers_of_a_killed_server_end_with_it(tmp_path: Path) -> None:
    """``kill -9`` of ``fakevoice api --workers 2`` ends its worker processes too (each shuts
    down as on SIGTERM), so the port is free for the next start."""
    with process_server(api_env(tmp_path), tmp_path / "server.log", "--workers", "2") as (
        url,
        server,
    ):
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        workers = [int(pid) for pid in children]
        assert len(workers) >= 2, children  # uvicorn's workers (and its resource tracker)
        server.kill()
        server.wait()
        deadline = time.monotonic() + 30
        while any(running(pid) for pid in workers):
            assert time.monotonic() < deadline, "the workers outlived their server"
            time.sleep(0.2)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=5)


def test_a_test_of_models_is_queued_and_read_over_http(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from sqlalchemy import text
    from test_shortcuts import cue_frame
    from test_training import DATASET, tiny_dataset_root

    from fakevoice.datasets.shortcuts import SHORTCUTS_NAME, audit_cues, write_audit
    from fakevoice.jobs.runner import execute_run

    target = get_settings().dataset_dir / DATASET
    if not target.exists():
        shutil.copytree(tiny_dataset_root(tmp_path_factory) / DATASET, target)
    url, headers = f"{world.url}/v1/evaluations", auth(world.alice_token)
    body = {"models": [world.private.id, "shared"], "dataset": DATASET, "split": "all", "limit": 20}
    queued = httpx.post(url, json=body, headers=headers)
    assert queued.status_code == 202, queued.text
    job = queued.json()["job"]
    assert (job["kind"], job["status"], job["dataset"]) == ("evaluate", "queued", DATASET)
    assert queued.json()["results"] == []
    # The worker's claim of this one job (the world's other queued run stays queued), then the
    # worker's own job function.
    with store.get_engine().begin() as connection:
        connection.execute(
            text("UPDATE runs SET status = 'running', worker_id = 'api-test' WHERE id = :id"),
            {"id": job["id"]},
        )
    assert execute_run(job["id"], "api-test") == "succeeded"
    done = httpx.get(f"{url}/{job['id']}", headers=headers).json()
    assert done["job"]["status"] == "succeeded" and done["job"]["progress"] == 1.0
    assert [r["model"]["name"] for r in done["results"]] == ["alice-private", "shared"]
    fusion = done["fusion"]  # the two models' scores combined on the 20 items
    assert fusion["models"] == ["alice-private", "shared"] and fusion["items"] == 20
    assert 0.0 <= fusion["eer"] <= 1.0 and set(fusion["correlation"]) == set(fusion["models"])
    assert all(r["n"] == 20 and "eer" in r and "roc" in r for r in done["results"])
    for result in done["results"]:  # 20 items of the tiny dataset's 20 utterances, or fewer
        interval = result["eer_interval"]
        assert interval is None or interval["low"] <= result["eer"] <= interval["high"]
    for pair in done["comparisons"]:  # the two models, drawn together
        assert (pair["first"], pair["second"]) == ("alice-private", "shared")
        assert pair["low"] <= pair["difference"] <= pair["high"] and pair["summary"]
    # What the dataset's kept shortcut audit found comes with the results (none kept: none).
    assert done["shortcuts"] is None
    planted = cue_frame(0, tts_lead_in=0.0)
    planted["class"] = planted["class"].replace({"tts": "world", "copy": "griffinlim"})
    write_audit(target, audit_cues(planted))
    try:
        noted = httpx.get(f"{url}/{job['id']}", headers=headers).json()["shortcuts"]
    finally:
        (target / SHORTCUTS_NAME).unlink()
    assert noted.startswith("Shortcut in this dataset") and "world (0% EER)" in noted

    # A copy of a tested model calibrated on the 20 items (the public one: the copy is alice's).
    calibrations = f"{url}/{job['id']}/calibrations"
    made = httpx.post(
        calibrations, json={"model": "shared", "name": "shared tuned"}, headers=headers
    )
    assert made.status_code == 201, made.text
    copy = made.json()
    assert copy["name"] == "shared tuned" and copy["mine"] and not copy["public"]
    assert copy["metrics"]["calibration"]["dataset"] == DATASET
    assert copy["metrics"]["calibration"]["items"] == 20
    assert httpx.get(f"{world.url}/v1/models/{copy['id']}", headers=headers).status_code == 200
    again = httpx.post(
        calibrations, json={"model": "shared", "name": "shared tuned"}, headers=headers
    )
    assert_error(again, 409, "conflict")
    stranger = httpx.post(calibrations, json={"model": "shared"}, headers=auth(world.bob_token))
    assert_error(stranger, 404, "not_found")  # bob's is not this test
    untested = httpx.post(calibrations, json={"model": copy["id"]}, headers=headers)
    assert_error(untested, 404, "not_found")

    bob = auth(world.bob_token)
    assert_error(httpx.get(f"{url}/{job['id']}", headers=bob), 404, "not_found")
    assert_error(httpx.post(url, json=body, headers=bob), 404, "not_found")  # a private model
    for wrong, status, code in [
        ({**body, "dataset": "missing"}, 404, "not_found"),
        ({**body, "models": [world.public.id] * 5}, 422, "invalid_request"),
        ({**body, "models": [world.public.id] * 2}, 422, "invalid_spec"),
        ({**body, "shuffle": True}, 422, "invalid_request"),
    ]:
        assert_error(httpx.post(url, json=wrong, headers=headers), status, code)
    assert_error(httpx.post(url, json=body), 401, "unauthorized")


def test_openapi_documents_the_endpoints_with_examples(world: World) -> None:
    schema = httpx.get(f"{world.url}/openapi.json").json()
    for path in (
        "/v1/predict",
        "/v1/predict/batch",
        "/v1/explain",
        "/v1/models",
        "/v1/models/{model_id}/bundle",
        "/v1/models/{model_id}/fastai",
        "/v1/runs/{run_id}",
        "/v1/runs",
        "/v1/runs/{run_id}/losses",
        "/v1/runs/{run_id}/files/{file_name}",
        "/v1/runs/{run_id}/stop",
        "/v1/runs/{run_id}/resume",
        "/v1/datasets",
        "/v1/datasets/{name}",
        "/v1/datasets/{name}/selection",
        "/v1/datasets/{name}/shortcuts",
        "/v1/datasets/{name}/renders",
        "/v1/reports/key",
        "/v1/reports/verify",
        "/health",
    ):
        assert path in schema["paths"], path
    components = schema["components"]["schemas"]
    for name in ("PredictionOut", "ExplanationOut", "TrainIn", "QueuedRun", "DatasetOut"):
        assert components[name]["examples"], name
    assert {"augment", "callbacks", "epochs"} <= set(components["TrainSpec"]["properties"])
    assert "bearer" in str(schema["components"]["securitySchemes"]).lower()
    # The documentation pages work without the internet: every file they load is served here.
    for page in ("/docs", "/redoc"):
        answer = httpx.get(f"{world.url}{page}")
        assert answer.status_code == 200 and "openapi.json" in answer.text
        assert "default-src 'self'" in answer.headers["content-security-policy"]
        sources = re.findall(r'(?:src|href)=["\']([^"\']+)', answer.text)
        assert sources and not [s for s in sources if "//" in s], sources
        for source in sources:
            asset = httpx.get(f"{world.url}{source}")
            assert asset.status_code == 200 and len(asset.content) > 1000, source


# --- access --------------------------------------------------------------------------------------


def test_cross_user_access_is_refused_without_revealing(world: World) -> None:
    bob = auth(world.bob_token)
    message = assert_error(predict(world, wav_bytes(1.0), token=world.bob_token), 404, "not_found")
    assert "alice" not in message.lower()
    by_name = predict(world, wav_bytes(1.0), model="alice-private", token=world.bob_token)
    assert_error(by_name, 404, "not_found")
    assert_error(
        httpx.get(f"{world.url}/v1/models/{world.private.id}", headers=bob), 404, "not_found"
    )
    assert_error(httpx.get(f"{world.url}/v1/runs/{world.run_id}", headers=bob), 404, "not_found")
    missing = httpx.get(f"{world.url}/v1/runs/{world.run_id + 1000}", headers=bob)
    assert_error(missing, 404, "not_found")


def test_no_token_is_refused_when_anonymous_use_is_off(world: World) -> None:
    assert get_settings().api_allow_anonymous is False  # the default
    for response in (
        httpx.get(f"{world.url}/v1/models"),
        httpx.post(
            f"{world.url}/v1/predict",
            files={"file": ("a.wav", wav_bytes(1.0))},
            data={"model": str(world.public.id)},
        ),
    ):
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


def test_bad_unknown_and_revoked_tokens_are_refused(world: World) -> None:
    models = f"{world.url}/v1/models"
    assert_error(httpx.get(models, headers={"Authorization": "Basic YTpi"}), 401, "unauthorized")
    assert_error(httpx.get(models, headers=auth("fv_" + "x" * 43)), 401, "unauthorized")
    assert_error(httpx.get(models, headers=auth("not-a-token")), 401, "unauthorized")
    record, secret = tokens.create_token(world.bob, "short-lived")
    assert httpx.get(models, headers=auth(secret)).status_code == 200
    used = next(t for t in tokens.list_tokens(world.bob) if t.id == record.id)
    assert used.last_used_at is not None
    tokens.revoke_token(world.bob, record.id)
    message = assert_error(httpx.get(models, headers=auth(secret)), 401, "unauthorized")
    assert "revoked" in message
    # A verdict request reads the token and the model together: a revoked token is refused
    # whatever the model, before any model is looked up or any audio decoded.
    for model in (str(world.public.id), "no-such-model"):
        refused = predict(world, b"not audio", model=model, token=secret)
        assert "revoked" in assert_error(refused, 401, "unauthorized")
    assert_error(
        predict_batch(world, [("a.wav", wav_bytes(1.0))], token=secret), 401, "unauthorized"
    )


def test_revoking_every_token_of_a_user_ends_their_api_access(world: World) -> None:
    """What "Sign out everywhere" with the tokens does to the API: each of the user's tokens is
    refused from then on, whoever revoked them; others' tokens go on working."""
    models = f"{world.url}/v1/models"
    carol, root = make_user("carol"), make_user("root-of-carol", is_admin=True)
    held = [
        tokens.create_token(carol, name, scope)[1]
        for name, scope in (("script", "full"), ("call centre", "verdicts"))
    ]
    assert all(httpx.get(models, headers=auth(s)).status_code == 200 for s in held)
    with pytest.raises(PermissionDeniedError):
        tokens.revoke_all_tokens(world.bob, carol.user_id)
    assert httpx.get(models, headers=auth(held[0])).status_code == 200
    assert tokens.revoke_all_tokens(carol, carol.user_id) == 2
    for secret in held:
        refused = assert_error(httpx.get(models, headers=auth(secret)), 401, "unauthorized")
        assert "revoked" in refused
    assert httpx.get(models, headers=auth(world.bob_token)).status_code == 200

    # An administrator does it for someone else.
    _, again = tokens.create_token(carol, "script")
    assert httpx.get(models, headers=auth(again)).status_code == 200
    assert tokens.revoke_all_tokens(root, carol.user_id) == 1
    assert_error(httpx.get(models, headers=auth(again)), 401, "unauthorized")


def test_anonymous_use_of_public_models_when_allowed(world: World) -> None:
    settings = get_settings().model_copy(update={"api_allow_anonymous": True})
    with thread_server(settings) as url:
        listed = httpx.get(f"{url}/v1/models").json()
        assert {m["id"] for m in listed} == {
            m.id for m in services.list_models(world.bob) if m.is_public
        }
        clip = {"file": ("a.wav", wav_bytes(1.0), "audio/wav")}
        ok = httpx.post(f"{url}/v1/predict", files=clip, data={"model": "shared"}, timeout=60)
        assert ok.status_code == 200, ok.text
        private = httpx.post(
            f"{url}/v1/predict", files=clip, data={"model": str(world.private.id)}, timeout=60
        )
        assert_error(private, 404, "not_found")
        assert_error(httpx.get(f"{url}/v1/analyses"), 401, "unauthorized")
        # A route that needs a token refuses an anonymous caller before its fields are read.
        assert_error(httpx.get(f"{url}/v1/analyses", params={"find": "x"}), 401, "unauthorized")
        unknown = httpx.post(
            f"{url}/v1/predict", files=clip, data={"model": "shared", "x": "1"}, timeout=60
        )
        assert "Unknown form field 'x'" in assert_error(unknown, 422, "invalid_spec")
        assert_error(httpx.get(f"{url}/v1/runs/{world.run_id}"), 401, "unauthorized")
        # A token still counts as its owner on the same server.
        mine = httpx.get(f"{url}/v1/models", headers=auth(world.alice_token)).json()
        assert world.private.id in {m["id"] for m in mine}


# --- user errors ---------------------------------------------------------------------------------


def test_bad_audio_is_a_422_in_words(world: World) -> None:
    assert_error(predict(world, b"hello, this is not audio" * 40), 422, "not_audio")
    assert_error(predict(world, b""), 422, "empty_audio")
    assert_error(predict(world, wav_bytes(1.0)[:60]), 422, "truncated_audio")
    silent = io.BytesIO()
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000, format="WAV")
    assert_error(predict(world, silent.getvalue()), 422, "silent_audio")
    assert_error(predict(world, wav_bytes(0.2)), 422, "audio_too_short")
    long = noise_wav(31.0, 8000)  # 31 s at 8 kHz is under the upload size limit
    assert "30" in assert_error(predict(world, long), 422, "audio_too_long")


def test_bad_fields_are_4xx_in_words(world: World) -> None:
    clip = wav_bytes(1.0)
    assert "not_a_model" in assert_error(
        predict(world, clip, model="not_a_model"), 404, "not_found"
    )
    assert_error(predict(world, clip, model="99999999999999999999999"), 404, "not_found")
    assert_error(predict(world, clip, model="²"), 404, "not_found")
    assert_error(predict(world, clip, threshold="0.3"), 422, "invalid_spec")
    assert_error(predict(world, clip, threshold="nan"), 422, "invalid_spec")
    assert "threshold" in assert_error(
        predict(world, clip, threshold="abc"), 422, "invalid_request"
    )
    no_file = httpx.post(
        f"{world.url}/v1/predict", data={"model": "shared"}, headers=auth(world.alice_token)
    )
    assert "'file' is required" in assert_error(no_file, 422, "invalid_request")
    no_model = httpx.post(
        f"{world.url}/v1/predict", files={"file": ("a.wav", clip)}, headers=auth(world.alice_token)
    )
    assert "'model' is required" in assert_error(no_model, 422, "invalid_request")
    not_form = httpx.post(
        f"{world.url}/v1/predict",
        content=b"--x\r\nbroken",
        headers={**auth(world.alice_token), "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert not_form.status_code in {400, 422}
    assert not_form.json()["error"]["code"] in {"bad_request", "invalid_request"}
    huge_id = httpx.get(f"{world.url}/v1/models/{2**70}", headers=auth(world.alice_token))
    assert_error(huge_id, 422, "invalid_request")
    assert_error(httpx.get(f"{world.url}/v1/nothing-here"), 404, "not_found")
    assert_error(httpx.delete(f"{world.url}/v1/models"), 405, "method_not_allowed")
    # A query parameter the route does not take is refused, not ignored (``find`` for ``q``
    # returned the whole history as if narrowed).
    misspelt = httpx.get(
        f"{world.url}/v1/analyses", params={"find": "call"}, headers=auth(world.alice_token)
    )
    words = assert_error(misspelt, 422, "invalid_spec")
    assert "Unknown query parameter 'find' for GET /v1/analyses" in words and "q, " in words
    assert_error(httpx.get(f"{world.url}/health", params={"verbose": "1"}), 422, "invalid_spec")
    found = httpx.get(
        f"{world.url}/v1/analyses",
        params={"q": "call", "limit": 1},
        headers=auth(world.alice_token),
    )
    assert found.status_code == 200


def test_a_form_field_the_route_does_not_take_is_refused(world: World) -> None:
    """A misspelt form field was ignored: ``treshold=0.9`` gave a verdict at the default 0.6
    as if 0.9 had been asked for. It is refused, with the fields the route takes."""
    clip = wav_bytes(1.0)
    words = assert_error(predict(world, clip, treshold="0.9"), 422, "invalid_spec")
    assert words == (
        "Unknown form field 'treshold' for POST /v1/predict: it takes file, model, threshold "
        "(see /docs)."
    )
    one_file = httpx.post(  # "file" where the batch takes "files"
        f"{world.url}/v1/predict/batch",
        files=[("file", ("a.wav", clip, "audio/wav")), ("files", ("b.wav", clip, "audio/wav"))],
        data={"model": str(world.public.id)},
        headers=auth(world.bob_token),
        timeout=120,
    )
    assert "Unknown form field 'file' for POST /v1/predict/batch" in assert_error(
        one_file, 422, "invalid_spec"
    )
    assert predict(world, clip, threshold="0.9").json()["threshold"] == 0.9


def test_a_request_without_a_valid_token_learns_nothing_of_the_route(world: World) -> None:
    """An unknown form field or query parameter, a missing field or a bad value was answered
    with a 422 naming the fields the route takes, and a form over the file count with a 400
    naming its limit, before the token was looked at. Without a token the route would accept,
    every such request is a 401 that says nothing about the route."""
    clip = wav_bytes(1.0)
    record, revoked = tokens.create_token(world.bob, "revoked at once")
    tokens.revoke_token(world.bob, record.id)
    one_file = {"file": ("a.wav", clip, "audio/wav")}
    for headers in ({}, auth(revoked), auth("fv_" + "x" * 43), {"Authorization": "Basic YTpi"}):
        for response in (
            httpx.post(  # an unknown form field
                f"{world.url}/v1/predict",
                files=one_file,
                data={"model": "shared", "treshold": "0.9"},
                headers=headers,
            ),
            httpx.post(  # a missing one
                f"{world.url}/v1/predict", data={"model": "shared"}, headers=headers
            ),
            httpx.post(  # a bad value
                f"{world.url}/v1/predict",
                files=one_file,
                data={"model": "shared", "threshold": "abc"},
                headers=headers,
            ),
            httpx.post(  # more files than a batch takes
                f"{world.url}/v1/predict/batch",
                files=[("files", (f"{i}.wav", clip, "audio/wav")) for i in range(7)],
                data={"model": "shared"},
                headers=headers,
            ),
            httpx.get(  # an unknown query parameter
                f"{world.url}/v1/analyses", params={"find": "call"}, headers=headers
            ),
            httpx.post(  # a body that is not JSON
                f"{world.url}/v1/runs",
                content=b"{not json",
                headers={**headers, "Content-Type": "application/json"},
            ),
        ):
            message = assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
            assert message in {
                REVOKED,
                f"This API needs a token: {TOKEN_HINT}.",
                f"The Authorization header is not a bearer token; {TOKEN_HINT}.",
            }
    # With a token the route accepts, the same requests are told what is wrong (above).
    assert_error(predict(world, clip, treshold="0.9", token=world.bob_token), 422, "invalid_spec")
    # A route that needs no token answers as before.
    assert_error(httpx.get(f"{world.url}/health", params={"verbose": "1"}), 422, "invalid_spec")


def test_every_answer_carries_the_security_headers(world: World) -> None:
    """Answers hold a user's history, models and CSVs: none may be sniffed into a page, framed
    or kept by a shared cache, whatever answered (a route, a refusal, a limit before routing)."""
    answers = [
        httpx.get(f"{world.url}/v1/models", headers=auth(world.alice_token)),
        httpx.get(
            f"{world.url}/v1/analyses", params={"format": "csv"}, headers=auth(world.alice_token)
        ),
        httpx.get(f"{world.url}/v1/models"),  # 401
        httpx.get(f"{world.url}/v1/nothing-here"),  # 404
        httpx.post(  # 413 before routing
            f"{world.url}/v1/runs",
            content=b"x" * (JSON_BODY_LIMIT + 1),
            headers=auth(world.alice_token),
        ),
        httpx.get(f"{world.url}/health"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 401, 404, 413, 200]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff", answer.request.url
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["cache-control"] == "no-store"


def test_file_over_the_upload_limit_is_413(world: World) -> None:
    big = noise_wav(70.0)  # about 2.2 MB of PCM, over the 2 MiB test limit
    assert_error(predict(world, big), 413, "too_large")


def _raw_request(world: World, head: str, body: bytes) -> tuple[int, bytes, float]:
    """Send a request head and part of its body over a socket; the status, reply and seconds."""
    port = int(world.url.rsplit(":", 1)[1])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        # Read the JSON body too (short).
        sock.settimeout(2)
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except TimeoutError:
            pass
    status = int(reply.split(b" ", 2)[1])
    return status, reply, time.monotonic() - started


def test_request_size_limit_is_enforced_before_the_body_is_read(world: World) -> None:
    """A huge Content-Length is refused at once, without waiting for the (never sent) body."""
    head = (
        "POST /v1/predict HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {world.alice_token}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {50 * 1024**3}\r\nConnection: close\r\n\r\n"
    )
    status, reply, _ = _raw_request(world, head, b"--xyz\r\n")
    assert status == 413 and b'"too_large"' in reply


def test_chunked_body_is_counted_while_streaming(world: World) -> None:
    """Without Content-Length the bytes are counted as they arrive and stopped at the limit."""
    limit = get_settings().api_max_request_bytes
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield b'--xyz\r\nContent-Disposition: form-data; name="model"\r\n\r\nshared\r\n'
        yield b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a.wav"\r\n\r\n'
        while sent < 4 * limit:
            sent += 256 * 1024
            yield b"\0" * (256 * 1024)

    try:
        response = httpx.post(
            f"{world.url}/v1/predict/batch",
            content=body(),
            headers={
                **auth(world.alice_token),
                "Content-Type": "multipart/form-data; boundary=xyz",
            },
            timeout=60,
        )
    except httpx.TransportError:
        # The server may close the connection before the client finishes sending: the body was
        # refused part-way either way, which is what the sent count shows.
        assert sent < 4 * limit
        return
    assert_error(response, 413, "too_large")


def test_a_broken_server_secret_is_a_503_that_keeps_its_path_in_the_log(world: World) -> None:
    """A damaged signing key is the operator's to mend: clients get 503 and a sentence, not a
    400 as if they had asked wrongly, nor the server's file path."""
    assert httpx.get(f"{world.url}/v1/reports/key").status_code == 200  # the key exists
    key = get_settings().data_dir / "report-signing.key"
    kept = key.read_bytes()
    key.write_bytes(b"not a key")
    try:
        reply = httpx.get(f"{world.url}/v1/reports/key")
        assert "misconfigured" in assert_error(reply, 503, "server_misconfigured")
        assert str(key) not in reply.text
        # The operator's health check says so; verdicts still work, so it stays a 200.
        health = httpx.get(f"{world.url}/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded" and health.json()["signing"] == {"ok": False}
    finally:
        key.write_bytes(kept)
    assert httpx.get(f"{world.url}/v1/reports/key").status_code == 200


def test_json_routes_count_a_streamed_body_before_the_token_is_checked(world: World) -> None:
    """A route that takes JSON (here a training recipe, sent without a token) stops reading a
    body without Content-Length at the JSON limit: a client cannot make the server hold an
    unbounded body before it answers 401 or 422. The body is only a little over the limit, so
    the client has sent it all when the answer comes."""

    def body() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(5):
            yield b"a" * (JSON_BODY_LIMIT // 4)

    response = httpx.post(
        f"{world.url}/v1/runs",
        content=body(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    # Read whole, the body would have been answered 401 (no token): the 413 shows it was not.
    message = assert_error(response, 413, "too_large")
    assert "(1.0 MiB)" in message


def test_declared_sizes_are_judged_against_each_routes_own_limit(world: World) -> None:
    """A JSON route refuses a declared body over the JSON limit at once; an upload route keeps
    its own, larger limit (a dataset upload over the batch limit is not refused for its size)."""
    head = (
        "POST /v1/runs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {JSON_BODY_LIMIT + 1}\r\nConnection: close\r\n\r\n"
    )
    status, reply, _ = _raw_request(world, head, b"{")
    assert status == 413 and b'"too_large"' in reply
    limits = create_app().state.body_limits
    settings = get_settings()
    assert limits["/v1/datasets"] > settings.dataset_upload_max_bytes > limits["/v1/predict/batch"]
    assert limits["/v1/predict"] == limits["/v1/explain"] > settings.max_upload_bytes
    assert "/v1/runs" not in limits  # the JSON limit


# --- batches -------------------------------------------------------------------------------------


def predict_batch(
    world: World, files: list[tuple[str, bytes]], *, token: str | None = None, **params: str
) -> httpx.Response:
    return httpx.post(
        f"{world.url}/v1/predict/batch",
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
        data={"model": str(world.public.id)},
        params=params,
        headers=auth(token or world.bob_token),
        timeout=120,
    )


def test_batch_of_files_and_a_zip_scores_each_clip(world: World) -> None:
    archive = zip_of({"calls/one.wav": wav_bytes(1.2, seed=5), "notes.txt": b"just text"})
    response = predict_batch(world, [("a.wav", wav_bytes(1.0, seed=6)), ("calls.zip", archive)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["id"] == world.public.id
    results = {r["name"]: r for r in body["results"]}
    assert list(results) == ["a.wav", "calls.zip/calls/one.wav", "calls.zip/notes.txt"]
    assert results["a.wav"]["verdict"] in {"human", "machine-generated", "inconclusive"}
    assert results["calls.zip/calls/one.wav"]["duration"] == pytest.approx(1.2, abs=1e-3)
    assert results["calls.zip/notes.txt"]["verdict"] is None
    assert "not a recording" in results["calls.zip/notes.txt"]["error"]
    assert results["calls.zip/notes.txt"]["error_code"] == "not_audio"
    logged = {a.file_name: a.id for a in services.list_analyses(world.bob, limit=500)}
    assert {"a.wav", "calls.zip/calls/one.wav"} <= set(logged)
    one = results["calls.zip/calls/one.wav"]["analysis_id"]
    assert one in logged.values() and results["calls.zip/notes.txt"]["analysis_id"] is None


def test_batch_as_csv(world: World) -> None:
    response = predict_batch(
        world, [("=cmd.wav", wav_bytes(1.0)), ("b.wav", b"nope")], format="csv"
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(response.text))
    assert list(frame["name"]) == ["'=cmd.wav", "b.wav"]  # no spreadsheet formula
    assert {"verdict", "p_human", "p_bonafide", "p_world", "error"} <= set(frame.columns)
    assert pd.isna(frame["error"][0]) and isinstance(frame["error"][1], str)
    assert frame["error_code"][1] == "not_audio"
    rows = response.text.splitlines()[1:]
    assert ",16000," in rows[0] and ",16000.0," not in rows[0]  # whole numbers stay whole
    assert frame["analysis_id"][0] > 0 and pd.isna(frame["analysis_id"][1])


def test_zip_bomb_is_refused(world: World) -> None:
    bomb = zip_of({"big.wav": b"\0" * (3 * 1024 * 1024)})  # 3 MiB of zeros in a few KiB
    assert len(bomb) * 50 < 3 * 1024 * 1024
    message = assert_error(predict_batch(world, [("bomb.zip", bomb)]), 413, "too_large")
    assert "zip bomb" in message
    # Within the ratio but over the batch's total: 5 entries of ~1 MiB of noise.
    heavy = zip_of({f"{i}.wav": noise_wav(33.0, seed=i) for i in range(5)})
    assert_error(predict_batch(world, [("heavy.zip", heavy)]), 413, "too_large")


def test_zip_with_traversal_and_links_refuses_those_entries(world: World) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../etc/evil.wav", wav_bytes(1.0))
        archive.writestr("/abs/path.wav", wav_bytes(1.0))
        link = zipfile.ZipInfo("link.wav")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("fine.wav", wav_bytes(1.0))
    response = predict_batch(world, [("mixed.zip", buffer.getvalue())])
    assert response.status_code == 200, response.text
    results = {r["name"]: r for r in response.json()["results"]}
    assert results["mixed.zip/fine.wav"]["verdict"] is not None
    for name in ("mixed.zip/../../etc/evil.wav", "mixed.zip//abs/path.wav"):
        assert "absolute or leaves its folder" in results[name]["error"]
    assert "symbolic link" in results["mixed.zip/link.wav"]["error"]


def test_zip_with_too_many_entries_is_refused(world: World) -> None:
    many = zip_of({f"{i}.wav": wav_bytes(0.6, seed=i) for i in range(7)})
    message = assert_error(predict_batch(world, [("many.zip", many)]), 413, "limit_exceeded")
    assert "at most 6" in message
    too_many_files = [(f"{i}.wav", b"x") for i in range(7)]
    message = assert_error(predict_batch(world, too_many_files), 400, "bad_request")
    assert "Maximum number of files is 6" in message


def test_batch_with_an_unknown_model_fails_as_a_whole(world: World) -> None:
    response = httpx.post(
        f"{world.url}/v1/predict/batch",
        files=[("files", ("a.wav", wav_bytes(1.0)))],
        data={"model": "no-such-model"},
        headers=auth(world.bob_token),
    )
    assert_error(response, 404, "not_found")


def test_a_token_sent_in_the_url_stays_out_of_the_access_log() -> None:
    """A client that puts its token in the query string by mistake is refused (401); the
    access log of every API process keeps the request without the secret."""
    import logging

    from fakevoice.api.app import SecretQueryFilter, create_app, redacted_path

    assert redacted_path("/v1/models?token=fv_abc123&limit=5") == "/v1/models?token=***&limit=5"
    assert redacted_path("/v1/analyses?find=fv_abc&q=x") == "/v1/analyses?find=***&q=x"
    assert redacted_path("/v1/analyses?API_KEY=x%20y") == "/v1/analyses?API_KEY=***"
    assert redacted_path("/health") == "/health" and redacted_path("/v1/x?flag") == "/v1/x?flag"
    create_app(get_settings())
    access = logging.getLogger("uvicorn.access")
    (kept,) = [f for f in access.filters if isinstance(f, SecretQueryFilter)]
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/v1/models?token=fv_secret", "1.1", 401), None,
    )  # fmt: skip
    assert kept.filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /v1/models?token=*** HTTP/1.1" 401'
