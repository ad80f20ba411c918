"""What the double records of each Web API call, and the faults it can be told to inject.

A fault makes the next call(s) of a method fail: an API error, HTTP 429 with Retry-After, a 5xx,
or accept-then-drop (the call takes effect but the connection is closed before the answer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Call", "Fault", "ratelimited", "take_fault"]


@dataclass(slots=True)
class Call:
    """One Web API call as the double received it, and the team it was served for."""

    method: str
    args: dict[str, Any]
    token: str | None
    answer: str = "ok"
    team: str | None = None
    at: float = field(default_factory=time.monotonic)  # when it arrived (this process's clock)


@dataclass(slots=True)
class Fault:
    """How the next call(s) of a method fail (only calls served for `team`, when given)."""

    kind: str  # "error" | "ratelimited" | "http" | "drop"
    times: int = 1
    error: str = "internal_error"
    status: int = 500
    retry_after: int = 1
    team: str | None = None


def take_fault(
    faults: dict[str, list[Fault]], method: str, team: str | None, call: Call
) -> tuple[Fault | None, web.Response | None]:
    """The next injected fault for this call (served for `team`), and the answer it gives
    instead (if any); the fault is used up."""
    queue = faults[method]
    fault = next((f for f in queue if f.team is None or f.team == team), None)
    if fault is None:
        return None, None
    fault.times -= 1
    if fault.times <= 0:
        queue.remove(fault)
    call.answer = fault.kind
    if fault.kind == "ratelimited":
        return fault, ratelimited(fault.retry_after)
    if fault.kind == "http":
        return fault, web.Response(status=fault.status, text="upstream trouble")
    if fault.kind == "error":
        return fault, web.json_response({"ok": False, "error": fault.error})
    return fault, None


def ratelimited(retry_after: int) -> web.Response:
    """Slack's HTTP 429 answer, asking the caller to wait `retry_after` seconds (at least 1)."""
    return web.json_response(
        {"ok": False, "error": "ratelimited"},
        status=429,
        headers={"Retry-After": str(max(1, retry_after))},
    )
