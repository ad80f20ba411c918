"""Magic links: what a link stands for now, and deciding through its confirmation page.

Mail scanners fetch every link (some with HEAD, some in a browser that runs JavaScript and
clicks), so opening a link never decides: it shows a page that says exactly what will happen
and as whom. Only a POST of that page's form decides, carrying a signed nonce; approving an
irreversible action also needs a word typed from the page.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from bot import decisions
from bot.decisions import DecisionResult, Verdict
from bot.domain import Actor, AuditAction, Channel, Decision, Outcome
from bot.links.tokens import LinkSigner
from bot.platform.validation import unfit_text
from bot.runtime.metrics import Metrics
from bot.task_view import AuditEntry, TaskView
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
    task: TaskView | None = None
    acting_as: str | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def status(self) -> int:
        return _STATUS[self.state]


_NOT_VALID = LinkPage(
    state=LinkState.INVALID,
    lines=[
        "This link is not valid. It may have been cut short or changed; open the link from "
        "the original email, or use the Approvals inbox."
    ],
)
_UNKNOWN = LinkPage(state=LinkState.INVALID, lines=["This link is not valid."])


async def _link(pool: asyncpg.Pool, link_id: int) -> dict[str, Any] | None:
    async with pool.acquire() as conn:
        return await mail.link(conn, link_id)


async def _view(pool: asyncpg.Pool, task_id: UUID) -> TaskView:
    async with pool.acquire() as conn:
        view = await tasks.task_view(conn, task_id)
    assert view is not None  # a link's task is never deleted
    return view


def _actor(link: dict[str, Any]) -> Actor:
    return Actor(email=link["approver_email"])


async def open_link(pool: asyncpg.Pool, signer: LinkSigner, token: str) -> LinkPage:
    """The state of the link behind `token` (read only: opening a link never decides)."""
    link_id = signer.link_id(token)
    if link_id is None:
        return _NOT_VALID
    link = await _link(pool, link_id)
    if link is None:
        return _UNKNOWN
    return await _opened(pool, link_id, link)


async def _opened(pool: asyncpg.Pool, link_id: int, link: dict[str, Any]) -> LinkPage:
    """What the link stands for now: the preview of deciding through it, by `decide()`'s
    own rules (a deny is previewed: the page offers both, and only an approval can meet the
    self-approval rule, which the POST then reports)."""
    seen = await decisions.preview(
        pool,
        task_id=link["task_id"],
        actor=_actor(link),
        outcome=Outcome.DENY,
        via=Channel.EMAIL_LINK,
        content_hash=link["content_hash"],
        tier=link["tier"],
    )
    view = await _view(pool, link["task_id"])
    page = _refused(link_id, link, view, seen.verdict, seen.decision, overdue=seen.overdue)
    if page is not None:
        return page
    base = _base(link_id, link, view)
    if link["used_at"] is not None:
        at = PAGE.time(link["used_at"])
        return LinkPage(
            state=LinkState.USED,
            **base,
            lines=[
                f"You already used this link at {at}; the request is waiting for other approvers."
            ],
        )
    return LinkPage(state=LinkState.READY, **base)


def _base(link_id: int, link: dict[str, Any], view: TaskView) -> dict[str, Any]:
    return {"link_id": link_id, "task": view, "acting_as": link["approver_email"]}


def _refused(
    link_id: int,
    link: dict[str, Any],
    view: TaskView,
    verdict: Verdict,
    decision: Decision | None,
    *,
    overdue: bool = False,
) -> LinkPage | None:
    """The page for a link that no longer decides (None when it still does)."""
    base = _base(link_id, link, view)
    if overdue:
        return LinkPage(
            state=LinkState.FINISHED,
            **base,
            lines=["This request has expired; its timeout policy now applies."],
        )
    if verdict is Verdict.ALREADY_FINISHED:
        final = [d for d in view.decisions or () if d.action is not AuditAction.ESCALATE]
        return LinkPage(
            state=LinkState.FINISHED, **base, lines=[_ended(view, final[-1] if final else None)]
        )
    if verdict is Verdict.STALE:
        if link["tier"] != view.tier:
            line = (
                "This request was escalated to other approvers because nobody answered in time, "
                "so this link no longer decides it."
            )
        else:
            line = (
                "This request changed after this email was sent, so this link no longer decides it."
            )
        return LinkPage(state=LinkState.SUPERSEDED, **base, lines=[line])
    if verdict is Verdict.ALREADY_VOTED and decision is not None:
        return LinkPage(
            state=LinkState.USED,
            **base,
            lines=[
                f"You already {past(decision.action)} at {PAGE.time(decision.decided_at)}; "
                "the request is waiting for other approvers."
            ],
        )
    return None


def _ended(view: TaskView, final: AuditEntry | None) -> str:
    if final is None:
        return f"This request is already {view.status.value}."
    return ended(final.action, final.via, final.by, final.at, PAGE)


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
    the form again when the submission itself was wrong (nothing is decided then).

    The link row is read once; whether the link still decides is `decide()`'s to say."""
    link_id = signer.link_id(token)
    if link_id is None:
        return _NOT_VALID, None
    link = await _link(pool, link_id)
    if link is None:
        return _UNKNOWN, None
    error = _form_error(signer, link_id, link, form, client)
    if error is not None or link["used_at"] is not None:
        # Shown on the page as it stands (which may say the link no longer decides).
        page = await _opened(pool, link_id, link)
        return page, error if page.state is LinkState.READY else None
    result = await decisions.decide(
        pool,
        task_id=link["task_id"],
        actor=_actor(link),
        outcome=Outcome(form["decision"]),
        via=Channel.EMAIL_LINK,
        reason=form.get("reason") or None,
        client=client,
        content_hash=link["content_hash"],
        tier=link["tier"],
        metrics=metrics,
    )
    return await _after(pool, link_id, link, result), None


def _form_error(
    signer: LinkSigner,
    link_id: int,
    link: dict[str, Any],
    form: dict[str, str],
    client: dict[str, Any],
) -> str | None:
    """What is wrong with the submission itself (None when nothing is)."""
    sent = [*form.values(), *(v for v in client.values() if isinstance(v, str))]
    if any(unfit_text(value) for value in sent):
        # A NUL or invalid Unicode in the reason or the browser's headers: PostgreSQL could
        # not store the audit row, so nothing is decided.
        return "The form holds characters that cannot be recorded. Please type it again."
    if not signer.nonce_ok(link_id, form.get("nonce", "")):
        return "This page is out of date. Please review the request and press the button again."
    decision = form.get("decision")
    if decision not in ("approve", "deny"):
        return "Choose Approve or Deny."
    if decision == Outcome.APPROVE and link["reversibility"] == "irreversible":
        typed = form.get("confirm_word", "").strip().lower()
        if typed != signer.confirm_word(link_id):
            return "Type the confirmation word exactly as shown to approve."
    return None


async def _after(
    pool: asyncpg.Pool, link_id: int, link: dict[str, Any], result: DecisionResult
) -> LinkPage:
    async with pool.acquire() as conn:
        if result.changed:
            await mail.mark_link_used(conn, link_id)
        view = await tasks.task_view(conn, result.task.id)
    assert view is not None
    refused = _refused(link_id, link, view, result.verdict, result.decision)
    if refused is not None:
        return refused
    base = _base(link_id, link, view)
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
