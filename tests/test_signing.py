"""Signed verdict reports (fakevoice/signing.py): a report this server wrote verifies, any change
to it does not, another server's key is told apart, and the key is made once, owner-only — through
the module, the command line, the HTTP API and the Evaluate page."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_cli_workflow import run_in_process

from fakevoice import signing
from fakevoice.errors import FakeVoiceError, InvalidSpecError, ServerConfigError
from fakevoice.services import reports
from fakevoice.settings import get_settings

REPORT = {
    "report": "Fake Voice Workbench verdict",
    "analysis_id": 41,
    "file": {"name": "call – 7.wav", "sha256": "ab" * 32, "duration_seconds": 4.0},
    "verdict": {
        "label": "machine-generated",
        "p_human": 0.0812345678901234,
        "probabilities": {"bonafide": 0.0812345678901234, "spoof": 0.9187654321098766},
        "windows": [{"start": 0.0, "end": 4.0375, "p_human": 0.08, "top_class": "spoof"}],
    },
}


def signed_text(report: dict[str, object] | None = None) -> str:
    return reports.report_json(report or REPORT)


def test_a_report_verifies_as_written_and_not_after_any_change(isolated_settings: Path) -> None:
    text = signed_text()
    kept = json.loads(text)
    assert kept["signature"]["algorithm"] == "Ed25519"
    assert kept["signature"]["key_id"] == signing.key_id()
    found = signing.verify_bytes(text.encode())
    assert found.valid and found.key_id == signing.key_id() and "unchanged" in found.message
    # Key order and spacing are not part of what is signed; every value is.
    reordered = json.dumps(dict(reversed(list(kept.items()))))
    assert signing.verify_bytes(reordered.encode()).valid
    for change in (
        lambda r: r["verdict"]["probabilities"].update(bonafide=0.0812345678901235),
        lambda r: r["verdict"].update(label="human"),
        lambda r: r["file"].update(name="other.wav"),
        lambda r: r["verdict"]["windows"].append({"start": 4.0}),
        lambda r: r.update(note="added later"),
        lambda r: r["signature"].update(value=r["signature"]["value"][::-1]),
    ):
        changed = json.loads(text)
        change(changed)
        found = signing.verify(changed)
        assert not found.valid and "changed after it was signed" in found.message
    unsigned = signing.verify(REPORT)
    assert not unsigned.valid and unsigned.key_id is None and "no signature" in unsigned.message
    assert "not JSON" in signing.verify_bytes(b"# Verdict: human").message
    assert not signing.verify([1, 2]).valid
    with pytest.raises(InvalidSpecError, match="finite numbers"):
        signing.sign({"p": float("nan")})


def operator_key(path: Path) -> Path:
    """An Ed25519 key the operator made and keeps with their other secrets."""
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def test_another_servers_key_is_told_apart_and_its_public_key_checks_its_reports(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ours = json.loads(signed_text())
    our_key = signing.public_key()
    monkeypatch.setenv("FAKEVOICE_REPORT_SIGNING_KEY_FILE", str(operator_key(tmp_path / "k.pem")))
    get_settings.cache_clear()
    theirs = json.loads(signed_text())
    assert theirs["signature"]["key_id"] != ours["signature"]["key_id"]
    found = signing.verify(ours)  # checked here, by the other server
    assert not found.valid and f"signed with key {ours['signature']['key_id']}" in found.message
    # With the first server's public key (as GET /v1/reports/key gives it), it verifies.
    pem = signing.public_key_pem(our_key).encode()
    assert signing.verify(ours, signing.load_public_key(pem)).valid
    with pytest.raises(InvalidSpecError, match="Ed25519 public key"):
        signing.load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def test_the_key_is_made_once_owner_only_and_a_damaged_one_is_named(
    isolated_settings: Path,
) -> None:
    path = get_settings().data_dir / signing.KEY_FILE
    assert not path.exists()
    first = signing.key_id()
    assert path.stat().st_mode & 0o777 == 0o600
    assert signing.key_id() == first  # read back, not made again
    path.chmod(0o644)
    assert signing.key_id() == first and path.stat().st_mode & 0o777 == 0o600
    path.write_text("not a key")
    with pytest.raises(FakeVoiceError, match="holds no Ed25519 private key"):
        signing.key_id()
    # An operator's own key file (PEM) is used as it is.
    own = Ed25519PrivateKey.generate()
    pem = own.private_bytes(
        signing.serialization.Encoding.PEM,
        signing.serialization.PrivateFormat.PKCS8,
        signing.serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    assert signing.key_id() == signing.key_id(own.public_key())


def test_the_command_line_checks_a_report_and_shows_the_key(
    isolated_settings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "report.json"
    good.write_text(signed_text())
    checked = run_in_process(capsys, "report", "verify", str(good))
    assert checked.returncode == 0 and checked.stdout == (
        f"{good}: Valid: written by key {signing.key_id()} and unchanged since.\n"
    )
    bad = tmp_path / "changed.json"
    bad.write_text(good.read_text().replace("machine-generated", "human"))
    refused = run_in_process(capsys, "report", "verify", str(bad), "--json")
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["valid"] is False

    key = run_in_process(capsys, "report", "key", "--json")
    published = json.loads(key.stdout)
    assert published["key_id"] == signing.key_id()
    other = tmp_path / "other.pem"
    other.write_text(signing.public_key_pem(Ed25519PrivateKey.generate().public_key()))
    elsewhere = run_in_process(capsys, "report", "verify", str(good), "--public-key", str(other))
    assert elsewhere.returncode == 1 and "not with key" in elsewhere.stdout
    mine = tmp_path / "mine.pem"
    mine.write_text(published["public_key"])
    assert (
        run_in_process(capsys, "report", "verify", str(good), "--public-key", str(mine)).returncode
        == 0
    )
    for args, words in (
        (("report", "verify", str(tmp_path / "absent.json")), "Cannot read the report"),
        (("report", "verify", str(good), "--public-key", str(good)), "Ed25519 public key"),
    ):
        failed = run_in_process(capsys, *args)
        assert failed.returncode == 2 and words in failed.stderr

    # The same key with openssl, outside the workbench: the signature is plain Ed25519.
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True)
    if openssl.returncode == 0:
        report = json.loads(good.read_text())
        signature = report.pop("signature")
        body = json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        (tmp_path / "body").write_bytes(body.encode())
        import base64

        (tmp_path / "sig").write_bytes(base64.b64decode(signature["value"]))
        done = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(mine), "-rawin",
             "-in", str(tmp_path / "body"), "-sigfile", str(tmp_path / "sig")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_new_key_still_checks_the_reports_the_old_one_signed(
    isolated_settings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = json.loads(signed_text())
    old_id = signing.key_id()
    unsure = run_in_process(capsys, "report", "rotate-key")
    assert unsure.returncode == 2 and "add --yes" in unsure.stderr
    rotated = run_in_process(capsys, "report", "rotate-key", "--yes")
    assert rotated.returncode == 0, rotated.stderr
    new_id = signing.key_id()
    assert new_id != old_id and f"signed with key {new_id}; key {old_id} is kept" in rotated.stdout
    path = get_settings().data_dir / signing.KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600

    after = json.loads(signed_text())
    assert after["signature"]["key_id"] == new_id
    assert signing.verify(after).message.startswith(f"Valid: written by key {new_id} and")
    earlier = signing.verify(before)
    assert earlier.valid and "signed with before it was replaced" in earlier.message
    changed = {**before, "analysis_id": 42}
    assert not signing.verify(changed).valid
    published = json.loads(run_in_process(capsys, "report", "key", "--json").stdout)
    assert set(published["retired"]) == {old_id} and published["key_id"] == new_id
    # A key the server never had is still another server's.
    stranger = Ed25519PrivateKey.generate()
    (get_settings().data_dir / signing.RETIRED_DIR / "junk.pem").write_text("not a key")
    foreign = signing.verify(
        {
            **REPORT,
            "signature": {
                "algorithm": "Ed25519",
                "key_id": signing.key_id(stranger.public_key()),
                "value": "AAAA",
            },
        }
    )
    assert not foreign.valid and "another server's" in foreign.message


def test_an_operators_own_key_is_not_rotated_here(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FAKEVOICE_REPORT_SIGNING_KEY_FILE", str(tmp_path / "mine.pem"))
    get_settings.cache_clear()
    # A key the operator names is never made up here: a secret that failed to mount would
    # otherwise be replaced without a word, and reports signed before would stop verifying.
    with pytest.raises(ServerConfigError, match="does not exist"):
        signing.key_id()
    assert not (tmp_path / "mine.pem").exists()
    operator_key(tmp_path / "mine.pem")
    signing.key_id()
    with pytest.raises(InvalidSpecError, match="replace it yourself"):
        signing.rotate_key()
