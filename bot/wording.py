"""The bot's words, written once: outcomes, channels and reversibility badges, and what to tell
a person whose decision changed nothing. Each in a style per channel.

* `SLACK`: Slack mrkdwn. Every string from the platform or a person passes `mrkdwn()`, the one
  escape helper; people are mentions, times render in each reader's own time zone.
* `PLAIN`: plain text, for mail text parts and answers to replies.
* `PAGE`: the same plain text, for HTML pages and templates. It is never escaped here: Jinja's
  autoescape does that where it is rendered (`html.j2` templates), so nothing is escaped twice.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.decisions import DecisionResult, Verdict
from bot.domain import Actor, AuditAction, Channel, Reversibility
from bot.task_view import TaskView

__all__ = [
    "PAGE",
    "PLAIN",
    "SLACK",
    "Badge",
    "Style",
    "Who",
    "badge",
    "badge_parts",
    "channel",
    "ended",
    "explain",
    "link_recorded",
    "mrkdwn",
    "outcome_label",
    "outcome_line",
    "past",
    "person",
    "reply_recorded",
    "requester",
    "slack_date",
    "votes_recorded",
]


# --- Slack mrkdwn: the one escape helper ---------------------------------------------------


def mrkdwn(text: object, limit: int = 3000) -> str:
    """Escape `&`, `<`, `>` so user text is shown, never parsed, and fit it in `limit`."""
    raw = str(text)
    escaped = html.escape(raw, quote=False)
    while len(escaped) > limit:
        raw = raw[: max(0, len(raw) - (len(escaped) - limit) - 1)]
        escaped = html.escape(raw, quote=False) + "…"
    return escaped


def slack_date(value: str | datetime, fmt: str = "{date_short_pretty} at {time}") -> str:
    """A date Slack renders in each reader's own time zone; UTC text as the fallback."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    fallback = when.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{fmt}|{fallback}>"


Who = Actor | Mapping[str, Any] | None
"""A person as a record, or as the platform's JSON names them (email, slack_user_id)."""


def _names(who: Who) -> tuple[str | None, str | None]:
    """(email, Slack user id) of a person, either maybe absent."""
    if isinstance(who, Actor):
        return who.email, who.slack_user_id
    if not who:
        return None, None
    return who.get("email"), who.get("slack_user_id")


def person(who: Who) -> str:
    """A mention when the Slack user is known, otherwise the escaped email address."""
    email, user = _names(who)
    if user:
        return f"<@{user}>"
    return mrkdwn(email or "someone", 200)


# --- Styles -----------------------------------------------------------------------------------


def _plain_person(who: Who) -> str:
    email, user = _names(who)
    return str(email or user or "someone")


def _utc(at: str | datetime) -> str:
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    return when.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, slots=True)
class Style:
    """How a channel names a person, a time and a label, and marks an outcome."""

    person: Callable[[Who], str]
    time: Callable[[datetime], str]
    strong: Callable[[str], str]
    icons: bool


SLACK = Style(
    person=person,
    time=lambda at: slack_date(at, "{time}"),
    strong=lambda text: f"*{text}*",
    icons=True,
)
PLAIN = Style(person=_plain_person, time=_utc, strong=lambda text: text, icons=False)
PAGE = PLAIN


def requester(who: Who, style: Style) -> str:
    """Who asked for an approval: a person, or the platform when nobody is named."""
    if not any(_names(who)):
        return "the platform"
    return style.person(who)


# --- Channels ---------------------------------------------------------------------------------

_CHANNELS = {
    Channel.SLACK: "Slack",
    Channel.EMAIL_LINK: "email link",
    Channel.EMAIL_REPLY: "email reply",
    Channel.TIMEOUT: "the timeout policy",
    Channel.API: "the platform",
}


def channel(via: str) -> str:
    """A channel as the audit trail names it (`via`), in words: "via {channel(via)}"."""
    return _CHANNELS[Channel(via)]


# --- Outcomes ---------------------------------------------------------------------------------

_PAST: dict[str, str] = {
    AuditAction.APPROVE: "approved",
    AuditAction.DENY: "denied",
    AuditAction.CANCEL: "cancelled",
    AuditAction.EXPIRE: "expired",
    AuditAction.PROCEED: "expired",
    AuditAction.ESCALATE: "escalated",
}
_LABELS: dict[str, tuple[str, str]] = {
    AuditAction.APPROVE: ("✅", "Approved"),
    AuditAction.DENY: ("⛔", "Denied"),
    AuditAction.CANCEL: ("🚫", "Cancelled"),
    AuditAction.EXPIRE: ("⌛", "Expired — denied by the timeout policy"),
    AuditAction.PROCEED: ("⏩", "Expired — allowed to proceed by the timeout policy"),
}
ENDING_ACTIONS = frozenset(_LABELS)
_FOLLOWS = {
    "approved": "the workflow will continue",
    "denied": "the step will not run",
}


def past(action: str) -> str:
    """An audit action in the past tense: approve -> approved."""
    return _PAST.get(action, action)


def outcome_label(action: str, style: Style) -> str:
    """The label of an ending (with its icon where the channel shows icons)."""
    icon, label = _LABELS[action]
    return f"{icon} {style.strong(label)}" if style.icons else label


def outcome_line(view: TaskView, style: Style = SLACK) -> str:
    """One line saying how the task ended: what, who, via which channel, when ("" if it has
    not ended)."""
    ending = [d for d in view.decisions or () if d.action in ENDING_ACTIONS]
    if not ending:
        return ""
    final = ending[-1]
    label = outcome_label(final.action, style)
    when = slack_date(final.at) if style is SLACK else _utc(final.at)
    if final.action is AuditAction.APPROVE:
        who = " and ".join(style.person(p) for p in view.approvals_at(final.tier))
        return f"{label} by {who} via {channel(final.via)} · {when}"
    if final.action is AuditAction.DENY:
        line = f"{label} by {style.person(final.by)} via {channel(final.via)} · {when}"
        if final.reason:
            reason = final.reason
            line += f"\n>{mrkdwn(reason, 1500)}" if style is SLACK else f"\nReason: {reason}"
        return line
    return f"{label} · {when}"


def ended(action: str, via: str, who: Who, at: datetime, style: Style) -> str:
    """How a task ended, from the audit row that ended it."""
    when = style.time(at)
    if action in ("expire", "proceed"):
        outcome = "denied" if action == "expire" else "allowed to proceed"
        return f"This request already expired at {when} and was {outcome} by its timeout policy."
    if action == "cancel":
        return f"This request was cancelled at {when}: the run was cancelled."
    return f"Already {past(action)} by {style.person(who)} via {channel(via)} at {when}."


def link_recorded(status: str) -> str:
    """What a magic-link page says after the decision ended the task."""
    return f"{status.capitalize()}. {_FOLLOWS[status].capitalize()}."


def reply_recorded(status: str) -> str:
    """What the answer to an email reply says after the reply ended the task."""
    return f"{status.capitalize()}: your reply was recorded and {_FOLLOWS[status]}."


def votes_recorded(left: int) -> str:
    """What a person is told when their approval counted and more are needed."""
    return f"Your approval is recorded. {left} more approval(s) needed."


# --- Reversibility badges ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Badge:
    """How bad getting the gated action wrong is, in words."""

    label: str
    effect: str
    icon: str


_BADGES = {
    Reversibility.SAFE: Badge("Safe", "no lasting effect", "🟢"),
    Reversibility.RECOVERABLE: Badge("Recoverable", "this action can be undone", "🟡"),
    Reversibility.IRREVERSIBLE: Badge("Irreversible", "this action cannot be undone", "🔴"),
}


def badge_parts(reversibility: str) -> Badge:
    """The badge's parts, for a template that lays them out itself."""
    return _BADGES[Reversibility(reversibility)]


def badge(reversibility: str, style: Style) -> str:
    """The reversibility badge as one line."""
    b = badge_parts(reversibility)
    if style.icons:
        return f"{b.icon} {style.strong(b.label)} — {b.effect}"
    return f"{b.label}: {b.effect}."


# --- Why a decision changed nothing -------------------------------------------------------------


def explain(result: DecisionResult | None, view: TaskView | None, style: Style = SLACK) -> str:
    """One or two sentences: what happened already, or why this person cannot decide."""
    if result is None or view is None:
        return "This button is no longer valid: the request could not be found."
    decision = result.decision
    if result.verdict is Verdict.ALREADY_FINISHED:
        if decision is None:
            return f"This request is already {view.status.value}."
        who = decision.actor.as_json() if decision.actor else None
        return ended(decision.action, decision.via.value, who, decision.decided_at, style)
    if result.verdict is Verdict.ALREADY_VOTED and decision is not None:
        return (
            f"You already {_PAST.get(decision.action, 'decided')} this request "
            f"at {style.time(decision.decided_at)}; it is waiting for "
            f"{view.required_approvals - result.approvals or 'more'} more approval(s)."
        )
    if result.verdict is Verdict.SELF_APPROVAL:
        return "You asked for this approval, so you cannot approve it yourself."
    if result.verdict is Verdict.UNRESOLVED:
        return (
            "Your approval was not counted: the bot could not confirm that you are not the "
            "requester or an approver who has already voted under another name (email or "
            "Slack), and Slack could not be asked just now. Please try again in a few minutes."
        )
    if result.verdict is Verdict.STALE:
        if view.tier > result.task.tier or view.tier > 0:
            names = ", ".join(style.person(p) for p in view.tier_approvers(view.tier))
            return f"This request was escalated to {names}; this message is out of date."
        return "This message is out of date: the request changed. Use the latest message."
    if result.verdict is Verdict.NOT_APPROVER:
        names = ", ".join(style.person(p) for p in view.tier_approvers(view.tier))
        return f"Only the approvers of this request can decide it: {names}."
    return "Nothing was changed."
