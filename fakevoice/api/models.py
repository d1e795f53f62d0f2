"""Stored models over HTTP, beyond listing them: download a model's files, upload one, share,
rename and delete.

Downloads are for anyone who may use the model (its owner; everyone once it is public, anonymous
callers too where the server allows them); the files are checked against the hashes the store
kept before they leave (:mod:`fakevoice.services.model_files`). Uploads take what the Evaluate page
takes (a safe bundle, an official AASIST checkpoint, or a fastai export of this server) and never
unpickle a file. Changes are for the owner (and administrators); the store checks it.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, File, Form, Path, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from fakevoice import services
from fakevoice.api.auth import CallerDep, FullAccessDep
from fakevoice.api.routes import MAX_ID, model_body_limit, read_upload
from fakevoice.api.schemas import ModelOut
from fakevoice.errors import InvalidSpecError
from fakevoice.services import model_files, profile
from fakevoice.services.model_files import ModelFile
from fakevoice.services.uploads import import_uploaded_model, is_export_of, upload_warning
from fakevoice.settings import Settings

ModelId = Annotated[int, Path(ge=1, le=MAX_ID)]


class ModelChange(BaseModel):
    """What to change of one of your models; a field you leave out stays as it is."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"public": True}, {"name": "resnet18 clean v2"}]},
    )
    name: str | None = Field(default=None, min_length=1, max_length=128)
    public: bool | None = Field(
        default=None, description="true: everyone may use and download it; false: only you"
    )


class UploadedModel(ModelOut):
    """The stored model, and a warning when part of the upload was not kept."""

    warning: str | None = Field(
        default=None,
        description="e.g. that the bundle's validation figures (validation.json) failed their "
        "check (changed after they were signed, unsigned, for another manifest or other "
        "weights) and were not kept; the model is stored either way (its metrics say why, "
        "under `dropped_validation`)",
    )


def _file_response(found: ModelFile) -> Response:
    return Response(
        found.data,
        media_type=found.media_type,
        headers={"Content-Disposition": f'attachment; filename="{found.file_name}"'},
    )


def build_model_router(settings: Settings) -> APIRouter:
    router = APIRouter()
    upload_limit = settings.max_model_upload_bytes

    @router.get(
        "/v1/models/{model_id}/bundle",
        tags=["models"],
        summary="A model's safe bundle (zip)",
        response_class=Response,
        responses={200: {"content": {"application/zip": {}}}},
    )
    def bundle(model_id: ModelId, caller: CallerDep) -> Response:
        """`model.safetensors` + `manifest.json` in a zip: weights, architecture, classes,
        feature spec, sample rate, window length and calibration, and `validation.json` (its
        validation figures, signed by this server) for a model that has figures of its own.
        Every model has one; it is what `POST /v1/models` (here or on another workbench) takes
        back."""
        model = caller.check_model(services.get_model(caller.actor, model_id))
        return _file_response(model_files.model_bundle(caller.actor, model))

    @router.get(
        "/v1/models/{model_id}/card",
        tags=["models"],
        summary="A model's card (Markdown)",
        response_class=Response,
        responses={200: {"content": {"text/markdown": {}}}},
    )
    def card(model_id: ModelId, caller: CallerDep) -> Response:
        """What the model is, what it was trained and checked on (dataset, split, fingerprints
        of its training clips), its validation EER with its interval, per generator and per
        noise level, its calibration, its weak spots, and its recipe as `POST /v1/runs` takes
        it: written from what the workbench keeps, for sharing with the model."""
        model = caller.check_model(services.get_model(caller.actor, model_id))
        return _file_response(model_files.model_card(caller.actor, model))

    @router.get(
        "/v1/models/{model_id}/fastai",
        tags=["models"],
        summary="A model's fastai export (model.pkl)",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def fastai_export(model_id: ModelId, caller: CallerDep) -> Response:
        """The `Learner.export` file of a model trained here, for `load_learner` in fastai
        (a pickle: load it only from a server you trust). Uploaded and imported models have
        none (404); their bundle holds the same weights."""
        model = caller.check_model(services.get_model(caller.actor, model_id))
        return _file_response(model_files.model_export(caller.actor, model))

    @router.post(
        "/v1/models",
        tags=["models"],
        summary="Store an uploaded model",
        status_code=201,
        max_body_size=model_body_limit(settings),
        responses={
            200: {"model": UploadedModel, "description": "a fastai export of a known model"}
        },
    )
    async def upload(
        file: Annotated[
            UploadFile,
            File(
                description="a safe bundle (zip of model.safetensors + manifest.json), an "
                "official AASIST / AASIST-L checkpoint, or a model.pkl this server exported"
            ),
        ],
        name: Annotated[
            str, Form(min_length=1, max_length=128, description="the new model's name")
        ],
        caller: FullAccessDep,
        response: Response,
    ) -> UploadedModel:
        """The kind is read from the content, never from the name. A bundle's manifest is
        checked and its weights load strictly into the architecture it names; a checkpoint is
        read as tensors only; a `.pkl` is never unpickled: when it is the export of a model you
        may use, that model is answered (200) and nothing new is stored. A bundle's
        `validation.json` that fails its check is not kept, and `warning` says so."""
        data = await read_upload(file, upload_limit)
        actor = caller.actor
        model = await anyio.to_thread.run_sync(
            import_uploaded_model, actor, name, file.filename or "upload", data
        )
        if is_export_of(model, data):
            response.status_code = 200
        stored = ModelOut.of(model, actor.user_id)
        return UploadedModel(**stored.model_dump(), warning=upload_warning(model))

    @router.patch("/v1/models/{model_id}", tags=["models"], summary="Share or rename your model")
    def change(model_id: ModelId, body: ModelChange, caller: FullAccessDep) -> ModelOut:
        """Only the owner (or an administrator) changes a model; a public model of someone else
        is a 403. Both changes are made, or neither (a taken name is a 409)."""
        actor = caller.actor
        if body.name is None and body.public is None:
            raise InvalidSpecError("Give a new name, public (true or false), or both.")
        model = profile.change_model(actor, model_id, name=body.name, public=body.public)
        return ModelOut.of(model, actor.user_id)

    @router.delete(
        "/v1/models/{model_id}",
        tags=["models"],
        summary="Delete your model",
        status_code=204,
        response_class=Response,
    )
    def delete(model_id: ModelId, caller: FullAccessDep) -> Response:
        """The model and its files go (a trained model's run keeps its own folder); verdicts
        made with it stay in the history, without a model."""
        profile.delete_model(caller.actor, model_id)
        return Response(status_code=204)

    return router
