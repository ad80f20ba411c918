"""Magic links: what a link stands for now, and deciding through its confirmation page.

Mail scanners fetch every link (some with HEAD, some in a browser that runs JavaScript and
clicks), so opening a link never decides: it shows a page that says exactly what will happen
and as whom. Only a POST of that page's form decides, carrying a signed nonce; approving an
irreversible action also needs a word typed from the page.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from bot import decisions
from bot.decisions import DecisionResult, Verdict
from bot.domain import Actor, Channel, Outcome, TaskStatus
from bot.links.tokens import LinkSigner
from bot.platform.validation import unfit_text
from bot.runtime.metrics import Metrics
from bot.wording import PAGE, ended, explain, link_recorded, past, votes_recorded
from store import mail, tasks

__all__ = ["LinkPage", "LinkState", "decide_by_link", "open_link"]


class LinkState(enum.StrEnum):
    """What a link can be when someone opens it."""

    READY = "ready"
    INVALID = "invalid"
    FINISHED = "finished"
    SUPERSEDED = "superseded"
    USED = "used"
    DONE = "done"
    REFUSED = "refused"


_STATUS = {
    LinkState.READY: 200,
    LinkState.DONE: 200,
    LinkState.INVALID: 404,
    LinkState.FINISHED: 410,
    LinkState.SUPERSEDED: 410,
    LinkState.USED: 410,
    LinkState.REFUSED: 409,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkPage:
    """What the page for a link shows, and its HTTP status."""

    state: LinkState
    link_id: int | None = None
    task: dict[str, Any] | None = None
    acting_as: str | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def status(self) -> int:
        return _STATUS[self.state]


async def open_link(pool: asyncpg.Pool, signer: LinkSigner, token: str) -> LinkPage:
    """The state of the link behind `token` (read only: opening a link never decides)."""
    link_id = signer.link_id(token)
    if link_id is None:
        return LinkPage(
            state=LinkState.INVALID,
            lines=[
                "This link is not valid. It may have been cut short or changed; open the link from "
                "the original email, or use the Approvals inbox."
            ],
        )
    async with pool.acquire() as conn:
        link = await mail.link(conn, link_id)
        if link is None:
            return LinkPage(state=LinkState.INVALID, lines=["This link is not valid."])
        overdue = await conn.fetchval(
            "SELECT status = 'pending' AND expires_at <= now() FROM tasks WHERE id = $1",
            link["task_id"],
        )
        view = await tasks.task_view(conn, link["task_id"])
        digest = await tasks.content_hash(conn, link["task_id"])
    assert view is not None
    page: dict[str, Any] = {"link_id": link_id, "task": view, "acting_as": link["approver_email"]}
    final = [d for d in view["decisions"] if d["action"] != "escalate"]
    if view["status"] != TaskStatus.PENDING or overdue:
        if overdue:
            return LinkPage(
                state=LinkState.FINISHED,
                **page,
                lines=["This request has expired; its timeout policy now applies."],
            )
        return LinkPage(
            state=LinkState.FINISHED, **page, lines=[_ended(view, final[-1] if final else None)]
        )
    if link["tier"] != view["tier"]:
        return LinkPage(
            state=LinkState.SUPERSEDED,
            **page,
            lines=[
                "This request was escalated to other approvers because nobody answered in time, so "
                "this link no longer decides it."
            ],
        )
    if link["content_hash"] != digest:
        return LinkPage(
            state=LinkState.SUPERSEDED,
            **page,
            lines=[
                "This request changed after this email was sent, so this link no longer decides it."
            ],
        )
    mine = [
        d
        for d in view["decisions"]
        if d["tier"] == view["tier"] and (d.get("by") or {}).get("email") == link["approver_email"]
    ]
    if link["used_at"] is not None or mine:
        at = mine[0]["at"] if mine else link["used_at"].isoformat()
        return LinkPage(
            state=LinkState.USED,
            **page,
            lines=[
                f"You already {past(mine[0]['action']) if mine else 'used this link'} "
                f"at {PAGE.time(_when(at))}; the request is waiting for other approvers."
            ],
        )
    return LinkPage(state=LinkState.READY, **page)


def _when(at: str) -> datetime:
    return datetime.fromisoformat(at)


def _ended(view: dict[str, Any], final: dict[str, Any] | None) -> str:
    if final is None:
        return f"This request is already {view['status']}."
    return ended(final["action"], final["via"], final.get("by"), _when(final["at"]), PAGE)


async def decide_by_link(
    pool: asyncpg.Pool,
    signer: LinkSigner,
    token: str,
    form: dict[str, str],
    *,
    client: dict[str, Any],
    metrics: Metrics | None = None,
) -> tuple[LinkPage, str | None]:
    """Decide from a submitted confirmation form. Returns the page, and an error to show on
    the form again when the submission itself was wrong (nothing is decided then)."""
    page = await open_link(pool, signer, token)
    if page.state is not LinkState.READY:
        return page, None
    assert page.link_id is not None and page.task is not None and page.acting_as is not None
    sent = [*form.values(), *(v for v in client.values() if isinstance(v, str))]
    if any(unfit_text(value) for value in sent):
        # A NUL or invalid Unicode in the reason or the browser's headers: PostgreSQL could
        # not store the audit row, so nothing is decided.
        return page, "The form holds characters that cannot be recorded. Please type it again."
    if not signer.nonce_ok(page.link_id, form.get("nonce", "")):
        return (
            page,
            "This page is out of date. Please review the request and press the button again.",
        )
    decision = form.get("decision")
    if decision not in ("approve", "deny"):
        return page, "Choose Approve or Deny."
    irreversible = page.task["reversibility"] == "irreversible"
    if decision == Outcome.APPROVE and irreversible:
        typed = form.get("confirm_word", "").strip().lower()
        if typed != signer.confirm_word(page.link_id):
            return page, "Type the confirmation word exactly as shown to approve."
    async with pool.acquire() as conn:
        link = await mail.link(conn, page.link_id)
    assert link is not None
    result = await decisions.decide(
        pool,
        task_id=link["task_id"],
        actor=Actor(email=link["approver_email"]),
        outcome=Outcome(decision),
        via=Channel.EMAIL_LINK,
        reason=form.get("reason") or None,
        client=client,
        content_hash=link["content_hash"],
        tier=link["tier"],
        metrics=metrics,
    )
    return await _after(pool, page, result), None


async def _after(pool: asyncpg.Pool, page: LinkPage, result: DecisionResult) -> LinkPage:
    assert page.link_id is not None
    async with pool.acquire() as conn:
        if result.changed:
            await mail.mark_link_used(conn, page.link_id)
        view = await tasks.task_view(conn, result.task.id)
    base: dict[str, Any] = {"link_id": page.link_id, "task": view, "acting_as": page.acting_as}
    if result.verdict is Verdict.DECIDED:
        return LinkPage(
            state=LinkState.DONE, **base, lines=[link_recorded(result.task.status.value)]
        )
    if result.verdict is Verdict.COUNTED:
        left = result.task.required_approvals - result.approvals
        return LinkPage(
            state=LinkState.DONE,
            **base,
            lines=[votes_recorded(left)],
        )
    return LinkPage(state=LinkState.REFUSED, **base, lines=[explain(result, view, PAGE)])
