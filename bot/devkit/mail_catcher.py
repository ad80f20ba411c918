"""A mail catcher: a real SMTP server (aiosmtpd) that keeps what it receives in memory.

Used by the tests and by `taskjuice-bot dev`. It can be stopped and started again on the same
port, to play an SMTP outage, and can speak STARTTLS or implicit TLS and require a login, as a
real submission server does.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from functools import partial
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["CaughtMail", "MailCatcher"]


@dataclass(frozen=True, slots=True)
class CaughtMail:
    """One message as the catcher received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    encrypted: bool = False
    login: str | None = None

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
    tls: ssl.SSLContext | None = None
    """With a context: STARTTLS is offered and required (or, with `implicit_tls`, the whole
    connection is TLS from the first byte)."""
    implicit_tls: bool = False
    credentials: tuple[str, str] | None = None
    """With credentials: AUTH is required, and accepted only over TLS when TLS is on."""
    refuse: str | None = None
    """An SMTP answer (e.g. "451 4.3.0 Try again later") given to every message instead of
    taking it; None takes every message."""
    _server: asyncio.Server | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse is not None:
            return self.refuse
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        auth: Any = session.auth_data
        login = auth.login.decode() if session.authenticated and auth is not None else None
        self.messages.append(
            CaughtMail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=data,
                encrypted=server.transport is not None
                and server.transport.get_extra_info("ssl_object") is not None,
                login=login,
            )
        )
        return "250 OK"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            self.credentials is not None
            and isinstance(data, LoginPassword)
            and (data.login.decode(), data.password.decode()) == self.credentials
        )
        return AuthResult(success=ok, auth_data=data if ok else None)

    async def start(self) -> int:
        options: dict[str, Any] = {"enable_SMTPUTF8": True, "hostname": "mail-catcher"}
        if self.tls is not None and not self.implicit_tls:
            options |= {"tls_context": self.tls, "require_starttls": True}
        if self.credentials is not None:
            options |= {
                "authenticator": self._authenticate,
                "auth_required": True,
                # Implicit TLS is encrypted from the first byte; aiosmtpd's check only knows
                # about STARTTLS, so it is asked for only then.
                "auth_require_tls": self.tls is not None and not self.implicit_tls,
            }
        if self.implicit_tls:
            # aiosmtpd warns that AUTH is not tied to STARTTLS; here the socket itself is TLS.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
        factory: Any = partial(SMTP, self, **options)
        self._server = await asyncio.get_running_loop().create_server(
            factory,
            host=self.host,
            port=self.port,
            ssl=self.tls if self.implicit_tls else None,
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
