"""What the API answers: pydantic models with examples for the OpenAPI page at ``/docs``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fakevoice.batch import BatchResult
from fakevoice.explain import Explanation, heatmap_cells
from fakevoice.inference import Verdict
from fakevoice.store.records import AnalysisRecord, EpochMetric, ModelRecord, RunRecord

VerdictLabel = Literal["human", "machine-generated", "inconclusive"]
HEATMAP_CELLS = 64  # the most cells a side of an explanation's heatmap in an answer


def examples(*cases: dict[str, Any]) -> ConfigDict:
    """A model's examples for the OpenAPI page."""
    return ConfigDict(json_schema_extra={"examples": list(cases)})


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable kind, e.g. not_audio, not_found, too_large")
    message: str = Field(description="what went wrong, in words a person understands")


class ErrorBody(BaseModel):
    """Every error answer has this shape."""

    model_config = examples(
        {"error": {"code": "not_audio", "message": "This file is not audio we can read."}}
    )
    error: ErrorDetail


class ModelRef(BaseModel):
    id: int
    name: str
    arch: str
    version: str = Field(description="first 12 hex digits of the weights' sha256")

    @classmethod
    def of(cls, model: ModelRecord) -> ModelRef:
        return cls(id=model.id, name=model.name, arch=model.arch, version=model_version(model))


def model_version(model: ModelRecord) -> str:
    return model.version


class WindowOut(BaseModel):
    start: float = Field(description="seconds from the start of the clip")
    end: float = Field(description="seconds")
    p_human: float
    top_class: str


PREDICTION_EXAMPLE: dict[str, Any] = {
    "verdict": "machine-generated",
    "p_human": 0.08,
    "p_fake": 0.92,
    "probabilities": {"spoof": 0.92, "bonafide": 0.08},
    "generator": None,
    "threshold": 0.6,
    "windows": [
        {"start": 0.0, "end": 4.0375, "p_human": 0.07, "top_class": "spoof"},
        {"start": 2.0188, "end": 6.0, "p_human": 0.1, "top_class": "spoof"},
    ],
    "duration": 6.0,
    "sample_rate": 16000,
    "model": {"id": 3, "name": "aasist-l", "arch": "aasist-l", "version": "4f1c2a9b0e77"},
    "analysis_id": 41,
    "file_sha256": "9f2c4e0d3b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e",
    "cautions": [],
    "typicality": 0.42,
    "elapsed_ms": 48.2,
}


class PredictionOut(BaseModel):
    """The verdict on one clip (DESIGN.md, "Verdict rule")."""

    model_config = examples(PREDICTION_EXAMPLE)
    verdict: VerdictLabel
    p_human: float = Field(description="probability that a human spoke (class bonafide)")
    p_fake: float
    probabilities: dict[str, float] = Field(description="class name -> probability")
    generator: str | None = Field(description="most likely generator when machine-generated")
    threshold: float
    windows: list[WindowOut] = Field(description="per-window scores (the timeline)")
    duration: float = Field(description="seconds, as uploaded")
    sample_rate: int = Field(description="Hz, as uploaded")
    model: ModelRef
    analysis_id: int = Field(description="the entry in your verdict history")
    file_sha256: str | None = Field(description="sha256 of the uploaded bytes, hex")
    cautions: list[str] = Field(
        description="why the verdict deserves less trust (narrow band, too short, mostly "
        "background, clipped, unlike the audio the model learned from); empty when the clip "
        "suits the model"
    )
    typicality: float | None = Field(
        default=None,
        description="share of the model's validation clips whose features lie at least as far "
        "from its classes as this clip's: spread between 0 and 1 for clips like them, under "
        "0.001 (with a caution) for a clip unlike the audio the model learned from; null for a "
        "model trained before it kept a reference, or imported",
    )
    elapsed_ms: float = Field(description="decoding, inference and logging, milliseconds")

    @classmethod
    def of(
        cls,
        verdict: Verdict,
        model: ModelRecord,
        analysis: AnalysisRecord,
        elapsed_ms: float,
    ) -> PredictionOut:
        return cls(
            verdict=verdict.label,
            p_human=verdict.p_human,
            p_fake=verdict.p_fake,
            probabilities=verdict.probabilities,
            generator=verdict.generator,
            threshold=verdict.threshold,
            windows=[WindowOut(**vars(w)) for w in verdict.windows],
            duration=verdict.duration,
            sample_rate=verdict.sample_rate,
            model=ModelRef.of(model),
            analysis_id=analysis.id,
            file_sha256=analysis.file_sha256,
            cautions=list(verdict.cautions),
            typicality=verdict.typicality,
            elapsed_ms=round(elapsed_ms, 2),
        )


class BandOut(BaseModel):
    low: float = Field(description="lower edge (Hz, or the first cepstral coefficient)")
    high: float
    unit: Literal["Hz", "coefficient"]
    share: float = Field(description="share of the attribution in this band (they sum to 1)")


class ExplanationOut(BaseModel):
    """Where in one window, and in which frequency bands, the model's decision is most
    sensitive to the audio (SmoothGrad on the log-odds of human)."""

    model_config = examples(
        {
            "model": {"id": 3, "name": "aasist-l", "arch": "aasist-l", "version": "4f1c2a9b0e77"},
            "start": 0.0,
            "end": 4.0375,
            "p_human": 0.012,
            "bands": [{"low": 5423.0, "high": 8000.0, "unit": "Hz", "share": 0.32}],
            "segments": [0.06, 0.09, 0.06],
            "heatmap": None,
            "method": "SmoothGrad: ...",
            "elapsed_ms": 8310.5,
        }
    )
    model: ModelRef
    start: float = Field(description="the explained window's start, seconds")
    end: float
    p_human: float = Field(description="P(human) of that window")
    bands: list[BandOut] = Field(description="lowest band first")
    segments: list[float] = Field(description="share per equal slice of the window's time")
    heatmap: list[list[float]] | None = Field(
        description="image models: the attribution over the model's spectrogram image, at most "
        "64 cells a side, 0 to 1, row 0 the highest frequency; null for waveform models"
    )
    method: str
    elapsed_ms: float
    analysis_id: int | None = Field(
        default=None,
        description="the verdict of your history this explanation is kept with (`analysis` "
        "given); null otherwise",
    )

    @classmethod
    def of(
        cls,
        explanation: Explanation,
        model: ModelRecord,
        elapsed_ms: float,
        analysis_id: int | None = None,
    ) -> ExplanationOut:
        e = explanation
        return cls(
            model=ModelRef.of(model),
            start=e.start,
            end=e.end,
            p_human=e.p_human,
            bands=[BandOut(**vars(b)) for b in e.bands],
            segments=e.segments,
            heatmap=heatmap_cells(e, HEATMAP_CELLS),
            method=e.method,
            elapsed_ms=round(elapsed_ms, 2),
            analysis_id=analysis_id,
        )


class BatchItemOut(BaseModel):
    name: str = Field(description="the client's file name (zip entries: zip/entry)")
    verdict: VerdictLabel | None = None
    p_human: float | None = None
    generator: str | None = None
    probabilities: dict[str, float] = Field(default_factory=dict)
    duration: float | None = None
    sample_rate: int | None = None
    error: str | None = Field(default=None, description="why this clip has no verdict")
    error_code: str | None = Field(
        default=None, description="the error's code, as a single request's error.code gives it"
    )
    analysis_id: int | None = Field(
        default=None, description="the verdict's entry in your history (GET /v1/analyses/{id})"
    )
    file_sha256: str | None = Field(default=None, description="sha256 of the clip's bytes, hex")
    cautions: list[str] = Field(
        default_factory=list, description="why the verdict deserves less trust"
    )
    typicality: float | None = Field(
        default=None, description="how familiar the clip was to the model, as in /v1/predict"
    )

    @classmethod
    def of(cls, result: BatchResult) -> BatchItemOut:
        values = vars(result).copy()
        values["verdict"] = values.pop("label")
        return cls(**values)


class BatchOut(BaseModel):
    model_config = examples(
        {
            "model": PREDICTION_EXAMPLE["model"],
            "results": [
                {
                    "name": "calls.zip/a.wav",
                    "verdict": "human",
                    "p_human": 0.91,
                    "generator": None,
                    "probabilities": {"spoof": 0.09, "bonafide": 0.91},
                    "duration": 4.0,
                    "sample_rate": 8000,
                    "error": None,
                    "error_code": None,
                    "analysis_id": 42,
                    "cautions": [
                        "The file was recorded at 8 kHz, so it holds nothing above 4 kHz; the "
                        "model learned from 16 kHz audio. Treat the verdict with care."
                    ],
                },
                {
                    "name": "calls.zip/notes.txt",
                    "verdict": None,
                    "p_human": None,
                    "generator": None,
                    "probabilities": {},
                    "duration": None,
                    "sample_rate": None,
                    "error": "This file is not audio we can read.",
                    "error_code": "not_audio",
                    "analysis_id": None,
                },
            ],
            "elapsed_ms": 131.0,
        }
    )
    model: ModelRef
    results: list[BatchItemOut]
    elapsed_ms: float


class ModelOut(BaseModel):
    model_config = examples(
        {
            "id": 3,
            "name": "aasist-l",
            "arch": "aasist-l",
            "version": "4f1c2a9b0e77",
            "classes": ["spoof", "bonafide"],
            "sample_rate": 16000,
            "clip_seconds": 4.0375,
            "public": True,
            "mine": False,
            "run_id": None,
            "created_at": "2026-11-24T10:00:00Z",
            "metrics": {"source": "official AASIST checkpoint (ASVspoof 2019 LA)"},
        }
    )
    id: int
    name: str
    arch: str
    version: str
    classes: list[str]
    sample_rate: int = Field(description="Hz the model listens at")
    clip_seconds: float = Field(description="window length, seconds")
    public: bool
    mine: bool
    run_id: int | None
    created_at: datetime
    metrics: dict[str, Any]

    @classmethod
    def of(cls, model: ModelRecord, user_id: int) -> ModelOut:
        return cls(
            id=model.id,
            name=model.name,
            arch=model.arch,
            version=model_version(model),
            classes=model.class_names,
            sample_rate=model.sample_rate,
            clip_seconds=model.clip_samples / model.sample_rate,
            public=model.is_public,
            mine=model.owner_id == user_id,
            run_id=model.run_id,
            created_at=model.created_at,
            metrics=model.metrics,
        )


class EpochOut(BaseModel):
    epoch: int = Field(
        description="counted from 0, as in the run's history.csv and its MLflow steps (the "
        "pages and the CLI say 'epoch 1' for epoch 0)"
    )
    train_loss: float | None
    valid_loss: float | None
    accuracy: float | None
    macro_f1: float | None
    eer: float | None
    seconds: float | None


class RunOut(BaseModel):
    id: int
    name: str
    kind: Literal["train", "dataset", "evaluate", "render"] = Field(
        description="a training run, the build of a dataset from uploaded recordings, a test "
        "of models on a dataset, or a dataset rendered again with other features"
    )
    status: str
    progress: float = Field(description="0 to 1")
    current_epoch: int = Field(
        description="the epoch in progress, counted from 0 as `epochs[].epoch` (for a test of "
        "models: the model in progress)"
    )
    total_epochs: int
    arch: str | None
    dataset: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    notice: str | None
    epochs: list[EpochOut]
    spec: dict[str, Any] | None = Field(
        default=None,
        description="a training run's whole recipe, as `POST /v1/runs` takes it (null for "
        "other jobs)",
    )
    model_id: int | None = Field(
        default=None,
        description="the model a finished training run stored (null before, and in lists)",
    )

    @classmethod
    def of(
        cls, run: RunRecord, epochs: list[EpochMetric], *, model_id: int | None = None
    ) -> RunOut:
        return cls(
            id=run.id,
            name=run.name,
            status=run.status,
            progress=run.progress,
            current_epoch=run.current_epoch,
            total_epochs=run.total_epochs,
            kind=run.kind,
            arch=run.spec.get("arch"),
            dataset=run.dataset,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            error=run.error,
            notice=run.notice,
            epochs=[EpochOut(**vars(e)) for e in epochs],
            spec=dict(run.spec) if run.kind == "train" else None,
            model_id=model_id,
        )
