"""Email delivery: plans mails for task and alert changes and sends them from the outbox.

A request mail carries a magic link (and, with REPLY_DOMAIN, a per-approver Reply-To). Mail
cannot be updated once sent, so outcomes are not mailed; an SMTP outage only delays mail,
since the outbox retries until the server is back.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from typing import Any

import aiosmtplib
import asyncpg

from bot.domain import AlertKind, AlertState, DeliveryStatus, TaskStatus
from bot.links.tokens import LinkSigner
from bot.mail.compose import MailComposer
from bot.outbox.consequences import TaskChange
from bot.outbox.deliveries import NEW_MESSAGE, give_up, queue, retrying
from bot.outbox.dispatcher import GiveUp, RetryLater
from bot.runtime.config import Settings
from store import alerts as alert_store
from store import deliveries, outbox, tasks
from store import mail as store
from store.database import Connections
from store.outbox import OutboxItem

__all__ = ["BOUNCE_PREFIX", "MAIL_KINDS", "EmailChannel", "MailSender", "queue_answer"]

log = logging.getLogger(__name__)

REQUEST, ALERT, ANSWER = "mail.request", "mail.alert", "mail.answer"
MAIL_KINDS = (REQUEST, ALERT, ANSWER)
# A request mail's envelope sender (Return-Path) is `bounce+<token>@REPLY_DOMAIN`: a delivery
# status notification comes back to it and names the delivery it is about.
BOUNCE_PREFIX = "bounce+"
_MAILED_ALERTS = {
    (AlertKind.SPEND_SOFT.value, AlertState.ANNOUNCED.value),
    (AlertKind.CONNECTION.value, AlertState.ERROR.value),
}


@dataclass(slots=True)
class EmailChannel:
    """Turns task and alert changes into mail outbox items (the channel plugin)."""

    async def tasks_changed(
        self, conn: asyncpg.Connection, item: OutboxItem, changes: Sequence[TaskChange]
    ) -> None:
        # A sent mail cannot be updated; outcomes reach people in Slack and on the link pages.
        wanted = [
            deliveries.Planned(
                task_id=change.task_id,
                tier=change.state["tier"],
                purpose=NEW_MESSAGE[change.event],
            )
            for change in changes
            if change.event in NEW_MESSAGE
            and change.state is not None
            and change.state["status"] == TaskStatus.PENDING
            and change.state["deliver"].get("email", True)
        ]
        requests = await deliveries.plan(conn, wanted, channel="email")
        await queue(conn, item, REQUEST, requests, channel="mail")

    async def alert_changed(
        self, conn: asyncpg.Connection, item: OutboxItem, alert_id: int, event: str
    ) -> None:
        alert = await alert_store.get(conn, alert_id)
        if alert is None or (alert["kind"], alert["state"]) not in _MAILED_ALERTS:
            return
        await outbox.enqueue(
            conn,
            ALERT,
            {"alert_id": alert_id, "version": alert["version"]},
            message_id=f"{item.message_id}:{ALERT}:{alert_id}",
        )


async def queue_answer(conn: asyncpg.Connection, key: str, answer: dict[str, Any]) -> None:
    """Queue the short answer to an inbound reply (once per inbound message)."""
    await outbox.enqueue(conn, ANSWER, answer, message_id=f"answer:{key}"[:200])


class MailSender:
    """Sends mail outbox items over SMTP."""

    def __init__(self, *, pool: Connections, settings: Settings) -> None:
        assert settings.mail_from is not None
        self.pool = pool
        self.settings = settings
        self.compose = MailComposer(
            mail_from=settings.mail_from,
            app_url=settings.taskjuice_app_url,
            reply_domain=settings.reply_domain,
        )
        self.links = LinkSigner(settings.link_secrets)

    def handlers(self) -> dict[str, Any]:
        return {REQUEST: self.request, ALERT: self.alert, ANSWER: self.answer}

    async def send(self, message: EmailMessage, *, envelope_from: str | None = None) -> None:
        """Send over SMTP; `envelope_from` (MAIL FROM) defaults to the From address."""
        s = self.settings
        # Flattened here: aiosmtplib would re-fold headers at 78 characters itself.
        raw = message.as_bytes(policy=message.policy)
        recipients = [address for _, address in getaddresses(message.get_all("To") or [])]
        try:
            await aiosmtplib.send(
                raw,
                sender=envelope_from or parseaddr(str(message["From"]))[1],
                recipients=recipients,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password,
                use_tls=s.smtp_tls == "tls",
                start_tls=s.smtp_tls == "starttls",
                timeout=30,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise GiveUp(f"recipient refused: {exc.recipients[0].code}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise GiveUp(f"SMTP {exc.code}") from exc
            raise RetryLater(f"SMTP {exc.code}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise RetryLater(f"SMTP unreachable: {type(exc).__name__}") from exc

    async def request(self, item: OutboxItem) -> None:
        async with self.pool.acquire() as conn:
            delivery = await deliveries.delivery(conn, int(item.payload["delivery_id"]))
            if delivery is None or delivery.status is not DeliveryStatus.QUEUED:
                return
            shown = await tasks.shown_view(conn, delivery.task_id)
        if shown is None or delivery.approver_email is None:
            return
        view, digest = shown
        if view.status is not TaskStatus.PENDING or view.tier != delivery.tier:
            async with self.pool.acquire() as conn:
                await deliveries.mark_failed(conn, delivery.id, "request ended before delivery")
            return
        assert delivery.approver_id is not None
        async with self.pool.acquire() as conn, conn.transaction():
            link_id = await store.link_for(
                conn, delivery.task_id, delivery.approver_id, delivery.tier, digest
            )
            reply = envelope_from = None
            if self.settings.reply_domain:
                reply = await store.reply_token_for(
                    conn, delivery.task_id, delivery.approver_id, delivery.tier
                )
                fresh = base64.b32encode(secrets.token_bytes(15)).decode().lower()
                bounce = await deliveries.bounce_token_for(conn, delivery.id, fresh)
                envelope_from = f"{BOUNCE_PREFIX}{bounce}@{self.settings.reply_domain}"
        url = f"{self.settings.public_url}/d/{self.links.token(link_id)}"
        kind = (
            "reminder"
            if delivery.purpose == "reminder"
            else ("escalation" if delivery.tier > 0 else "request")
        )
        message_id = self.compose.message_id(delivery.purpose, delivery.id)
        message = self.compose.request(
            view,
            kind=kind,
            to=delivery.approver_email,
            message_id=message_id,
            approve_url=url + "?do=approve",
            deny_url=url + "?do=deny",
            reply_token=reply,
        )
        try:
            await self.send(message, envelope_from=envelope_from)
        except GiveUp as exc:
            await give_up(self.pool, delivery.id, exc.message, channel="mail")
            return
        except RetryLater as exc:
            await retrying(self.pool, delivery.id, exc.message)
            raise
        async with self.pool.acquire() as conn:
            await deliveries.mark_mailed(conn, delivery.id, message_id)

    async def alert(self, item: OutboxItem) -> None:
        alert_id = int(item.payload["alert_id"])
        async with self.pool.acquire() as conn:
            alert = await alert_store.get(conn, alert_id)
            if alert is None:
                return
            routing = await alert_store.routing(conn, alert["workspace"])
        if not routing["alert_emails"]:
            return
        title, lines, label, url = self._alert_text(alert)
        message = self.compose.alert(
            to=routing["alert_emails"],
            workspace=alert["workspace"],
            title=title,
            lines=lines,
            action_label=label,
            action_url=url,
            message_id=self.compose.message_id("alert", f"{alert_id}.{item.payload['version']}"),
        )
        try:
            await self.send(message)
        except GiveUp as exc:
            log.warning(
                "alert mail not delivered",
                extra={"event": "mail.alert_failed", "alert": alert_id, "error": exc.message},
            )

    def _alert_text(self, alert: dict[str, Any]) -> tuple[str, list[str], str, str]:
        data, base = alert["data"], f"{self.settings.taskjuice_app_url}/{alert['workspace']}"
        if alert["kind"] == AlertKind.SPEND_SOFT:
            money = f"{float(data['spend']):,.2f} of {float(data['cap']):,.2f} {data['currency']}"
            return (
                f"Spend is at {data['percent']:g}% of the cap",
                [
                    f"This billing period ({data['period']}) has used {money}.",
                    "Nothing has stopped: workflows keep running until the cap is reached.",
                ],
                "Adjust cap",
                f"{base}/billing",
            )
        conn = data["connection"]
        lines = [f"The {conn['app']} connection “{conn['name']}” needs to be reauthorized."]

        if data.get("paused_runs"):
            lines.append(f"{data['paused_runs']} run(s) are paused until it is reconnected.")
        return (
            f"{conn['app']} reauth required",
            lines,
            "Reconnect",
            f"{base}/connections/{conn['id']}",
        )

    async def answer(self, item: OutboxItem) -> None:
        p = item.payload
        message = self.compose.answer(
            to=p["to"],
            subject=p["subject"],
            in_reply_to=p.get("in_reply_to"),
            text=p["text"],
            summary=p["summary"],
            inbox_url=p.get("inbox_url"),
            message_id=self.compose.message_id("answer", item.id),
        )
        try:
            await self.send(message)
        except GiveUp:
            return  # the sender's address refuses mail: nothing more to tell them
