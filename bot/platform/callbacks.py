"""Platform callbacks: the event body and its Standard Webhooks signature, and sending it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bot.domain import ApprovalTask, AuditAction, Decision
from bot.outbox.coalescing import CoalescingReader
from bot.outbox.dispatcher import GiveUp, RetryLater
from store import tasks
from store.database import Connections

__all__ = [
    "CallbackBodies",
    "CallbackSender",
    "approval_event",
    "approval_undeliverable",
    "callback_body",
    "sign",
    "slack_installed",
    "slack_uninstalled",
]

_Event = tuple[ApprovalTask, Decision, int | None]  # an audit row, its task, next tier's expiry


def _iso(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as the sweeper's SQL writes it too."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# The audit action that ends (or escalates) a task → callback type, status and resolution.
_OUTCOMES: dict[str, tuple[str, str, str | None]] = {
    "approve": ("approved", "approved", "proceed"),
    "deny": ("denied", "denied", "deny"),
    "cancel": ("cancelled", "cancelled", "deny"),
    "expire": ("expired", "expired", "deny"),
    "proceed": ("expired", "expired", "proceed"),
    "escalate": ("escalated", "pending", None),
}


def approval_event(
    task: ApprovalTask, decision: Decision, *, next_tier_expires_in: int | None = None
) -> dict[str, Any]:
    """The callback body for the audit row that ended or escalated `task` (DESIGN.md §3).

    Built from immutable rows, so every retry of one callback carries the same body.
    """
    event, status, resolution = _OUTCOMES[decision.action]
    data: dict[str, Any] = {
        "id": str(task.id),
        "workspace": task.workspace,
        "run_id": task.run_id,
        "status": status,
        "resolution": resolution,
        "decided_by": decision.actor.as_json() if decision.actor else None,
        "via": decision.via.value,
        "reason": decision.reason,
        "decided_at": _iso(decision.decided_at),
    }
    if decision.action is AuditAction.ESCALATE and next_tier_expires_in is not None:
        # The escalation set the new tier's expiry in the same transaction (same now()).
        expires = decision.decided_at + timedelta(seconds=next_tier_expires_in)
        data |= {"tier": decision.tier + 1, "expires_at": _iso(expires)}
    return {"type": f"approval.{event}", "timestamp": _iso(decision.decided_at), "data": data}


def approval_undeliverable(watched: Any, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """`approval.undeliverable` (docs/contract.md §8): no approver of `watched`'s tier was
    reached; informational, the task stays pending. Built once, when the sweeper finds it."""
    return {
        "type": "approval.undeliverable",
        "timestamp": _iso(watched.now),
        "data": {
            "id": str(watched.task_id),
            "workspace": watched.workspace,
            "run_id": watched.run_id,
            "status": "pending",
            "tier": watched.tier,
            "expires_at": _iso(watched.expires_at),
            "attempts": attempts,
        },
    }


def slack_installed(workspace: str, slack: dict[str, Any], at: datetime) -> dict[str, Any]:
    """`slack.installed`: a Slack team was bound to `workspace` (`slack`: the binding)."""
    return {
        "type": "slack.installed",
        "timestamp": _iso(at),
        "data": {"workspace": workspace, "slack": slack},
    }


def slack_uninstalled(
    workspace: str, reason: str, slack: dict[str, Any] | None, at: datetime
) -> dict[str, Any]:
    """`slack.uninstalled`: Slack delivery for `workspace` stopped, and why (`app_uninstalled`,
    `tokens_revoked`, `disconnected`, `invalid_auth`); `slack` is the binding as it stays, or
    null once disconnected."""
    return {
        "type": "slack.uninstalled",
        "timestamp": _iso(at),
        "data": {"workspace": workspace, "reason": reason, "slack": slack},
    }


class CallbackBodies:
    """The bodies outbox callback items stand for: a task event by its audit row, or a ready
    body (events that are not about a task). The audit rows of the callbacks in flight are
    read together, one statement for a whole outbox claim."""

    def __init__(self, pool: Connections) -> None:
        self._pool = pool
        self._events: CoalescingReader[int, _Event] = CoalescingReader(self._read)

    async def _read(self, decision_ids: list[int]) -> dict[int, _Event]:
        async with self._pool.acquire() as conn:
            return await tasks.decision_events(conn, decision_ids)

    async def body(self, payload: dict[str, Any]) -> dict[str, Any]:
        if "decision_id" not in payload:
            body = payload.get("body")
            if not isinstance(body, dict):
                raise GiveUp("callback item has neither a decision_id nor a body")
            return body
        found = await self._events.get(int(payload["decision_id"]))
        if found is None:
            raise GiveUp(f"audit row {payload['decision_id']} no longer exists")
        task, decision, next_tier_expires_in = found
        return approval_event(task, decision, next_tier_expires_in=next_tier_expires_in)


async def callback_body(pool: Connections, payload: dict[str, Any]) -> dict[str, Any]:
    """The body of one outbox callback item, read on its own."""
    return await CallbackBodies(pool).body(payload)


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class CallbackSender:
    """Posts callback items to CALLBACK_URL; non-2xx answers are retried by the outbox."""

    def __init__(
        self, session: aiohttp.ClientSession, *, url: str, key: bytes, timeout: float
    ) -> None:
        self.session = session
        self.url = url
        self.key = key
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, message_id: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.key, message_id, timestamp, body),
            "user-agent": "taskjuice-bot",
        }
        try:
            async with self.session.post(
                self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return
                raise RetryLater(
                    f"callback endpoint answered {response.status}",
                    delay=_retry_after(response.headers.get("Retry-After")),
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryLater(f"callback endpoint unreachable: {type(exc).__name__}") from exc


def _retry_after(raw: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; dates are ignored)."""
    if raw and raw.strip().isdigit():
        return float(raw.strip())
    return None
