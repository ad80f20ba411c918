"""Queries on approval tasks, their tiers, approvers, audit rows and deliveries."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from bot.domain import (
    Actor,
    ApprovalTask,
    Approver,
    AuditAction,
    Channel,
    Decision,
    NewApproval,
    OutboxKind,
    Resolution,
    Reversibility,
    TaskStatus,
    TimeoutPolicy,
)
from bot.task_view import TaskView

__all__ = [
    "DecisionContext",
    "DecisionWrite",
    "Reader",
    "decision_events",
    "delivery_states",
    "insert",
    "list_page",
    "list_rows",
    "load_for_decisions",
    "lock",
    "record_decisions",
    "shown_view",
    "task_row",
    "task_view",
    "workspace_of",
]


def _task(row: Mapping[str, Any]) -> ApprovalTask:
    requested = row["requested_by"]
    return ApprovalTask(
        id=row["id"],
        workspace=row["workspace"],
        run_id=row["run_id"],
        summary=row["summary"],
        reversibility=Reversibility(row["reversibility"]),
        status=TaskStatus(row["status"]),
        resolution=Resolution(row["resolution"]) if row["resolution"] else None,
        timeout_policy=TimeoutPolicy(row["timeout_policy"]),
        required_approvals=row["required_approvals"],
        allow_self_approval=row["allow_self_approval"],
        requested_by=Actor(**requested) if requested else None,
        tier=row["tier"],
        tier_count=row["tier_count"],
        expires_at=row["expires_at"],
        content_hash=row["content_hash"],
        overdue=bool(row.get("overdue")),
    )


def _decision(row: asyncpg.Record) -> Decision:
    has_actor = row["actor_email"] or row["actor_slack_user_id"]
    return Decision(
        id=row["id"],
        task_id=row["task_id"],
        tier=row["tier"],
        action=AuditAction(row["action"]),
        via=Channel(row["via"]),
        actor=Actor(
            email=row["actor_email"],
            slack_user_id=row["actor_slack_user_id"],
            slack_team_id=row["actor_slack_team_id"],
        )
        if has_actor
        else None,
        reason=row["reason"],
        decided_at=row["decided_at"],
        approver_id=row["approver_id"],
    )


def _requested_json(actor: Actor | None) -> dict[str, Any] | None:
    if actor is None:
        return None
    return {
        k: v
        for k, v in {
            "email": actor.email,
            "slack_user_id": actor.slack_user_id,
            "slack_team_id": actor.slack_team_id,
        }.items()
        if v
    }


async def insert(
    conn: asyncpg.Connection, task_id: UUID, new: NewApproval, content_hash: str
) -> TaskView:
    """Store a new task with every tier and approver, and queue the channels' refresh of it
    (its `created` change), in one statement; return its view (the database clock decides
    its times; a task just written has no audit and no deliveries).

    One statement is atomic: a caller with nothing else to write needs no transaction."""
    first = new.tiers[0]
    people = [(i, a) for i, tier in enumerate(new.tiers) for a in tier.approvers]
    row = await conn.fetchrow(
        """
        WITH task AS (
            INSERT INTO tasks (id, workspace, run_id, workflow, step, summary, details,
                reversibility, required_approvals, requested_by, allow_self_approval,
                timeout_policy, deliver, extra, content_hash, tier_count, expires_at,
                remind_before, remind_default)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                COALESCE($17, now() + make_interval(secs => $18)), $19, $20)
            RETURNING *
        ), timer AS (
            INSERT INTO task_timers (task_id, tier, expires_at, remind_at)
            SELECT id, 0, expires_at, taskjuice_remind_at(now(), expires_at, $19, $20) FROM task
        ), tiers AS (
            INSERT INTO approver_tiers (task_id, tier, expires_in)
            SELECT $1, t.tier - 1, t.expires_in
            FROM unnest($21::integer[]) WITH ORDINALITY AS t(expires_in, tier)
        ), people AS (
            INSERT INTO approvers (task_id, tier, email, slack_user_id, slack_team_id)
            SELECT $1, p.tier, p.email, p.slack_user_id, p.slack_team_id
            FROM unnest($22::integer[], $23::text[], $24::text[], $25::text[]) WITH ORDINALITY
                AS p(tier, email, slack_user_id, slack_team_id, n)
            ORDER BY p.n
        ), created AS (
            -- Its turn is the task's workspace, named here rather than looked up again
            -- by the outbox trigger.
            INSERT INTO outbox (kind, payload, task_id, message_id, tenant)
            SELECT $26::text, jsonb_build_object('changes', jsonb_build_array(
                    jsonb_build_object('task_id', id::text, 'event', 'created'))),
                id, $27, workspace
            FROM task
        )
        SELECT * FROM task
        """,
        task_id,
        new.workspace,
        new.run_id,
        new.workflow,
        new.step,
        new.summary,
        new.details,
        new.reversibility.value,
        new.required_approvals,
        _requested_json(new.requested_by),
        new.allow_self_approval,
        new.timeout_policy.value,
        new.deliver,
        new.extra,
        content_hash,
        len(new.tiers),
        first.expires_at,
        first.expires_in,
        new.remind_before,
        new.remind_default,
        [tier.expires_in for tier in new.tiers],
        [i for i, _ in people],
        [a.email for _, a in people],
        [a.slack_user_id for _, a in people],
        [a.slack_team_id for _, a in people],
        OutboxKind.TASK_CHANGED.value,
        f"msg_{uuid.uuid4().hex}",
    )
    tiers = [{"tier": i, "expires_in": tier.expires_in} for i, tier in enumerate(new.tiers)]
    named = [
        {
            "id": None,  # no delivery refers to them yet
            "tier": i,
            "email": a.email,
            "slack_user_id": a.slack_user_id,
            "slack_team_id": a.slack_team_id,
        }
        for i, a in people
    ]
    return TaskView.from_row(_view(row, tiers, named, [], []))


async def decision_events(
    conn: asyncpg.Connection, decision_ids: list[int]
) -> dict[int, tuple[ApprovalTask, Decision, int | None]]:
    """Audit rows by id, each with its task and, for an escalation, the next tier's
    `expires_in` (one statement however many; ids that no longer exist are left out)."""
    rows = await conn.fetch(
        """
        SELECT d.*, t.id AS t_id, t.workspace, t.run_id, t.summary, t.reversibility, t.status,
               t.resolution, t.timeout_policy, t.required_approvals, t.allow_self_approval,
               t.requested_by, t.tier AS t_tier, t.tier_count, t.expires_at, t.content_hash,
               next.expires_in AS next_expires_in
        FROM decisions d
        JOIN tasks t ON t.id = d.task_id
        LEFT JOIN approver_tiers next ON next.task_id = d.task_id AND next.tier = d.tier + 1
        WHERE d.id = ANY($1::bigint[])
        """,
        decision_ids,
    )
    return {
        row["id"]: (
            _task({**dict(row), "id": row["t_id"], "tier": row["t_tier"]}),
            _decision(row),
            row["next_expires_in"],
        )
        for row in rows
    }


async def workspace_of(conn: asyncpg.Connection, task_id: UUID) -> str | None:
    """The TaskJuice workspace a task belongs to (None: no such task)."""
    workspace: str | None = await conn.fetchval(
        "SELECT workspace FROM tasks WHERE id = $1", task_id
    )
    return workspace


async def task_view(conn: asyncpg.Connection, task_id: UUID) -> TaskView | None:
    """The task as the API shows it: with approvers, escalation tiers, audit and deliveries."""
    row = await task_row(conn, task_id)
    return TaskView.from_row(row) if row is not None else None


async def shown_view(conn: asyncpg.Connection, task_id: UUID) -> tuple[TaskView, str] | None:
    """`task_view`, and the digest of the content its approvers are shown (which a button or
    link must carry to decide), in one statement."""
    found = await _read(conn, task_id)
    return (TaskView.from_row(found[0]), found[1]) if found is not None else None


async def task_row(conn: asyncpg.Connection, task_id: UUID) -> dict[str, Any] | None:
    """What `task_view` reads, as the mapping `TaskView.from_row` takes (the API's JSON)."""
    found = await _read(conn, task_id)
    return found[0] if found is not None else None


# The task with its tiers, approvers, audit and deliveries in one round trip: each list comes
# as an array of its table's rows, which the driver decodes like any row.
_TASK_ROW = """
SELECT t.*,
    ARRAY(SELECT a FROM approver_tiers a WHERE a.task_id = t.id ORDER BY a.tier) AS t_tiers,
    ARRAY(SELECT a FROM approvers a WHERE a.task_id = t.id ORDER BY a.tier, a.id) AS t_people,
    ARRAY(SELECT d FROM decisions d WHERE d.task_id = t.id ORDER BY d.id) AS t_audit,
    ARRAY(SELECT d FROM deliveries d WHERE d.task_id = t.id ORDER BY d.id) AS t_shown
FROM tasks t WHERE t.id = $1
"""


async def _read(conn: asyncpg.Connection, task_id: UUID) -> tuple[dict[str, Any], str] | None:
    """`task_row`, and the task's content digest."""
    try:
        row = await conn.fetchrow(_TASK_ROW, task_id)
    except asyncpg.OutdatedSchemaCacheError:
        # A table gained or lost columns (a rolling upgrade's migration) since this connection
        # last decoded its rows: the driver has reloaded their layout, and a read is safe again.
        row = await conn.fetchrow(_TASK_ROW, task_id)
    if row is None:
        return None
    view = _view(row, row["t_tiers"], row["t_people"], row["t_audit"], row["t_shown"])
    return view, row["content_hash"]


def _person(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("email", "slack_user_id", "slack_team_id") if row[k]}


def _view(
    row: Mapping[str, Any],
    tiers: Sequence[Mapping[str, Any]],
    people: Sequence[Mapping[str, Any]],
    audit: Sequence[Mapping[str, Any]],
    shown: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    by_tier: dict[int, list[dict[str, Any]]] = {}
    for p in people:
        by_tier.setdefault(p["tier"], []).append(_person(p))
    return {
        "id": str(row["id"]),
        "workspace": row["workspace"],
        "run_id": row["run_id"],
        "workflow": row["workflow"],
        "step": row["step"],
        "summary": row["summary"],
        "details": row["details"],
        "reversibility": row["reversibility"],
        "approvers": by_tier.get(0, []),
        "required_approvals": row["required_approvals"],
        "requested_by": row["requested_by"],
        "allow_self_approval": row["allow_self_approval"],
        "timeout_policy": row["timeout_policy"],
        "escalation": [
            {"approvers": by_tier.get(t["tier"], []), "expires_in": t["expires_in"]}
            for t in tiers
            if t["tier"] > 0
        ],
        "remind_before": row["remind_before"],
        "deliver": row["deliver"],
        "status": row["status"],
        "resolution": row["resolution"],
        "tier": row["tier"],
        "expires_at": _iso(row["expires_at"]),
        "created_at": _iso(row["created_at"]),
        "finished_at": _iso(row["finished_at"]),
        "decisions": [_audit_json(a) for a in audit],
        "deliveries": [_delivery_json(d) for d in shown],
        "reach": _reach(row["tier"], people, shown),
    }


def _reach(
    tier: int, people: Sequence[Mapping[str, Any]], shown: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Per approver of the current tier: whether and by which channel the request reached
    them, and each channel's state and last error (docs/contract.md §8)."""
    reach = []
    for p in people:
        if p["tier"] != tier:
            continue
        channels = {}
        for channel in ("slack", "email"):
            mine = [
                d
                for d in shown
                if d["tier"] == tier
                and d["channel"] == channel
                and (
                    d["approver_id"] == p["id"] or (channel == "slack" and d["approver_id"] is None)
                )
            ]
            sent = [d for d in mine if d["status"] == "sent"]
            queued = [d for d in mine if d["status"] == "queued"]
            last = sent[0] if sent else (queued or mine)[-1] if mine else None
            status = "delivered" if sent else "pending" if queued else "failed" if mine else "off"
            channels[channel] = {
                "status": status,
                "error": last["last_error"] if last is not None and not sent else None,
                "at": _iso(last["sent_at"] if sent else last["error_at"]) if last else None,
            }
        delivered = [(c, v["at"]) for c, v in channels.items() if v["status"] == "delivered"]
        reach.append(
            {
                "approver": _person(p),
                "reached": bool(delivered),
                "via": delivered[0][0] if delivered else None,
                "at": delivered[0][1] if delivered else None,
                "channels": channels,
            }
        )
    return reach


def _audit_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tier": row["tier"],
        "action": row["action"],
        "via": row["via"],
        "by": {
            k: v
            for k, v in {
                "email": row["actor_email"],
                "slack_user_id": row["actor_slack_user_id"],
                "slack_team_id": row["actor_slack_team_id"],
            }.items()
            if v
        }
        or None,
        "reason": row["reason"],
        "client": row["client"],
        "at": _iso(row["decided_at"]),
    }


def _delivery_json(row: asyncpg.Record) -> dict[str, Any]:
    keys = (
        "channel",
        "purpose",
        "tier",
        "status",
        "last_error",
        "slack_team_id",
        "slack_channel",
        "slack_ts",
        "mail_to",
        "mail_message_id",
    )
    shown = {k: row[k] for k in keys if row[k] is not None} | {"at": _iso(row["created_at"])}
    if row["sent_at"] is not None:
        shown["sent_at"] = _iso(row["sent_at"])
    return shown


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


async def list_page(
    conn: asyncpg.Connection,
    *,
    workspace: str | None,
    status: str | None,
    limit: int,
    after: tuple[datetime, UUID] | None,
) -> list[TaskView]:
    """One page of tasks, newest first, after the (created_at, id) cursor; no audit rows."""
    rows = await list_rows(conn, workspace=workspace, status=status, limit=limit, after=after)
    return [TaskView.from_row(row) for row in rows]


async def list_rows(
    conn: asyncpg.Connection,
    *,
    workspace: str | None,
    status: str | None,
    limit: int,
    after: tuple[datetime, UUID] | None,
) -> list[dict[str, Any]]:
    """What `list_page` reads, as the mappings `TaskView.from_row` takes."""
    rows = await conn.fetch(
        """
        SELECT * FROM tasks
        WHERE ($1::text IS NULL OR workspace = $1)
          AND ($2::text IS NULL OR status = $2)
          AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT $5
        """,
        workspace,
        status,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    ids = [r["id"] for r in rows]
    tiers = await conn.fetch(
        "SELECT task_id, tier, expires_in FROM approver_tiers WHERE task_id = ANY($1::uuid[])"
        " ORDER BY tier",
        ids,
    )
    people = await conn.fetch(
        "SELECT id, task_id, tier, email, slack_user_id, slack_team_id FROM approvers"
        " WHERE task_id = ANY($1::uuid[]) ORDER BY tier, id",
        ids,
    )
    views = []
    for row in rows:
        view = _view(
            row,
            [t for t in tiers if t["task_id"] == row["id"]],
            [p for p in people if p["task_id"] == row["id"]],
            [],
            [],
        )
        del view["decisions"], view["deliveries"]
        views.append(view)
    return views


def dumps(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) for hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def delivery_states(
    conn: asyncpg.Connection, task_ids: list[UUID]
) -> dict[UUID, asyncpg.Record]:
    """What channels need to plan messages, by task: status, current tier, delivery options."""
    rows = await conn.fetch(
        "SELECT id, status, tier, deliver FROM tasks WHERE id = ANY($1::uuid[])", task_ids
    )
    return {row["id"]: row for row in rows}


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionContext:
    """A task as one statement read it, with what a decision needs: the current tier's
    approvers and votes, the version a decision must find unchanged, and the (email, Slack
    user) pairs of the bot's Slack user cache that name the voter, a voter or the requester."""

    task: ApprovalTask
    approvers: list[Approver]
    votes: list[Decision]
    final: Decision | None
    version: int
    links: list[tuple[str, str]] = field(default_factory=list)


_AUDIT_JSON = """json_build_object('id', d.id, 'task_id', d.task_id, 'tier', d.tier,
    'approver_id', d.approver_id, 'action', d.action, 'via', d.via,
    'actor_email', d.actor_email, 'actor_slack_user_id', d.actor_slack_user_id,
    'actor_slack_team_id', d.actor_slack_team_id, 'reason', d.reason,
    'decided_at', d.decided_at)"""

_LOAD = f"""
SELECT r.n, t.*, t.status = 'pending' AND t.expires_at <= now() AS overdue,
    (SELECT coalesce(json_agg(json_build_object('id', a.id, 'tier', a.tier, 'email', a.email,
        'slack_user_id', a.slack_user_id, 'slack_team_id', a.slack_team_id) ORDER BY a.id), '[]')
     FROM approvers a WHERE a.task_id = t.id AND a.tier = t.tier) AS tier_approvers,
    (SELECT coalesce(json_agg({_AUDIT_JSON} ORDER BY d.id), '[]')
     FROM decisions d WHERE d.task_id = t.id AND d.tier = t.tier AND d.approver_id IS NOT NULL)
        AS votes,
    (SELECT {_AUDIT_JSON} FROM decisions d WHERE d.id = t.final_decision_id) AS final,
    (SELECT coalesce(json_agg(json_build_array(u.email, u.user_id)), '[]') FROM slack_users u
     WHERE u.email IS NOT NULL AND (u.user_id = ANY (k.ids) OR lower(u.email) = ANY (k.emails)))
        AS links
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
    AS r(id, team, member, email, n)
JOIN tasks t ON t.id = r.id
CROSS JOIN LATERAL (
    -- The names to look up in the Slack user cache: the voter's, the tier's voters', the
    -- requester's (Slack user ids are unique across workspaces, so no team is needed).
    SELECT coalesce(array_agg(n.id) FILTER (WHERE n.id IS NOT NULL), '{{}}') AS ids,
        coalesce(array_agg(lower(n.email)) FILTER (WHERE n.email IS NOT NULL), '{{}}') AS emails
    FROM (
        SELECT d.actor_slack_user_id, d.actor_email FROM decisions d
        WHERE d.task_id = t.id AND d.tier = t.tier AND d.approver_id IS NOT NULL
        UNION ALL VALUES (t.requested_by ->> 'slack_user_id', t.requested_by ->> 'email'),
            (r.member, r.email)
    ) AS n(id, email)
) k
"""  # noqa: S608 (constant SQL)


def _audit(entry: dict[str, Any]) -> Decision:
    return _decision(entry | {"decided_at": datetime.fromisoformat(entry["decided_at"])})


async def lock(conn: asyncpg.Connection, task_id: UUID) -> None:
    """Hold the task's row lock until the caller's transaction ends."""
    await conn.execute("SELECT FROM tasks WHERE id = $1 FOR UPDATE", task_id)


@dataclass(frozen=True, slots=True)
class Reader:
    """Whose decision a read is for: the read brings what the Slack user cache knows of them."""

    task_id: UUID
    slack_team_id: str | None = None
    slack_user_id: str | None = None
    email: str | None = None


async def load_for_decisions(
    conn: asyncpg.Connection, readers: list[Reader]
) -> list[DecisionContext | None]:
    """Everything each decision checks, for any number of tasks in one statement (one
    snapshot), without a lock: a write that follows succeeds only if `version` is still
    current (see `record_decisions`). None where there is no such task."""
    rows = await conn.fetch(
        _LOAD,
        [r.task_id for r in readers],
        [r.slack_team_id for r in readers],
        [r.slack_user_id for r in readers],
        [r.email for r in readers],
    )
    found: list[DecisionContext | None] = [None] * len(readers)
    for row in rows:
        found[row["n"] - 1] = DecisionContext(
            task=_task(row),
            approvers=[Approver(**a) for a in row["tier_approvers"]],
            votes=[_audit(v) for v in row["votes"]],
            final=_audit(row["final"]) if row["final"] else None,
            version=row["version"],
            links=[(email, user) for email, user in row["links"]],
        )
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionWrite:
    """One audit row to write, and what it does to its task: `ending` (status, resolution)
    ends it, `event` names the change for the channels. Written only if the task is still
    pending at `tier` with `version` unchanged."""

    task_id: UUID
    tier: int
    version: int
    action: AuditAction
    via: Channel
    actor: Actor | None
    approver_id: int | None
    reason: str | None
    client: dict[str, Any] | None
    ending: tuple[str, str] | None
    event: str


_RECORD = """
WITH input AS (
    SELECT nextval('decisions_id_seq') AS decision_id, r.*
    FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
        $14::text[], $15::int[])
        AS r(task_id, tier, approver_id, action, via, actor_email, actor_slack_user_id,
            actor_slack_team_id, reason, client, status, resolution, webhook_id, event, version)
), task AS (
    UPDATE tasks t SET version = t.version + 1, updated_at = now(),
        status = coalesce(i.status, t.status), resolution = coalesce(i.resolution, t.resolution),
        final_decision_id = CASE WHEN i.status IS NULL THEN t.final_decision_id
            ELSE i.decision_id END,
        finished_at = CASE WHEN i.status IS NULL THEN t.finished_at ELSE now() END
    FROM input i
    WHERE t.id = i.task_id AND t.status = 'pending' AND t.tier = i.tier AND t.version = i.version
    RETURNING i.*
), stopped AS (
    -- An ended task's clock stops. Reading `task` makes this wait for the update above, so a
    -- decision takes the task's row lock before its timer's (as the sweeper does). The clocks
    -- are named as an array, which is looked up in the index whatever the statistics say.
    DELETE FROM task_timers tt
    WHERE tt.task_id = ANY (ARRAY(SELECT task_id FROM task WHERE status IS NOT NULL))
), d AS (
    INSERT INTO decisions (id, task_id, tier, approver_id, action, via, actor_email,
        actor_slack_user_id, actor_slack_team_id, reason, client)
    SELECT decision_id, task_id, tier, approver_id, action, via, actor_email,
        actor_slack_user_id, actor_slack_team_id, reason, client::jsonb
    FROM task
    RETURNING *
), callback AS (
    INSERT INTO outbox (kind, payload, task_id, ordering_key, message_id)
    SELECT $17::text, jsonb_build_object('decision_id', decision_id), task_id,
        'callback:' || task_id, webhook_id
    FROM task WHERE status IS NOT NULL
), refresh AS (
    -- One item for the whole batch: the channels refresh every task in it.
    INSERT INTO outbox (kind, payload, task_id, message_id)
    SELECT $18::text, jsonb_build_object('changes', jsonb_agg(
            jsonb_build_object('task_id', task_id::text, 'event', event) ORDER BY task_id)),
        CASE WHEN count(*) = 1 THEN (array_agg(task_id))[1] END, $16
    FROM task
    HAVING count(*) > 0
)
SELECT d.* FROM d
"""


async def record_decisions(
    conn: asyncpg.Connection, writes: list[DecisionWrite]
) -> list[tuple[Decision, str | None] | None]:
    """Write each audit row, end each task its write says to end, and queue the callbacks and
    the channels' refresh (one item for all): one statement, so all of it or none of it.

    Each write is conditional (see `DecisionWrite`); where it finds its task changed, nothing
    of it is written and its entry is None, so the caller reads again. Otherwise the entry is
    the audit row and the callback's `webhook-id` (None when the task goes on). The tasks
    must be distinct.
    """
    webhooks = [f"msg_{uuid.uuid4().hex}" if w.ending else None for w in writes]
    rows = await conn.fetch(
        _RECORD,
        [w.task_id for w in writes],
        [w.tier for w in writes],
        [w.approver_id for w in writes],
        [w.action.value for w in writes],
        [w.via.value for w in writes],
        [w.actor.email if w.actor else None for w in writes],
        [w.actor.slack_user_id if w.actor else None for w in writes],
        [w.actor.slack_team_id if w.actor else None for w in writes],
        [w.reason for w in writes],
        [json.dumps(w.client or {}) for w in writes],
        [w.ending[0] if w.ending else None for w in writes],
        [w.ending[1] if w.ending else None for w in writes],
        [webhook or "" for webhook in webhooks],
        [w.event for w in writes],
        [w.version for w in writes],
        f"msg_{uuid.uuid4().hex}",
        OutboxKind.CALLBACK.value,
        OutboxKind.TASK_CHANGED.value,
    )
    written = {row["task_id"]: _decision(row) for row in rows}
    return [
        (written[w.task_id], webhook) if w.task_id in written else None
        for w, webhook in zip(writes, webhooks, strict=True)
    ]
