"""Creating, reading and listing approval tasks for the platform API."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from bot.domain import Actor, NewApproval
from bot.errors import Conflict, NotFound, ValidationFailed
from bot.people import Links, Person, same
from bot.platform.schemas import MAX_EXPIRY_SECONDS
from bot.task_view import TaskView
from store import idempotency, tasks
from store import slack as slack_store

__all__ = ["CreateResult", "content_hash", "create", "get", "list_page", "request_hash"]

CreateResult = tuple[dict[str, Any], bool]
"""The created task's JSON (as first answered, on a replay) and whether it is a replay."""


def content_hash(new: NewApproval) -> str:
    """What the approver is shown; a link or button for other content must not decide."""
    shown = {
        "workspace": new.workspace,
        "run_id": new.run_id,
        "workflow": new.workflow,
        "step": new.step,
        "summary": new.summary,
        "details": new.details,
        "reversibility": new.reversibility.value,
    }
    return hashlib.sha256(tasks.dumps(shown).encode()).hexdigest()[:32]


def request_hash(body: Any) -> str:
    """What an idempotent retry must repeat: the request body, canonically."""
    return hashlib.sha256(tasks.dumps(body).encode()).hexdigest()


async def create(
    pool: asyncpg.Pool,
    new: NewApproval,
    *,
    idempotency_key: str | None = None,
    request_hash: str = "",
) -> CreateResult:
    """Store a task and queue its delivery; returns (task view, replayed).

    With an idempotency key, a retry of the same body returns the first response and creates
    nothing; the same key with another body is refused.
    """
    async with pool.acquire() as conn:
        if idempotency_key is None:  # the task and its delivery are written in one statement
            return await _create(conn, new), False
        async with conn.transaction():
            earlier = await idempotency.claim(
                conn, "approvals.create", idempotency_key, request_hash
            )
            if earlier is not None:
                if earlier.request_hash != request_hash:
                    raise Conflict("Idempotency-Key was already used with a different body.")
                return earlier.response, True
            view = await _create(conn, new)
            await idempotency.complete(conn, "approvals.create", idempotency_key, 201, view)
            return view, False


async def _create(conn: asyncpg.Connection, new: NewApproval) -> dict[str, Any]:
    """Check the request against the database, then write the task and queue its delivery."""
    first = new.tiers[0]
    if first.expires_at is not None:
        now = await conn.fetchval("SELECT now()")
        if first.expires_at <= now:
            raise ValidationFailed({"expires_at": "is in the past"})
        if first.expires_at > now + timedelta(seconds=MAX_EXPIRY_SECONDS):
            raise ValidationFailed({"expires_at": "is more than 30 days away"})
    await _check_people(conn, new)
    created = await tasks.insert(conn, uuid.uuid4(), new, content_hash(new))
    return created.as_json()


async def get(pool: asyncpg.Pool, task_id: UUID) -> TaskView:
    async with pool.acquire() as conn:
        view = await tasks.task_view(conn, task_id)
    if view is None:
        raise NotFound("No such approval task.")
    return view


async def list_page(
    pool: asyncpg.Pool,
    *,
    workspace: str | None,
    status: str | None,
    limit: int,
    after: tuple[datetime, UUID] | None,
) -> list[TaskView]:
    """One page of task views, newest first, after the (created_at, id) cursor."""
    async with pool.acquire() as conn:
        return await tasks.list_page(
            conn, workspace=workspace, status=status, limit=limit, after=after
        )


async def _check_people(conn: asyncpg.Connection, new: NewApproval) -> None:
    """Refuse tiers that name one person twice, or that cannot reach the quorum once the
    people the Slack user cache ties together are merged (the requester aside, unless the
    request allows self-approval)."""
    named = [a for tier in new.tiers for a in tier.approvers]
    if new.requested_by is not None:
        named.append(new.requested_by)
    # One actor named has nobody to be the same as: the cache has nothing to tell.
    cached = (
        await slack_store.links_among(
            conn,
            [a.slack_user_id for a in named if a.slack_user_id],
            [a.email for a in named if a.email],
        )
        if len(named) > 1
        else []
    )
    links = Links.of([*cached, *((a.email, a.slack_user_id) for a in named)])
    requester = links.of_actor(new.requested_by) if not new.allow_self_approval else Person()
    fields: dict[str, str] = {}
    for index, tier in enumerate(new.tiers):
        where = "approvers" if index == 0 else f"escalation[{index - 1}].approvers"
        people: list[Person] = []
        for position, approver in enumerate(tier.approvers):
            person = links.of_actor(approver)
            twin = next((n for n, p in enumerate(people) if same(p, person)), None)
            if twin is not None:
                fields.setdefault(
                    f"{where}[{position}]",
                    f"names the same person as {where}[{twin}] ({_names(approver)})",
                )
            people.append(person)
        distinct = _distinct(people)
        eligible = [p for p in distinct if not same(p, requester)]
        if len(eligible) < new.required_approvals:
            fields.setdefault(
                where,
                f"required_approvals is {new.required_approvals} but only {len(eligible)} "
                "distinct person(s) other than the requester can approve",
            )
    if fields:
        raise ValidationFailed(fields)


def _distinct(people: list[Person]) -> list[Person]:
    out: list[Person] = []
    for person in people:
        if not any(same(p, person) for p in out):
            out.append(person)
    return out


def _names(actor: Actor) -> str:
    return " / ".join(n for n in (actor.email, actor.slack_user_id) if n)
