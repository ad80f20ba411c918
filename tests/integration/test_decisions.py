"""The one decision path: authorization, self-approval, quorum, first outcome wins."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast
from uuid import UUID

import asyncpg
import pytest

from bot.decisions import DecisionResult, Verdict, cancel
from bot.domain import Actor, Channel, Outcome, TaskStatus
from bot.errors import NotFound
from bot.platform.callbacks import callback_body
from bot.runtime.metrics import Metrics
from bot.timeouts import Sweeper
from store import seed, statistics
from store import slack as slack_store
from store.database import create_pool
from tests.conftest import TaskFactory
from tests.support import eventually, move_deadline, statement_plans, unbounded_scans, vote

DANA = Actor(email="dana@acme.test")
LEE = Actor(slack_user_id="U024BE7LH", slack_team_id="T0001")
OPS = Actor(email="ops@acme.test")
CLICKER = "U0LOAD0001"


async def known_to_slack(pool: asyncpg.Pool, actor: Actor, email: str) -> None:
    """Put a Slack user in the bot's cache, as a delivery or a lookup would have."""
    assert actor.slack_user_id is not None
    async with pool.acquire() as conn:
        await slack_store.cache_user(
            conn, actor.slack_team_id or "T0001", actor.slack_user_id, email, None
        )


async def callback_bodies(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """The bodies of the queued callbacks, as the dispatcher would send them."""
    items = await rows(pool, "SELECT payload FROM outbox WHERE kind = 'callback' ORDER BY id")
    return [await callback_body(pool, item["payload"]) for item in items]


async def rows(pool: asyncpg.Pool, sql: str, *args: Any) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(await conn.fetch(sql, *args))


async def test_an_approver_approves_and_the_callback_is_queued(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored()
    result = await vote(pool, task_id, DANA, client={"slack_team_id": "T0001"})
    assert result.verdict is Verdict.DECIDED and result.task.status is TaskStatus.APPROVED
    [callback] = await rows(pool, "SELECT * FROM outbox WHERE kind = 'callback'")
    [body] = await callback_bodies(pool)
    assert body["type"] == "approval.approved"
    assert body["data"]["resolution"] == "proceed" and body["data"]["via"] == "slack"
    assert body["data"]["decided_by"] == {"email": "dana@acme.test", "slack_user_id": None}
    assert callback["message_id"] == result.webhook_id


async def test_a_slack_approver_is_recognised_by_user_id(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored()
    result = await vote(pool, task_id, LEE, outcome=Outcome.DENY, reason="  wrong customer  ")
    assert result.verdict is Verdict.DECIDED and result.task.status is TaskStatus.DENIED
    assert result.decision is not None and result.decision.reason == "wrong customer"


async def test_email_matching_ignores_case(pool: asyncpg.Pool, task_factory: TaskFactory) -> None:
    task_id = await task_factory.stored()
    result = await vote(pool, task_id, Actor(email="Dana@ACME.test"), via=Channel.EMAIL_LINK)
    assert result.verdict is Verdict.DECIDED


async def test_a_non_approver_changes_nothing(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored()
    for actor in (Actor(email="mallory@evil.test"), Actor(slack_user_id="U999"), Actor()):
        result = await vote(pool, task_id, actor)
        assert result.verdict is Verdict.NOT_APPROVER and not result.changed
    assert await rows(pool, "SELECT * FROM decisions") == []
    assert await rows(pool, "SELECT * FROM outbox WHERE kind = 'callback'") == []


async def test_the_requester_may_not_approve_their_own_request(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored(
        approvers=[{"email": "ops@acme.test"}, {"email": "dana@acme.test"}]
    )
    refused = await vote(pool, task_id, OPS)
    assert refused.verdict is Verdict.SELF_APPROVAL
    assert await rows(pool, "SELECT * FROM decisions") == []
    denied = await vote(pool, task_id, OPS, outcome=Outcome.DENY)
    assert denied.verdict is Verdict.DECIDED and denied.task.status is TaskStatus.DENIED


async def test_self_approval_when_the_request_allows_it(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored(
        approvers=[{"email": "ops@acme.test"}], allow_self_approval=True
    )
    result = await vote(pool, task_id, OPS)
    assert result.verdict is Verdict.DECIDED


async def test_a_quorum_of_two_needs_two_distinct_approvers(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    await known_to_slack(pool, LEE, "lee@acme.test")
    task_id = await task_factory.stored(required_approvals=2)
    first = await vote(pool, task_id, DANA)
    assert first.verdict is Verdict.COUNTED and first.approvals == 1
    assert first.task.status is TaskStatus.PENDING
    again = await vote(pool, task_id, DANA, via=Channel.EMAIL_LINK)
    assert again.verdict is Verdict.ALREADY_VOTED
    assert again.decision is not None and again.decision.via is Channel.SLACK
    assert await rows(pool, "SELECT * FROM outbox WHERE kind = 'callback'") == []
    second = await vote(pool, task_id, LEE)
    assert second.verdict is Verdict.DECIDED and second.approvals == 2
    assert second.task.status is TaskStatus.APPROVED
    [body] = await callback_bodies(pool)
    assert body["data"]["decided_by"]["slack_user_id"] == "U024BE7LH"


async def test_one_deny_denies_even_after_an_approval(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored(required_approvals=2)
    await vote(pool, task_id, DANA)
    result = await vote(pool, task_id, LEE, outcome=Outcome.DENY)
    assert result.task.status is TaskStatus.DENIED


async def test_deciding_a_finished_task_reports_who_already_decided(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored()
    await vote(pool, task_id, DANA, via=Channel.EMAIL_REPLY)
    late = await vote(pool, task_id, LEE, outcome=Outcome.DENY)
    assert late.verdict is Verdict.ALREADY_FINISHED and not late.changed
    assert late.task.status is TaskStatus.APPROVED
    assert late.decision is not None
    assert late.decision.actor is not None and late.decision.actor.email == "dana@acme.test"
    assert late.decision.via is Channel.EMAIL_REPLY and late.decision.decided_at is not None
    assert len(await rows(pool, "SELECT * FROM decisions")) == 1


async def test_a_stale_message_decides_nothing(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored()
    for kwargs in ({"content_hash": "something-else"}, {"tier": 1}):
        result = await vote(pool, task_id, DANA, via=Channel.EMAIL_LINK, **kwargs)
        assert result.verdict is Verdict.STALE
    assert await rows(pool, "SELECT * FROM decisions") == []


async def test_fifty_concurrent_decisions_have_exactly_one_outcome(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    approvers = [{"email": f"approver{i}@acme.test"} for i in range(50)]
    task_id = await task_factory.stored(approvers=approvers)
    results = await asyncio.gather(
        *[
            vote(
                pool,
                task_id,
                Actor(email=f"approver{i}@acme.test"),
                outcome=Outcome.APPROVE if i % 2 else Outcome.DENY,
            )
            for i in range(50)
        ]
    )
    winners = [r for r in results if r.verdict is Verdict.DECIDED]
    assert len(winners) == 1
    assert all(r.verdict is Verdict.ALREADY_FINISHED for r in results if r not in winners)
    assert len(await rows(pool, "SELECT * FROM decisions")) == 1
    assert len(await rows(pool, "SELECT * FROM outbox WHERE kind = 'callback'")) == 1
    [task] = await rows(pool, "SELECT status, final_decision_id FROM tasks")
    assert task["status"] == winners[0].task.status.value
    assert task["final_decision_id"] == winners[0].decision.id  # type: ignore[union-attr]


async def test_cancel_then_decide_reports_the_cancellation(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    task_id = await task_factory.stored()
    cancelled = await cancel(pool, task_id, reason="run cancelled")
    assert cancelled.verdict is Verdict.DECIDED
    late = await vote(pool, task_id, DANA)
    assert late.verdict is Verdict.ALREADY_FINISHED
    assert late.task.status is TaskStatus.CANCELLED
    assert late.decision is not None and late.decision.via is Channel.API
    [body] = await callback_bodies(pool)
    assert body["type"] == "approval.cancelled" and body["data"]["reason"] == "run cancelled"


async def test_a_quorum_reached_by_two_simultaneous_approvals_approves(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    await known_to_slack(pool, LEE, "lee@acme.test")
    for _ in range(15):
        task_id = await task_factory.stored(required_approvals=2)
        results = await asyncio.gather(
            vote(pool, task_id, DANA),
            vote(pool, task_id, LEE),
        )
        assert sorted(r.verdict.value for r in results) == ["counted", "decided"]
        [row] = await rows(pool, "SELECT status FROM tasks WHERE id = $1", task_id)
        assert row["status"] == "approved"


async def test_a_storm_of_votes_counts_each_approver_once_and_ends_the_task_once(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    # Twenty approvers, each clicking twice at once, for a quorum of twenty: most writes lose
    # a race at least once, and some run out of optimistic attempts and take the row lock.
    people = [f"voter{i}@acme.test" for i in range(20)]
    task_id = await task_factory.stored(
        approvers=[{"email": p} for p in people], required_approvals=len(people)
    )
    results = await asyncio.gather(
        *[
            vote(pool, task_id, Actor(email=p), via=via)
            for p in people
            for via in (Channel.SLACK, Channel.EMAIL_LINK)
        ]
    )
    verdicts = sorted(r.verdict.value for r in results)
    assert verdicts.count("decided") == 1
    assert verdicts.count("counted") == len(people) - 1
    assert verdicts.count("already_voted") + verdicts.count("already_finished") == len(people)
    votes = await rows(pool, "SELECT actor_email FROM decisions WHERE task_id = $1", task_id)
    assert sorted(v["actor_email"] for v in votes) == sorted(people)
    [task] = await rows(pool, "SELECT status, version FROM tasks WHERE id = $1", task_id)
    assert task["status"] == "approved" and task["version"] == len(people)
    assert len(await rows(pool, "SELECT * FROM outbox WHERE kind = 'callback'")) == 1


async def test_decisions_arriving_together_are_written_together_and_judged_each_alone(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    metrics = Metrics()
    await known_to_slack(pool, LEE, "lee@acme.test")
    plain = [await task_factory.stored(run_id=f"run_{n}") for n in range(30)]
    by_slack_id = await task_factory.stored()
    not_theirs = await task_factory.stored()
    changed = await task_factory.stored()
    overdue = await task_factory.stored()
    two_needed = await task_factory.stored(required_approvals=2)
    clicked_twice = await task_factory.stored()
    async with pool.acquire() as conn:
        await move_deadline(conn, overdue, -1)
    missing = UUID(int=7)

    def click(task_id: UUID, actor: Actor = DANA, **kwargs: Any) -> Any:
        return vote(pool, task_id, actor, metrics=metrics, **kwargs)

    results = await asyncio.gather(
        *[click(t) for t in plain],
        click(by_slack_id, LEE),
        click(not_theirs, OPS),
        click(changed, content_hash="shown-before-an-edit"),
        click(overdue),
        click(two_needed, DANA),
        click(two_needed, LEE),
        click(clicked_twice),
        click(clicked_twice),
        click(missing),
        return_exceptions=True,
    )

    verdicts = [r.verdict if isinstance(r, DecisionResult) else type(r) for r in results]
    assert verdicts[:30] == [Verdict.DECIDED] * 30
    assert [r.task.id for r in results[:30]] == plain  # type: ignore[union-attr]
    assert verdicts[30:34] == [
        Verdict.DECIDED,
        Verdict.NOT_APPROVER,
        Verdict.STALE,
        Verdict.ALREADY_FINISHED,  # its deadline passed: the timeout policy decided first
    ]
    assert sorted(verdicts[34:36]) == [Verdict.COUNTED, Verdict.DECIDED]
    assert sorted(verdicts[36:38]) == [Verdict.ALREADY_FINISHED, Verdict.DECIDED]
    assert verdicts[38] is NotFound
    assert results[33].task.status is TaskStatus.EXPIRED  # type: ignore[union-attr]

    # Each audit row belongs to the click that was told about it.
    for task_id, result in zip(plain, results[:30], strict=True):
        assert isinstance(result, DecisionResult) and result.decision is not None
        [row] = await rows(
            pool, "SELECT id, task_id FROM decisions WHERE id = $1", result.decision.id
        )
        assert row["task_id"] == task_id
    ended = await rows(pool, "SELECT id FROM tasks WHERE status = 'approved'")
    assert len(ended) == 33
    callbacks = await rows(pool, "SELECT task_id FROM outbox WHERE kind = 'callback'")
    assert sorted(c["task_id"] for c in callbacks) == sorted([*(e["id"] for e in ended), overdue])
    # The channels hear of every change, through one refresh item per batch.
    refreshes = await rows(
        pool,
        "SELECT payload FROM outbox WHERE kind = 'task.changed' AND payload ? 'changes'"
        " AND payload->'changes'->0->>'event' <> 'created'",
    )
    changes = sorted((c["task_id"], c["event"]) for r in refreshes for c in r["payload"]["changes"])
    assert changes == sorted(
        [
            *((str(t), "approved") for t in [*plain, by_slack_id, clicked_twice]),
            (str(two_needed), "vote"),
            (str(two_needed), "approved"),
        ]
    )
    assert len(refreshes) < 10
    # Each click was in one batch, and they were read and written in a few batches.
    batches = metrics.registry.get_sample_value("taskjuice_decision_batch_size_count")
    assert batches is not None and batches < 10
    assert metrics.registry.get_sample_value("taskjuice_decision_batch_size_sum") == len(results)


async def test_two_replicas_deciding_the_same_tasks_at_once_end_each_task_once(
    pool: asyncpg.Pool, database_url: str, task_factory: TaskFactory
) -> None:
    other = await create_pool(database_url)
    try:
        tasks = [await task_factory.stored(run_id=f"run_{n}") for n in range(40)]
        results = await asyncio.gather(
            *[
                vote(replica, task_id, actor, outcome=outcome)
                for task_id in tasks
                for replica, actor, outcome in (
                    (pool, DANA, Outcome.APPROVE),
                    (other, LEE, Outcome.DENY),
                )
            ]
        )
    finally:
        await other.close()
    for n, task_id in enumerate(tasks):
        pair = results[2 * n : 2 * n + 2]
        assert sorted(r.verdict.value for r in pair) == ["already_finished", "decided"]
        [winner] = [r for r in pair if r.verdict is Verdict.DECIDED]
        [row] = await rows(pool, "SELECT status FROM tasks WHERE id = $1", task_id)
        assert row["status"] == winner.task.status.value
    assert len(await rows(pool, "SELECT * FROM decisions")) == 40
    assert len(await rows(pool, "SELECT * FROM outbox WHERE kind = 'callback'")) == 40


async def test_a_batch_that_fails_leaves_each_decision_to_be_made_alone(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture, task_factory: TaskFactory
) -> None:
    good = [await task_factory.stored(run_id=f"run_{n}") for n in range(10)]
    broken = await task_factory.stored(run_id="run_broken")
    async with pool.acquire() as conn:  # a row no version of the bot could have written
        await conn.execute(
            "UPDATE tasks SET requested_by = '{\"unheard_of\": 1}' WHERE id = $1", broken
        )
    results = await asyncio.gather(
        *[vote(pool, t, DANA) for t in [*good, broken]],
        return_exceptions=True,
    )
    assert [getattr(r, "verdict", None) for r in results[:10]] == [Verdict.DECIDED] * 10
    assert isinstance(results[10], TypeError)  # reaches its own caller (a 500 there), no other
    assert "decision batch failed" in caplog.text
    assert len(await rows(pool, "SELECT * FROM decisions")) == 10
    later = await task_factory.stored(run_id="run_later")
    result = await vote(pool, later, DANA, outcome=Outcome.DENY)
    assert result.verdict is Verdict.DECIDED


class _Held:
    """One connection handed to every `acquire`, so the plans of its statements can be read."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self.conn


async def _decide_after_a_sudden_growth(
    url: str, meanwhile: Callable[[], Awaitable[None]]
) -> list[str]:
    """Plans made while `tasks` and `decisions` held a handful of rows, then thousands of
    each, `meanwhile`, and one more decision: the plans of its statements."""
    pool = await create_pool(url, min_size=1, max_size=1)
    clicker = Actor(slack_user_id=CLICKER, slack_team_id="T0001")
    try:
        async with pool.acquire() as conn:
            # Autovacuum would analyze the grown tables at a moment of its own choosing.
            grown = ("tasks", "task_timers", "approvers", "approver_tiers", "decisions")
            await conn.execute(
                "; ".join(f"ALTER TABLE {t} SET (autovacuum_enabled = off)" for t in grown)
            )
            held = cast(asyncpg.Pool, _Held(conn))
            # More runs than a plan is kept after.
            for task_id in await seed.pending_tasks(conn, 8, approver=CLICKER):
                early = await vote(held, UUID(task_id), clicker)
                assert early.verdict is Verdict.DECIDED
            many = await seed.pending_tasks(conn, 3000, approver=CLICKER)
            # Votes on the other tasks arrive as fast (only their number matters here).
            await conn.execute(
                "INSERT INTO decisions (task_id, tier, approver_id, action, via)"
                " SELECT task_id, tier, id, 'approve', 'slack' FROM approvers"
                " WHERE task_id = ANY($1::uuid[])",
                [UUID(t) for t in many[:1500]],
            )
            await conn.execute("SELECT pg_stat_force_next_flush()")  # counts visible sooner
            await meanwhile()
            async with statement_plans(conn) as plans:
                result = await vote(held, UUID(many[1500]), clicker)
    finally:
        await pool.close()
    assert result.verdict is Verdict.DECIDED
    assert len(plans) >= 2  # the read and the write
    return plans


def _bounded(plans: list[str]) -> bool:
    return not any(unbounded_scans(plan, {"tasks", "task_timers", "decisions"}) for plan in plans)


async def test_the_sweeper_analyzes_tables_that_outgrew_their_statistics(
    database_url: str, pool: asyncpg.Pool
) -> None:
    """Plans kept from a handful of rows are replaced once the sweeper has analyzed the tables
    that grew: the next decision finds its task, clock and votes by index."""
    metrics = Metrics()
    sweeper = Sweeper(pool=pool, metrics=metrics, statistics_every=0)

    async def sweep_once_counted() -> None:
        async def counted() -> bool:
            async with pool.acquire() as conn:
                return {"tasks", "decisions"} <= set(await statistics.outgrown(conn))

        await eventually(counted, what="the server to count the new rows")
        await sweeper.sweep_once()

    plans = await _decide_after_a_sudden_growth(database_url, sweep_once_counted)
    assert _bounded(plans), plans
    refreshed = "taskjuice_statistics_refreshed_total"
    for table in ("tasks", "decisions", "approvers", "task_timers"):
        assert metrics.registry.get_sample_value(refreshed, {"table": table}) == 1, table
    async with pool.acquire() as conn:
        assert await statistics.outgrown(conn) == []  # and none is analyzed twice


async def test_custom_plans_asked_for_in_the_url_find_tasks_by_index_after_a_sudden_growth(
    database_url: str,
) -> None:
    """The README's remedy for the seconds before the sweeper analyzes a table that outgrew
    its statistics."""
    url = database_url + ("&" if "?" in database_url else "?") + "plan_cache_mode=force_custom_plan"

    async def nothing() -> None:
        pass

    plans = await _decide_after_a_sudden_growth(url, nothing)
    assert _bounded(plans), plans
