"""Signed verdict reports over HTTP (:mod:`fakevoice.signing`): the public key that checks them
anywhere, and a check by the server itself."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from fakevoice import signing
from fakevoice.api.auth import SignedInDep


class ReportKeyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "algorithm": "Ed25519",
                    "key_id": "3f9c0a7d1e52b864",
                    "public_key": "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n",
                }
            ]
        }
    )
    algorithm: str
    key_id: str = Field(description="the first 16 hex digits of the raw public key's SHA-256")
    public_key: str = Field(description="PEM (SubjectPublicKeyInfo)")
    retired: dict[str, str] = Field(
        default_factory=dict,
        description="key id -> PEM of the keys this server signed with before (after "
        "`fakevoice report rotate-key`); reports signed with them still verify",
    )


class VerificationOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "valid": False,
                    "key_id": "3f9c0a7d1e52b864",
                    "message": "The report was changed after it was signed (or its signature was).",
                }
            ]
        }
    )
    valid: bool = Field(description="signed by this server's key, and unchanged since")
    key_id: str | None = Field(description="the key the report names; null when unsigned")
    message: str


def build_signature_router() -> APIRouter:
    router = APIRouter()

    @router.get("/v1/reports/key", tags=["verdicts"], summary="The key that signs reports")
    def report_key() -> ReportKeyOut:
        """Every JSON verdict report carries `signature`: Ed25519 over the report without that
        field, as JSON with sorted keys and no spaces (UTF-8). With this public key anyone can
        check a report without this server. No token needed."""
        return ReportKeyOut(
            algorithm=signing.ALGORITHM,
            key_id=signing.key_id(),
            public_key=signing.public_key_pem(),
            retired={k: signing.public_key_pem(v) for k, v in signing.retired_keys().items()},
        )

    @router.post(
        "/v1/reports/verify",
        tags=["verdicts"],
        summary="Check a signed report",
        max_body_size=signing.MAX_REPORT_BYTES,
    )
    def verify(
        caller: SignedInDep,
        report: Annotated[Any, Body(description="a JSON verdict report as this server wrote it")],
    ) -> VerificationOut:
        """Whether the report was signed by this server and is unchanged since (`valid`), and
        why not. A changed digit anywhere makes it invalid."""
        found = signing.verify(report)
        return VerificationOut(valid=found.valid, key_id=found.key_id, message=found.message)

    return router
