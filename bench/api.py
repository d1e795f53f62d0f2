"""Throughput and latency of ``POST /v1/predict`` against the bare in-process model call.

For each model (``specnet``, ``aasist``) the same 4-second clip is scored:

* in process, without HTTP: ``load_audio`` + ``Detector.predict`` (the reference row);
* through the real ``fakevoice api`` server (one uvicorn worker, its own process, loopback HTTP,
  bearer token, multipart upload, verdict logged in SQLite) by 1, 4 and 16 concurrent clients,
  each a keep-alive connection in its own thread sending a request encoded once (as ``wrk``
  does, so that the clients' own work on the same cores is not counted as the service's).

It prints requests/s and p50/p95/p99 latency per row, errors per row, and the service overhead at
p50 with one client: ``(API p50 - in-process p50) / in-process p50`` (target: under 10 %). With
more clients the requests queue for the model (one forward pass at a time per model), so their
latency is mostly waiting; their row shows throughput and that no request failed.

The overhead is a fixed cost of a few milliseconds (HTTP and multipart parsing, the token check,
the model lookup, the verdict written to the database), so it is a small share of an AASIST
verdict (hundreds of ms) and a large share of a ``specnet`` one (about 5 ms for one 4 s window).

Run:  .venv/bin/python bench/api.py [--models specnet,aasist] [--clients 1,4,16] [--requests 16]
The official AASIST checkpoint in ../shared/aasist/ is imported when present; otherwise the
models are randomly initialised, which does not change the cost. Everything lives in a
temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fakevoice.store.records import Actor

REPO = Path(__file__).resolve().parents[1]
SHARED_AASIST = REPO.parent / "shared" / "aasist"


@dataclass(frozen=True)
class Row:
    model: str
    mode: str
    clients: int
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")

    def line(self) -> str:
        rate = self.requests / self.seconds if self.seconds else float("nan")
        return (
            f"{self.model:<9} {self.mode:<11} {self.clients:>7} {self.requests:>8} "
            f"{self.errors:>6} {rate:>8.2f} {self.percentile(50):>9.1f} "
            f"{self.percentile(95):>9.1f} {self.percentile(99):>9.1f}"
        )


HEADER = (
    f"{'model':<9} {'mode':<11} {'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>8} "
    f"{'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}"
)


def clip_wav(seconds: float) -> bytes:
    """A voiced, noisy test clip as 16 kHz PCM16 WAV bytes."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 0.7 * t)) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    samples = 0.3 * voiced / np.max(np.abs(voiced)) + 0.01 * rng.standard_normal(t.size)
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _familiarity(model: object) -> dict[str, object]:
    """A reference fitted on the features of 120 noise images, as a run's is on its validation
    items: what it costs a verdict does not depend on what it was fitted on."""
    import numpy as np
    import torch

    from fakevoice.metrics.familiarity import captured_features, fit_familiarity

    assert isinstance(model, torch.nn.Module)
    model.eval()
    with torch.inference_mode(), captured_features(model) as features:
        model(torch.randn(120, 3, 224, 224))
    reference = fit_familiarity(torch.cat(features).numpy(), np.arange(120) % 2)
    assert reference is not None
    return reference.to_dict()


def store_models(names: list[str], seconds: float) -> tuple[Actor, str, dict[str, int]]:
    """A user with a token and the benchmarked models: (user, token, name -> model id)."""
    import torch

    from fakevoice import services, store
    from fakevoice.artefacts import (
        BUNDLE_MANIFEST,
        BUNDLE_WEIGHTS,
        MANIFEST_FORMAT,
        save_bundle,
        sha256_file,
    )
    from fakevoice.features import FeatureSpec
    from fakevoice.models.registry import arch_config, get_arch
    from fakevoice.services import tokens
    from fakevoice.settings import get_settings

    services.ensure_database()
    with store.session_scope() as session:
        actor = store.create_user(session, "bench").actor
    _, secret = tokens.create_token(actor, "bench")
    ids: dict[str, int] = {}
    for name in names:
        official = SHARED_AASIST / ("AASIST.pth" if name == "aasist" else "AASIST-L.pth")
        if name.startswith("aasist") and official.is_file():
            ids[name] = services.import_aasist(actor, official, name).id
            continue
        torch.manual_seed(0)
        image = name == "specnet"
        manifest = {
            "format": MANIFEST_FORMAT,
            "arch": name,
            "task": "binary",
            "class_names": ["bonafide", "spoof"],
            "input_kind": "image" if image else "waveform",
            "feature_spec": FeatureSpec().to_dict() if image else None,
            "normalize": "imagenet" if image else None,
            "sample_rate": 16000,
            "clip_samples": int(seconds * 16000) if image else 64600,
        }
        model, _ = get_arch(name).build(2)  # the network training makes today
        if (config := arch_config(model)) is not None:
            manifest["arch_config"] = config
        if image:  # the familiarity reference a trained model keeps (its cost is the verdict's)
            manifest["familiarity"] = _familiarity(model)
        folder = get_settings().data_dir / "models" / name
        save_bundle(model, manifest, folder)
        with store.session_scope() as session:
            ids[name] = store.add_model(
                session,
                actor,
                name=name,
                arch=name,
                class_names=manifest["class_names"],
                sample_rate=16000,
                clip_samples=manifest["clip_samples"],
                path=str(folder),
                files={n: sha256_file(folder / n) for n in (BUNDLE_WEIGHTS, BUNDLE_MANIFEST)},
                feature_spec=manifest["feature_spec"],
                metrics=run_like_metrics(),
            ).id
    return actor, secret, ids


def run_like_metrics() -> dict[str, object]:
    """A metrics report as a training run stores with its model (ROC points, confusion matrix,
    EER per generator and noise level), so that reading the model costs what it costs in use."""
    from fakevoice import metrics
    from fakevoice.artefacts import generator_eers, noise_eers

    rng = np.random.default_rng(0)
    generators = ["world", "griffinlim", "lpc", "hifigan", "espeak"]
    noises = ["snr_inf", "snr_20db", "snr_10db", "snr_0db", "snr_-10db"]
    classes = [("bonafide", *generators)[i % 6] for i in range(970)]
    labels = np.array([0 if c == "bonafide" else 1 for c in classes])
    p_bonafide = np.clip(rng.normal(0.7 - 0.4 * labels, 0.2), 0.0, 1.0)
    probs = np.stack([p_bonafide, 1.0 - p_bonafide], axis=1)
    report = metrics.classification_report(labels, probs, ["bonafide", "spoof"])
    report["generator_eer"] = generator_eers(p_bonafide, classes)
    report["noise_eer"] = noise_eers(p_bonafide, classes, [noises[i % 5] for i in range(970)])
    return report


def bare_row(actor: Actor, name: str, model_id: int, clip: bytes, requests: int) -> Row:
    """The in-process reference: decode + windowed prediction, no HTTP, no logging."""
    from fakevoice import services
    from fakevoice.audio import load_audio

    detector = services.detector_for(services.get_model(actor, model_id))
    for _ in range(3):
        detector.predict(load_audio(clip, detector.sample_rate))
    latencies = []
    started = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        detector.predict(load_audio(clip, detector.sample_rate))
        latencies.append(time.perf_counter() - t0)
    return Row(name, "in-process", 1, requests, 0, time.perf_counter() - started, latencies)


def database_costs(
    actor: Actor, secret: str, model_id: int, clip: bytes, repeats: int = 32
) -> None:
    """Print what the store work of one verdict request costs in process: each step is timed right
    after a clip is scored, as the server does it between forward passes (caches and the CPU are
    then as cold as they are for the server)."""
    import statistics

    from sqlalchemy import text

    from fakevoice import services, store
    from fakevoice.audio import load_audio
    from fakevoice.services import tokens

    model = services.get_model(actor, model_id)
    detector = services.detector_for(model)
    audio = load_audio(clip, detector.sample_rate)

    def empty_transaction() -> None:
        with store.session_scope(readonly=True) as session:
            session.execute(text("SELECT 1")).all()

    def log_verdict() -> None:
        with store.session_scope() as session:
            store.add_analysis(
                session,
                actor,
                model_id=model_id,
                file_name="bench.wav",
                duration=4.0,
                sample_rate=16000,
                verdict="human",
                probabilities={"bonafide": 0.9, "spoof": 0.1},
                threshold=0.6,
                source="api",
            )

    steps = {
        "SQLite transaction, SELECT 1": empty_transaction,
        "token + model (one read)": lambda: tokens.authenticate_for_model(secret, str(model_id)),
        "verdict logged (one write)": log_verdict,
    }
    print("store work of one request, in process, right after a forward pass (median ms):")
    for label, step in steps.items():
        times = []
        for _ in range(repeats):
            detector.predict(audio)
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        print(f"  {label:32s} {1000 * statistics.median(times):6.2f}")


def http_row(
    url: str, secret: str, name: str, model_id: int, clip: bytes, clients: int, requests: int
) -> Row:
    """``requests`` predictions shared by ``clients`` threads, each with a keep-alive connection.

    Like ``wrk``, the request (multipart body and headers) is encoded once and sent as bytes by
    ``http.client``: the clients share these cores with the server, and encoding 128 KiB of
    multipart per request in Python would be counted against the service.
    """
    import http.client
    from urllib.parse import urlsplit

    import httpx

    prepared = httpx.Request(
        "POST",
        f"{url}/v1/predict",
        files={"file": ("clip.wav", clip, "audio/wav")},
        data={"model": str(model_id)},
        headers={"Authorization": f"Bearer {secret}"},
    )
    body = prepared.read()
    headers = {k: v for k, v in prepared.headers.items() if k.lower() != "host"}
    address = urlsplit(url)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    remaining = [requests]

    def client() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection(
            address.hostname or "127.0.0.1", address.port, timeout=300
        )
        try:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                t0 = time.perf_counter()
                try:
                    connection.request("POST", "/v1/predict", body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    connection.close()  # reconnects on the next request
                elapsed = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return Row(name, "http", clients, requests, errors, seconds, latencies)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "fakevoice.cli", "api", "--host", "127.0.0.1"]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--workers", "1"],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the API server exited; see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("the API server did not start in 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="specnet,aasist")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=16, help="per row (at least clients)")
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    levels = [int(c) for c in args.clients.split(",")]

    root = Path(tempfile.mkdtemp(prefix="fakevoice-bench-api-"))
    env = {
        **os.environ,
        "FAKEVOICE_DATA_DIR": str(root / "data"),
        "FAKEVOICE_DATASET_DIR": str(root / "datasets"),
    }
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.update(env)  # this process acts on the same temporary workbench
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    process = None
    try:
        actor, secret, ids = store_models(names, args.seconds)
        clip = clip_wav(args.seconds)
        rows: list[Row] = []
        process, url = start_server(env, root / "server.log")
        for name in names:
            rows.append(bare_row(actor, name, ids[name], clip, args.requests))
            http_row(url, secret, name, ids[name], clip, 1, 3)  # load the model, warm up
            for clients in levels:
                requests = max(args.requests, clients)
                rows.append(http_row(url, secret, name, ids[name], clip, clients, requests))
        print(
            f"{args.seconds:g}-second clip, torch threads {torch.get_num_threads()}, "
            f"{os.cpu_count()} CPUs"
        )
        print(HEADER)
        for row in rows:
            print(row.line())
        print()
        for name in names:
            bare = next(r for r in rows if r.model == name and r.mode == "in-process")
            one = next(
                (r for r in rows if r.model == name and r.clients == 1 and r.mode == "http"), None
            )
            if one is None:
                continue
            overhead = (one.percentile(50) - bare.percentile(50)) / bare.percentile(50)
            print(
                f"{name}: service overhead at p50 (1 client) {100 * overhead:+.1f} % "
                f"({one.percentile(50) - bare.percentile(50):+.1f} ms over "
                f"{bare.percentile(50):.1f} ms)"
            )
        print()
        database_costs(actor, secret, ids[names[0]], clip)
        failed = sum(r.errors for r in rows)
        print(f"errors: {failed}")
        if failed:
            print((root / "server.log").read_text(errors="replace")[-4000:])
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
