"""Platform callbacks through the outbox: signatures, retries, dead letters, shutdown."""

from __future__ import annotations

import json

import asyncpg
import pytest
from standardwebhooks import Webhook

from store import outbox
from tests.conftest import Service, approval_body, make_settings, start_service
from tests.support import (
    CALLBACK_SECRET,
    CallbackReceiver,
    eventually,
    statement_plans,
    unbounded_scans,
)


async def create_and_cancel(service: Service) -> str:
    _, task = await service.request("POST", "/api/v1/approvals", json=approval_body())
    status, _ = await service.request("POST", f"/api/v1/approvals/{task['id']}/cancel")
    assert status == 200
    return str(task["id"])


def verify(received: object) -> dict[str, object]:
    """Check a delivery exactly as a platform using the standardwebhooks package would."""
    payload: dict[str, object] = Webhook(CALLBACK_SECRET).verify(
        received.body,
        received.headers,  # type: ignore[attr-defined]
    )
    return payload


async def test_callback_body_is_the_documented_contract(
    service: Service, receiver: CallbackReceiver
) -> None:
    task_id = await create_and_cancel(service)
    [received] = await eventually(lambda: receiver.delivered, what="callback")
    body = verify(received)
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "approval.cancelled"
    data = body["data"]
    assert isinstance(data, dict)
    assert set(data) >= {
        "id",
        "workspace",
        "run_id",
        "status",
        "resolution",
        "decided_by",
        "via",
        "reason",
        "decided_at",
    }
    assert data["id"] == task_id and data["status"] == "cancelled" and data["resolution"] == "deny"
    assert received.headers["webhook-id"].startswith("msg_")
    assert received.headers["content-type"] == "application/json"


async def test_a_failing_endpoint_gets_one_webhook_id_on_every_retry(
    service: Service, receiver: CallbackReceiver
) -> None:
    receiver.fail_next = 2
    await create_and_cancel(service)
    await eventually(lambda: receiver.delivered, what="delivery after two failures")
    assert len(receiver.attempts) == 3
    assert len({a.webhook_id for a in receiver.attempts}) == 1
    assert len({a.body for a in receiver.attempts}) == 1
    for attempt in receiver.attempts:
        verify(attempt)


async def test_retry_after_is_honoured(service: Service, receiver: CallbackReceiver) -> None:
    receiver.fail_next, receiver.fail_status, receiver.retry_after = 1, 429, "1"
    await create_and_cancel(service)
    await eventually(lambda: receiver.delivered, what="delivery after 429")
    first, second = receiver.attempts
    assert second.at - first.at >= 0.95


async def test_a_hopeless_item_is_dead_lettered_and_can_be_retried(
    database_url: str, receiver: CallbackReceiver
) -> None:
    svc = await start_service(make_settings(receiver.url, outbox_max_age=0.3), database_url)
    try:
        receiver.fail_next = 10_000
        await create_and_cancel(svc)

        async def dead() -> list[dict[str, object]]:
            _, page = await svc.request("GET", "/api/v1/outbox?status=dead")
            return list(page["items"])

        [item] = await eventually(dead, what="dead letter")
        assert item["kind"] == "callback" and "503" in str(item["last_error"])
        _, metrics = await svc.request("GET", "/metrics", token=None)
        assert "taskjuice_outbox_dead_letters 1.0" in metrics
        assert 'taskjuice_outbox_dead_lettered_total{kind="callback"} 1.0' in metrics

        receiver.fail_next = 0
        attempts = len(receiver.attempts)
        status, _ = await svc.request("POST", f"/api/v1/outbox/{item['id']}/retry")
        assert status == 200
        await eventually(lambda: receiver.delivered, what="delivery after retry")
        assert len(receiver.attempts) == attempts + 1
        assert receiver.delivered[0].webhook_id == receiver.attempts[0].webhook_id
        assert await dead() == []
        status, _ = await svc.request("POST", f"/api/v1/outbox/{item['id']}/retry")
        assert status == 404
    finally:
        await svc.close()


async def test_work_queued_without_notify_is_still_sent(
    service: Service, receiver: CallbackReceiver, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        # Straight into the table: no NOTIFY, so only polling can find it.
        await conn.execute(
            "INSERT INTO outbox (kind, payload, message_id) VALUES ('callback', $1, 'msg_quiet')",
            {"body": {"type": "workflow.resume_requested", "timestamp": "t", "data": {}}},
        )
    [received] = await eventually(lambda: receiver.delivered, what="polled delivery")
    assert received.webhook_id == "msg_quiet"


async def test_shutdown_releases_claims_it_cannot_finish(
    database_url: str, receiver: CallbackReceiver, pool: asyncpg.Pool
) -> None:
    svc = await start_service(make_settings(receiver.url), database_url)
    svc.dispatcher.shutdown_grace = 0.2
    receiver.hang()
    await create_and_cancel(svc)
    await eventually(lambda: receiver.attempts, what="a hanging attempt")
    await svc.close()
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, claimed_by, next_attempt_at <= now() AS due FROM outbox"
            " WHERE kind = 'callback'"
        )
    assert row["status"] == "pending" and row["claimed_by"] is None and row["due"]


async def test_metrics_count_deliveries_and_decisions(
    service: Service, receiver: CallbackReceiver
) -> None:
    await create_and_cancel(service)
    await eventually(lambda: receiver.delivered, what="callback")

    async def counted() -> bool:
        _, text = await service.request("GET", "/metrics", token=None)
        return 'taskjuice_deliveries_total{kind="callback",result="ok"} 1.0' in text

    await eventually(counted, what="delivery metric")
    _, text = await service.request("GET", "/metrics", token=None)
    assert 'taskjuice_decisions_total{action="cancel",channel="api"} 1.0' in text


async def test_callbacks_of_one_task_leave_in_order(
    service: Service, receiver: CallbackReceiver, pool: asyncpg.Pool
) -> None:
    receiver.fail_next = 1  # the first one must be retried before the second may go
    async with pool.acquire() as conn, conn.transaction():
        for n in range(3):
            await conn.execute(
                "INSERT INTO outbox (kind, payload, message_id, ordering_key)"
                " VALUES ('callback', $1, $2, 'callback:t1')",
                {"body": {"type": "approval.escalated", "timestamp": "x", "data": {"n": n}}},
                f"msg_{n}",
            )
        await conn.execute("NOTIFY taskjuice_outbox")
    await eventually(lambda: len(receiver.delivered) == 3, what="three deliveries")
    order = [json.loads(a.body)["data"]["n"] for a in receiver.attempts]
    assert order == [0, 0, 1, 2]


@pytest.mark.parametrize("emptiness", ["analyzed empty", "first claimed empty"])
async def test_a_claim_reads_only_what_it_takes_however_stale_its_plan(
    pool: asyncpg.Pool, emptiness: str
) -> None:
    """Planned for an empty outbox (from statistics taken then, or cached by the connection's
    first claims), then handed a backlog: every statement of a claim still walks the due index
    (per workspace and priority) to the oldest items, in order, and reaches every other row
    through an index."""
    async with pool.acquire() as conn:
        if emptiness == "analyzed empty":
            await conn.execute("ANALYZE outbox")
        else:
            await conn.execute("VACUUM ANALYZE outbox")
            for _ in range(6):  # a dispatcher polling an empty outbox: after five, a cached plan
                assert await outbox.claim_due(conn, limit=10, lease=60, worker="test") == []
        await conn.execute(
            "INSERT INTO outbox (kind, payload, ordering_key, message_id)"
            " SELECT 'callback', '{}', 'callback:' || (n % 2500), 'msg_' || n"
            " FROM generate_series(1, 5000) AS n"
        )
        async with statement_plans(conn) as plans:
            claimed = await outbox.claim_due(conn, limit=10, lease=60, worker="test")
    assert [item.message_id for item in claimed] == [f"msg_{n}" for n in range(1, 11)]
    claim = [p for p in plans if "Query Text: SELECT id, kind" not in p]
    [update] = [p for p in claim if "UPDATE outbox" in p]
    assert "Index Cond: (id = ANY" in update, update
    assert any("Index Scan using outbox_turns" in p and "FOR UPDATE" in p for p in claim), claim
    for plan in claim:
        assert "Sort" not in plan, plan
        assert unbounded_scans(plan, {"outbox"}) == [], plan
