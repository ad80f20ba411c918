"""How the double applies Slack's published rate limits (`bot.devkit.slack.limits`).

Limits are kept per team and method; a refused call answers 429 and does not take effect. The
legacy default team is not limited unless asked (`rate_limits=True`); teams added with `add_team`
are.
"""

from __future__ import annotations

from typing import Any

from bot.devkit.slack.limits import CHANNEL_PACE, HISTORY_LIMITED, POST_MESSAGE, Limit
from bot.devkit.slack.teams import Served
from bot.devkit.slack.workspaces import Workspaces

__all__ = ["RateLimiting"]


class RateLimiting(Workspaces):
    """Switching limits on and off, counting the calls they refused, and admitting calls."""

    def set_limit(self, method: str, count: int | None, seconds: float = 60.0) -> None:
        """At most `count` calls of `method` per team in any window of `seconds` (None: no
        limit). `chat.postMessage` is the per-team cap, `chat.postMessage/channel` the pace."""
        if count is None:
            self.limits.pop(method, None)
        else:
            self.limits[method] = Limit(count, seconds)

    def enforce_rate_limits(self, on: bool = True, team_id: str | None = None) -> None:
        """Switch the published limits on or off for one team, or (no team) for every team."""
        if team_id is not None:
            self._team(team_id).rate_limits = on
            return
        self.rate_limits = on
        for team in self.teams.values():
            team.rate_limits = on

    def rate_limited(self, method: str | None = None, team: str | None = None) -> int:
        """How many calls were answered 429 (by the limits, not by injected faults)."""
        return sum(
            n
            for (t, m), n in self._refused.items()
            if (method is None or m == method) and (team is None or t == team)
        )

    def _enforced(self, served: Served) -> bool:
        if served.team is not None and served.team.rate_limits is not None:
            return served.team.rate_limits
        if self.rate_limits is not None:
            return self.rate_limits
        return served.team is None or served.team.id != self.team_id

    def _retry_after(self, method: str, args: dict[str, Any], served: Served) -> int | None:
        """Seconds to wait if the call is over a limit; else admits it into its windows."""
        now = self._monotonic()
        checks: list[tuple[tuple[str, ...], Limit]] = []
        enforced = self._enforced(served)
        limit = self.limits.get(method) if enforced else None
        if method == "conversations.history" and self.history_limited:
            limit = HISTORY_LIMITED
        if limit is not None:
            checks.append(((served.key, method), limit))
        if method == POST_MESSAGE:
            channel = str(args.get("channel"))
            pace = self.limits.get(CHANNEL_PACE) if enforced else None
            if pace is None and self.pace_per_channel is not None:
                pace = Limit(1, 1.0 / self.pace_per_channel)
            if pace is not None:
                checks.append(((served.key, CHANNEL_PACE, channel), pace))
        waits = [w for key, lim in checks if (w := self._windows.wait(key, lim, now)) is not None]
        if waits:
            return max(waits)
        for key, _ in checks:
            self._windows.admit(key, now)
        return None
