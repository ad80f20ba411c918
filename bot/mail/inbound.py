"""Handling one inbound reply, from any door (SMTP listener, raw webhook, Mailgun)."""

from __future__ import annotations

import enum
import logging
from email import errors
from typing import Any

import asyncpg

from bot import decisions
from bot.decisions import DecisionResult, Verdict
from bot.domain import Actor, Channel, Reversibility
from bot.mail.delivery import queue_answer
from bot.mail.replies import (
    Reading,
    ReplyFacts,
    TooComplex,
    bounce_tokens,
    clean_text,
    delivery_failure,
    header_bounce_tokens,
    header_tokens,
    outcome_of,
    read_reply,
    reply_tokens,
)
from bot.mail.reply_worker import READERS, ReaderUnavailable, ReadTooLong
from bot.runtime.config import Settings
from bot.runtime.metrics import Metrics
from bot.wording import PLAIN, explain, reply_recorded, votes_recorded
from store import deliveries, mail, tasks
from store.database import DATABASE_ERRORS

__all__ = [
    "ReplyNotHandled",
    "ReplyOutcome",
    "handle_reply",
    "known_recipient",
    "spend_webhook_token",
    "webhook_token_used",
]

log = logging.getLogger(__name__)

_HOW_TO = (
    'Reply with "approve" or "deny" (or their German, French or Spanish equivalents), '
    "or use the buttons in the original email."
)


class ReplyOutcome(enum.StrEnum):
    """What became of an inbound message."""

    DECIDED = "decided"
    NOT_RECORDED = "not_recorded"
    AMBIGUOUS = "ambiguous"
    REFUSED_IRREVERSIBLE = "refused_irreversible"
    AUTOMATIC = "automatic"
    BOUNCED = "bounced"
    DUPLICATE = "duplicate"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    WRONG_SENDER = "wrong_sender"
    DMARC_FAILED = "dmarc_failed"
    UNREADABLE = "unreadable"
    TOO_COMPLEX = "too_complex"


_RETRY: tuple[type[BaseException], ...] = (ReaderUnavailable, *DATABASE_ERRORS)


class ReplyNotHandled(Exception):
    """The reply could not be handled just now (database or reader away); the sender's MTA
    or provider should deliver it again later. Nothing was decided twice."""


async def webhook_token_used(pool: asyncpg.Pool, token: str) -> bool:
    """Whether a provider's (Mailgun's) signed webhook token has been spent already."""
    async with pool.acquire() as conn:
        return await mail.webhook_token_used(conn, token)


async def spend_webhook_token(pool: asyncpg.Pool, token: str) -> None:
    """Spend a webhook token once its reply is handled: seen again, it is a replay."""
    async with pool.acquire() as conn:
        await mail.claim_webhook_token(conn, token)


async def known_recipient(pool: asyncpg.Pool, settings: Settings, address: str) -> bool:
    """Whether an address is one of our reply addresses (for the SMTP listener's RCPT)."""
    if not settings.reply_domain:
        return False
    if bounce_tokens([address], settings.reply_domain):
        return True  # a request mail's envelope sender: delivery status notifications
    tokens = reply_tokens([address], settings.reply_domain)
    if not tokens:
        return False
    async with pool.acquire() as conn:
        return await mail.reply_target(conn, tokens[0]) is not None


async def handle_reply(
    pool: asyncpg.Pool,
    settings: Settings,
    raw: bytes,
    *,
    recipients: list[str] | None = None,
    envelope_from: str | None = None,
    metrics: Metrics | None = None,
) -> ReplyOutcome:
    """Read one reply and decide through `decide()` when it clearly says so.

    The recipient is checked from the envelope or the header section before anything else
    is parsed; the body is read in a worker process (`READERS`), within its limits. Raises
    ReplyNotHandled when it should be retried.
    """
    try:
        outcome = await _handle(pool, settings, raw, recipients, envelope_from, metrics)
    except _RETRY as exc:
        log.warning("reply not handled", extra={"event": "mail.retry", "error": type(exc).__name__})
        raise ReplyNotHandled from exc
    log.info("reply handled", extra={"event": "mail.reply", "outcome": outcome.value})
    return outcome


async def _target(
    pool: asyncpg.Pool, settings: Settings, raw: bytes, recipients: list[str] | None
) -> dict[str, Any] | None:
    domain = settings.reply_domain or ""
    tokens = reply_tokens(recipients, domain) if recipients else header_tokens(raw, domain)
    async with pool.acquire() as conn:
        for token in tokens[:10]:
            target = await mail.reply_target(conn, token)
            if target is not None:
                return target
    return None


async def _read(settings: Settings, raw: bytes, envelope_from: str | None) -> ReplyFacts:
    try:
        return await READERS.run(read_reply, raw, settings.inbound_authserv_id, envelope_from)
    except ReadTooLong:
        return ReplyFacts(problem=ReplyOutcome.TOO_COMPLEX.value)


async def _handle(
    pool: asyncpg.Pool,
    settings: Settings,
    raw: bytes,
    recipients: list[str] | None,
    envelope_from: str | None,
    metrics: Metrics | None,
) -> ReplyOutcome:
    if not settings.reply_domain:
        return ReplyOutcome.UNKNOWN_RECIPIENT
    try:
        domain = settings.reply_domain
        bounce = (
            bounce_tokens(recipients, domain) if recipients else header_bounce_tokens(raw, domain)
        )
        if bounce:
            return await _bounced(pool, raw, bounce[0])
        target = await _target(pool, settings, raw, recipients)
    except TooComplex:
        return ReplyOutcome.TOO_COMPLEX
    except (errors.MessageError, ValueError, TypeError):
        return ReplyOutcome.UNREADABLE
    if target is None:
        return ReplyOutcome.UNKNOWN_RECIPIENT
    facts = await _read(settings, raw, envelope_from)
    if facts.problem is not None:
        return ReplyOutcome(facts.problem)
    if facts.automatic:
        return ReplyOutcome.AUTOMATIC
    who = facts.sender
    if who is None or who != str(target["approver_email"]).lower():
        return ReplyOutcome.WRONG_SENDER
    if settings.inbound_authserv_id and not facts.dmarc:
        return ReplyOutcome.DMARC_FAILED
    key = facts.key
    async with pool.acquire() as conn:
        view = await tasks.task_view(conn, target["task_id"])
    assert view is not None
    # Only cleaned text (no control characters, no line breaks) reaches our own headers.
    answer = {
        "to": who,
        "subject": facts.subject or clean_text(view.summary, 200),
        "in_reply_to": facts.message_id,
        "summary": view.summary,
        "inbox_url": f"{settings.taskjuice_app_url}/{view.workspace}/monitoring/approvals",
    }
    reading = facts.reading
    if reading is Reading.AMBIGUOUS:
        return await _answer(
            pool,
            key,
            answer,
            ReplyOutcome.AMBIGUOUS,
            "Your reply was not understood as approve or deny, so nothing was decided. " + _HOW_TO,
        )
    if reading is Reading.APPROVE and view.reversibility is Reversibility.IRREVERSIBLE:
        return await _answer(
            pool,
            key,
            answer,
            ReplyOutcome.REFUSED_IRREVERSIBLE,
            "This action cannot be undone, so it cannot be approved by reply. "
            "Use the Approve button in the original email; nothing was decided.",
        )
    outcome = outcome_of(reading)
    assert outcome is not None
    result = await decisions.decide(
        pool,
        task_id=target["task_id"],
        actor=Actor(email=who),
        outcome=outcome,
        via=Channel.EMAIL_REPLY,
        client={"message_id": answer["in_reply_to"]},
        tier=target["tier"],
        metrics=metrics,
    )
    if result.changed:
        return await _answer(pool, key, answer, ReplyOutcome.DECIDED, _recorded(result))
    async with pool.acquire() as conn:
        now = await tasks.task_view(conn, target["task_id"])
    return await _answer(
        pool,
        key,
        answer,
        ReplyOutcome.NOT_RECORDED,
        explain(result, now, PLAIN) + " Nothing was changed by your reply.",
    )


async def _bounced(pool: asyncpg.Pool, raw: bytes, token: str) -> ReplyOutcome:
    """A message to a request mail's envelope sender: when it is a delivery status
    notification reporting a failure, that mail's delivery failed (the approver is offered the
    request in Slack, see bot/failover.py); anything else there is ignored as automatic."""
    failure = delivery_failure(raw)
    if failure is None:
        return ReplyOutcome.AUTOMATIC
    async with pool.acquire() as conn:
        found = await deliveries.bounced(conn, token, failure)
    if found is None:
        return ReplyOutcome.UNKNOWN_RECIPIENT
    log.warning(
        "request mail bounced",
        extra={"event": "mail.bounced", "delivery": found.id, "error": failure},
    )
    return ReplyOutcome.BOUNCED


def _recorded(result: DecisionResult) -> str:
    if result.verdict is Verdict.COUNTED:
        left = result.task.required_approvals - result.approvals
        return votes_recorded(left)
    return reply_recorded(result.task.status.value)


async def _answer(
    pool: asyncpg.Pool, key: str, answer: dict[str, Any], outcome: ReplyOutcome, text: str
) -> ReplyOutcome:
    """Record the message as handled and queue its answer, once per message."""
    async with pool.acquire() as conn, conn.transaction():
        if not await mail.claim_inbound(conn, key, outcome.value):
            return ReplyOutcome.DUPLICATE
        await queue_answer(conn, key, answer | {"text": text})
    return outcome
