"""Slack egress within Slack's limits (contract §7): a budget shared by every replica, a 429
shared by every replica, urgent work first, workspaces served in turn, and SLACK_RATE_LIMITS.

The Slack double enforces the limits over HTTP (429 + Retry-After), with small numbers so the
tests stay fast; two app instances on one database stand for two replicas.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from bot.devkit.slack_api import Fault, SlackApiDouble
from bot.errors import SettingsError
from bot.outbox.dispatcher import RetryLater, current_item
from bot.runtime.config import load_settings
from bot.runtime.keys import METRICS, POOL
from bot.runtime.metrics import Metrics
from bot.slack.egress import Limit, SlackBudget
from bot.slack.lookups import CLAIM_SECONDS, Lookups
from store import egress as egress_store
from store import outbox
from store import slack as slack_store
from store.outbox import OutboxItem
from tests.conftest import (
    CallbackReceiver,
    Service,
    approval_body,
    slack_settings,
    start_service,
)
from tests.slack_support import APPROVALS, DANA, LEE, TEAM, workspace
from tests.support import eventually

REQUIRED = {
    "API_TOKENS": "fake-api-token",
    "CALLBACK_URL": "http://platform.test/callbacks",
    "CALLBACK_SECRET": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY",
    "TASKJUICE_APP_URL": "http://app.taskjuice.test",
}


# --- SLACK_RATE_LIMITS ---------------------------------------------------------------------


def test_rate_limits_are_read_over_the_published_defaults() -> None:
    settings = load_settings(
        REQUIRED | {"SLACK_RATE_LIMITS": " chat.update=5/2 , views.publish=100/60.5"},
        env_file=None,
    )
    assert settings.slack_rate_limits == (("chat.update", 5, 2.0), ("views.publish", 100, 60.5))
    from bot.slack.egress import DEFAULT_LIMITS, Limit, limits_with

    limits = limits_with(settings.slack_rate_limits)
    assert limits["chat.update"] == Limit(5, 2.0)
    assert limits["users.lookupByEmail"] == DEFAULT_LIMITS["users.lookupByEmail"] == Limit(50, 60)
    assert load_settings(REQUIRED, env_file=None).slack_rate_limits == ()


@pytest.mark.parametrize(
    "raw",
    [
        "chat.update",
        "chat.update=50",
        "chat.update=/60",
        "chat.update=0/60",
        "chat.update=-1/60",
        "chat.update=5.5/60",
        "chat.update=50/0",
        "chat.update=50/soon",
        "chat.update=50/60,chat.update=40/60",
        "=50/60",
        "chat update=50/60",
        "chat.update=50/60,",
    ],
)
def test_a_malformed_rate_limit_stops_start_up_naming_the_setting(raw: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(REQUIRED | {"SLACK_RATE_LIMITS": raw}, env_file=None)
    message = str(refused.value)
    assert "SLACK_RATE_LIMITS" in message and "\n" not in message
    assert "whsec_" not in message


# --- two replicas, one budget --------------------------------------------------------------


@pytest.fixture
async def limited_slack() -> AsyncIterator[SlackApiDouble]:
    """The tests' workspace with the published limits enforced (but the channel pace, which
    the bot's SLACK_POST_INTERVAL of the tests sets) and chat.update at 3 per 2 seconds."""
    double = workspace()
    double.enforce_rate_limits(True)
    double.set_limit("chat.update", 3, 2.0)
    double.set_limit("chat.postMessage/channel", None)  # these tests are about other methods
    await double.start()
    yield double
    await double.stop()


async def _replicas(
    database_url: str, receiver: CallbackReceiver, slack: SlackApiDouble, limits: str
) -> list[Service]:
    settings = slack_settings(
        receiver,
        slack,
        slack_rate_limits=load_settings(
            REQUIRED | {"SLACK_RATE_LIMITS": limits}, env_file=None
        ).slack_rate_limits,
    )
    return [await start_service(settings, database_url) for _ in range(2)]


async def _posted_requests(service: Service, slack: SlackApiDouble, n: int) -> list[str]:
    """`n` requests, each posted to Dana's DM; their ids."""
    ids = []
    for i in range(n):
        status, task = await service.request(
            "POST",
            "/api/v1/approvals",
            json=approval_body(
                run_id=f"run_{i}",
                approvers=[{"slack_user_id": DANA}],
                deliver={"slack": True, "email": False, "slack_channel": None},
            ),
        )
        assert status == 201, task
        ids.append(task["id"])
    await eventually(
        lambda: (
            len(slack.calls_to("chat.postMessage")) >= n
            and all(c.answer == "ok" for c in slack.calls_to("chat.postMessage"))
        ),
        what="every request posted",
    )
    return ids


def _final(slack: SlackApiDouble, n: int) -> bool:
    dm = slack.messages[slack.dm_channel(DANA)]
    return len(dm) == n and all(str(m.get("text", "")).startswith("Cancelled") for m in dm)


async def test_two_replicas_keep_together_to_one_teams_chat_update_limit(
    database_url: str, receiver: CallbackReceiver, limited_slack: SlackApiDouble
) -> None:
    slack = limited_slack
    replicas = await _replicas(database_url, receiver, slack, "chat.update=3/2")
    try:
        ids = await _posted_requests(replicas[0], slack, 8)
        for n, task_id in enumerate(ids):  # both replicas take part
            status, _ = await replicas[n % 2].request(
                "POST", f"/api/v1/approvals/{task_id}/cancel", json={}
            )
            assert status == 200
        await eventually(lambda: _final(slack, 8), timeout=20, what="every message updated")
        updates = slack.calls_to("chat.update", TEAM)
        assert len(updates) >= 8
        assert slack.rate_limited() == 0
        # The limit held the work back: calls waited for their permits.
        waits = sum(
            _value(r.app[METRICS].slack_permit_waits.labels("chat.update")) for r in replicas
        )
        assert waits > 0
        ok = sorted(c.at for c in updates if c.answer == "ok")
        assert all(later - earlier >= 2.0 for earlier, later in zip(ok, ok[3:], strict=False))
    finally:
        for replica in replicas:
            await replica.close()


async def test_several_requests_to_one_person_spend_one_lookup_and_one_open_across_replicas(
    database_url: str, receiver: CallbackReceiver, limited_slack: SlackApiDouble
) -> None:
    # One lookup and one open a minute: a second of either would hold a DM back a minute.
    slack = limited_slack
    replicas = await _replicas(
        database_url, receiver, slack, "users.lookupByEmail=1/60,conversations.open=1/60"
    )
    try:

        async def create(n: int) -> None:
            status, task = await replicas[n % 2].request(
                "POST",
                "/api/v1/approvals",
                json=approval_body(
                    run_id=f"run_{n}",
                    approvers=[{"email": "dana@acme.test"}],
                    deliver={"slack": True, "email": False, "slack_channel": None},
                ),
            )
            assert status == 201, task

        await asyncio.gather(*(create(n) for n in range(6)))
        await eventually(
            lambda: len(slack.messages.get(slack.dm_channel(DANA), [])) == 6,
            timeout=20,
            what="six DMs",
        )
        assert len(slack.calls_to("users.lookupByEmail", TEAM)) == 1
        assert len(slack.calls_to("conversations.open", TEAM)) == 1
        assert slack.rate_limited() == 0
    finally:
        for replica in replicas:
            await replica.close()


async def test_a_429_blocks_the_method_for_every_replica_until_it_passes(
    database_url: str, receiver: CallbackReceiver, limited_slack: SlackApiDouble
) -> None:
    slack = limited_slack
    slack.set_limit("chat.update", 100, 60.0)
    replicas = await _replicas(database_url, receiver, slack, "chat.update=100/60")
    try:
        ids = await _posted_requests(replicas[0], slack, 8)
        slack.fail("chat.update", Fault(kind="ratelimited", retry_after=2, team=TEAM))
        for n, task_id in enumerate(ids):
            status, _ = await replicas[n % 2].request(
                "POST", f"/api/v1/approvals/{task_id}/cancel", json={}
            )
            assert status == 200
        await eventually(lambda: _final(slack, 8), timeout=20, what="every message updated")
        updates = slack.calls_to("chat.update", TEAM)
        [refused] = [c for c in updates if c.answer == "ratelimited"]
        sent = [c.at - refused.at for c in updates if c.answer == "ok"]
        # Calls already on their way when the 429 came may still land; after that nobody
        # calls until Retry-After has passed, and then the rest go.
        assert [t for t in sent if 0.3 < t < 1.95] == [], sent
        assert len([t for t in sent if t >= 1.95]) >= 4, sent
        blocked = sum(
            _value(r.app[METRICS].slack_ratelimited.labels("chat.update")) for r in replicas
        )
        assert blocked == 1
    finally:
        for replica in replicas:
            await replica.close()


# --- urgent first --------------------------------------------------------------------------


async def test_a_private_answer_goes_before_queued_app_home_refreshes(
    database_url: str, receiver: CallbackReceiver, limited_slack: SlackApiDouble
) -> None:
    slack = limited_slack
    service = await start_service(slack_settings(receiver, slack), database_url)
    try:
        service.dispatcher.concurrency = 4
        users = [f"U0HOME{n:03d}" for n in range(50)]
        for n, user in enumerate(users):
            slack.add_user(user, f"home{n}", f"home{n}@acme.test")
        async with service.app[POOL].acquire() as conn, conn.transaction():
            for user in users:
                await outbox.enqueue(conn, "slack.home", {"user": user})
            await outbox.enqueue(
                conn, "slack.ephemeral", {"channel": APPROVALS, "user": LEE, "text": "Not yours."}
            )
        await eventually(
            lambda: len(slack.calls_to("views.publish")) == 50, what="every App Home refreshed"
        )
        methods = [c.method for c in slack.calls if c.method != "auth.test"]
        first = methods.index("chat.postEphemeral")
        # At most the rest of the first claim went before it (under one due-order: all 50).
        assert methods[:first].count("views.publish") < service.dispatcher.concurrency
        assert slack.ephemeral and slack.ephemeral[0]["text"] == "Not yours."
    finally:
        await service.close()


async def test_the_kinds_are_given_their_priorities(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for kind in ("slack.home", "slack.update", "callback", "slack.ephemeral", "task.changed"):
            await outbox.enqueue(conn, kind, {})
        rows = await conn.fetch("SELECT kind, priority, tenant FROM outbox ORDER BY id")
    assert [(r["kind"], r["priority"]) for r in rows] == [
        ("slack.home", 3),
        ("slack.update", 2),
        ("callback", 1),
        ("slack.ephemeral", 0),
        ("task.changed", 0),
    ]
    assert {r["tenant"] for r in rows} == {""}


async def test_a_changes_messages_keep_its_place_in_line(pool: asyncpg.Pool) -> None:
    # A burst of new requests: each change's DM goes before the changes queued after it,
    # rather than after every one of them.
    async with pool.acquire() as conn:
        for n in range(3):
            await outbox.enqueue(conn, "task.changed", {"n": n}, message_id=f"change-{n}")
        [first] = await outbox.claim_due(conn, limit=1, lease=60, worker="w", per_tenant=4)
        assert first.message_id == "change-0"
        await outbox.enqueue_all(
            conn,
            "slack.post",
            [outbox.NewItem(payload={"delivery_id": 0}, message_id="change-0:post")],
            place=first.created_at,
        )
        following = [
            (await outbox.claim_due(conn, limit=1, lease=60, worker="w", per_tenant=4))[0]
            for _ in range(3)
        ]
    assert [i.message_id for i in following] == ["change-0:post", "change-1", "change-2"]


async def test_a_post_its_channel_is_not_ready_for_gives_the_teams_permit_back(
    pool: asyncpg.Pool,
) -> None:
    # Two posts a minute for the team, one a minute per channel: a second post to the same
    # channel waits, and must not have spent the team's second permit meanwhile.
    budget = SlackBudget(
        pool=pool,
        metrics=Metrics(),
        limits={"chat.postMessage": Limit(2, 60.0)},
        post_interval=60.0,
    )
    await budget.permit(TEAM, "chat.postMessage", channel="C0FIRST")
    with pytest.raises(RetryLater):
        await budget.permit(TEAM, "chat.postMessage", channel="C0FIRST")
    await budget.permit(TEAM, "chat.postMessage", channel="C0SECOND")
    with pytest.raises(RetryLater):  # and the team's cap still holds
        await budget.permit(TEAM, "chat.postMessage", channel="C0THIRD")


Ask = Callable[..., Awaitable[egress_store.Lease]]


def _budget(pool: asyncpg.Pool, scope: str, *, count: int, seconds: float, hold: float = 0) -> Ask:
    """Asks of the (TEAM, `scope`) budget as a process makes them: `ask(item, *answered,
    priority=…, want=…)`."""

    async def ask(
        item: int | None = None,
        *answered: egress_store.Answered,
        priority: int = 0,
        want: int = 1,
    ) -> egress_store.Lease:
        async with pool.acquire() as conn:
            return await egress_store.take(
                conn,
                TEAM,
                scope,
                count=count,
                seconds=seconds,
                hold=hold,
                want=want,
                priority=priority,
                item=item,
                answered=answered,
            )

    return ask


async def _ledger(pool: asyncpg.Pool, scope: str) -> list[datetime]:
    async with pool.acquire() as conn:
        granted: list[datetime] = await conn.fetchval(
            "SELECT granted FROM slack_budgets WHERE team = $1 AND scope = $2", TEAM, scope
        )
    return granted


async def test_a_permit_counts_until_its_calls_answer_once_that_is_reported(
    pool: asyncpg.Pool,
) -> None:
    # One call per 60 s, a 30 s hold: granted, the permit counts for 90 s. Its call answered
    # 1 s after the grant, it counts until then: the next frees about a hold sooner. An answer
    # reported later than the entry, or for no entry of the ledger, changes nothing.
    w1, w2 = (_budget(pool, scope, count=1, seconds=60.0, hold=30.0) for scope in ("w1", "w2"))
    for take in (w1, w2):
        assert (await take()).granted == 1
    [was] = await _ledger(pool, "w1")
    later = egress_store.Answered(was, was + timedelta(seconds=5))
    unknown = egress_store.Answered(was - timedelta(seconds=7), was - timedelta(seconds=29))
    assert 89 < (await w1(None, later, unknown)).wait <= 90
    assert await _ledger(pool, "w1") == [was]

    [was] = await _ledger(pool, "w2")
    sooner = egress_store.Answered(was, was - timedelta(seconds=29))
    assert 60 < (await w2(None, sooner)).wait <= 61
    assert await _ledger(pool, "w2") == [was - timedelta(seconds=29)]


async def test_the_first_in_line_comes_for_a_permit_an_answer_frees_before_its_slot(
    pool: asyncpg.Pool,
) -> None:
    # Items 1 and 2 were promised slots while the one permit counted its whole hold (90 s,
    # then 180 s). Once its call's answer is reported, the permit frees at 61 s: item 1, first
    # in line, is told to come then; item 2, behind it, keeps its slot.
    take = _budget(pool, "f", count=1, seconds=60.0, hold=30.0)

    assert (await take(None)).granted == 1
    assert 89 < (await take(1)).wait <= 90
    assert 179 < (await take(2)).wait <= 180
    [was] = await _ledger(pool, "f")
    assert 60 < (await take(1, egress_store.Answered(was, was - timedelta(seconds=29)))).wait <= 61
    assert 179 < (await take(2)).wait <= 180


async def test_a_caller_back_after_its_slot_is_placed_at_the_next_permit_not_a_window_on(
    pool: asyncpg.Pool,
) -> None:
    # One call per 2 s. Items 1, 2 and 3 are promised the next three slots. Item 1 comes back
    # late: its permit went to a newcomer meanwhile. Placed behind the promises of items 2 and
    # 3 it would wait three windows; it is promised the next permit to free instead.
    take = _budget(pool, "late", count=1, seconds=2.0)

    assert (await take(None, priority=1)).granted == 1
    assert [(await take(n, priority=1)).granted for n in (1, 2, 3)] == [0, 0, 0]

    async def newcomer_granted() -> bool:
        return (await take(9, priority=1)).granted == 1

    await eventually(newcomer_granted, timeout=10)
    late = await take(1, priority=1)
    assert late.granted == 0 and late.wait <= 2.0
    again = await take(1, priority=1)  # its new slot is its own
    assert again.granted == 0 and abs(again.wait - late.wait) < 0.5


async def test_a_channel_s_next_post_counts_from_the_last_ones_answer(
    pool: asyncpg.Pool,
) -> None:
    # The process reports the answer with its next ask of the channel's budget (no round trip
    # of its own): the ledger's entry moves from the grant plus the hold (a quarter of the
    # pace) to no later than the answer.
    budget = SlackBudget(pool=pool, metrics=Metrics(), post_interval=60.0, max_wait=0.01)
    scope = "channel:C0ANSWERED"
    permits = await budget.permit(TEAM, "chat.postMessage", channel="C0ANSWERED")
    channel = next(p for p in permits if p.key == (TEAM, scope))
    async with pool.acquire() as conn:
        answered_by = await conn.fetchval("SELECT clock_timestamp()")
    budget.answered(permits)
    assert await _ledger(pool, scope) == [channel.counted_until]  # not reported yet
    with pytest.raises(RetryLater):
        await budget.permit(TEAM, "chat.postMessage", channel="C0ANSWERED")
    [entry] = await _ledger(pool, scope)
    assert entry < channel.counted_until - timedelta(seconds=14)  # the hold is 15 s
    assert entry >= answered_by - timedelta(seconds=1)


async def test_the_previous_versions_call_of_the_budget_still_works(pool: asyncpg.Pool) -> None:
    # During a rolling update, processes of the previous version ask with their window (which
    # includes their hold) and no answers; they are granted and turned away as before.
    async def old_take() -> tuple[int, float]:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT granted, wait FROM taskjuice_slack_permits($1, $2, $3, $4, $5, $6, $7)",
                TEAM,
                "v",
                1,
                61.2,
                1,
                0,
                None,
            )
        return row["granted"], row["wait"]

    assert (await old_take())[0] == 1
    granted, wait = await old_take()
    assert granted == 0 and 61 < wait <= 61.2


async def test_callers_turned_away_are_promised_slots_one_each_urgent_ones_first(
    pool: asyncpg.Pool,
) -> None:
    # Two calls a minute. Three update callers turned away once the two are spent must not all
    # be sent back to the same freeing permit (one would win, two would go round again): they
    # are promised the next slots in turn, two at a minute and one at two minutes. A click's
    # private answer turned away after them is placed ahead of them all.
    take = _budget(pool, "x", count=2, seconds=60.0)

    spent = await take(want=2)
    assert spent.granted == 2
    updates = [await take(n, priority=2) for n in (1, 2, 3)]
    assert [lease.granted for lease in updates] == [0, 0, 0]
    assert [round(lease.wait) for lease in updates] == [60, 60, 120]
    urgent = await take(priority=0)
    assert urgent.granted == 0 and round(urgent.wait) == 60
    # The last update back early (on any replica) finds its slot still its own rather than
    # queue behind itself.
    again = await take(3, priority=2)
    assert again.granted == 0 and round(again.wait) == 120
    # Two windows of promises are kept (four here); a newcomer beyond them is sent back at a
    # moment of the window after the last slot, and promised nothing yet.
    newcomers = [await take(n, priority=2) for n in (4, 5)]
    assert all(120 <= lease.wait <= 181 for lease in newcomers)
    assert len({round(lease.wait, 3) for lease in newcomers}) == 2  # spread, not one moment


async def test_a_caller_granted_before_its_slot_gives_the_slot_up(pool: asyncpg.Pool) -> None:
    # One call a second. Item 1 is promised the next slot and item 2 the one after; item 1
    # never comes back, so item 2, asking early, gets the permit item 1 left. Its own slot
    # must leave the line with it, or the next caller would be placed a second later than the
    # budget needs.
    take = _budget(pool, "z", count=1, seconds=1.0)

    assert (await take(0)).granted == 1
    first, second = await take(1), await take(2)
    assert 0 < first.wait <= 1.0 < second.wait <= 2.0

    async def granted_early() -> bool:
        return (await take(2)).granted == 1

    await eventually(granted_early, timeout=5)
    after = await take(3)
    assert after.granted == 0 and after.wait <= 1.0


async def test_a_permit_free_when_asked_is_granted_whatever_was_promised(
    pool: asyncpg.Pool,
) -> None:
    # A promise is advice: once a slot frees, whoever asks first gets it.
    take = _budget(pool, "y", count=1, seconds=0.3)
    first = await take()
    assert first.granted == 1
    turned_away = await take()
    assert turned_away.granted == 0 and 0 < turned_away.wait <= 0.3

    async def granted_now() -> bool:
        return (await take()).granted == 1

    await eventually(granted_now, timeout=5)


async def test_an_item_that_kept_a_lookup_claim_while_it_waited_has_it_again(
    pool: asyncpg.Pool,
) -> None:
    # The item holding a lookup went back to the outbox to wait for the budget, its claim kept
    # for that long. Coming back for its slot, the claim is its own; another item's is not.
    async with pool.acquire() as conn:
        assert await slack_store.claim_lookup(conn, TEAM, "email:z", "item:7", 30.0) == 0
        assert await slack_store.claim_lookup(conn, TEAM, "email:z", "item:8", 3.0) > 20
        assert await slack_store.claim_lookup(conn, TEAM, "email:z", "item:7", 3.0) == 0


async def test_a_holder_waiting_for_the_budget_keeps_its_claim_past_its_return(
    pool: asyncpg.Pool,
) -> None:
    # The holder goes back to the outbox, due 5 s from now (half a second before its slot). A
    # busy replica may bring it back late: another item must not take the claim over the
    # moment it is due, or it would join the budget's line behind every promised slot.
    lookups = Lookups(pool)
    holder = OutboxItem(
        id=41,
        kind="slack.post",
        task_id=None,
        payload={},
        message_id="m41",
        attempts=1,
        created_at=datetime.now(UTC),
    )

    async def wait_for_budget() -> None:
        current_item.set(holder)  # this task's item only
        async with lookups.one(TEAM, "email:late@acme.test"):
            raise RetryLater("slack budget", delay=5.0, quiet=True)

    with pytest.raises(RetryLater):
        await asyncio.create_task(wait_for_budget())
    # Another item comes back at the holder's slot (due back in 5 s, slot half a second
    # later), not when the claim ends.
    with pytest.raises(RetryLater) as behind:
        async with lookups.one(TEAM, "email:late@acme.test"):
            raise AssertionError("the claim is the holder's")
    assert behind.value.delay is not None and 5.0 < behind.value.delay <= 5.5
    key = "email:late@acme.test"
    async with pool.acquire() as conn:
        left = await slack_store.claim_lookup(conn, TEAM, key, "item:42", 3.0)
        assert left > 5.0 + CLAIM_SECONDS  # another item comes back well after the holder
        assert await slack_store.claim_lookup(conn, TEAM, key, "item:41", 3.0) == 0


async def test_a_lookup_claimed_by_a_transaction_not_yet_committed_is_not_claimed_twice(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as first, pool.acquire() as second:
        async with first.transaction():
            assert await slack_store.claim_lookup(first, TEAM, "email:x", "one", 3.0) == 0
            # The second claim waits on the first's row, then finds it taken: it must not
            # read "nobody holds it" from a snapshot older than that row.
            racing = asyncio.create_task(
                slack_store.claim_lookup(second, TEAM, "email:x", "two", 3.0)
            )

            async def waiting_on_the_row() -> bool:
                return bool(
                    await first.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                        " current_database() AND wait_event_type = 'Lock'"
                    )
                )

            await eventually(waiting_on_the_row, what="the second claim waiting on the row")
            assert not racing.done()
        assert await racing > 0


async def test_a_caller_behind_a_slow_lookup_goes_back_to_the_outbox(pool: asyncpg.Pool) -> None:
    lookups = Lookups(pool)
    entered, done = asyncio.Event(), asyncio.Event()

    async def slow() -> None:  # Slack taking its time to answer
        async with lookups.one(TEAM, "email:slow@acme.test"):
            entered.set()
            await done.wait()

    holder = asyncio.create_task(slow())
    await entered.wait()
    with pytest.raises(RetryLater) as behind:
        async with lookups.one(TEAM, "email:slow@acme.test"):
            raise AssertionError("two lookups of one person at once")
    assert behind.value.quiet  # a wait, not a failure
    done.set()
    await holder
    async with lookups.one(TEAM, "email:slow@acme.test"):  # the turn and the claim are free
        pass


# --- fair across workspaces ----------------------------------------------------------------


async def _backlog(conn: asyncpg.Connection, tenant: str, kind: str, n: int) -> None:
    await conn.execute(
        "INSERT INTO outbox (kind, payload, tenant, message_id)"
        " SELECT $1, jsonb_build_object('user', 'U0BACK' || n), $2, $2 || ':' || n"
        " FROM generate_series(1, $3) AS n",
        kind,
        tenant,
        n,
    )


async def test_a_claim_serves_the_workspaces_in_turn(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await _backlog(conn, "ws-a", "slack.update", 500)
        await _backlog(conn, "ws-c", "slack.update", 500)
        await _backlog(conn, "ws-b", "slack.post", 1)  # queued last, behind 1,000 items
        first = await outbox.claim_due(conn, limit=5, lease=60, worker="w", per_tenant=4)
        assert Counter(i.tenant for i in first) == {"ws-a": 4, "ws-b": 1}
        assert [i.message_id for i in first if i.tenant == "ws-b"] == ["ws-b:1"]
        # The next claim starts where this one stopped.
        turn = outbox.next_turn(first, "")
        assert turn == "ws-b"
        second = await outbox.claim_due(
            conn, limit=5, lease=60, worker="w", per_tenant=4, after_tenant=turn
        )
        assert Counter(i.tenant for i in second) == {"ws-c": 4, "ws-a": 1}
        assert [i.message_id for i in second if i.tenant == "ws-c"] == [
            f"ws-c:{n}" for n in range(1, 5)
        ]
        # A lone workspace with work gets a whole claim, round after round.
        await conn.execute("DELETE FROM outbox WHERE tenant <> 'ws-a'")
        alone = await outbox.claim_due(conn, limit=20, lease=60, worker="w", per_tenant=4)
        assert [i.message_id for i in alone] == [f"ws-a:{n}" for n in range(6, 26)]


async def test_another_workspaces_new_request_is_not_stuck_behind_a_backlog(
    database_url: str, receiver: CallbackReceiver, limited_slack: SlackApiDouble
) -> None:
    slack = limited_slack
    slack.set_limit("views.publish", 2, 60.0)
    settings = slack_settings(receiver, slack, slack_rate_limits=(("views.publish", 2, 60.0),))
    service = await start_service(settings, database_url)
    try:
        async with service.app[POOL].acquire() as conn:
            await _backlog(conn, "ws-a", "slack.home", 500)
            await conn.execute("NOTIFY taskjuice_outbox")
        status, task = await service.request(
            "POST",
            "/api/v1/approvals",
            json=approval_body(
                workspace="ws-b",
                approvers=[{"slack_user_id": LEE}],
                deliver={"slack": True, "email": False, "slack_channel": None},
            ),
        )
        assert status == 201, task
        await eventually(
            lambda: slack.messages.get(slack.dm_channel(LEE)), timeout=5, what="B's DM"
        )
        async with service.app[POOL].acquire() as conn:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE tenant = 'ws-a' AND status = 'pending'"
            )
        assert waiting > 450  # A's backlog is still there, held back by its budget
        assert slack.rate_limited() == 0
    finally:
        await service.close()


async def test_metrics_show_permits_and_queues_by_workspace_and_priority(
    database_url: str, receiver: CallbackReceiver, limited_slack: SlackApiDouble
) -> None:
    slack = limited_slack
    service = await start_service(slack_settings(receiver, slack), database_url)
    try:
        await _posted_requests(service, slack, 1)
        async with service.app[POOL].acquire() as conn:
            await conn.execute(
                "INSERT INTO outbox (kind, payload, tenant, message_id, next_attempt_at)"
                " VALUES ('slack.home', '{}', 'ws-m', 'm1', now() + interval '1 hour')"
            )
        status, text = await service.request("GET", "/metrics", token=None)
        assert status == 200
        assert 'taskjuice_slack_permits_granted_total{method="chat.postMessage"}' in text
        assert 'taskjuice_outbox_queue_depth{priority="3",tenant="ws-m"} 1.0' in text
        assert 'taskjuice_outbox_queue_oldest_age_seconds{priority="3",tenant="ws-m"}' in text
    finally:
        await service.close()


def _value(metric: Any) -> float:
    return float(metric._value.get())
