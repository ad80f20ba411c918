"""Slack messages within Slack's limits (contract §7): a burst of votes becomes at most two
`chat.update` calls per message, and a post whose answer was lost is found by one narrow
`conversations.history` read (1 a minute, 15 messages) instead of being posted twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from bot.devkit.slack_api import Fault, SlackApiDouble
from bot.slack.delivery import HISTORY_LIMIT, UPDATE
from store import deliveries
from store import slack as slack_store
from tests.conftest import (
    CallbackReceiver,
    Service,
    TaskFactory,
    approval_body,
    slack_settings,
    start_service,
)
from tests.slack_support import CFO, DANA, LEE, SlackUserAgent, buttons, text_of
from tests.support import eventually

VOTERS = (DANA, LEE, CFO)  # not ops@, who requested them


def _task_of(message: dict[str, Any]) -> str:
    return str(message["metadata"]["event_payload"]["task_id"])


async def _slack_work_done(pool: asyncpg.Pool) -> bool:
    async with pool.acquire() as conn:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE status = 'pending'"
            " AND (kind LIKE 'slack.%' OR kind IN ('task.changed', 'callback'))"
        )
    return waiting == 0


# --- coalesced updates -----------------------------------------------------------------------


@pytest.fixture
async def roomy_service(
    database_url: str, receiver: CallbackReceiver, slack: SlackApiDouble
) -> AsyncIterator[Service]:
    """The bot with budgets roomy enough that only coalescing keeps the updates few."""
    limits = (("chat.update", 1000, 60.0), ("conversations.open", 1000, 60.0))
    svc = await start_service(
        slack_settings(receiver, slack, slack_rate_limits=limits), database_url
    )
    yield svc
    await svc.close()


async def test_a_burst_of_votes_updates_each_message_at_most_twice_with_the_final_state(
    roomy_service: Service, slack: SlackApiDouble, pool: asyncpg.Pool
) -> None:
    requests = 20
    for n in range(requests):
        status, _ = await roomy_service.request(
            "POST",
            "/api/v1/approvals",
            json={
                **approval_body(),
                "run_id": f"run_burst_{n}",
                "approvers": [{"slack_user_id": user} for user in VOTERS],
                "required_approvals": 3,
                "deliver": {"slack": True, "email": False, "slack_channel": None},
            },
        )
        assert status == 201

    def shown() -> dict[str, list[dict[str, Any]]]:
        return {user: slack.messages.get(slack.dm_channel(user), []) for user in VOTERS}

    await eventually(
        lambda: all(len(m) == requests for m in shown().values()),
        timeout=30,
        what="every request shown in three places",
    )
    agent = SlackUserAgent(roomy_service.base_url)

    async def vote(user: str, message: dict[str, Any], after: float) -> None:
        await asyncio.sleep(after)  # the burst's shape: three votes spread over a second
        status, _ = await agent.click(message, "taskjuice_approve", user)
        assert status == 200

    try:
        await asyncio.gather(
            *(
                vote(user, message, after=0.45 * i)
                for i, user in enumerate(VOTERS)
                for message in shown()[user]
            )
        )
    finally:
        await agent.close()
    async with pool.acquire() as conn:
        ended = await conn.fetchval("SELECT count(*) FROM tasks WHERE status = 'approved'")
    assert ended == requests
    await eventually(lambda: _slack_work_done(pool), timeout=30, what="the updates sent")

    updates = Counter(
        (c.args["channel"], c.args["ts"]) for c in slack.calls_to("chat.update") if c.answer == "ok"
    )
    messages = [m for listed in shown().values() for m in listed]
    assert len(messages) == 3 * requests
    for message in messages:
        assert 1 <= updates[(message["channel"], message["ts"])] <= 2, updates
        # Every message ends showing the final state: approved by all three, no buttons left.
        text = text_of(message)
        assert "Approved*" in text and buttons(message) == []
        assert all(f"<@{user}>" in text for user in VOTERS), text
    assert len({_task_of(m) for m in messages}) == requests


async def test_an_update_that_would_show_the_same_again_is_not_sent(
    roomy_service: Service, slack: SlackApiDouble, pool: asyncpg.Pool
) -> None:
    status, task = await roomy_service.request(
        "POST",
        "/api/v1/approvals",
        json=approval_body(
            approvers=[{"slack_user_id": DANA}],
            deliver={"slack": True, "email": False, "slack_channel": None},
        ),
    )
    assert status == 201
    await eventually(lambda: slack.messages.get(slack.dm_channel(DANA)), what="the DM")
    await eventually(lambda: _slack_work_done(pool), what="the post settled")
    async with pool.acquire() as conn:
        delivery_id = await conn.fetchval(
            "SELECT id FROM deliveries WHERE task_id = $1 AND channel = 'slack'", UUID(task["id"])
        )
        # An update whose change the message already shows (as when a burst's first update
        # carried every vote): it renders the same message, so no call leaves.
        async with conn.transaction():
            await slack_store.queue_updates(
                conn, UPDATE, [(delivery_id, UUID(task["id"]))], change_id="again", settle=0.0
            )
    await eventually(lambda: _slack_work_done(pool), what="the update handled")
    assert slack.calls_to("chat.update") == []
    # A change the message does not show yet is sent, once.
    status, _ = await roomy_service.request("POST", f"/api/v1/approvals/{task['id']}/cancel")
    assert status == 200
    [update] = await eventually(lambda: slack.calls_to("chat.update"), what="the update")
    assert "Cancelled" in str(update.args.get("text"))
    await eventually(lambda: _slack_work_done(pool), what="the update settled")
    assert len(slack.calls_to("chat.update")) == 1


async def _planned(pool: asyncpg.Pool, task_factory: TaskFactory) -> list[tuple[int, UUID]]:
    """A stored request's Slack messages, planned (delivery id, task id): one per approver."""
    task_id = await task_factory.stored()
    async with pool.acquire() as conn:
        tier = await conn.fetchval("SELECT min(tier) FROM approvers WHERE task_id = $1", task_id)
        wanted = [deliveries.Planned(task_id=task_id, tier=tier, purpose="request")]
        return await deliveries.plan(conn, wanted, channel="slack")


async def test_one_update_waits_per_message_and_one_behind_an_update_in_flight_settles(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    [shown, _] = [[d] for d in await _planned(pool, task_factory)]
    async with pool.acquire() as conn:

        async def waiting() -> list[asyncpg.Record]:
            return await conn.fetch(
                "SELECT id, claimed_by, extract(epoch FROM next_attempt_at - now()) AS due_in"
                " FROM outbox WHERE kind = $1 AND status = 'pending' ORDER BY id",
                UPDATE,
            )

        for change in ("vote-1", "vote-2", "approved"):
            async with conn.transaction():
                await slack_store.queue_updates(conn, UPDATE, shown, change_id=change, settle=5.0)
        [first] = await waiting()
        assert first["due_in"] <= 0  # nothing sent lately: due at once
        # The dispatcher takes it: the next change queues one more, due after the settle time.
        await conn.execute("UPDATE outbox SET claimed_by = 'w1' WHERE id = $1", first["id"])
        for change in ("vote-3", "vote-4"):
            async with conn.transaction():
                await slack_store.queue_updates(conn, UPDATE, shown, change_id=change, settle=5.0)
        in_flight, behind = await waiting()
        assert in_flight["id"] == first["id"] and behind["claimed_by"] is None
        assert 4.0 < behind["due_in"] <= 5.0
        # Once the first is sent, a message updated just now still waits out the settle time.
        await conn.execute("UPDATE outbox SET status = 'done' WHERE id = $1", first["id"])
        await conn.execute("DELETE FROM outbox WHERE id = $1", behind["id"])
        await slack_store.message_updated(conn, shown[0][0])
        async with conn.transaction():
            await slack_store.queue_updates(conn, UPDATE, shown, change_id="vote-5", settle=5.0)
        [later] = await waiting()
        assert 4.0 < later["due_in"] <= 5.0


async def test_changes_committed_together_still_leave_one_update_waiting(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    shown = await _planned(pool, task_factory)
    assert len(shown) == 2

    async def change(n: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            # Reversed for every other change: the locks are taken in key order regardless.
            order = shown if n % 2 else list(reversed(shown))
            await slack_store.queue_updates(conn, UPDATE, order, change_id=f"c{n}", settle=1.0)

    await asyncio.gather(*(change(n) for n in range(12)))
    async with pool.acquire() as conn:
        per_message = await conn.fetch(
            "SELECT ordering_key, count(*) AS n FROM outbox WHERE kind = $1"
            " AND status = 'pending' GROUP BY ordering_key",
            UPDATE,
        )
    assert sorted(r["ordering_key"] for r in per_message) == sorted(f"slack:{d}" for d, _ in shown)
    assert {r["n"] for r in per_message} == {1}


# --- posts whose answer was lost -------------------------------------------------------------


async def _settled_dm(svc: Service, slack: SlackApiDouble, pool: asyncpg.Pool) -> None:
    await eventually(
        lambda: slack.messages.get(slack.dm_channel(DANA)), timeout=15, what="a DM to Dana"
    )
    await eventually(lambda: _slack_work_done(pool), timeout=20, what="delivery settled")


async def test_a_lost_post_is_found_by_one_narrow_history_read_and_not_posted_again(
    slack_service: Service, slack: SlackApiDouble, pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    slack.history_limited = True  # 1 read a minute, 15 messages (non-Marketplace apps)
    slack.fail("chat.postMessage", Fault(kind="drop"))
    task = await task_factory(approvers=[{"slack_user_id": DANA}])
    await _settled_dm(slack_service, slack, pool)

    [message] = slack.messages[slack.dm_channel(DANA)]
    assert [c.answer for c in slack.calls_to("chat.postMessage")] == ["drop"]
    [read] = slack.calls_to("conversations.history")
    assert read.answer == "ok"
    assert int(read.args["limit"]) <= HISTORY_LIMIT
    oldest, latest = float(read.args["oldest"]), float(read.args["latest"])
    assert oldest <= float(message["ts"]) <= latest and latest - oldest < 60
    async with pool.acquire() as conn:
        [shown] = await deliveries.deliveries_of(conn, [UUID(task["id"])], "slack")
    assert shown.slack_ts == message["ts"] and shown.status.value == "sent"


@pytest.mark.parametrize("kind", ["http", "error", "ratelimited"])
async def test_a_plain_retry_of_a_clear_failure_reads_no_history(
    slack_service: Service,
    slack: SlackApiDouble,
    pool: asyncpg.Pool,
    task_factory: TaskFactory,
    kind: str,
) -> None:
    slack.history_limited = True
    slack.fail(
        "chat.postMessage", Fault(kind=kind, status=503, error="internal_error", retry_after=1)
    )
    await task_factory(approvers=[{"slack_user_id": DANA}])
    await _settled_dm(slack_service, slack, pool)
    assert len(slack.messages[slack.dm_channel(DANA)]) == 1
    assert [c.answer for c in slack.calls_to("chat.postMessage")] == [kind, "ok"]
    assert slack.calls_to("conversations.history") == []


async def test_lost_posts_of_one_team_share_one_history_read_a_minute(
    slack_service: Service, slack: SlackApiDouble, pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    # Two posts lost at once: the first read is made at once, the second waits for the
    # team's budget (1 a minute) in the outbox, not posted twice and not refused by Slack.
    slack.history_limited = True
    slack.fail("chat.postMessage", Fault(kind="drop", times=2))
    await task_factory(approvers=[{"slack_user_id": DANA}, {"slack_user_id": LEE}])
    await eventually(
        lambda: (
            slack.messages.get(slack.dm_channel(DANA)) and slack.messages.get(slack.dm_channel(LEE))
        ),
        what="both DMs (lost answers)",
    )

    async def second_waits_for_the_budget() -> bool:
        async with pool.acquire() as conn:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE kind = 'slack.post' AND status = 'pending'"
                " AND next_attempt_at > now() + interval '30 seconds'"
            )
        return bool(slack.calls_to("conversations.history")) and waiting == 1

    await eventually(second_waits_for_the_budget, timeout=15, what="one read, one waiting")
    reads = slack.calls_to("conversations.history")
    assert len(reads) == 1 and reads[0].answer == "ok"
    assert slack.rate_limited("conversations.history") == 0  # the budget, not Slack, paced it
    assert len(slack.messages[slack.dm_channel(DANA)]) == 1
    assert len(slack.messages[slack.dm_channel(LEE)]) == 1
    async with pool.acquire() as conn:
        statuses = sorted(
            await conn.fetch("SELECT status FROM deliveries WHERE channel = 'slack'"),
            key=lambda r: r["status"],
        )
    assert [r["status"] for r in statuses] == ["queued", "sent"]
