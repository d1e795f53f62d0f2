"""Signed verdict reports: a report kept with a case can be shown to be the one this server
wrote, unchanged.

Every JSON verdict report (the Evaluate page, the history, ``fakevoice history --report --json``,
``GET /v1/analyses/{id}/report``) carries a ``signature``: Ed25519 over the report without that
field, as canonical JSON (keys sorted, no spaces, UTF-8, no NaN). The server's private key is
generated once into ``<data dir>/report-signing.key`` (owner-only), or read from
``FAKEVOICE_REPORT_SIGNING_KEY_FILE``; its public key is published (``GET /v1/reports/key``,
``fakevoice report key``) so that anyone can check a report without the server, and the server
checks one on request (``fakevoice report verify``, ``POST /v1/reports/verify``, the Evaluate
page). A report changed in any field, down to one digit of a probability, no longer verifies.

The signature says who wrote the report and that it is unchanged, not that its verdict is right.
``fakevoice report rotate-key`` replaces the generated key and keeps the old public key in
``<data dir>/report-signing-retired/``, so reports signed before still verify here (as signed by a
retired key); reports signed with a key the server never kept (another data folder) verify with
that key's public key only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fakevoice import secret_files
from fakevoice.errors import InvalidSpecError, ServerConfigError
from fakevoice.settings import get_settings

ALGORITHM = "Ed25519"
KEY_FILE = "report-signing.key"
SIGNATURE_FIELD = "signature"
SIGNED_TEXT = "the report without this field, as JSON with sorted keys, no spaces, UTF-8"
MAX_REPORT_BYTES = 16 * 1024 * 1024  # a report checked; a 600 s verdict's is well under 1 MB


@dataclass(frozen=True)
class Verification:
    """What checking a report found.

    Attributes:
        valid: the signature is this key's over exactly this report.
        key_id: the signing key's id the report names (None when it has no signature).
        message: one sentence for a person.
    """

    valid: bool
    key_id: str | None
    message: str


RETIRED_DIR = "report-signing-retired"  # public keys this server signed with before, <key id>.pem


def _key_path() -> Path:
    settings = get_settings()
    return settings.report_signing_key_file or settings.data_dir / KEY_FILE


def _retired_dir() -> Path:
    return get_settings().data_dir / RETIRED_DIR


def retired_keys() -> dict[str, Ed25519PublicKey]:
    """The public keys this server signed reports with before, by key id (unreadable files are
    skipped)."""
    found: dict[str, Ed25519PublicKey] = {}
    folder = _retired_dir()
    if folder.is_dir():
        for path in sorted(folder.glob("*.pem")):
            try:
                key = load_public_key(path.read_bytes())
            except (OSError, InvalidSpecError):
                continue
            found[key_id(key)] = key
    return found


def rotate_key() -> tuple[str, str]:
    """Replace the generated signing key with a new one, keeping the old public key among the
    retired ones (reports signed with it still verify here). Returns the old and the new key id.

    Raises:
        InvalidSpecError: the key is the operator's own (``FAKEVOICE_REPORT_SIGNING_KEY_FILE``):
            they replace that file themselves.
    """
    if get_settings().report_signing_key_file is not None:
        raise InvalidSpecError(
            "The signing key is your own file (FAKEVOICE_REPORT_SIGNING_KEY_FILE): replace it "
            f"yourself, and put its old public key (PEM) into {_retired_dir()}."
        )
    old = public_key()
    folder = _retired_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{key_id(old)}.pem").write_text(public_key_pem(old))
    fresh = Ed25519PrivateKey.generate()
    secret_files.replace(_key_path(), _private_pem(fresh), "report-signing key")
    return key_id(old), key_id(fresh.public_key())


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key() -> Ed25519PrivateKey:
    """This server's report-signing key (generated on first use).

    Raises:
        ServerConfigError: the key file exists but holds no Ed25519 private key, cannot be
            read, or was named in the settings and is missing.
    """
    path = _key_path()
    if get_settings().report_signing_key_file is not None and not path.exists():
        # A key the operator named (a mounted secret) is never replaced by a new one: reports
        # signed with the real key would stop verifying here, without a word.
        raise ServerConfigError(
            f"The report-signing key file {path} (FAKEVOICE_REPORT_SIGNING_KEY_FILE) does not "
            "exist; mount it, or unset the setting to keep a key in the data folder."
        )
    try:
        pem = secret_files.read_or_create(
            path, _private_pem(Ed25519PrivateKey.generate()), "report-signing key"
        )
    except OSError as exc:
        raise ServerConfigError(
            f"The report-signing key file {path} cannot be read: {exc.strerror or exc}."
        ) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ServerConfigError(
            f"The report-signing key file {path} holds no Ed25519 private key (PEM, no "
            "password); put one there, or delete it to have a new one made."
        )
    return key


def public_key() -> Ed25519PublicKey:
    return private_key().public_key()


def public_key_pem(key: Ed25519PublicKey | None = None) -> str:
    """A public key as PEM text (this server's by default)."""
    key = key or public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(key: Ed25519PublicKey | None = None) -> str:
    """The first 16 hex digits of the SHA-256 of the raw public key (this server's by default)."""
    raw = (key or public_key()).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """A public key from PEM (what ``GET /v1/reports/key`` gives).

    Raises:
        InvalidSpecError: the text is not an Ed25519 public key in PEM.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidSpecError("That is not an Ed25519 public key in PEM form.")
    return key


def _signed_bytes(report: dict[str, Any]) -> bytes:
    body = {k: v for k, v in report.items() if k != SIGNATURE_FIELD}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)  # fmt: skip
    except ValueError as exc:
        raise InvalidSpecError(f"A report holds only finite numbers: {exc}.") from None
    return text.encode()


def sign(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` with its ``signature`` (any earlier one replaced)."""
    key = private_key()
    value = key.sign(_signed_bytes(report))
    return {
        **{k: v for k, v in report.items() if k != SIGNATURE_FIELD},
        SIGNATURE_FIELD: {
            "algorithm": ALGORITHM,
            "key_id": key_id(key.public_key()),
            "value": base64.b64encode(value).decode(),
            "signed": SIGNED_TEXT,
        },
    }


def verify(report: object, key: Ed25519PublicKey | None = None) -> Verification:
    """Check a report's signature with ``key`` (by default this server's key, or the retired
    one the report names)."""
    if not isinstance(report, dict):
        return Verification(False, None, "This is not a verdict report (a JSON object).")
    signature = report.get(SIGNATURE_FIELD)
    if not isinstance(signature, dict):
        return Verification(False, None, "This report carries no signature.")
    named = signature.get("key_id")
    named = str(named) if named is not None else None
    if signature.get("algorithm") != ALGORITHM:
        return Verification(False, named, f"The signature is not {ALGORITHM}.")
    retired = False
    if key is None:
        key = public_key()
        if named != key_id(key):  # a key this server signed with before?
            earlier = retired_keys()
            if named in earlier:
                key, retired = earlier[named], True
    mine = key_id(key)
    if named != mine:
        return Verification(
            False,
            named,
            f"It was signed with key {named}, not with key {mine}: another server's, or one "
            "this server no longer has. Check it with that key's public key.",
        )
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
        key.verify(value, _signed_bytes(report))
    except (binascii.Error, ValueError, InvalidSignature, InvalidSpecError):
        return Verification(
            False, named, "The report was changed after it was signed (or its signature was)."
        )
    if retired:
        return Verification(
            True,
            named,
            f"Valid: written by key {named}, a key this server signed with before it was "
            "replaced, and unchanged since.",
        )
    return Verification(True, named, f"Valid: written by key {named} and unchanged since.")


def verify_bytes(data: bytes, key: Ed25519PublicKey | None = None) -> Verification:
    """Check a report file's bytes (JSON)."""
    try:
        report = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return Verification(False, None, "This file is not JSON: only JSON reports are signed.")
    return verify(report, key)
