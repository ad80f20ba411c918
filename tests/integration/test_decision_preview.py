"""decisions.preview(): what decide() would come to, by the same rules, writing nothing."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from bot import approvals
from bot.decisions import Preview, Verdict, decide, preview
from bot.domain import Actor, Channel, Outcome
from bot.errors import NotFound
from bot.platform.validation import parse_new_approval
from tests.conftest import approval_body
from tests.support import move_deadline

DANA = Actor(email="dana@acme.test")
OPS = Actor(email="ops@acme.test")


async def _task(pool: asyncpg.Pool, **changes: Any) -> UUID:
    new = parse_new_approval(approval_body(**changes), allow_proceed_irreversible=False)
    view, _ = await approvals.create(pool, new)
    return UUID(view["id"])


async def _written(pool: asyncpg.Pool, task_id: UUID) -> tuple[Any, ...]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT t.version, t.status, (SELECT count(*) FROM decisions d WHERE d.task_id = t.id)"
            " AS audit FROM tasks t WHERE t.id = $1",
            task_id,
        )
    return tuple(row)


async def _look(
    pool: asyncpg.Pool, task_id: UUID, actor: Actor, outcome: Outcome, **kw: Any
) -> Preview:
    return await preview(
        pool, task_id=task_id, actor=actor, outcome=outcome, via=Channel.EMAIL_LINK, **kw
    )


async def test_a_preview_agrees_with_decide_and_writes_nothing(pool: asyncpg.Pool) -> None:
    task_id = await _task(
        pool,
        required_approvals=2,
        approvers=[
            {"email": "dana@acme.test"},
            {"email": "lee@acme.test"},
            {"email": "kim@acme.test"},
        ],
    )
    before = await _written(pool, task_id)
    seen = await _look(pool, task_id, DANA, Outcome.APPROVE)
    assert seen.verdict is Verdict.COUNTED and not seen.overdue
    assert (await _look(pool, task_id, DANA, Outcome.DENY)).verdict is Verdict.DECIDED
    assert (await _look(pool, task_id, OPS, Outcome.APPROVE)).verdict is Verdict.NOT_APPROVER
    assert await _written(pool, task_id) == before

    done = await decide(
        pool, task_id=task_id, actor=DANA, outcome=Outcome.APPROVE, via=Channel.EMAIL_LINK
    )
    assert done.verdict is seen.verdict
    voted = await _look(pool, task_id, DANA, Outcome.DENY)
    assert voted.verdict is Verdict.ALREADY_VOTED
    assert voted.decision is not None and voted.decision.action == "approve"


async def test_a_preview_sees_the_self_approval_rule_and_what_was_shown(pool: asyncpg.Pool) -> None:
    task_id = await _task(pool, approvers=[{"email": "ops@acme.test"}, {"email": "dana@acme.test"}])
    assert (await _look(pool, task_id, OPS, Outcome.APPROVE)).verdict is Verdict.SELF_APPROVAL
    stale = await _look(pool, task_id, DANA, Outcome.APPROVE, content_hash="0" * 32)
    assert stale.verdict is Verdict.STALE
    assert (await _look(pool, task_id, DANA, Outcome.APPROVE, tier=1)).verdict is Verdict.STALE


async def test_an_overdue_task_is_previewed_without_applying_its_policy(
    pool: asyncpg.Pool,
) -> None:
    task_id = await _task(pool)
    async with pool.acquire() as conn:
        await move_deadline(conn, task_id, 0)
    before = await _written(pool, task_id)
    seen = await _look(pool, task_id, DANA, Outcome.APPROVE)
    assert seen.overdue and seen.task.status.value == "pending"
    assert await _written(pool, task_id) == before


async def test_no_such_task_is_not_found(pool: asyncpg.Pool) -> None:
    with pytest.raises(NotFound):
        await _look(pool, uuid4(), DANA, Outcome.APPROVE)
