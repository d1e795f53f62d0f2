"""Datasets over HTTP: those a caller may use (with their counts and what a selection holds), a
new one built from the caller's own recordings (a job, as on the Datasets page), one rendered
again with other spectrogram features (administrators), and deleting one.

Builds and renders are jobs like training runs: `GET /v1/runs/{id}` follows them (`kind`
`dataset` or `render`), `POST /v1/runs/{id}/stop` stops them. A dataset built from a user's
recordings is theirs: only they and administrators see it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from fakevoice import services
from fakevoice.api.auth import FullAccessDep, SignedInDep
from fakevoice.api.routes import MULTIPART_OVERHEAD
from fakevoice.api.schemas import RunOut
from fakevoice.datasets.shortcut_findings import Separation
from fakevoice.errors import InvalidSpecError
from fakevoice.services.dataset_builds import DEFAULT_BUILD_GENERATORS, DEFAULT_BUILD_NOISE
from fakevoice.settings import Settings

DatasetName = Annotated[str, Path(min_length=1, max_length=128)]
MAX_FEATURES_TEXT = 4096  # a JSON object of spectrogram settings
UPLOADS_AT_ONCE = 2


class DatasetOut(BaseModel):
    """A built dataset you may train on and test models with."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "demo",
                    "kind": "demo",
                    "items": 4845,
                    "classes": [
                        "bonafide",
                        "codec2",
                        "espeak",
                        "griffinlim",
                        "hifigan",
                        "lpc",
                        "mel_griffinlim",
                        "piper",
                        "world",
                    ],
                    "speakers": 8,
                    "noise_levels": ["snr_inf", "snr_20db", "snr_10db", "snr_0db", "snr_-10db"],
                    "feature_spec": {"kind": "mel", "n_mels": 128, "image_height": 128},
                    "created": "2026-12-01T09:00:00+00:00",
                    "older_renderer": False,
                }
            ]
        }
    )

    name: str
    kind: str = Field(description="demo-small, demo, folder, asvspoof2019-la, upload...")
    items: int = Field(description="spectrograms (one per clip and noise level)")
    classes: list[str] = Field(description="bonafide first, then each generator")
    speakers: int
    noise_levels: list[str]
    feature_spec: dict[str, Any] = Field(description="how its spectrograms were made")
    created: str
    older_renderer: bool = Field(
        default=False,
        description="its images were made by an older renderer, which left each clip's DC "
        "offset in them: render it again (`fakevoice dataset render`) before training an image "
        "model on it",
    )


class DatasetDetail(DatasetOut):
    """A dataset with its counts (items per class, noise level and speaker)."""

    clips: int = Field(description="distinct audio clips (noise levels share a clip)")
    audio_hours: float
    speaker_names: list[str]
    items_by_class: dict[str, int]
    items_by_noise: dict[str, int]
    items_by_speaker: dict[str, int]
    attribution: str | None = Field(description="where its speech comes from, and licences")
    shortcuts: Literal["strong", "some", "none"] | None = Field(
        default=None,
        description="whether simple cues give its classes away, when its build kept the audit "
        "(the whole audit: /v1/datasets/{name}/shortcuts)",
    )


class CueOut(BaseModel):
    """One cue as a score on its own."""

    cue: str = Field(description="duration_s, leading_silence_s, level_dbfs, bandwidth_hz...")
    label: str = Field(description="the cue in words")
    unit: str
    eer: float = Field(description="EER (fraction) with the cue as the score; 0.5 is chance")
    bonafide_median: float
    spoof_median: float


class SeparationOut(BaseModel):
    """Human clips against all machine clips (`spoof` = `all`) or one generator's."""

    spoof: str
    bonafide_clips: int
    spoof_clips: int
    combined_eer: float | None = Field(
        description="the cues together, fitted and scored on different speakers (or "
        "utterances); null when a class has too few clips"
    )
    cues: list[CueOut] = Field(description="every cue, the most separating first")


class ShortcutsOut(BaseModel):
    """How well simple cues alone (silence, level, bandwidth...) tell the classes apart."""

    severity: Literal["strong", "some", "none"]
    summary: str = Field(description="the finding in words")
    clips: int = Field(description="clean clips measured")
    sampled_from: int = Field(description="clips the dataset has (more when it was sampled)")
    unreadable: int
    held_out: Literal["speaker", "utterance"]
    pooled: SeparationOut
    generators: dict[str, SeparationOut]
    too_few: list[str] = Field(description="generators with too few clips to judge alone")


class SelectionOut(BaseModel):
    """How many spectrograms a selection of a dataset holds, as the Train page shows it."""

    items: int
    by_speaker: dict[str, dict[str, int]] = Field(description="speaker -> noise level -> items")


class RenderIn(BaseModel):
    """A dataset rendered again as a new one, with some spectrogram settings changed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "demo-lfcc", "features": {"kind": "lfcc"}}]},
    )
    name: str = Field(min_length=1, max_length=128, description="the new dataset's name")
    features: dict[str, Any] = Field(
        description="what differs from the source's features: kind (mel, linear, mfcc, lfcc, "
        "cqt, phase), n_fft, hop_length, n_mels, n_coeffs, fmin, fmax, top_db, image_height, "
        "image_width, colormap"
    )


def _features(text: str | None) -> dict[str, Any] | None:
    if text is None or not text.strip():
        return None
    if len(text) > MAX_FEATURES_TEXT:
        raise InvalidSpecError("features is too long to be spectrogram settings.")
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidSpecError(
            'features must be a JSON object, e.g. {"kind": "lfcc"}; it is not JSON.'
        ) from None
    if not isinstance(value, dict):
        raise InvalidSpecError('features must be a JSON object, e.g. {"kind": "lfcc"}.')
    return value


def _dataset_out(summary: dict[str, Any]) -> dict[str, Any]:
    """A dataset's catalog summary (``DatasetSummary.to_dict()``) without its folder: where the
    server keeps it is not the caller's business."""
    return {key: value for key, value in summary.items() if key != "path"}


def build_dataset_router(settings: Settings) -> APIRouter:
    router = APIRouter()
    # An upload of recordings is held in memory until it is staged (up to
    # FAKEVOICE_DATASET_UPLOAD_MAX_BYTES): a process takes this many at once, the rest wait.
    uploads_at_once = anyio.Semaphore(UPLOADS_AT_ONCE)

    @router.get("/v1/datasets", tags=["datasets"], summary="The datasets you may use")
    def list_datasets(caller: SignedInDep) -> list[DatasetOut]:
        """Datasets built on the server (shared) and those built from your own recordings."""
        return [
            DatasetOut(**_dataset_out(s.to_dict()))
            for s in services.list_datasets(actor=caller.actor)
        ]

    @router.get("/v1/datasets/{name}", tags=["datasets"], summary="One dataset and its counts")
    def get_dataset(name: DatasetName, caller: SignedInDep) -> DatasetDetail:
        overview = services.dataset_overview(name, actor=caller.actor)

        def items(frame: Any) -> dict[str, int]:
            return {str(k): int(v) for k, v in frame["items"].items()}

        return DatasetDetail(
            **_dataset_out(overview.info),
            clips=overview.clips,
            audio_hours=round(overview.audio_hours, 4),
            speaker_names=[str(s) for s in overview.by_speaker.index],
            items_by_class=items(overview.by_class),
            items_by_noise=items(overview.by_noise),
            items_by_speaker=items(overview.by_speaker),
            attribution=overview.attribution,
            shortcuts=None if overview.shortcuts is None else overview.shortcuts.severity,
        )

    @router.get(
        "/v1/datasets/{name}/shortcuts",
        tags=["datasets"],
        summary="Do simple cues give its classes away?",
    )
    def shortcuts(name: DatasetName, caller: SignedInDep, recompute: bool = False) -> ShortcutsOut:
        """The shortcut audit of a dataset: how well the silence before and after the speech,
        loudness, noise floor, bandwidth and other simple cues alone tell its human clips from
        its machine ones (each cue alone, and together on held-out speakers), against all
        machine clips and each generator. Kept by every build; made (and kept) on the first
        request for an older dataset, or again with `recompute`."""
        audit = services.dataset_shortcuts(name, actor=caller.actor, recompute=recompute)

        def separation(s: Separation) -> SeparationOut:
            return SeparationOut(
                spoof=s.spoof,
                bonafide_clips=s.bonafide_clips,
                spoof_clips=s.spoof_clips,
                combined_eer=s.combined_eer,
                cues=[CueOut(label=c.label, unit=c.unit, **asdict(c)) for c in s.cues],
            )

        return ShortcutsOut(
            severity=audit.severity,
            summary=audit.summary(),
            clips=audit.clips,
            sampled_from=audit.sampled_from,
            unreadable=audit.unreadable,
            held_out=audit.held_out,
            pooled=separation(audit.pooled),
            generators={k: separation(v) for k, v in audit.generators.items()},
            too_few=audit.too_few,
        )

    @router.get(
        "/v1/datasets/{name}/selection",
        tags=["datasets"],
        summary="How many spectrograms a selection holds",
    )
    def selection(
        name: DatasetName,
        caller: SignedInDep,
        noise_levels: Annotated[list[str] | None, Query(max_length=64)] = None,
        speakers: Annotated[list[str] | None, Query(max_length=10_000)] = None,
        classes: Annotated[list[str] | None, Query(max_length=256)] = None,
    ) -> SelectionOut:
        """The items a run's `noise_levels`, `speakers` and `classes` would select (each
        repeatable; left out: all), per speaker and noise level. A value the dataset does not
        have is a 422 that names it."""
        table = services.selection_counts(
            name,
            tuple(noise_levels) if noise_levels else None,
            tuple(speakers) if speakers else None,
            tuple(classes) if classes else None,
            actor=caller.actor,
        )
        by_speaker = {
            str(speaker): {str(noise): int(n) for noise, n in row.items() if n}
            for speaker, row in table.iterrows()
        }
        return SelectionOut(items=int(table.to_numpy().sum()), by_speaker=by_speaker)

    @router.post(
        "/v1/datasets",
        tags=["datasets"],
        summary="Build a dataset from your recordings",
        status_code=202,
        max_body_size=settings.dataset_upload_max_bytes + MULTIPART_OVERHEAD,
        form_limits={"max_files": settings.dataset_upload_max_files},
    )
    async def build(
        files: Annotated[
            list[UploadFile],
            File(
                description="audio files of one speaker (name them in `speaker`), or zips: a "
                "folder per speaker (the worker makes machine copies), or bonafide/ and a "
                "folder per generator (used as they are)"
            ),
        ],
        name: Annotated[str, Form(min_length=1, max_length=128)],
        caller: FullAccessDep,
        speaker: Annotated[
            str, Form(max_length=128, description="the speaker of the loose audio files")
        ] = "",
        generators: Annotated[
            list[str] | None,
            Form(description=f"repeatable; default {', '.join(DEFAULT_BUILD_GENERATORS)}"),
        ] = None,
        noise_levels: Annotated[
            list[str] | None,
            Form(description=f"repeatable; default {', '.join(DEFAULT_BUILD_NOISE)}"),
        ] = None,
        features: Annotated[
            str | None,
            Form(description='spectrogram settings that differ, as JSON: {"kind": "lfcc"}'),
        ] = None,
    ) -> RunOut:
        """The recordings are staged and a worker builds the dataset (machine copies by the
        vocoders chosen, noise mixed in, spectrograms rendered); `GET /v1/runs/{id}` follows
        it. At most `FAKEVOICE_DATASET_UPLOAD_MAX_FILES` files and
        `FAKEVOICE_DATASET_UPLOAD_MAX_BYTES` in all (zips expanded under the batch rules:
        no bombs, no `..` paths), and `FAKEVOICE_MAX_DATASETS_PER_USER` datasets of yours."""
        overrides = _features(features)
        # The request's size limit caps the upload; the files wait on disk (Starlette spools
        # every part over a MiB) and are staged a chunk at a time, zips expanded as they go.
        uploads = [(upload.filename or "upload", upload.file) for upload in files]
        async with uploads_at_once:
            run = await anyio.to_thread.run_sync(
                lambda: services.submit_dataset_build(
                    caller.actor,
                    name,
                    uploads,
                    speaker=speaker,
                    generators=tuple(generators) if generators else DEFAULT_BUILD_GENERATORS,
                    noise_levels=tuple(noise_levels) if noise_levels else DEFAULT_BUILD_NOISE,
                    feature_overrides=overrides,
                )
            )
        return RunOut.of(run, [])

    @router.post(
        "/v1/datasets/{name}/renders",
        tags=["datasets"],
        summary="Render a dataset again with other features (administrators)",
        status_code=202,
    )
    def render(name: DatasetName, body: RenderIn, caller: FullAccessDep) -> RunOut:
        """The same clips and noise, spectrograms made with other settings, as a new dataset
        shared by everyone (so administrators only): features compared on identical audio. A
        worker renders it (`kind` `render`)."""
        return RunOut.of(services.submit_render(caller.actor, name, body.name, body.features), [])

    @router.delete(
        "/v1/datasets/{name}",
        tags=["datasets"],
        summary="Delete a dataset",
        status_code=204,
        response_class=Response,
    )
    def delete(name: DatasetName, caller: FullAccessDep) -> Response:
        """Yours (built from your recordings), or any for an administrator; models trained on it
        stay. 409 while a queued or running job uses it."""
        services.delete_dataset(caller.actor, name)
        return Response(status_code=204)

    return router
