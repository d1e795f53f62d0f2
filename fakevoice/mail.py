"""Outgoing mail (password resets), through the backend named by ``settings.mail_backend``.

* ``log`` (default): the message is not sent but kept as a file in ``<data_dir>/outbox``
  (owner-only), and the server log says where, without the message: a reset code in a shared
  log (a log collector, ``docker compose logs``) would let whoever reads it take the account. The
  operator reads the file and passes the message on.
* ``smtp``: sent through ``smtp_host``:``smtp_port`` from ``smtp_from``, with STARTTLS unless
  ``smtp_starttls`` is off, logging in when ``smtp_user`` is set.
"""

from __future__ import annotations

import logging
import secrets
import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from fakevoice.errors import FakeVoiceError
from fakevoice.secret_files import write_owner_only
from fakevoice.settings import get_settings

logger = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 20.0


class MailError(FakeVoiceError):
    """A message could not be handed to the mail server."""

    code = "mail_failed"


def send_mail(to: str, subject: str, body: str) -> None:
    """Send a plain-text message to one address with the configured backend.

    Raises:
        MailError: SMTP is chosen but not configured, or the server refused the message.
    """
    settings = get_settings()
    if settings.mail_backend == "log":
        path = _keep_in_outbox(to, subject, body)
        # WARNING, so that the note reaches the server log under default logging too.
        logger.warning(
            "mail to %s (%s) not sent: kept in %s (mail backend 'log')", to, subject, path
        )
        return
    if not settings.smtp_host or not settings.smtp_from:
        raise MailError(
            "Mail cannot be sent: the server has mail_backend=smtp but no smtp_host or smtp_from; "
            "ask the operator to set FAKEVOICE_SMTP_HOST and FAKEVOICE_SMTP_FROM."
        )
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    try:
        with smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS
        ) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_user:
                password = settings.smtp_password
                smtp.login(settings.smtp_user, password.get_secret_value() if password else "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        logger.error("mail to %s failed: %s", to, exc)
        raise MailError(
            "The mail server could not be reached or refused the message; try again later."
        ) from exc
    logger.info("mail %r sent to %s", subject, to)


def outbox_dir() -> Path:
    """Where the ``log`` backend keeps the messages it does not send."""
    return get_settings().data_dir / "outbox"


def _keep_in_outbox(to: str, subject: str, body: str) -> Path:
    """Write one message to the outbox, readable by the server's user only; its path."""
    folder = outbox_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = folder / f"{stamp}-{secrets.token_hex(4)}.txt"
    write_owner_only(path, f"To: {to}\nSubject: {subject}\n\n{body}\n".encode())
    return path
