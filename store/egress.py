"""The Slack egress budget shared by every replica (migrations 0014, 0020, 0021)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

__all__ = ["Answered", "Lease", "block", "take"]


class Lease(NamedTuple):
    """What one ask of the budget got: permits granted, each counted until `counted_until`
    unless its call's answer is reported sooner; or (none) the seconds until the caller's slot,
    or until a 429's block ends."""

    granted: int
    wait: float
    counted_until: datetime | None = None


class Answered(NamedTuple):
    """A permit whose call Slack answered: its ledger entry, and the time it now counts until."""

    was: datetime
    at: datetime


async def take(
    conn: asyncpg.Connection,
    team: str,
    scope: str,
    *,
    count: int,
    seconds: float,
    hold: float = 0.0,
    want: int,
    priority: int = 0,
    item: int | None = None,
    answered: Sequence[Answered] = (),
) -> Lease:
    """Up to `want` permits of (team, scope), so that at most `count` calls reach Slack in any
    window of `seconds`; a permit counts until `hold` after its grant, or until its call's
    answer, once reported in `answered` (with any later ask). When none are granted, the caller
    (outbox `item`, if it is one) is promised a slot: the next one not promised to a caller of
    `priority` or more urgent, or the one it was promised before, if that is still ahead."""
    row = await conn.fetchrow(
        "SELECT granted, wait, counted_until"
        " FROM taskjuice_slack_permits($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        team,
        scope,
        count,
        seconds,
        hold,
        want,
        priority,
        item,
        [a.was for a in answered],
        [a.at for a in answered],
    )
    return Lease(int(row["granted"]), float(row["wait"]), row["counted_until"])


async def block(conn: asyncpg.Connection, team: str, scope: str, seconds: float) -> None:
    """Slack answered 429: no replica calls (team, scope) for `seconds`."""
    await conn.execute("SELECT taskjuice_slack_block($1, $2, $3)", team, scope, seconds)
