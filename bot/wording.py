"""What to tell a person whose decision changed nothing: Slack, mail and web page words."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.decisions import DecisionResult, Verdict
from bot.slack.blocks import person, slack_date

__all__ = ["PLAIN", "SLACK", "Style", "ended", "explain"]


@dataclass(frozen=True, slots=True)
class Style:
    """How a channel names a person and a time."""

    person: Callable[[dict[str, Any] | None], str]
    time: Callable[[datetime], str]


def _plain_person(who: dict[str, Any] | None) -> str:
    if not who:
        return "someone"
    return str(who.get("email") or who.get("slack_user_id") or "someone")


SLACK = Style(person=person, time=lambda at: slack_date(at, "{time}"))
PLAIN = Style(person=_plain_person, time=lambda at: at.strftime("%Y-%m-%d %H:%M UTC"))

_PAST = {
    "approve": "approved",
    "deny": "denied",
    "cancel": "cancelled",
    "expire": "expired",
    "proceed": "expired",
}
_VIA = {
    "slack": "Slack",
    "email_link": "email",
    "email_reply": "email reply",
    "timeout": "the timeout policy",
    "api": "the platform",
}


def ended(action: str, via: str, who: dict[str, Any] | None, at: datetime, style: Style) -> str:
    """How a task ended, from the audit row that ended it."""
    when = style.time(at)
    if action in ("expire", "proceed"):
        outcome = "denied" if action == "expire" else "allowed to proceed"
        return f"This request already expired at {when} and was {outcome} by its timeout policy."
    if action == "cancel":
        return f"This request was cancelled at {when}: the run was cancelled."
    return f"Already {_PAST[action]} by {style.person(who)} via {_VIA[via]} at {when}."


def _tier_people(view: dict[str, Any]) -> list[dict[str, Any]]:
    tier = int(view["tier"])
    people: list[dict[str, Any]] = (
        view["approvers"] if tier == 0 else view["escalation"][tier - 1]["approvers"]
    )
    return people


def explain(
    result: DecisionResult | None, view: dict[str, Any] | None, style: Style = SLACK
) -> str:
    """One or two sentences: what happened already, or why this person cannot decide."""
    if result is None or view is None:
        return "This button is no longer valid: the request could not be found."
    decision = result.decision
    if result.verdict is Verdict.ALREADY_FINISHED:
        if decision is None:
            return f"This request is already {view['status']}."
        who = decision.actor.as_json() if decision.actor else None
        return ended(decision.action, decision.via.value, who, decision.decided_at, style)
    if result.verdict is Verdict.ALREADY_VOTED and decision is not None:
        return (
            f"You already {_PAST.get(decision.action, 'decided')} this request "
            f"at {style.time(decision.decided_at)}; it is waiting for "
            f"{view['required_approvals'] - result.approvals or 'more'} more approval(s)."
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
        if view["tier"] > result.task.tier or view["tier"] > 0:
            names = ", ".join(style.person(p) for p in _tier_people(view))
            return f"This request was escalated to {names}; this message is out of date."
        return "This message is out of date: the request changed. Use the latest message."
    if result.verdict is Verdict.NOT_APPROVER:
        names = ", ".join(style.person(p) for p in _tier_people(view))
        return f"Only the approvers of this request can decide it: {names}."
    return "Nothing was changed."
