"""Timeout policies: deny, proceed and escalate, reminders, and exactly-once across replicas."""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from bot.decisions import Verdict
from bot.domain import Actor, Channel, TaskStatus
from bot.platform.callbacks import callback_body
from bot.runtime.metrics import Metrics
from bot.timeouts import Sweeper
from store import sweep
from store.migrate import apply_migrations
from store.seed import insert_overdue_tasks
from tests.conftest import Service, TaskFactory
from tests.support import (
    CallbackReceiver,
    ServiceProcess,
    eventually,
    free_port,
    move_deadline,
    service_env,
    statement_plans,
    unbounded_scans,
    vote,
    with_database,
)

CFO = {"email": "cfo@acme.test"}
CEO = {"email": "ceo@acme.test"}


def callbacks_of(receiver: CallbackReceiver, task_id: str) -> list[dict[str, Any]]:
    return [a.json for a in receiver.delivered if a.json["data"]["id"] == task_id]


async def test_deny_policy_expires_the_task_and_denies(
    service: Service, receiver: CallbackReceiver, task_factory: TaskFactory
) -> None:
    task = await task_factory(expires_in=1)
    [callback] = await eventually(lambda: callbacks_of(receiver, task["id"]), what="expiry")
    assert callback["type"] == "approval.expired"
    data = callback["data"]
    assert (data["status"], data["resolution"], data["via"]) == ("expired", "deny", "timeout")
    assert data["decided_by"] is None
    _, view = await service.request("GET", f"/api/v1/approvals/{task['id']}")
    assert view["status"] == "expired" and view["resolution"] == "deny"
    assert [(d["action"], d["via"]) for d in view["decisions"]] == [("expire", "timeout")]


async def test_proceed_policy_expires_the_task_and_lets_it_through(
    service: Service, receiver: CallbackReceiver, task_factory: TaskFactory
) -> None:
    task = await task_factory(expires_in=1, timeout_policy="proceed", reversibility="recoverable")
    [callback] = await eventually(lambda: callbacks_of(receiver, task["id"]), what="expiry")
    assert callback["type"] == "approval.expired"
    assert (callback["data"]["status"], callback["data"]["resolution"]) == ("expired", "proceed")
    _, view = await service.request("GET", f"/api/v1/approvals/{task['id']}")
    assert [(d["action"], d["via"]) for d in view["decisions"]] == [("proceed", "timeout")]


async def test_escalation_hands_the_task_to_the_next_tier(
    service: Service, receiver: CallbackReceiver, pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task = await task_factory(
        expires_in=1,
        timeout_policy="escalate",
        escalation=[{"approvers": [CFO], "expires_in": 600}],
    )
    [callback] = await eventually(lambda: callbacks_of(receiver, task["id"]), what="escalation")
    assert callback["type"] == "approval.escalated"
    data = callback["data"]
    assert data["status"] == "pending" and data["resolution"] is None and data["tier"] == 1
    assert data["via"] == "timeout"
    expires = datetime.fromisoformat(data["expires_at"])
    assert timedelta(seconds=590) < expires - datetime.now(UTC) < timedelta(seconds=610)

    task_id = UUID(task["id"])
    first_tier = await vote(pool, task_id, Actor(email="dana@acme.test"))
    assert first_tier.verdict is Verdict.NOT_APPROVER
    stale = await vote(pool, task_id, Actor(email="cfo@acme.test"), tier=0)
    assert stale.verdict is Verdict.STALE
    result = await vote(pool, task_id, Actor(email="cfo@acme.test"))
    assert result.verdict is Verdict.DECIDED and result.task.status is TaskStatus.APPROVED
    await eventually(lambda: len(callbacks_of(receiver, task["id"])) == 2, what="approval")
    _, view = await service.request("GET", f"/api/v1/approvals/{task['id']}")
    assert [(d["action"], d["via"], d["tier"]) for d in view["decisions"]] == [
        ("escalate", "timeout", 0),
        ("approve", "slack", 1),
    ]


async def test_a_two_tier_chain_ends_in_deny(
    service: Service, receiver: CallbackReceiver, task_factory: TaskFactory
) -> None:
    task = await task_factory(
        expires_in=1,
        timeout_policy="escalate",
        escalation=[{"approvers": [CFO], "expires_in": 1}, {"approvers": [CEO], "expires_in": 1}],
    )
    await eventually(
        lambda: len(callbacks_of(receiver, task["id"])) == 3,
        timeout=15,
        what="escalated, escalated, expired",
    )
    kinds = [
        (c["type"], c["data"].get("tier"), c["data"]["resolution"])
        for c in callbacks_of(receiver, task["id"])
    ]
    assert kinds == [
        ("approval.escalated", 1, None),
        ("approval.escalated", 2, None),
        ("approval.expired", None, "deny"),
    ]
    _, view = await service.request("GET", f"/api/v1/approvals/{task['id']}")
    assert view["status"] == "expired" and view["tier"] == 2
    assert [d["action"] for d in view["decisions"]] == ["escalate", "escalate", "expire"]


async def make_overdue(pool: asyncpg.Pool, task_id: UUID) -> None:
    async with pool.acquire() as conn:
        await move_deadline(conn, task_id, -0.001)


async def test_a_click_after_the_deadline_meets_the_expired_task(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored()
    await make_overdue(pool, task_id)  # no sweeper runs in this test
    result = await vote(pool, task_id, Actor(email="dana@acme.test"))
    assert result.verdict is Verdict.ALREADY_FINISHED
    assert result.task.status is TaskStatus.EXPIRED
    assert result.decision is not None and result.decision.via is Channel.TIMEOUT


async def test_a_decision_racing_its_expiry_has_one_outcome(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    sweeper = Sweeper(pool=pool, metrics=Metrics(), batch=50)
    outcomes: Counter[str] = Counter()
    for round_ in range(40):
        task_id = await task_factory.stored()
        async with pool.acquire() as conn:
            await move_deadline(conn, task_id, (round_ % 8) / 1000)

        async def sweep_until_ended(task_id: UUID = task_id) -> None:
            async def ended() -> bool:
                await sweeper.sweep_once()
                async with pool.acquire() as conn:
                    status = await conn.fetchval("SELECT status FROM tasks WHERE id = $1", task_id)
                return bool(status != "pending")

            await eventually(ended, timeout=5, interval=0.001, what="the task to end")

        clicked, _ = await asyncio.gather(
            vote(pool, task_id, Actor(email="dana@acme.test")),
            sweep_until_ended(),
        )
        outcomes[clicked.verdict.value] += 1
        async with pool.acquire() as conn:
            audit = await conn.fetch("SELECT action FROM decisions WHERE task_id = $1", task_id)
            terminal = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE task_id = $1 AND kind = 'callback'", task_id
            )
        assert len(audit) == 1 and terminal == 1
        expected = "approve" if clicked.verdict is Verdict.DECIDED else "expire"
        assert audit[0]["action"] == expected
    assert sum(outcomes.values()) == 40
    assert set(outcomes) <= {"decided", "already_finished"}


@pytest.mark.parametrize("swept", ["not swept", "swept with nothing due", "swept one task"])
@pytest.mark.parametrize(
    "emptiness", ["analyzed with no clock running", "analyzed empty", "never analyzed"]
)
async def test_a_sweep_reads_only_what_it_ends_however_stale_its_plan(
    pool: asyncpg.Pool, emptiness: str, swept: str
) -> None:
    """Planned from statistics taken while no clock ran, while nothing had happened yet, or
    with no statistics at all — and, on its connection, perhaps before the backlog arrived —
    then thousands overdue at once: a batch walks the deadline index to the oldest, and reaches
    every other row through an index."""
    async with pool.acquire() as conn:
        if emptiness == "analyzed with no clock running":
            # Yesterday's tasks, all ended: no clock is left running when the tables are analyzed.
            await insert_overdue_tasks(conn, 3000, workspace="yesterday", staggered=True)
            while await conn.fetchval("SELECT count(*) FROM task_timers"):
                async with conn.transaction():
                    await sweep.expire_due(conn, limit=500)
            await conn.execute("ANALYZE tasks, task_timers")
        elif emptiness == "analyzed empty":
            # A new install whose tables were analyzed before they held anything.
            await conn.execute("ANALYZE")
        else:
            # A new install: no statistics yet, not even of an empty table.
            stats = "SELECT count(*) FROM pg_stats WHERE tablename = 'tasks'"
            assert not await conn.fetchval(stats)
        # What this connection swept before the backlog came (its statement is planned then).
        if swept == "swept with nothing due":
            for _ in range(6):
                async with conn.transaction():
                    assert await sweep.expire_due(conn, limit=100) == {}
        elif swept == "swept one task":
            await insert_overdue_tasks(conn, 1, workspace="early", staggered=True)
            async with conn.transaction():
                assert await sweep.expire_due(conn, limit=100) == {"expire": 1}
        # Each overdue by a different time, so "oldest first" can be seen. (No DDL from here
        # on: a new temporary object, say, would make PostgreSQL drop every plan it keeps.)
        await insert_overdue_tasks(conn, 3000, staggered=True)
        oldest = await conn.fetch("SELECT task_id FROM task_timers ORDER BY expires_at LIMIT 100")
        async with statement_plans(conn) as plans, conn.transaction():
            counts = await sweep.expire_due(conn, limit=100)
        ended = await conn.fetch(
            "SELECT id FROM tasks WHERE status = 'expired' AND workspace = 'bench'"
        )
    assert counts == {"expire": 100}
    assert {r["id"] for r in ended} == {r["task_id"] for r in oldest}
    [plan] = [p for p in plans if "Insert on decisions" in p]
    assert "Index Scan using task_timers_due" in plan and "Sort" not in plan, plan
    assert unbounded_scans(plan, {"tasks", "task_timers", "approver_tiers"}) == [], plan
    # A task is found by its key, never by skipping through a listing index for its id.
    assert set(re.findall(r"(?:Scan using|Bitmap Index Scan on) (tasks_\w+)", plan)) == {
        "tasks_pkey"
    }, plan


async def test_three_sweeping_processes_end_every_task_exactly_once(
    tmp_path: Path, database_url: str, receiver: CallbackReceiver, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        await insert_overdue_tasks(
            conn, 1000, policies=("deny", "proceed", "escalate"), next_tier_expires_in=1
        )
    receiver.fail_next = 60  # some callbacks need retries; a retry repeats its webhook-id
    procs = [
        ServiceProcess(
            env=service_env(
                database_url,
                receiver.url,
                free_port(),
                SWEEP_INTERVAL="0.2",
                OUTBOX_RETRY_BASE="0.05",
            ),
            log_path=tmp_path / f"sweeper-{i}.log",
        )
        for i in range(3)
    ]
    try:
        await asyncio.gather(*(p.start() for p in procs))

        def terminal() -> list[dict[str, Any]]:
            return [a.json for a in receiver.delivered if a.json["type"] == "approval.expired"]

        await eventually(lambda: len(terminal()) >= 1000, timeout=60, what="1000 expiries")
    finally:
        for proc in procs:
            proc.kill()
    ended = Counter(c["data"]["id"] for c in terminal())
    assert len(ended) == 1000 and set(ended.values()) == {1}
    escalated = [a for a in receiver.delivered if a.json["type"] == "approval.escalated"]
    assert len(escalated) == 333
    delivered_ids = Counter(a.webhook_id for a in receiver.delivered)
    assert set(delivered_ids.values()) == {1}
    by_id: dict[str, set[bytes]] = {}
    for attempt in receiver.attempts:
        by_id.setdefault(attempt.webhook_id, set()).add(attempt.body)
    assert all(len(bodies) == 1 for bodies in by_id.values())
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tasks WHERE status = 'pending'") == 0
        policies = await conn.fetch(
            "SELECT timeout_policy, resolution, count(*) FROM tasks GROUP BY 1, 2 ORDER BY 1"
        )
    assert [(r[0], r[1]) for r in policies] == [
        ("deny", "deny"),
        ("escalate", "deny"),
        ("proceed", "proceed"),
    ]


async def test_an_escalation_callback_names_the_new_tier_and_its_expiry(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored(
        timeout_policy="escalate", escalation=[{"approvers": [CFO], "expires_in": 900}]
    )
    await make_overdue(pool, task_id)
    await Sweeper(pool=pool, metrics=Metrics()).sweep_once()
    async with pool.acquire() as conn:
        payload = await conn.fetchval(
            "SELECT payload FROM outbox WHERE task_id = $1 AND kind = 'callback'", task_id
        )
        expires_at = await conn.fetchval("SELECT expires_at FROM tasks WHERE id = $1", task_id)
    body = await callback_body(pool, payload)
    assert body["type"] == "approval.escalated"
    assert body["data"]["tier"] == 1 and body["data"]["status"] == "pending"
    assert datetime.fromisoformat(body["data"]["expires_at"]) == expires_at.replace(
        microsecond=expires_at.microsecond // 1000 * 1000
    )
    assert body == await callback_body(pool, payload)  # every retry sends the same body


async def test_reminders_are_sent_once_before_expiry(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    reminded = await task_factory.stored(expires_in=600, remind_before=599)
    silent = await task_factory.stored(expires_in=600, remind_before=None)
    sweeper = Sweeper(pool=pool, metrics=Metrics())

    async def reminders() -> list[dict[str, Any]]:
        await sweeper.sweep_once()
        async with pool.acquire() as conn:
            items = await conn.fetch("SELECT payload FROM outbox WHERE kind = 'task.changed'")
        changes = [c for item in items for c in item["payload"].get("changes", [])]
        return [c for c in changes if c["event"] == "reminder"]

    [change] = await eventually(reminders, timeout=5, what="a reminder")
    assert change["task_id"] == str(reminded) and change["tier"] == 0
    await sweeper.sweep_once()
    assert len(await reminders()) == 1
    async with pool.acquire() as conn:
        remind_at = "SELECT remind_at FROM task_timers WHERE task_id = $1"
        assert await conn.fetchval(remind_at, silent) is None


async def test_default_reminder_time(pool: asyncpg.Pool) -> None:
    start = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    cases = [
        (timedelta(hours=1), None, True, start + timedelta(minutes=48)),
        (timedelta(minutes=10), None, True, start + timedelta(minutes=5)),
        (timedelta(minutes=4), None, True, None),
        (timedelta(hours=1), 60, True, start + timedelta(minutes=59)),
        (timedelta(hours=1), None, False, None),
        (timedelta(minutes=1), 120, True, None),
    ]
    async with pool.acquire() as conn:
        for window, before, default, expected in cases:
            value = await conn.fetchval(
                "SELECT taskjuice_remind_at($1, $2, $3, $4)", start, start + window, before, default
            )
            assert value == expected, (window, before, default)


async def test_escalation_schedules_the_next_tiers_reminder(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored(
        timeout_policy="escalate",
        remind_before=None,
        escalation=[{"approvers": [CFO], "expires_in": 3600}],
    )
    await make_overdue(pool, task_id)
    await Sweeper(pool=pool, metrics=Metrics()).sweep_once()
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT tier, remind_at, expires_at FROM task_timers WHERE task_id = $1", task_id
        )
    assert row["tier"] == 1 and row["remind_at"] is None  # remind_before: null means none
    task_id = await task_factory.stored(
        timeout_policy="escalate", escalation=[{"approvers": [CFO], "expires_in": 3600}]
    )
    await make_overdue(pool, task_id)
    await Sweeper(pool=pool, metrics=Metrics()).sweep_once()
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT tier, remind_at, expires_at FROM task_timers WHERE task_id = $1", task_id
        )
    assert row["tier"] == 1
    assert row["expires_at"] - row["remind_at"] == timedelta(seconds=720)


async def test_old_idempotency_keys_are_pruned(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES"
            " ('approvals.create', 'old', 'h', now() - interval '8 days'),"
            " ('approvals.create', 'new', 'h', now() - interval '1 day')"
        )
    totals = await Sweeper(pool=pool, metrics=Metrics()).sweep_once()
    assert totals["idempotency_keys_pruned"] == 1
    async with pool.acquire() as conn:
        keys = [r["key"] for r in await conn.fetch("SELECT key FROM idempotency_keys")]
    assert keys == ["new"]


async def test_sent_outbox_items_are_forgotten_after_a_week_and_dead_letters_kept(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO outbox (kind, payload, message_id, status, finished_at) VALUES"
            " ('callback', '{}', 'old-done', 'done', now() - interval '8 days'),"
            " ('callback', '{}', 'new-done', 'done', now() - interval '1 day'),"
            " ('callback', '{}', 'old-dead', 'dead', now() - interval '30 days'),"
            " ('callback', '{}', 'waiting', 'pending', NULL)"
        )
    totals = await Sweeper(pool=pool, metrics=Metrics()).sweep_once()
    assert totals["outbox_pruned"] == 1
    async with pool.acquire() as conn:
        left = {r["message_id"] for r in await conn.fetch("SELECT message_id FROM outbox")}
    assert left == {"new-done", "old-dead", "waiting"}


async def test_upgrading_gives_every_pending_task_its_clock(server_url: str) -> None:
    name = f"taskjuice_upgrade_{os.getpid()}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    conn = await asyncpg.connect(with_database(server_url, name))
    try:
        await apply_migrations(conn, until=7)  # the clock still in `tasks`
        rows = await conn.fetch(
            """
            INSERT INTO tasks (id, workspace, run_id, workflow, summary, reversibility,
                required_approvals, timeout_policy, deliver, content_hash, tier_count, tier,
                status, resolution, expires_at, remind_at)
            SELECT gen_random_uuid(), 'acme', 'run_' || n, '{}', 'Refund', 'safe', 1,
                   'escalate', '{}', 'hash', 2, n % 2,
                   CASE WHEN n = 3 THEN 'approved' ELSE 'pending' END,
                   CASE WHEN n = 3 THEN 'proceed' END,
                   now() + make_interval(mins => n), now() + make_interval(secs => n)
            FROM generate_series(1, 3) AS n
            RETURNING id, tier, status, expires_at, remind_at
            """
        )
        assert (await apply_migrations(conn))[0] == "0008_task_timers.sql"
        clocks = {r["task_id"]: r for r in await conn.fetch("SELECT * FROM task_timers")}
        pending = [r for r in rows if r["status"] == "pending"]
        assert set(clocks) == {r["id"] for r in pending}
        for task in pending:
            clock = clocks[task["id"]]
            assert (clock["tier"], clock["expires_at"], clock["remind_at"]) == (
                task["tier"],
                task["expires_at"],
                task["remind_at"],
            )
    finally:
        await conn.close()
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
