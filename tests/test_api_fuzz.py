"""Fuzzing ``POST /v1/predict`` with random and mutated audio: never a 5xx, the server stays up.

The server is the real ``fakevoice api`` command in its own process (so a crash would show), on a
real SQLite file, scoring with a stored specnet.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import speechlike
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api import (
    api_env,
    auth,
    isolated_workbench,
    make_user,
    process_server,
    store_specnet,
    wav_bytes,
)

from fakevoice.audio import encode_audio
from fakevoice.services import tokens

EXAMPLES = 60


@dataclass(frozen=True)
class Server:
    url: str
    secret: str
    model_id: int
    process: subprocess.Popen[bytes]
    log: Path


def _seed_clips() -> list[bytes]:
    samples = speechlike(1.2, seed=9)
    clips = [wav_bytes(1.2, seed=9), wav_bytes(0.7, 8000, seed=2)]
    for fmt in ("flac", "ogg", "mp3"):
        clips.append(encode_audio(samples, 16000, fmt))
    return clips


SEEDS = _seed_clips()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    with isolated_workbench(root):
        alice = make_user("alice")
        _, secret = tokens.create_token(alice, "fuzz")
        model = store_specnet(alice, "net")
        with process_server(api_env(root), root / "server.log") as (url, process):
            yield Server(url, secret, model.id, process, root / "server.log")


@st.composite
def mutated_audio(draw: st.DrawFn) -> bytes:
    """A real encoded clip with bytes flipped, cut, repeated or header fields rewritten."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "repeat", "header"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "repeat":
            data[position:position] = data[position : position + draw(st.integers(1, 4096))]
        elif kind == "header" and len(data) >= 44 and data[:4] == b"RIFF":
            # WAV fmt fields: channels (22), sample rate (24), bits per sample (34).
            offset, fmt, value = draw(
                st.sampled_from(
                    [
                        (22, "<H", 0),
                        (22, "<H", 65535),
                        (24, "<I", 0),
                        (24, "<I", 2**32 - 1),
                        (34, "<H", 3),
                        (34, "<H", 0),
                    ]
                )
            )
            struct.pack_into(fmt, data, offset, value)
    return bytes(data)


payloads = st.one_of(st.binary(max_size=4096), mutated_audio(), st.sampled_from(SEEDS))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=payloads,
    name=st.text(max_size=300),
    threshold=st.sampled_from(["0.6", "0.5", "1", "1.5", "-1", "nan", "inf", "", "x", "1e308"]),
)
def test_predict_never_answers_5xx(server: Server, data: bytes, name: str, threshold: str) -> None:
    url, secret, model_id = server.url, server.secret, server.model_id
    response = httpx.post(
        f"{url}/v1/predict",
        files={"file": (name or "clip", data, "application/octet-stream")},
        data={"model": str(model_id), "threshold": threshold},
        headers=auth(secret),
        timeout=120,
    )
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code == 200:
        assert body["verdict"] in {"human", "machine-generated", "inconclusive"}
        assert 0.0 <= body["p_human"] <= 1.0
    else:
        assert response.status_code in {400, 413, 422}
        assert body["error"]["code"] and body["error"]["message"]


@settings(max_examples=EXAMPLES // 2, deadline=None, database=None)
@given(model=st.text(min_size=1, max_size=200))
def test_model_field_never_answers_5xx(server: Server, model: str) -> None:
    url, secret = server.url, server.secret
    response = httpx.post(
        f"{url}/v1/predict",
        files={"file": ("a.wav", SEEDS[0], "audio/wav")},
        data={"model": model},
        headers=auth(secret),
        timeout=120,
    )
    assert response.status_code < 500, response.text


def test_server_is_still_up_after_the_fuzzing(server: Server) -> None:
    assert server.process.poll() is None
    health = httpx.get(f"{server.url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log
    assert 'POST /v1/predict HTTP/1.1" 200' in log  # the fuzzing reached the model too
