"""Outgoing mail (password resets), through the backend named by ``settings.mail_backend``.

* ``log`` (default): the message is written to the server log instead of being sent, as the
  development mail backends of web frameworks do. The operator reads it there and passes it on.
* ``smtp``: sent through ``smtp_host``:``smtp_port`` from ``smtp_from``, with STARTTLS unless
  ``smtp_starttls`` is off, logging in when ``smtp_user`` is set.
"""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

from fakevoice.errors import FakeVoiceError
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
        # WARNING, so that the message reaches the server log under default logging too.
        logger.warning("mail (log backend, not sent)\nTo: %s\nSubject: %s\n\n%s", to, subject, body)
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
