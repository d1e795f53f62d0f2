"""Stored models over HTTP beyond the list: download a model's files, upload one, share, rename
and delete — against a real uvicorn server, a real SQLite store and real model files.

alice has a private and a public specnet (safe bundles) and a trained run's model with its fastai
export; bob has nothing of his own.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from test_api import (
    assert_error,
    auth,
    isolated_workbench,
    make_user,
    store_specnet,
    thread_server,
    wav_bytes,
)
from test_uploads import register_run_model, trained_run_dir

from fakevoice import services, store
from fakevoice.services import tokens
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, ModelRecord


@dataclass(frozen=True)
class Served:
    url: str
    alice: Actor
    alice_token: str
    bob_token: str
    private: ModelRecord
    public: ModelRecord
    trained: ModelRecord  # alice's, private, with a fastai export
    run_dir: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    run_dir = trained_run_dir(tmp_path_factory)
    # Models up to 4 MiB here (audio: 2 MiB); the tiny specnet's bundle is well under that.
    with isolated_workbench(
        tmp_path_factory.mktemp("api-models"),
        FAKEVOICE_MAX_MODEL_UPLOAD_BYTES=str(4 * 1024 * 1024),
    ):
        alice, bob = make_user("alice"), make_user("bob")
        _, alice_token = tokens.create_token(alice, "tests")
        _, bob_token = tokens.create_token(bob, "tests")
        private = store_specnet(alice, "alice-private")
        public = store_specnet(alice, "shared", public=True)
        trained = register_run_model(alice, run_dir, name="trained")
        with thread_server(get_settings()) as url:
            yield Served(url, alice, alice_token, bob_token, private, public, trained, run_dir)


def get(served: Served, path: str, token: str | None) -> httpx.Response:
    headers = auth(token) if token else {}
    return httpx.get(f"{served.url}{path}", headers=headers, timeout=60)


def upload(served: Served, data: bytes, name: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{served.url}/v1/models",
        files={"file": ("model.zip", data, "application/octet-stream")},
        data={"name": name},
        headers=auth(token),
        timeout=120,
    )


def p_human(served: Served, model_id: int, token: str) -> float:
    response = httpx.post(
        f"{served.url}/v1/predict",
        files={"file": ("clip.wav", wav_bytes(2.0, seed=4), "audio/wav")},
        data={"model": str(model_id)},
        headers=auth(token),
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return float(response.json()["p_human"])


def test_a_bundle_is_downloaded_by_those_who_may_use_it_and_uploaded_again(
    served: Served,
) -> None:
    mine = get(served, f"/v1/models/{served.private.id}/bundle", served.alice_token)
    assert mine.status_code == 200 and mine.headers["content-type"] == "application/zip"
    assert mine.headers["content-disposition"] == (
        'attachment; filename="alice-private-bundle.zip"'
    )
    with zipfile.ZipFile(io.BytesIO(mine.content)) as archive:
        assert sorted(archive.namelist()) == ["manifest.json", "model.safetensors"]
    # bob: not alice's private model (as if it did not exist), but her public one.
    refused = get(served, f"/v1/models/{served.private.id}/bundle", served.bob_token)
    assert_error(refused, 404, "not_found")
    assert_error(get(served, f"/v1/models/{served.public.id}/bundle", None), 401, "unauthorized")
    theirs = get(served, f"/v1/models/{served.public.id}/bundle", served.bob_token)
    assert theirs.status_code == 200

    created = upload(served, theirs.content, "bob's copy", served.bob_token)
    assert created.status_code == 201, created.text
    copy = created.json()
    assert copy["name"] == "bob's copy" and copy["mine"] is True and copy["public"] is False
    assert copy["arch"] == "specnet" and copy["version"] != ""
    assert p_human(served, copy["id"], served.bob_token) == pytest.approx(
        p_human(served, served.public.id, served.bob_token), abs=1e-6
    )
    assert copy["warning"] is None  # nothing left behind
    taken = upload(served, theirs.content, "bob's copy", served.bob_token)
    assert "already a model named" in assert_error(taken, 409, "conflict")


def test_an_upload_whose_figures_fail_their_check_is_stored_with_a_warning(
    served: Served,
) -> None:
    bundle = get(served, f"/v1/models/{served.public.id}/bundle", served.bob_token).content
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(bundle)) as source, zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            content = json.loads(source.read(name)) if name == "manifest.json" else None
            if content is not None:  # and a recipe this server cannot read
                content["train_spec"] = {"dataset": "demo", "epochs": -3}
            target.writestr(name, source.read(name) if content is None else json.dumps(content))
        # Figures that claim another model's manifest: what a bundle edited by hand carries.
        figures = {"format": "fakevoice-validation/1", "manifest_sha256": "0" * 64}
        target.writestr("validation.json", json.dumps(figures))
    created = upload(served, buffer.getvalue(), "hand-edited", served.bob_token)
    assert created.status_code == 201, created.text
    body = created.json()
    why = "they were signed for another manifest than this bundle's"
    assert body["warning"] == (
        f"Its bundle carried validation figures (validation.json) that failed their check "
        f"({why}); they were not kept. Not kept from its bundle: its training recipe (train_spec "
        "in manifest.json), because it is not a training recipe this server can read; so its "
        "card cannot say what it was trained on, and a test on that dataset cannot set its "
        "training split apart."
    )
    assert body["metrics"]["dropped_validation"] == why and "eer" not in body["metrics"]
    assert body["metrics"]["dropped_parts"] == {
        "train_spec": "it is not a training recipe this server can read"
    }
    # The model keeps it: read again, and on its card.
    again = get(served, f"/v1/models/{body['id']}", served.bob_token).json()
    assert again["metrics"]["dropped_validation"] == why
    card = get(served, f"/v1/models/{body['id']}/card", served.bob_token).text
    figures, recipe = body["warning"].split(" Not kept from its bundle: ")
    assert figures in card and f"- Not kept from its bundle: {recipe}" in card


def test_the_fastai_export_is_downloaded_and_known_again(served: Served) -> None:
    export = get(served, f"/v1/models/{served.trained.id}/fastai", served.alice_token)
    assert export.status_code == 200, export.text
    assert export.content == (served.run_dir / "model.pkl").read_bytes()
    assert export.headers["content-disposition"] == 'attachment; filename="trained.pkl"'
    known = upload(served, export.content, "ignored", served.alice_token)
    assert known.status_code == 200 and known.json()["id"] == served.trained.id
    # To bob the same file is unknown: the model is alice's and private, and never unpickled.
    unknown = upload(served, export.content, "stolen", served.bob_token)
    assert "never unpickles" in assert_error(unknown, 409, "bad_model_file")
    none = get(served, f"/v1/models/{served.public.id}/fastai", served.alice_token)
    assert "has no fastai export" in assert_error(none, 404, "not_found")


def test_a_model_card_is_read_by_those_who_may_use_the_model(served: Served) -> None:
    card = get(served, f"/v1/models/{served.trained.id}/card", served.alice_token)
    assert card.status_code == 200, card.text
    assert card.headers["content-type"].startswith("text/markdown")
    assert card.headers["content-disposition"] == 'attachment; filename="trained-card.md"'
    assert card.text.startswith("# Model card: `trained`\n") and "## Recipe" in card.text
    refused = get(served, f"/v1/models/{served.private.id}/card", served.bob_token)
    assert_error(refused, 404, "not_found")
    assert get(served, f"/v1/models/{served.public.id}/card", served.bob_token).status_code == 200


def test_bad_uploads_are_refused_in_words(served: Served) -> None:
    token = served.alice_token
    assert_error(upload(served, b"just some bytes" * 10, "junk", token), 409, "bad_model_file")
    too_big = upload(served, b"\0" * (get_settings().max_model_upload_bytes + 1), "big", token)
    assert_error(too_big, 413, "too_large")
    # Bigger than an audio file may be, within the model limit: not refused for its size.
    sized = upload(served, b"\0" * (get_settings().max_upload_bytes + 1), "sized", token)
    assert_error(sized, 409, "bad_model_file")
    nameless = httpx.post(
        f"{served.url}/v1/models",
        files={"file": ("m.zip", b"PK", "application/zip")},
        headers=auth(token),
    )
    assert "'name' is required" in assert_error(nameless, 422, "invalid_request")
    anonymous = httpx.post(
        f"{served.url}/v1/models", files={"file": ("m.zip", b"PK")}, data={"name": "x"}
    )
    assert_error(anonymous, 401, "unauthorized")
    stored = {m.name for m in services.list_models(served.alice)}
    assert not stored & {"junk", "big"}


def test_owners_share_rename_and_delete_and_nobody_else_does(served: Served) -> None:
    alice, bob = auth(served.alice_token), auth(served.bob_token)
    created = upload(
        served,
        get(served, f"/v1/models/{served.private.id}/bundle", served.alice_token).content,
        "to change",
        served.alice_token,
    )
    model_id = created.json()["id"]
    url = f"{served.url}/v1/models/{model_id}"

    changed = httpx.patch(url, json={"public": True, "name": "changed"}, headers=alice)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["public"]) == ("changed", True)
    # bob sees it now, but may not change or delete it.
    forbidden = httpx.patch(url, json={"public": False}, headers=bob)
    assert "only its owner may change it" in assert_error(forbidden, 403, "forbidden")
    assert_error(httpx.delete(url, headers=bob), 403, "forbidden")
    private = f"{served.url}/v1/models/{served.private.id}"
    assert_error(httpx.patch(private, json={"public": True}, headers=bob), 404, "not_found")

    # A taken name changes nothing, the sharing asked in the same request included.
    both = httpx.patch(url, json={"public": False, "name": "shared"}, headers=alice)
    assert "already a model named 'shared'" in assert_error(both, 409, "conflict")
    with store.session_scope(readonly=True) as session:
        assert store.get_model(session, served.alice, model_id).is_public
    assert_error(httpx.patch(url, json={}, headers=alice), 422, "invalid_spec")
    assert_error(httpx.patch(url, json={"colour": "red"}, headers=alice), 422, "invalid_request")

    folder = Path(services.get_model(served.alice, model_id).path)
    deleted = httpx.delete(url, headers=alice)
    assert deleted.status_code == 204 and deleted.content == b""
    assert not folder.exists()
    assert_error(httpx.get(url, headers=alice), 404, "not_found")
