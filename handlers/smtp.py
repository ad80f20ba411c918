"""The built-in inbound SMTP listener (aiosmtpd), meant to sit behind the site's MTA."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

import asyncpg
from aiosmtpd.smtp import SMTP, Envelope, Session

from bot.errors import DATABASE_ERRORS
from bot.mail.inbound import ReplyNotHandled, ReplyOutcome, handle_reply, known_recipient
from bot.runtime.config import Settings
from bot.runtime.metrics import Metrics
from handlers.mail import INBOUND_MAX_BYTES

__all__ = ["start_listener"]

log = logging.getLogger(__name__)


class ReplyHandler:
    """Accepts mail only for our reply addresses; a reply is handled before 250 is said, so
    the sending MTA keeps (and retries) anything we could not handle."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, metrics: Metrics) -> None:
        self.pool = pool
        self.settings = settings
        self.metrics = metrics

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        try:
            known = await known_recipient(self.pool, self.settings, address)
        except DATABASE_ERRORS:
            return "451 4.3.0 Temporary failure, try again later"
        if not known:
            return "550 5.1.1 No such recipient"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw).encode()
        try:
            outcome = await handle_reply(
                self.pool,
                self.settings,
                raw,
                recipients=list(envelope.rcpt_tos),
                envelope_from=envelope.mail_from,
                metrics=self.metrics,
            )
        except ReplyNotHandled:
            return "451 4.3.0 Temporary failure, try again later"
        if outcome is ReplyOutcome.TOO_COMPLEX:
            return "554 5.6.0 Message too complex to read as a reply; nothing was decided"
        return "250 OK"


async def start_listener(
    pool: asyncpg.Pool, settings: Settings, metrics: Metrics
) -> asyncio.Server:
    """Listen on INBOUND_SMTP_HOST:INBOUND_SMTP_PORT in this process's event loop.

    Not on HOST: the listener sits behind the site's MTA, and a public listener would let a
    sender skip the checks the MTA records in Authentication-Results."""
    assert settings.inbound_smtp_port is not None
    handler = ReplyHandler(pool, settings, metrics)
    factory: Any = partial(
        SMTP,
        handler,
        data_size_limit=INBOUND_MAX_BYTES,
        enable_SMTPUTF8=True,
        hostname="taskjuice-bot",
        ident="taskjuice-bot",
    )
    server = await asyncio.get_running_loop().create_server(
        factory, host=settings.inbound_smtp_host, port=settings.inbound_smtp_port
    )
    log.info(
        "inbound SMTP listening",
        extra={
            "event": "smtp.listening",
            "host": settings.inbound_smtp_host,
            "port": settings.inbound_smtp_port,
        },
    )
    return server
