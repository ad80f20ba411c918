"""A mail catcher: a real SMTP server (aiosmtpd) that keeps what it receives in memory.

Used by the tests and by `taskjuice-bot dev`. It can be stopped and started again on the same
port, to play an SMTP outage.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from functools import partial
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["CaughtMail", "MailCatcher"]


@dataclass(frozen=True, slots=True)
class CaughtMail:
    """One message as the catcher received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return str(part.get_content()) if part is not None else ""

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return str(part.get_content()) if part is not None else ""


@dataclass
class MailCatcher:
    """Catches mail on 127.0.0.1; `messages` in arrival order."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[CaughtMail] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        self.messages.append(
            CaughtMail(
                mail_from=str(envelope.mail_from), rcpt_tos=tuple(envelope.rcpt_tos), raw=data
            )
        )
        return "250 OK"

    async def start(self) -> int:
        factory: Any = partial(SMTP, self, enable_SMTPUTF8=True, hostname="mail-catcher")
        self._server = await asyncio.get_running_loop().create_server(
            factory, host=self.host, port=self.port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def to(self, address: str) -> list[CaughtMail]:
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]
