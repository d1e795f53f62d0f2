"""Training over HTTP: datasets, a run queued through the API and trained by a real worker process,
its live losses, files and model, stop / resume / delete, and every refusal — against a real
uvicorn server and a real SQLite store.

alice and bob share the tiny dataset; alice also has a private copy of it ("alice-tiny", as if
built from her recordings), which bob must not see.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from test_api import api_env, assert_error, auth, isolated_workbench, make_user, wav_bytes
from test_training import DATASET, tiny_dataset_root
from workbench import start_worker

from fakevoice import services, store
from fakevoice.services import tokens
from fakevoice.settings import get_settings

QUICK = {"dataset": DATASET, "arch": "specnet", "epochs": 1, "batch_size": 4, "device": "cpu"}


@dataclass(frozen=True)
class Served:
    url: str
    env: dict[str, str]
    alice: dict[str, str]  # headers
    bob: dict[str, str]
    admin: dict[str, str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from test_api import thread_server

    root = tmp_path_factory.mktemp("api-training")
    extra = {
        "FAKEVOICE_MAX_EPOCHS": "3",
        "FAKEVOICE_MAX_CONCURRENT_RUNS_PER_USER": "2",
        "FAKEVOICE_HEARTBEAT_SECONDS": "0.5",
        "FAKEVOICE_WORKER_POLL_SECONDS": "0.2",
        "OMP_NUM_THREADS": "1",
    }
    source = tiny_dataset_root(tmp_path_factory) / DATASET
    for name in (DATASET, "alice-tiny"):
        shutil.copytree(source, root / "datasets" / name)
    older = root / "datasets" / "alice-tiny" / "dataset.json"  # images of an older renderer
    older.write_text(json.dumps({**json.loads(older.read_text()), "render_version": 1}))
    with isolated_workbench(root, **extra):
        alice, bob = make_user("alice"), make_user("bob")
        with store.session_scope() as session:
            admin = store.create_user(session, "root", is_admin=True)
            store.register_dataset(
                session,
                alice,
                name="alice-tiny",
                path=store.folder_key(get_settings().dataset_dir / "alice-tiny"),
                items=1,
                spec={},
            )
        headers = [auth(tokens.create_token(a, "tests")[1]) for a in (alice, bob, admin.actor)]
        with thread_server(get_settings()) as url:
            yield Served(url, {**api_env(root), **extra}, *headers)


def call(
    served: Served, method: str, path: str, headers: dict[str, str], **kw: Any
) -> httpx.Response:
    return httpx.request(method, f"{served.url}{path}", headers=headers, timeout=60, **kw)


def submit(served: Served, headers: dict[str, str], **body: Any) -> httpx.Response:
    return call(served, "POST", "/v1/runs", headers, json=body)


def test_datasets_are_listed_counted_and_selected_for_those_who_may_see_them(
    served: Served,
) -> None:
    listed = call(served, "GET", "/v1/datasets", served.alice)
    assert listed.status_code == 200, listed.text
    by_name = {d["name"]: d for d in listed.json()}
    assert set(by_name) == {DATASET, "alice-tiny"}
    tiny = by_name[DATASET]
    assert "path" not in tiny  # the server's folders are not the caller's business
    assert tiny["classes"][0] == "bonafide" and tiny["items"] > 0
    assert tiny["feature_spec"]["kind"] == "mel" or tiny["feature_spec"]
    assert tiny["older_renderer"] is False and by_name["alice-tiny"]["older_renderer"] is True
    bobs = call(served, "GET", "/v1/datasets", served.bob).json()
    assert [d["name"] for d in bobs] == [DATASET]

    detail = call(served, "GET", f"/v1/datasets/{DATASET}", served.bob).json()
    assert sum(detail["items_by_class"].values()) == tiny["items"]
    assert sum(detail["items_by_noise"].values()) == tiny["items"]
    assert sum(detail["items_by_speaker"].values()) == tiny["items"]
    assert sorted(detail["items_by_speaker"]) == detail["speaker_names"]
    assert detail["clips"] > 0

    everything = call(served, "GET", f"/v1/datasets/{DATASET}/selection", served.alice).json()
    assert everything["items"] == tiny["items"]
    speaker = detail["speaker_names"][0]
    one = call(
        served,
        "GET",
        f"/v1/datasets/{DATASET}/selection",
        served.alice,
        params={"speakers": speaker, "classes": ["bonafide", tiny["classes"][1]]},
    ).json()
    assert set(one["by_speaker"]) == {speaker}
    assert 0 < one["items"] < tiny["items"]
    assert one["items"] == sum(sum(row.values()) for row in one["by_speaker"].values())

    wrong = call(
        served, "GET", f"/v1/datasets/{DATASET}/selection", served.alice, params={"speakers": "zed"}
    )
    assert "zed" in assert_error(wrong, 422, "invalid_spec")
    for path in (
        "/v1/datasets/alice-tiny",
        "/v1/datasets/alice-tiny/selection",
        "/v1/datasets/nope",
    ):
        assert_error(call(served, "GET", path, served.bob), 404, "not_found")
    assert_error(call(served, "GET", "/v1/datasets", {}), 401, "unauthorized")


def test_a_datasets_shortcut_audit_is_made_once_and_kept(served: Served) -> None:
    path = f"/v1/datasets/{DATASET}/shortcuts"
    assert_error(call(served, "GET", path, {}), 401, "unauthorized")
    assert_error(
        call(served, "GET", "/v1/datasets/alice-tiny/shortcuts", served.bob), 404, "not_found"
    )
    first = call(served, "GET", path, served.bob)
    assert first.status_code == 200, first.text
    audit = first.json()
    assert audit["severity"] in {"strong", "some", "none"} and audit["summary"]
    pooled = audit["pooled"]
    assert pooled["spoof"] == "all" and len(pooled["cues"]) == 10
    assert [c["eer"] for c in pooled["cues"]] == sorted(c["eer"] for c in pooled["cues"])
    assert {"label", "unit", "bonafide_median"} <= set(pooled["cues"][0])
    detail = call(served, "GET", f"/v1/datasets/{DATASET}", served.bob).json()
    assert detail["shortcuts"] == audit["severity"]  # kept beside the manifest
    assert call(served, "GET", path, served.alice).json() == audit
    again = call(served, "GET", path, served.alice, params={"recompute": "true"})
    assert again.json() == audit  # the clips have not changed
    # A run queued on it carries the kept audit's warning for its classes (then goes away).
    queued = submit(served, served.alice, name="shortcut check", spec=QUICK)
    assert queued.status_code == 202, queued.text
    expected = services.shortcut_warning(DATASET, None, actor=None)
    assert queued.json()["shortcuts"] == expected
    assert queued.json()["renderer"] is None  # its images are the current renderer's
    older = submit(served, served.alice, name="old images", spec={**QUICK, "dataset": "alice-tiny"})
    assert older.status_code == 202, older.text
    assert "older renderer" in older.json()["renderer"]
    assert "fakevoice dataset render alice-tiny" in older.json()["renderer"]
    # Each generator against the human clips; all machine clips when none has enough clips.
    comparisons = list(audit["generators"].values()) or [audit["pooled"]]
    lowest = {
        c["spoof"]: min(e for e in (c["cues"][0]["eer"], c["combined_eer"]) if e is not None)
        for c in comparisons
        if min(c["bonafide_clips"], c["spoof_clips"]) >= 20  # fewer: shown, never an alarm
    }
    flagged = [name for name, eer in lowest.items() if eer < 0.25]
    assert (expected is None) == (not flagged)
    named = {"all": "all machine clips"}
    assert all(named.get(name, name) in (expected or "") for name in flagged)
    for run_id in (queued.json()["run"]["id"], older.json()["run"]["id"]):
        assert call(served, "POST", f"/v1/runs/{run_id}/stop", served.alice).status_code == 200
        assert call(served, "DELETE", f"/v1/runs/{run_id}", served.alice).status_code == 204


def test_a_dataset_is_built_from_uploaded_recordings_rendered_and_deleted(served: Served) -> None:
    from test_dataset_builds import two_speakers, wav

    def build(headers: dict[str, str], **form: Any) -> httpx.Response:
        files = form.pop("files", [("files", ("calls.zip", two_speakers(), "application/zip"))])
        return call(served, "POST", "/v1/datasets", headers, files=files, data=form)

    queued = build(served.alice, name="alice-calls", generators=["world"], noise_levels="snr_inf")
    assert queued.status_code == 202, queued.text
    job = queued.json()
    assert (job["kind"], job["status"], job["dataset"]) == ("dataset", "queued", "alice-calls")
    worker = start_worker(served.env, "--once")
    output, _ = worker.communicate(timeout=240)
    assert worker.returncode == 0, output
    built = call(served, "GET", f"/v1/runs/{job['id']}", served.alice).json()
    assert built["status"] == "succeeded", built
    detail = call(served, "GET", "/v1/datasets/alice-calls", served.alice).json()
    assert detail["classes"] == ["bonafide", "world"] and detail["noise_levels"] == ["snr_inf"]
    assert detail["speakers"] == 2 and detail["items"] == 8  # 4 recordings, human and copied
    assert "alice-calls" not in [
        d["name"] for d in call(served, "GET", "/v1/datasets", served.bob).json()
    ]

    for form, status, code, words in (
        ({"name": "x1", "features": "{kind: lfcc}"}, 422, "invalid_spec", "not JSON"),
        ({"name": "x2", "features": "[1]"}, 422, "invalid_spec", "JSON object"),
        ({"name": "x3", "generators": ["espeak"]}, 422, "invalid_spec", "speaks text"),
        ({"name": "x4", "generators": ["nope"]}, 422, "invalid_spec", "nope"),
        ({"name": DATASET}, 409, "conflict", DATASET),
        (
            {"name": "x5", "files": [("files", ("a.wav", wav(1), "audio/wav"))]},
            422,
            "invalid_spec",
            "speaker",
        ),
    ):
        assert words in assert_error(build(served.alice, **form), status, code)
    assert_error(build({}, name="x6"), 401, "unauthorized")

    # Rendered again with other features: administrators only (the new dataset is shared).
    render = {"name": "calls-lfcc", "features": {"kind": "lfcc"}}
    refused = call(served, "POST", "/v1/datasets/alice-calls/renders", served.alice, json=render)
    assert_error(refused, 403, "forbidden")
    rendered = call(served, "POST", "/v1/datasets/alice-calls/renders", served.admin, json=render)
    assert rendered.status_code == 202 and rendered.json()["kind"] == "render", rendered.text
    bad = call(
        served,
        "POST",
        "/v1/datasets/alice-calls/renders",
        served.admin,
        json={"name": "calls-x", "features": {"kind": "wavelet"}},
    )
    assert_error(bad, 422, "invalid_spec")
    render_id = rendered.json()["id"]
    call(served, "POST", f"/v1/runs/{render_id}/stop", served.admin)
    assert call(served, "DELETE", f"/v1/runs/{render_id}", served.admin).status_code == 204

    # Deleted by its owner; nobody else may.
    assert_error(call(served, "DELETE", "/v1/datasets/alice-calls", served.bob), 404, "not_found")
    shared = call(served, "DELETE", f"/v1/datasets/{DATASET}", served.alice)
    assert_error(shared, 403, "forbidden")
    assert call(served, "DELETE", "/v1/datasets/alice-calls", served.alice).status_code == 204
    assert_error(call(served, "GET", "/v1/datasets/alice-calls", served.alice), 404, "not_found")
    assert call(served, "DELETE", f"/v1/runs/{job['id']}", served.alice).status_code == 204


def test_a_run_queued_over_http_is_trained_by_a_worker_and_read_back(served: Served) -> None:
    queued = submit(
        served,
        served.alice,
        name="first",
        spec={**QUICK, "augment": {"mixup": 0.2}, "callbacks": {"grad_clip": 1.0}},
    )
    assert queued.status_code == 202, queued.text
    body = queued.json()
    run = body["run"]
    assert (run["name"], run["kind"], run["status"], run["arch"]) == (
        "first",
        "train",
        "queued",
        "specnet",
    )
    assert run["spec"]["augment"]["mixup"] == 0.2 and run["spec"]["callbacks"]["grad_clip"] == 1.0
    assert run["spec"]["learning_rate"] == 1e-3  # the defaults are filled in and kept
    assert body["warning"] is None  # a tiny specnet fits anywhere
    assert run["model_id"] is None

    worker = start_worker(served.env, "--once")
    output, _ = worker.communicate(timeout=180)
    assert worker.returncode == 0, output

    done = call(served, "GET", f"/v1/runs/{run['id']}", served.alice).json()
    assert done["status"] == "succeeded", done
    assert len(done["epochs"]) == 1 and done["epochs"][0]["eer"] is not None
    assert done["model_id"] is not None

    losses = call(served, "GET", f"/v1/runs/{run['id']}/losses", served.alice).json()
    steps = [point["step"] for point in losses["losses"]]
    assert steps == sorted(steps) and len(steps) >= 2 and losses["next_after_step"] is None
    later = call(
        served,
        "GET",
        f"/v1/runs/{run['id']}/losses",
        served.alice,
        params={"after_step": steps[0]},
    ).json()
    assert [p["step"] for p in later["losses"]] == steps[1:]

    history = call(served, "GET", f"/v1/runs/{run['id']}/files/history.csv", served.alice)
    assert history.status_code == 200 and history.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(history.text)))
    assert len(rows) == 1 and float(rows[0]["eer"]) == pytest.approx(done["epochs"][0]["eer"])
    metrics = call(served, "GET", f"/v1/runs/{run['id']}/files/metrics.json", served.alice)
    assert "eer" in json.loads(metrics.content)
    png = call(served, "GET", f"/v1/runs/{run['id']}/files/confusion.png", served.alice)
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"

    verdict = call(
        served,
        "POST",
        "/v1/predict",
        served.alice,
        files={"file": ("clip.wav", wav_bytes(2.0), "audio/wav")},
        data={"model": str(done["model_id"])},
    )
    assert verdict.status_code == 200, verdict.text
    assert verdict.json()["model"]["id"] == done["model_id"]

    # Nobody else sees it, its files or its losses.
    for path in (
        f"/v1/runs/{run['id']}",
        f"/v1/runs/{run['id']}/losses",
        f"/v1/runs/{run['id']}/files/history.csv",
    ):
        assert_error(call(served, "GET", path, served.bob), 404, "not_found")
    assert_error(call(served, "POST", f"/v1/runs/{run['id']}/stop", served.bob), 404, "not_found")
    assert_error(call(served, "DELETE", f"/v1/runs/{run['id']}", served.bob), 404, "not_found")
    # The administrator does.
    assert call(served, "GET", f"/v1/runs/{run['id']}", served.admin).status_code == 200

    # Deleting the run takes its model with it, as on the Profile page.
    gone = call(served, "DELETE", f"/v1/runs/{run['id']}", served.alice)
    assert gone.status_code == 204, gone.text
    assert_error(call(served, "GET", f"/v1/runs/{run['id']}", served.alice), 404, "not_found")
    model = call(served, "GET", f"/v1/models/{done['model_id']}", served.alice)
    assert_error(model, 404, "not_found")


def test_runs_are_stopped_resumed_listed_and_deleted(served: Served) -> None:
    first = submit(served, served.alice, name="to stop", spec=QUICK).json()["run"]
    unnamed = submit(served, served.alice, spec={**QUICK, "epochs": 2}).json()["run"]
    assert unnamed["name"].startswith(f"specnet-{DATASET}-")

    # Two queued runs are alice's limit here.
    third = submit(served, served.alice, name="third", spec=QUICK)
    assert "2" in assert_error(third, 413, "limit_exceeded")
    early = call(served, "DELETE", f"/v1/runs/{first['id']}", served.alice)
    assert "stop" in assert_error(early, 409, "conflict")

    listed = call(served, "GET", "/v1/runs", served.alice, params={"status": "queued"}).json()
    assert [r["id"] for r in listed["items"]] == [unnamed["id"], first["id"]]
    assert listed["total"] == 2 and listed["next_offset"] is None
    assert all(r["epochs"] == [] for r in listed["items"])
    page = call(served, "GET", "/v1/runs", served.alice, params={"limit": 1}).json()
    assert len(page["items"]) == 1 and page["next_offset"] == 1
    assert call(served, "GET", "/v1/runs", served.bob).json()["total"] == 0
    everyone = call(served, "GET", "/v1/runs", served.admin, params={"all_users": "true"})
    assert {unnamed["id"], first["id"]} <= {r["id"] for r in everyone.json()["items"]}
    refused = call(served, "GET", "/v1/runs", served.alice, params={"all_users": "true"})
    assert_error(refused, 403, "forbidden")

    stopped = call(served, "POST", f"/v1/runs/{first['id']}/stop", served.alice).json()
    assert stopped["status"] == "cancelled"  # queued: cancelled at once
    again = call(served, "POST", f"/v1/runs/{first['id']}/stop", served.alice).json()
    assert again["status"] == "cancelled"
    resumed = call(served, "POST", f"/v1/runs/{first['id']}/resume", served.alice)
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    twice = call(served, "POST", f"/v1/runs/{first['id']}/resume", served.alice)
    assert_error(twice, 409, "conflict")
    not_yet = call(served, "GET", f"/v1/runs/{first['id']}/files/history.csv", served.alice)
    assert "when training ends" in assert_error(not_yet, 404, "not_found")

    for run in (first, unnamed):
        call(served, "POST", f"/v1/runs/{run['id']}/stop", served.alice)
        assert call(served, "DELETE", f"/v1/runs/{run['id']}", served.alice).status_code == 204
    assert call(served, "GET", "/v1/runs", served.alice).json()["total"] == 0


def test_every_kind_of_job_is_listed_and_deleted_as_its_page_does(served: Served) -> None:
    with store.session_scope() as session:
        owner = store.get_user_by_username(session, "alice")
        assert owner is not None
        test = store.create_run(
            session, owner.actor, "a test", {"models": [], "dataset": DATASET}, kind="evaluate"
        )
    trained = submit(served, served.alice, name="a run", spec=QUICK).json()["run"]
    every = call(served, "GET", "/v1/runs", served.alice).json()["items"]
    assert [(r["id"], r["kind"]) for r in every] == [
        (trained["id"], "train"),
        (test.id, "evaluate"),
    ]
    assert every[1]["spec"] is None  # only a training run's recipe is shown
    only = call(served, "GET", "/v1/runs", served.alice, params={"kind": "evaluate"}).json()
    assert [r["id"] for r in only["items"]] == [test.id]

    queued = call(served, "DELETE", f"/v1/runs/{test.id}", served.alice)
    assert "stop it first" in assert_error(queued, 409, "conflict")
    for run_id in (test.id, trained["id"]):
        call(served, "POST", f"/v1/runs/{run_id}/stop", served.alice)
        assert call(served, "DELETE", f"/v1/runs/{run_id}", served.alice).status_code == 204
    assert call(served, "GET", "/v1/runs", served.alice).json()["total"] == 0


@pytest.mark.parametrize(
    ("spec", "status", "code", "words"),
    [
        ({**QUICK, "epochs": 4}, 413, "limit_exceeded", "3 epochs"),
        ({**QUICK, "epochs": 0}, 422, "invalid_spec", "epochs"),
        ({**QUICK, "arch": "gpt"}, 422, "invalid_spec", "arch"),
        ({**QUICK, "shuffle": True}, 422, "invalid_request", "shuffle"),
        ({**QUICK, "augment": {"flip": True}}, 422, "invalid_request", "flip"),
        ({**QUICK, "callbacks": {"grad_clip": 1000}}, 422, "invalid_spec", "grad_clip"),
        ({**QUICK, "speakers": ["zed"]}, 422, "invalid_spec", "zed"),
        ({**QUICK, "classes": ["bonafide"]}, 400, "dataset_error", "generator"),
        ({**QUICK, "dataset": "nope"}, 404, "not_found", "nope"),
        ({**QUICK, "dataset": "../tiny"}, 404, "not_found", "tiny"),
        ({"arch": "specnet"}, 422, "invalid_request", "dataset"),
    ],
)
def test_a_spec_the_server_will_not_run_is_refused_in_words(
    served: Served, spec: dict[str, Any], status: int, code: str, words: str
) -> None:
    message = assert_error(submit(served, served.alice, spec=spec), status, code)
    assert words in message


def test_names_ownership_and_tokens_are_checked(served: Served) -> None:
    made = submit(served, served.alice, name="mine", spec=QUICK)
    assert made.status_code == 202, made.text
    try:
        assert_error(submit(served, served.alice, name="mine", spec=QUICK), 409, "conflict")
        # bob may not train on alice's own dataset, nor learn that it exists.
        bobs = submit(served, served.bob, spec={**QUICK, "dataset": "alice-tiny"})
        assert_error(bobs, 404, "not_found")
        assert_error(submit(served, {}, spec=QUICK), 401, "unauthorized")
        revoked = auth("fv_not-a-token")
        assert_error(submit(served, revoked, spec=QUICK), 401, "unauthorized")
    finally:
        run_id = made.json()["run"]["id"]
        call(served, "POST", f"/v1/runs/{run_id}/stop", served.alice)
        call(served, "DELETE", f"/v1/runs/{run_id}", served.alice)


def test_a_run_file_is_one_of_the_files_a_run_writes(served: Served) -> None:
    from typing import get_args

    from fakevoice.api.training import RunFileName
    from fakevoice.services.results import ARTEFACT_NAMES

    # Every file a run writes but its pickle (served, checked, as the model's fastai export).
    assert set(get_args(RunFileName)) == set(ARTEFACT_NAMES) - {"model.pkl"}
    for name in ("model.safetensors", "manifest.json", "model.pkl", "cookie.key"):
        answer = call(served, "GET", f"/v1/runs/1/files/{name}", served.alice)
        assert "history.csv" in assert_error(answer, 422, "invalid_request")
    # A path is no file name: it matches no endpoint.
    traversal = call(served, "GET", "/v1/runs/1/files/..%2F..%2Fcookie.key", served.alice)
    assert_error(traversal, 404, "not_found")


def test_a_verdicts_only_token_asks_and_reads_but_changes_nothing(served: Served) -> None:
    from test_api import store_specnet, wav_bytes

    with store.session_scope() as session:
        owner = store.get_user_by_username(session, "alice")
    assert owner is not None
    alice = owner.actor
    model = store_specnet(alice, "scoped")
    _, secret = tokens.create_token(alice, "call centre", "verdicts")
    narrow = auth(secret)

    # Verdicts, explanations, the history (and its labels) and every read work.
    verdict = call(
        served,
        "POST",
        "/v1/predict",
        narrow,
        files={"file": ("call.wav", wav_bytes(2.0), "audio/wav")},
        data={"model": str(model.id)},
    )
    assert verdict.status_code == 200, verdict.text
    analysis = verdict.json()["analysis_id"]
    labelled = call(served, "PATCH", f"/v1/analyses/{analysis}", narrow, json={"note": "case 9"})
    assert labelled.status_code == 200, labelled.text
    for path in ("/v1/models", f"/v1/models/{model.id}", "/v1/runs", "/v1/datasets"):
        assert call(served, "GET", path, narrow).status_code == 200, path

    # Nothing that trains, uploads, shares or deletes.
    refusals = [
        ("POST", "/v1/runs", {"json": {"spec": QUICK}}),
        ("PATCH", f"/v1/models/{model.id}", {"json": {"public": True}}),
        ("DELETE", f"/v1/models/{model.id}", {}),
        ("DELETE", f"/v1/datasets/{DATASET}", {}),
        ("POST", f"/v1/datasets/{DATASET}/renders", {"json": {"name": "x", "features": {}}}),
        ("POST", "/v1/evaluations", {"json": {"models": [model.id], "dataset": DATASET}}),
        ("POST", "/v1/runs/1/stop", {}),
        ("DELETE", "/v1/runs/1", {}),
    ]
    for method, path, extra in refusals:
        message = assert_error(call(served, method, path, narrow, **extra), 403, "forbidden")
        assert "full access" in message, path
    upload = call(
        served,
        "POST",
        "/v1/models",
        narrow,
        files={"file": ("m.zip", b"PK\x03\x04", "application/zip")},
        data={"name": "x"},
    )
    assert_error(upload, 403, "forbidden")
    assert services.get_model(alice, model.id).is_public is False  # nothing changed
    # The same owner's full token may.
    shared = call(served, "PATCH", f"/v1/models/{model.id}", served.alice, json={"public": True})
    assert shared.status_code == 200 and shared.json()["public"] is True
