"""The outbox kinds have one owner: every item a statement writes is one the dispatcher sends."""

from __future__ import annotations

import re
from pathlib import Path
from uuid import UUID

from bot.decisions import Verdict
from bot.domain import Actor, Channel, OutboxKind, Outcome
from bot.outbox import consequences
from bot.runtime.keys import POOL
from store import sweep
from tests.conftest import Service, approval_body
from tests.support import eventually, move_deadline, vote

STORE = Path(__file__).resolve().parents[2] / "store"
# An outbox INSERT whose kind is spelled in the statement itself rather than bound.
_LITERAL_KIND = re.compile(r"INSERT INTO outbox\s*\([^)]*\)\s*(?:VALUES\s*\(|SELECT)\s*'", re.I)


def test_no_statement_in_the_store_spells_an_outbox_kind() -> None:
    found = [
        path.name for path in STORE.glob("*.py") if _LITERAL_KIND.search(path.read_text("utf-8"))
    ]
    assert found == []
    # The pattern itself finds what it must refuse.
    assert _LITERAL_KIND.search("INSERT INTO outbox (kind, payload)\n    SELECT 'callback', x")


def test_the_consequences_module_names_the_domain_kinds() -> None:
    assert consequences.CALLBACK is OutboxKind.CALLBACK
    assert consequences.TASK_CHANGED is OutboxKind.TASK_CHANGED
    assert consequences.ALERT_CHANGED is OutboxKind.ALERT_CHANGED
    assert [k.value for k in OutboxKind] == ["callback", "task.changed", "alert.changed"]


async def _create(service: Service, **changes: object) -> UUID:
    status, task = await service.request("POST", "/api/v1/approvals", json=approval_body(**changes))
    assert status == 201, task
    return UUID(task["id"])


async def test_every_kind_the_statements_write_has_a_handler(service: Service) -> None:
    pool = service.app[POOL]
    decided = await _create(service, run_id="run_decided")
    expired = await _create(service, run_id="run_expired", timeout_policy="deny")
    reminded = await _create(service, run_id="run_reminded")
    # A decision: written by store.tasks.record_decisions.
    result = await vote(
        pool, decided, Actor(email="dana@acme.test"), outcome=Outcome.DENY, via=Channel.EMAIL_LINK
    )
    assert result.verdict is Verdict.DECIDED
    async with pool.acquire() as conn:
        # A sweep batch and a reminder: written by store.sweep.
        await move_deadline(conn, expired, -1)
        await conn.execute("UPDATE task_timers SET remind_at = now() WHERE task_id = $1", reminded)
        # The service's own sweeper may get there first; either way the same statements run.
        async with conn.transaction():
            await sweep.expire_due(conn, limit=10, task_id=expired)
            await sweep.remind_due(conn, limit=10)

        async def reminders() -> int:
            # As below: the service's sweeper may hold the timer (SKIP LOCKED) and write the
            # reminder a moment later.
            count: int = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE payload->'changes'->0->>'event' = 'reminder'"
                " AND payload->'changes'->0->>'task_id' = $1",
                str(reminded),
            )
            return count

        reminder = await eventually(reminders, what="the reminder")
        assert reminder == 1

        async def written() -> list[tuple[str, object]]:
            rows = await conn.fetch(
                "SELECT kind, task_id FROM outbox WHERE kind = ANY($1::text[])",
                [k.value for k in OutboxKind],
            )
            found = [(r["kind"], r["task_id"]) for r in rows]
            # The service's sweeper may hold the expired task's timer when the sweep above
            # runs (SKIP LOCKED), and then writes its callback a moment later.
            both = ("callback", decided) in found and ("callback", expired) in found
            return found if both else []

        rows = await eventually(written, what="the rows written")
        kinds = {kind for kind, _ in rows}
        assert {"callback", "task.changed"} <= kinds
        assert ("callback", decided) in rows and ("callback", expired) in rows
        everything = {r["kind"] for r in await conn.fetch("SELECT DISTINCT kind FROM outbox")}
    handled = set(service.dispatcher.handlers)
    assert everything <= handled, everything - handled
    assert {k.value for k in OutboxKind} <= handled

    # ...and the dispatcher does send them: no item of these kinds is left waiting.
    async def sent() -> bool:
        async with pool.acquire() as conn:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE status = 'pending' AND kind = ANY($1::text[])",
                [k.value for k in OutboxKind],
            )
        return waiting == 0

    await eventually(sent, what="the core kinds sent")
