"""Alert events as received, alert state for dedupe and updates, and workspace routing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

__all__ = [
    "Advance",
    "advance",
    "count_in_state",
    "current",
    "get",
    "record_event",
    "routing",
    "set_routing",
    "unroute_channel",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Advance:
    """The outcome of moving one alert subject to a state."""

    alert_id: int
    state: str
    previous: str | None
    changed: bool


async def record_event(
    conn: asyncpg.Connection, workspace: str, kind: str, payload: dict[str, Any]
) -> int:
    event_id: int = await conn.fetchval(
        "INSERT INTO alert_events (workspace, kind, payload) VALUES ($1, $2, $3) RETURNING id",
        workspace,
        kind,
        payload,
    )
    return event_id


async def advance(
    conn: asyncpg.Connection,
    *,
    workspace: str,
    kind: str,
    subject: str,
    state: str,
    data: dict[str, Any],
) -> Advance:
    """Set the subject's state and data; `changed` when either differs from what was stored.

    The row is locked for the caller's transaction, so two copies of one event change it once.
    """
    inserted = await conn.fetchval(
        "INSERT INTO alert_state (workspace, kind, subject, state, data)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workspace, kind, subject) DO NOTHING"
        " RETURNING id",
        workspace,
        kind,
        subject,
        state,
        data,
    )
    if inserted is not None:
        return Advance(alert_id=inserted, state=state, previous=None, changed=True)
    row = await conn.fetchrow(
        "SELECT id, state, data FROM alert_state"
        " WHERE workspace = $1 AND kind = $2 AND subject = $3 FOR UPDATE",
        workspace,
        kind,
        subject,
    )
    if row["state"] == state and row["data"] == data:
        return Advance(alert_id=row["id"], state=state, previous=state, changed=False)
    await conn.execute(
        "UPDATE alert_state SET state = $2, data = $3, version = version + 1, updated_at = now()"
        " WHERE id = $1",
        row["id"],
        state,
        data,
    )
    return Advance(alert_id=row["id"], state=state, previous=row["state"], changed=True)


async def current(
    conn: asyncpg.Connection, *, workspace: str, kind: str, subject: str
) -> tuple[str, dict[str, Any]] | None:
    row = await conn.fetchrow(
        "SELECT state, data FROM alert_state WHERE workspace = $1 AND kind = $2 AND subject = $3",
        workspace,
        kind,
        subject,
    )
    return (row["state"], row["data"]) if row else None


async def count_in_state(conn: asyncpg.Connection, workspace: str, kind: str, state: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM alert_state WHERE workspace = $1 AND kind = $2 AND state = $3",
        workspace,
        kind,
        state,
    )
    return count


async def routing(conn: asyncpg.Connection, workspace: str) -> dict[str, Any]:
    """The workspace's routing, with defaults for a workspace never configured."""
    row = await conn.fetchrow("SELECT * FROM workspaces WHERE workspace = $1", workspace)
    if row is None:
        return {
            "workspace": workspace,
            "slack_channel": None,
            "slack_team_id": None,
            "alert_emails": [],
            "thresholds": [80, 90],
        }
    return _routing(row)


async def set_routing(
    conn: asyncpg.Connection, workspace: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Create or update the routing; fields absent from `changes` keep their value."""
    row = await conn.fetchrow(
        """
        INSERT INTO workspaces AS w (workspace, slack_channel, slack_team_id, alert_emails,
            thresholds)
        VALUES ($1, $2, $3, coalesce($4, '{}'::text[]), coalesce($5, '{80,90}'::numeric[]))
        ON CONFLICT (workspace) DO UPDATE SET
            slack_channel = CASE WHEN $6 THEN EXCLUDED.slack_channel ELSE w.slack_channel END,
            slack_team_id = CASE WHEN $7 THEN EXCLUDED.slack_team_id ELSE w.slack_team_id END,
            alert_emails = coalesce($4, w.alert_emails),
            thresholds = coalesce($5, w.thresholds),
            updated_at = now()
        RETURNING *
        """,
        workspace,
        changes.get("slack_channel"),
        changes.get("slack_team_id"),
        changes.get("alert_emails"),
        changes.get("thresholds"),
        "slack_channel" in changes,
        "slack_team_id" in changes,
    )
    return _routing(row)


async def routed_to(conn: asyncpg.Connection, channel: str) -> list[str]:
    """The workspaces whose alerts go to `channel`."""
    rows = await conn.fetch(
        "SELECT workspace FROM workspaces WHERE slack_channel = $1 ORDER BY workspace", channel
    )
    return [r["workspace"] for r in rows]


async def unroute_channel(
    conn: asyncpg.Connection, channel: str, workspaces: Sequence[str] | None = None
) -> list[str]:
    """Stop sending alerts to `channel` (only those of `workspaces`, when given); returns the
    workspaces that were routed there."""
    rows = await conn.fetch(
        "UPDATE workspaces SET slack_channel = NULL, updated_at = now()"
        " WHERE slack_channel = $1 AND ($2::text[] IS NULL OR workspace = ANY($2::text[]))"
        " RETURNING workspace",
        channel,
        None if workspaces is None else list(workspaces),
    )
    return sorted(r["workspace"] for r in rows)


def _routing(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "workspace": row["workspace"],
        "slack_channel": row["slack_channel"],
        "slack_team_id": row["slack_team_id"],
        "alert_emails": list(row["alert_emails"]),
        "thresholds": [_number(t) for t in row["thresholds"]],
    }


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


async def get(conn: asyncpg.Connection, alert_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM alert_state WHERE id = $1", alert_id)
    return dict(row) if row else None
