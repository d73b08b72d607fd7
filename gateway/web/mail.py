"""The cabinet's e-mail: address confirmation, password reset, alerts. A real SMTP client (aiosmtplib)
with a deadline; STARTTLS when configured and offered. Messages are plain text, rendered from
templates/mail/*.txt in the recipient's language. Without `web.smtp.host` nothing is sent (one log line
without the link: links are secrets)."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from gateway.config.model import Settings

log = logging.getLogger("gateway.web.mail")

TIMEOUT_S = 15.0


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.s = settings

    @property
    def enabled(self) -> bool:
        return bool(self.s.smtp_host)

    async def send(self, to: str, subject: str, body: str) -> bool:
        """True when the SMTP server accepted the message; a failure is logged, never raised to a page
        (the page's answer must not depend on whether a letter went out)."""
        if not self.enabled:
            log.info("no SMTP server configured: a letter “%s” was not sent", subject)
            return False
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.s.smtp_from, to, subject
        msg["Date"], msg["Message-ID"] = formatdate(localtime=False), make_msgid(domain="botech.pro")
        msg.set_content(body)
        try:
            await aiosmtplib.send(
                msg, hostname=self.s.smtp_host, port=self.s.smtp_port, timeout=TIMEOUT_S,
                username=self.s.smtp_username or None, password=self.s.smtp_password or None,
                start_tls=bool(self.s.smtp_starttls and self.s.smtp_port != 465),
                use_tls=self.s.smtp_port == 465)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("letter “%s” not sent: %s", subject, type(exc).__name__)
            return False
        return True
