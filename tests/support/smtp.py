"""An SMTP server on loopback (aiosmtpd) that keeps every message it is given, for the cabinet's e-mail
tests: the gateway's real SMTP client talks to it over TCP."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Self

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Letter:
    to: str
    subject: str
    body: str

    def link(self, path: str) -> str:
        """The first URL in the body whose path starts with `path`."""
        m = re.search(r"https?://[^\s]+" + re.escape(path) + r"[^\s]*", self.body)
        assert m, f"no {path} link in: {self.body}"
        return m.group(0)


class _Keep:
    def __init__(self, box: MailBox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        body = msg.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        with self.box.lock:
            for rcpt in envelope.rcpt_tos:
                self.box.letters.append(Letter(rcpt, str(msg["Subject"]), text))
        return "250 OK"


class MailBox:
    def __init__(self) -> None:
        self.letters: list[Letter] = []
        self.lock = threading.Lock()
        with socket.socket() as probe:            # aiosmtpd needs a port number: a free one, picked now
            probe.bind(("127.0.0.1", 0))
            self._port = probe.getsockname()[1]
        self.controller = Controller(_Keep(self), hostname="127.0.0.1", port=self._port)

    def __enter__(self) -> Self:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self._port

    def env(self) -> dict[str, str]:
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.port), "SMTP_STARTTLS": "false"}

    def to(self, address: str) -> list[Letter]:
        with self.lock:
            return [m for m in self.letters if m.to == address]

    def wait(self, address: str, count: int = 1, timeout_s: float = 20) -> list[Letter]:
        """The letters to `address` once there are at least `count` of them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.to(address)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{count} letter(s) to {address} expected, got {self.to(address)}")
