"""Slack's published Web API rate limits, as the double enforces them.

Limits apply per app, per workspace (team), per method, in sliding windows: a call is refused
when `count` calls of that method by that team already happened in the last `seconds`.
`chat.postMessage` has two limits of its own: a pace per channel (about one message per second)
and a workspace-wide cap (several hundred per minute). A refused call does not count and does
not take effect; the answer carries `Retry-After` in whole seconds, at least 1.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHANNEL_PACE",
    "HISTORY_LIMITED",
    "HISTORY_LIMITED_MESSAGES",
    "POST_MESSAGE",
    "PUBLISHED",
    "TEAM_CAP",
    "Limit",
    "SlidingWindows",
    "as_limit",
]


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `count` calls in any window of `seconds`."""

    count: int
    seconds: float


def as_limit(value: Any) -> Limit:
    """A limit given as a `Limit` or as a `(count, seconds)` pair."""
    return value if isinstance(value, Limit) else Limit(int(value[0]), float(value[1]))


TIER_1 = Limit(1, 60.0)
TIER_2 = Limit(20, 60.0)
TIER_3 = Limit(50, 60.0)
TIER_4 = Limit(100, 60.0)

POST_MESSAGE = "chat.postMessage"
# Keys of the limits table that are not Web API methods.
CHANNEL_PACE = "chat.postMessage/channel"  # per channel: about one message per second
TEAM_CAP = POST_MESSAGE  # chat.postMessage's own entry is the per-team cap
HISTORY_LIMITED = Limit(1, 60.0)  # non-Marketplace distributed apps, since 2025-05-29
HISTORY_LIMITED_MESSAGES = 15

PUBLISHED: dict[str, Limit] = {
    "apps.connections.open": TIER_1,
    "conversations.list": TIER_2,
    "users.list": TIER_2,
    "auth.revoke": TIER_3,
    "chat.delete": TIER_3,
    "chat.update": TIER_3,
    "conversations.history": TIER_3,
    "conversations.info": TIER_3,
    "conversations.open": TIER_3,
    "conversations.replies": TIER_3,
    "users.lookupByEmail": TIER_3,
    "chat.postEphemeral": TIER_4,
    "oauth.v2.access": TIER_4,
    "users.info": TIER_4,
    "views.open": TIER_4,
    "views.publish": TIER_4,
    TEAM_CAP: Limit(600, 60.0),
    CHANNEL_PACE: Limit(1, 1.0),
}


class SlidingWindows:
    """Timestamps of admitted calls per window key (e.g. (team, method) or (team, channel))."""

    def __init__(self) -> None:
        self._seen: dict[Hashable, deque[float]] = defaultdict(deque)

    def wait(self, key: Hashable, limit: Limit, now: float) -> int | None:
        """Whole seconds until `key` may be called again under `limit`, or None if it may now."""
        seen = self._seen[key]
        while seen and seen[0] <= now - limit.seconds:
            seen.popleft()
        if len(seen) < limit.count:
            return None
        # A slot frees when the call `count` places back leaves the window.
        frees_at = seen[-limit.count] + limit.seconds if limit.count > 0 else now + limit.seconds
        return max(1, math.ceil(frees_at - now))

    def admit(self, key: Hashable, now: float) -> None:
        self._seen[key].append(now)

    def clear(self) -> None:
        self._seen.clear()
