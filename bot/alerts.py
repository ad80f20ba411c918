"""Alert rules: which platform events deserve a message, and which update an existing one.

Every event is stored as received. Alert state then decides: a new subject or a changed state
queues an `alert.changed` item for the channels; the same event again changes nothing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import asyncpg

from bot.domain import AlertKind, AlertState, ConnectionState, SpendStage, ThroughputState
from bot.outbox import consequences
from bot.platform.schemas import WORKSPACE_PATTERN
from bot.platform.validation import check_schema
from store import alerts

__all__ = [
    "Subscription",
    "connection_event",
    "request_resume",
    "set_routing",
    "spend_event",
    "subscribe_slack_channel",
    "throughput_event",
    "unsubscribe_slack_channel",
    "workspaces_routed_to",
]

SPEND_SOFT = AlertKind.SPEND_SOFT.value
SPEND_HARD = AlertKind.SPEND_HARD.value
CONNECTION = AlertKind.CONNECTION.value
CONNECTION_SUMMARY = AlertKind.CONNECTION_SUMMARY.value
THROUGHPUT = AlertKind.THROUGHPUT.value


async def set_routing(pool: asyncpg.Pool, workspace: str, body: Any) -> dict[str, Any]:
    changes = check_schema("WorkspaceRouting", body)
    if "thresholds" in changes:
        changes["thresholds"] = sorted(set(changes["thresholds"]))
    if "alert_emails" in changes:
        changes["alert_emails"] = sorted({e.lower() for e in changes["alert_emails"]})
    async with pool.acquire() as conn, conn.transaction():
        return await alerts.set_routing(conn, workspace, changes)


class Subscription(enum.StrEnum):
    """What became of a request to send a workspace's alerts to a Slack channel."""

    SUBSCRIBED = "subscribed"
    NOT_A_WORKSPACE = "not_a_workspace"
    NOT_A_CHANNEL = "not_a_channel"
    OTHER_TEAM = "other_team"


async def subscribe_slack_channel(
    pool: asyncpg.Pool, workspace: str, *, channel: str, team: str
) -> Subscription:
    """Send `workspace`'s alerts to a Slack channel (public or private, never a DM) of
    `team`; a workspace whose alerts go to another Slack workspace keeps its routing."""
    if not re.fullmatch(WORKSPACE_PATTERN, workspace):
        return Subscription.NOT_A_WORKSPACE
    if not channel.startswith(("C", "G")):
        return Subscription.NOT_A_CHANNEL
    async with pool.acquire() as conn, conn.transaction():
        current = await alerts.routing(conn, workspace)
        if current.get("slack_team_id") and current["slack_team_id"] != team:
            return Subscription.OTHER_TEAM
        await alerts.set_routing(conn, workspace, {"slack_channel": channel, "slack_team_id": team})
    return Subscription.SUBSCRIBED


async def workspaces_routed_to(pool: asyncpg.Pool, channel: str) -> list[str]:
    """The workspaces whose alerts a Slack channel receives."""
    async with pool.acquire() as conn:
        return await alerts.routed_to(conn, channel)


async def unsubscribe_slack_channel(
    pool: asyncpg.Pool, channel: str, workspaces: Sequence[str] | None = None
) -> list[str]:
    """Stop sending alerts to a Slack channel (only those of `workspaces`, when given);
    returns the workspaces that were sent there."""
    async with pool.acquire() as conn:
        return await alerts.unroute_channel(conn, channel, workspaces)


async def spend_event(pool: asyncpg.Pool, body: Any) -> dict[str, Any]:
    """Soft: announce each newly crossed threshold once per period. Hard: one cap-reached
    notice per period, listing the paused workflows. Cleared: that notice says so."""
    event = check_schema("SpendEvent", body)
    workspace, period, stage = event["workspace"], event["period"], SpendStage(event["stage"])
    figures = {k: event[k] for k in ("spend", "cap", "currency")}
    notices: list[dict[str, Any]] = []
    async with pool.acquire() as conn, conn.transaction():
        event_id = await alerts.record_event(conn, workspace, "spend", event)
        if stage is SpendStage.SOFT:
            routing = await alerts.routing(conn, workspace)
            # Bounded, so an absurd ratio can never become an infinity JSON cannot hold.
            percent = min(100.0 * event["spend"] / event["cap"], 1e6)

            crossed = [t for t in routing["thresholds"] if percent >= t]
            for threshold in crossed:
                # Only the highest threshold crossed is announced; lower ones are marked
                # as passed so a later event does not announce them out of order.
                state = AlertState.ANNOUNCED if threshold == crossed[-1] else AlertState.PASSED
                step = (
                    await alerts.advance(
                        conn,
                        workspace=workspace,
                        kind=SPEND_SOFT,
                        subject=f"{period}:{threshold}",
                        state=state.value,
                        data={
                            "threshold": threshold,
                            "period": period,
                            "percent": round(percent, 1),
                            **figures,
                        },
                    )
                    if await _fresh(conn, workspace, SPEND_SOFT, f"{period}:{threshold}")
                    else None
                )
                if step is not None and step.changed and state is AlertState.ANNOUNCED:
                    notices.append(await _notify(conn, step, "threshold"))
        else:
            notices += await _spend_hard(conn, event, figures)
    return _answer(event_id, notices)


async def _fresh(conn: asyncpg.Connection, workspace: str, kind: str, subject: str) -> bool:
    return await alerts.current(conn, workspace=workspace, kind=kind, subject=subject) is None


async def _spend_hard(
    conn: asyncpg.Connection, event: dict[str, Any], figures: dict[str, Any]
) -> list[dict[str, Any]]:
    workspace, period = event["workspace"], event["period"]
    known = await alerts.current(conn, workspace=workspace, kind=SPEND_HARD, subject=period)
    if SpendStage(event["stage"]) is SpendStage.CLEARED:
        if known is None or known[0] == AlertState.CLEARED:
            return []
        state, data = AlertState.CLEARED, known[1]
    else:
        data = dict(known[1]) if known and known[0] == AlertState.REACHED else {"workflows": []}
        workflow = event.get("workflow")
        if workflow and all(w["id"] != workflow["id"] for w in data["workflows"]):
            data["workflows"] = [*data["workflows"], workflow]
        state, data = AlertState.REACHED, data | figures | {"period": period}
    step = await alerts.advance(
        conn, workspace=workspace, kind=SPEND_HARD, subject=period, state=state.value, data=data
    )
    return [await _notify(conn, step, state.value)] if step.changed else []


async def connection_event(pool: asyncpg.Pool, body: Any) -> dict[str, Any]:
    """One notice per connection, and the workspace's summary of how many need reauth."""
    event = check_schema("ConnectionEvent", body)
    workspace, connection = event["workspace"], event["connection"]
    state = ConnectionState(event["state"])
    notices: list[dict[str, Any]] = []
    async with pool.acquire() as conn, conn.transaction():
        event_id = await alerts.record_event(conn, workspace, "connection", event)
        known = await alerts.current(
            conn, workspace=workspace, kind=CONNECTION, subject=connection["id"]
        )
        if state is ConnectionState.ACTIVE and known is None:
            return _answer(event_id, [])  # never reported broken: nothing to say
        data = {"connection": connection, "paused_runs": event.get("paused_runs")}
        step = await alerts.advance(
            conn,
            workspace=workspace,
            kind=CONNECTION,
            subject=connection["id"],
            state=state.value,
            data=data,
        )
        if step.changed:
            notices.append(await _notify(conn, step, state.value))
            broken = await alerts.count_in_state(
                conn, workspace, CONNECTION, ConnectionState.ERROR.value
            )
            summary = await alerts.advance(
                conn,
                workspace=workspace,
                kind=CONNECTION_SUMMARY,
                subject="",
                state=(AlertState.OPEN if broken else AlertState.RESOLVED).value,
                data={"count": broken},
            )
            if summary.changed:
                notices.append(await _notify(conn, summary, "summary"))
    return _answer(event_id, notices)


async def throughput_event(pool: asyncpg.Pool, body: Any) -> dict[str, Any]:
    """A tripped breaker gets one notice per workflow; `cleared` updates it."""
    event = check_schema("ThroughputEvent", body)
    workspace, workflow = event["workspace"], event["workflow"]
    state = ThroughputState(event["state"])
    notices: list[dict[str, Any]] = []
    async with pool.acquire() as conn, conn.transaction():
        event_id = await alerts.record_event(conn, workspace, "throughput", event)
        known = await alerts.current(
            conn, workspace=workspace, kind=THROUGHPUT, subject=workflow["id"]
        )
        if state is ThroughputState.CLEARED and known is None:
            return _answer(event_id, [])
        data = {"workflow": workflow, "rate": event.get("rate"), "cap": event.get("cap")}
        if state is ThroughputState.CLEARED and known is not None:
            data = known[1] | {"workflow": workflow}
        step = await alerts.advance(
            conn,
            workspace=workspace,
            kind=THROUGHPUT,
            subject=workflow["id"],
            state=state.value,
            data=data,
        )
        if step.changed:
            notices.append(await _notify(conn, step, state.value))
    return _answer(event_id, notices)


async def request_resume(
    pool: asyncpg.Pool, alert_id: int, requested_by: dict[str, Any], via: str
) -> bool:
    """Someone pressed Resume workflow on a tripped breaker: tell the platform once."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM alert_state WHERE id = $1 AND kind = $2 FOR UPDATE", alert_id, THROUGHPUT
        )
        if row is None or row["state"] != AlertState.TRIPPED:
            return False
        at = await conn.fetchval("SELECT now()")
        stamp = at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        data = row["data"] | {"resume_requested_by": requested_by, "resume_requested_at": stamp}
        step = await alerts.advance(
            conn,
            workspace=row["workspace"],
            kind=THROUGHPUT,
            subject=row["subject"],
            state=AlertState.RESUME_REQUESTED.value,
            data=data,
        )
        await consequences.workflow_callback(
            conn,
            {
                "type": "workflow.resume_requested",
                "timestamp": stamp,
                "data": {
                    "workspace": row["workspace"],
                    "workflow": row["data"]["workflow"],
                    "requested_by": requested_by,
                    "via": via,
                    "requested_at": stamp,
                },
            },
        )
        await _notify(conn, step, AlertState.RESUME_REQUESTED.value)
        return True


async def _notify(conn: asyncpg.Connection, step: alerts.Advance, event: str) -> dict[str, Any]:
    await consequences.alert_changed(conn, step.alert_id, event)
    return {"alert_id": step.alert_id, "state": step.state, "event": event}


def _answer(event_id: int, notices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"event_id": event_id, "notified": bool(notices), "alerts": notices}
