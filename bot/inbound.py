"""Handling one inbound reply, from any door (SMTP listener, raw webhook, Mailgun)."""

from __future__ import annotations

import enum
import logging
from email import errors
from email.message import EmailMessage
from typing import Any

import asyncpg

from bot import decisions
from bot.config import Settings
from bot.decisions import DecisionResult, Verdict
from bot.domain import Actor, Channel
from bot.explain import PLAIN, explain
from bot.mail_delivery import queue_answer
from bot.mail_replies import (
    Reading,
    dmarc_passed,
    first_line,
    is_automatic,
    message_key,
    outcome_of,
    parse,
    reply_tokens,
    sender,
    understand,
)
from bot.metrics import Metrics
from store import mail, tasks

__all__ = ["ReplyOutcome", "handle_reply", "known_recipient"]

log = logging.getLogger("taskjuice.mail")

_HOW_TO = (
    'Reply with "approve" or "deny" on the first line (or their German, French or Spanish '
    "equivalents), or use the buttons in the original email."
)


class ReplyOutcome(enum.StrEnum):
    """What became of an inbound message."""

    DECIDED = "decided"
    NOT_RECORDED = "not_recorded"
    AMBIGUOUS = "ambiguous"
    REFUSED_IRREVERSIBLE = "refused_irreversible"
    AUTOMATIC = "automatic"
    DUPLICATE = "duplicate"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    WRONG_SENDER = "wrong_sender"
    DMARC_FAILED = "dmarc_failed"
    UNREADABLE = "unreadable"


async def known_recipient(pool: asyncpg.Pool, settings: Settings, address: str) -> bool:
    """Whether an address is one of our reply addresses (for the SMTP listener's RCPT)."""
    if not settings.reply_domain:
        return False
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
    """Read one reply and decide through `decide()` when it clearly says so."""
    try:
        message = parse(raw)
    except Exception:
        return ReplyOutcome.UNREADABLE
    try:
        outcome = await _handle(pool, settings, message, raw, recipients, envelope_from, metrics)
    except (errors.HeaderParseError, IndexError, ValueError, TypeError, AttributeError):
        outcome = ReplyOutcome.UNREADABLE  # headers no parser can read decide nothing
    log.info("reply handled", extra={"event": "mail.reply", "outcome": outcome.value})
    return outcome


def _addresses(message: EmailMessage, recipients: list[str] | None) -> list[str]:
    if recipients:
        return recipients
    found: list[str] = []
    for name in ("Delivered-To", "X-Original-To", "To", "Cc"):
        for header in message.get_all(name) or []:
            found += [a.addr_spec for a in getattr(header, "addresses", ())]
    return found


async def _handle(
    pool: asyncpg.Pool,
    settings: Settings,
    message: EmailMessage,
    raw: bytes,
    recipients: list[str] | None,
    envelope_from: str | None,
    metrics: Metrics | None,
) -> ReplyOutcome:
    if not settings.reply_domain:
        return ReplyOutcome.UNKNOWN_RECIPIENT
    if is_automatic(message, envelope_from):
        return ReplyOutcome.AUTOMATIC
    target = None
    async with pool.acquire() as conn:
        for token in reply_tokens(_addresses(message, recipients), settings.reply_domain):
            target = await mail.reply_target(conn, token)
            if target is not None:
                break
    if target is None:
        return ReplyOutcome.UNKNOWN_RECIPIENT
    who = sender(message)
    if who is None or who != str(target["approver_email"]).lower():
        return ReplyOutcome.WRONG_SENDER
    if settings.inbound_authserv_id and not dmarc_passed(
        message, settings.inbound_authserv_id, who.rpartition("@")[2]
    ):
        return ReplyOutcome.DMARC_FAILED
    key = message_key(message, raw)
    async with pool.acquire() as conn:
        view = await tasks.task_view(conn, target["task_id"])
    assert view is not None
    reading = understand(first_line(message))
    answer = {
        "to": who,
        "subject": str(message.get("Subject", view["summary"]))[:200],
        "in_reply_to": str(message.get("Message-ID", "")).strip()[:500] or None,
        "summary": view["summary"],
        "inbox_url": f"{settings.taskjuice_app_url}/{view['workspace']}/monitoring/approvals",
    }
    if reading is Reading.AMBIGUOUS:
        return await _answer(
            pool,
            key,
            answer,
            ReplyOutcome.AMBIGUOUS,
            "Your reply was not understood as approve or deny, so nothing was decided. " + _HOW_TO,
        )
    if reading is Reading.APPROVE and view["reversibility"] == "irreversible":
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


def _recorded(result: DecisionResult) -> str:
    if result.verdict is Verdict.COUNTED:
        left = result.task.required_approvals - result.approvals
        return f"Your approval is recorded. {left} more approval(s) are needed."
    if result.task.status.value == "approved":
        return "Approved: your reply was recorded and the workflow will continue."
    return "Denied: your reply was recorded and the step will not run."


async def _answer(
    pool: asyncpg.Pool, key: str, answer: dict[str, Any], outcome: ReplyOutcome, text: str
) -> ReplyOutcome:
    """Record the message as handled and queue its answer, once per message."""
    async with pool.acquire() as conn, conn.transaction():
        if not await mail.claim_inbound(conn, key, outcome.value):
            return ReplyOutcome.DUPLICATE
        await queue_answer(conn, key, answer | {"text": text})
    return outcome
