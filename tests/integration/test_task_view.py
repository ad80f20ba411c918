"""The task view record against real rows: built from what the store reads, it gives the API's
JSON back byte for byte (fields, values, order), and the API answers exactly that."""

from __future__ import annotations

import json
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from bot.decisions import Verdict, decide
from bot.devkit.slack_api import SlackApiDouble
from bot.domain import Actor, AuditAction, Channel, DeliveryStatus, Outcome, TaskStatus
from bot.platform.validation import parse_new_approval
from bot.task_view import TaskView
from store import tasks
from tests.conftest import Service, TaskFactory, approval_body
from tests.slack_support import CFO, LEE, OPS
from tests.support import API_TOKEN, eventually


async def _row(pool: asyncpg.Pool, task_id: str) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await tasks.task_row(conn, UUID(task_id))
    assert row is not None
    return row


async def _raw(service: Service, path: str) -> bytes:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with service.http.get(service.base_url + path, headers=headers) as response:
        assert response.status == 200
        return await response.read()


async def _answers_as_read(service: Service, pool: asyncpg.Pool, task_id: str) -> bool:
    before = await _row(pool, task_id)
    body = await _raw(service, f"/api/v1/approvals/{task_id}")
    if await _row(pool, task_id) != before:
        return False  # it changed meanwhile: read again
    assert body == json.dumps(before).encode()
    return True


def _round_trip(row: dict[str, Any]) -> TaskView:
    view = TaskView.from_row(row)
    assert view.as_json() == row
    assert json.dumps(view.as_json()) == json.dumps(row)  # the order of every object too
    return view


async def _sent(pool: asyncpg.Pool, task_id: str) -> dict[str, Any]:
    """The task's row once its Slack messages are posted."""

    async def check() -> dict[str, Any] | None:
        row = await _row(pool, task_id)
        sent = [d for d in row["deliveries"] if d["channel"] == "slack" and "slack_ts" in d]
        return row if sent else None

    row: dict[str, Any] = await eventually(check, what="a posted Slack message")
    return row


async def test_the_record_gives_back_the_api_json_of_every_shape(
    slack_service: Service,
    slack: SlackApiDouble,
    pool: asyncpg.Pool,
    task_factory: TaskFactory,
) -> None:
    pending = await task_factory(
        approvers=[{"email": "dana@acme.test"}, {"slack_user_id": LEE}],
        requested_by={"email": "ops@acme.test", "slack_user_id": OPS},
        required_approvals=2,
        step=None,
        details={"amount": "4000.00", "note": "für <b>#881</b> ✓", "lines": 3},
        reversibility="recoverable",
        timeout_policy="escalate",
        escalation=[
            {"approvers": [{"slack_user_id": CFO}, {"email": "ceo@acme.test"}], "expires_in": 600},
            {
                "approvers": [{"email": "ceo@acme.test"}, {"email": "cto@acme.test"}],
                "expires_in": 900,
            },
        ],
        remind_before=300,
    )
    approved = await task_factory(
        approvers=[{"email": "dana@acme.test"}, {"email": "lee@acme.test"}],
        required_approvals=2,
        reversibility="safe",
    )
    denied = await task_factory(reversibility="safe")
    escalated = await task_factory(
        expires_in=1,
        timeout_policy="escalate",
        escalation=[{"approvers": [{"email": "cfo@acme.test"}], "expires_in": 600}],
    )
    cancelled = await task_factory(requested_by=None)

    for email, via in (("dana@acme.test", Channel.EMAIL_LINK), ("lee@acme.test", Channel.API)):
        result = await decide(
            pool,
            task_id=UUID(approved["id"]),
            actor=Actor(email=email),
            outcome=Outcome.APPROVE,
            via=via,
            client={"ip": "192.0.2.7", "user_agent": "Mozilla/5.0"},
        )
        assert result.verdict in (Verdict.COUNTED, Verdict.DECIDED)
    result = await decide(
        pool,
        task_id=UUID(denied["id"]),
        actor=Actor(email="dana@acme.test"),
        outcome=Outcome.DENY,
        via=Channel.EMAIL_REPLY,
        reason="Not this quarter <sorry>",
    )
    assert result.verdict is Verdict.DECIDED
    status, _ = await slack_service.request(
        "POST", f"/api/v1/approvals/{cancelled['id']}/cancel", json={"reason": "run cancelled"}
    )
    assert status == 200

    async def escalated_row() -> dict[str, Any] | None:
        row = await _row(pool, escalated["id"])
        return row if row["tier"] == 1 else None

    rows = {
        "pending": await _sent(pool, pending["id"]),
        "approved": await _row(pool, approved["id"]),
        "denied": await _row(pool, denied["id"]),
        "escalated": await eventually(escalated_row, what="the escalation"),
        "cancelled": await _row(pool, cancelled["id"]),
    }
    views = {shape: _round_trip(row) for shape, row in rows.items()}

    # The rows are of the shapes they claim, as records.
    assert views["pending"].status is TaskStatus.PENDING
    assert len(views["pending"].escalation) == 2
    assert views["pending"].requested_by == Actor(email="ops@acme.test", slack_user_id=OPS)
    assert views["pending"].deliveries
    assert {d.status for d in views["pending"].deliveries} <= set(DeliveryStatus)
    assert views["approved"].status is TaskStatus.APPROVED
    assert [d.action for d in views["approved"].decisions or ()] == [AuditAction.APPROVE] * 2
    assert views["approved"].decisions and views["approved"].decisions[0].client
    assert views["denied"].decisions and views["denied"].decisions[-1].reason
    assert views["escalated"].tier == 1
    assert [d.action for d in views["escalated"].decisions or ()] == [AuditAction.ESCALATE]
    assert views["cancelled"].requested_by is None
    assert views["cancelled"].finished_at is not None

    # The API answers exactly the JSON the store read, byte for byte (read while the task
    # stands still: its messages may still be being sent).
    for row in rows.values():
        task_id = row["id"]
        await eventually(partial(_answers_as_read, slack_service, pool, task_id), what="a match")

    async with pool.acquire() as conn:
        listed = await tasks.list_rows(conn, workspace="acme", status=None, limit=50, after=None)
    assert len(listed) == len(rows)
    for item in listed:
        assert "decisions" not in item and "deliveries" not in item
        listed_view = _round_trip(item)
        assert listed_view.decisions is None and listed_view.deliveries is None
    body = await _raw(slack_service, "/api/v1/approvals?workspace=acme")
    assert body == json.dumps({"items": listed, "next_cursor": None}).encode()


async def test_a_new_task_s_view_is_the_one_the_store_reads_back(pool: asyncpg.Pool) -> None:
    """`insert` builds the created task's view from what it wrote, without reading it back;
    it must be the view a read gives, every field, in every shape of approver and tier."""
    shapes = [
        approval_body(),
        approval_body(
            approvers=[
                {"email": "dana@acme.test", "slack_user_id": LEE, "slack_team_id": "T0ACME"},
                {"slack_user_id": OPS},
                {"email": "kim@acme.test"},
            ],
            required_approvals=2,
            requested_by={"slack_user_id": CFO, "slack_team_id": "T0ACME"},
            allow_self_approval=True,
            step=None,
            details={"note": "für <b>#881</b> ✓", "lines": 3},
            timeout_policy="escalate",
            escalation=[
                {
                    "approvers": [{"slack_user_id": CFO}, {"email": "ceo@acme.test"}],
                    "expires_in": 600,
                },
                {
                    "approvers": [{"email": "cto@acme.test"}, {"email": "cio@acme.test"}],
                    "expires_in": 900,
                },
            ],
            remind_before=300,
            deliver={"slack": False, "email": True, "fallback": False},
        ),
        approval_body(requested_by=None, expires_at="2099-01-01T00:00:00Z", expires_in=None),
    ]
    for body in shapes:
        new = parse_new_approval(
            {k: v for k, v in body.items() if v is not None},
            allow_proceed_irreversible=False,
        )
        async with pool.acquire() as conn, conn.transaction():
            written = await tasks.insert(conn, uuid4(), new, "digest")
            read = await tasks.task_view(conn, written.id)
        assert read is not None
        assert json.dumps(written.as_json()) == json.dumps(read.as_json())


async def test_a_new_task_s_delivery_is_queued_in_its_workspace_s_turn(
    pool: asyncpg.Pool,
) -> None:
    """The insert queues the task's `created` change in the same statement: urgent, in the
    task's workspace's turn."""
    new = parse_new_approval(approval_body(workspace="globex"), allow_proceed_irreversible=False)
    task_id = uuid4()
    async with pool.acquire() as conn:
        await tasks.insert(conn, task_id, new, "digest")
        rows = await conn.fetch("SELECT kind, payload, tenant, priority, task_id FROM outbox")
    assert [dict(r) for r in rows] == [
        {
            "kind": "task.changed",
            "payload": {"changes": [{"task_id": str(task_id), "event": "created"}]},
            "tenant": "globex",
            "priority": 0,
            "task_id": task_id,
        }
    ]


async def test_a_view_is_read_across_a_migration_that_adds_a_column(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    # The view's lists come as rows of their tables; a connection that decoded them before a
    # migration changed a table's columns reads the view again rather than failing.
    task_id = await task_factory.stored()
    async with pool.acquire() as conn:
        before = await tasks.task_row(conn, task_id)
        await conn.execute("ALTER TABLE approvers ADD COLUMN probe text")
        try:
            after = await tasks.task_row(conn, task_id)
        finally:
            await conn.execute("ALTER TABLE approvers DROP COLUMN probe")
        again = await tasks.task_row(conn, task_id)
    assert before is not None and after == before and again == before
