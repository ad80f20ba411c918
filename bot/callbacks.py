"""Platform callbacks: the event body and its Standard Webhooks signature, and sending it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime
from typing import Any

import aiohttp

from bot.domain import Actor, ApprovalTask, Channel
from bot.outbox import RetryLater

__all__ = ["CallbackSender", "approval_event", "sign"]


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def approval_event(
    event: str,
    task: ApprovalTask,
    *,
    status: str,
    resolution: str | None,
    via: Channel,
    decided_by: Actor | None,
    reason: str | None,
    decided_at: datetime,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The callback body for `approval.<event>`, exactly as DESIGN.md fixes it."""
    data: dict[str, Any] = {
        "id": str(task.id),
        "workspace": task.workspace,
        "run_id": task.run_id,
        "status": status,
        "resolution": resolution,
        "decided_by": decided_by.as_json() if decided_by else None,
        "via": via.value,
        "reason": reason,
        "decided_at": _iso(decided_at),
    }
    return {
        "type": f"approval.{event}",
        "timestamp": _iso(decided_at),
        "data": data | (extra or {}),
    }


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
