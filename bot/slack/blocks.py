"""Block Kit for approval messages, the deny modal and ephemeral answers: pure functions.

Every string from the platform or a user passes `mrkdwn()` (or goes into plain_text), and
every field is cut to Slack's limits before it is built, so Slack never rejects a message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.domain import Actor, Reversibility, TaskStatus
from bot.task_view import TaskView
from bot.wording import SLACK, badge, mrkdwn, outcome_line, person, requester, slack_date

__all__ = [
    "APPROVE_ACTION",
    "DENY_ACTION",
    "DENY_MODAL",
    "approval_message",
    "button_value",
    "cut",
    "deny_modal",
    "mrkdwn",
    "outcome_line",
    "parse_button_value",
    "person",
    "slack_date",
]

APPROVE_ACTION = "taskjuice_approve"
DENY_ACTION = "taskjuice_deny"
INBOX_ACTION = "taskjuice_open_inbox"
DENY_MODAL = "taskjuice_deny_reason"


def cut(text: str, limit: int) -> str:
    """At most `limit` characters, ending in an ellipsis when shortened."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def button_value(task: TaskView, content_hash: str) -> str:
    """What a button carries: the task, the tier and the content it was shown for."""
    return json.dumps({"t": str(task.id), "r": task.tier, "h": content_hash}, separators=(",", ":"))


def parse_button_value(raw: str) -> tuple[str, int, str] | None:
    """(task id, tier, content hash) from a button value, or None if it is not ours."""
    try:
        value = json.loads(raw)
        return str(value["t"]), int(value["r"]), str(value["h"])
    except (ValueError, KeyError, TypeError):
        return None


def _text(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _context(*parts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_text(p) for p in parts[:10]]}


def _facts(task: TaskView) -> str:
    workflow = task.workflow or {}
    facts = [f"*Workflow:* {mrkdwn(workflow.get('name', ''), 500)}"]
    if task.step:
        facts.append(f"*Step:* {mrkdwn(task.step, 500)}")
    facts.append(f"*Run:* `{mrkdwn(task.run_id, 200)}`")
    return "  ·  ".join(facts)


def _detail_fields(details: dict[str, Any]) -> list[dict[str, Any]]:
    items = list(details.items())
    shown = items if len(items) <= 10 else items[:9]
    fields = [_text(f"*{mrkdwn(k, 200)}*\n{mrkdwn(v, 1700)}") for k, v in shown]
    if len(items) > 10:
        fields.append(_text(f"_…and {len(items) - 9} more in the Approvals inbox_"))
    return fields


def _names(people: Sequence[Actor]) -> str:
    return ", ".join(person(p) for p in people[:20]) or "nobody"


def approval_message(
    task: TaskView,
    *,
    tier: int,
    app_url: str,
    content_hash: str,
    reminder: bool = False,
    mention: Sequence[Actor] | None = None,
    escalated_to: Sequence[Actor] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """(notification text, blocks) of an approval request shown to `tier`, in its current
    state: live buttons only while the task is pending at that tier.

    `mention` names the tier's approvers in a channel post; `escalated_to` the current tier's
    approvers with their Slack users resolved, for a message of an earlier tier."""
    summary = task.summary
    blocks: list[dict[str, Any]] = []
    if reminder:
        blocks.append(_context("⏰ *Reminder:* this request is still waiting for you"))
    blocks.append(
        {
            "type": "header",
            "text": {"type": "plain_text", "text": cut(summary, 150), "emoji": False},
        }
    )
    if mention:
        blocks.append({"type": "section", "text": _text(f"Approval needed from {_names(mention)}")})
    blocks.append({"type": "section", "text": _text(cut(_facts(task), 3000))})
    if task.details:
        blocks.append({"type": "section", "fields": _detail_fields(task.details)})
    blocks.append(
        _context(
            badge(task.reversibility, SLACK),
            f"Requested by {requester(task.requested_by, SLACK)}",
            f"Expires {slack_date(task.expires_at)}",
        )
    )
    inbox = f"{app_url}/{task.workspace}/monitoring/approvals"
    inbox_button = {
        "type": "button",
        "action_id": INBOX_ACTION,
        "url": cut(inbox, 3000),
        "text": {"type": "plain_text", "text": "Approvals inbox"},
    }
    pending_here = task.status is TaskStatus.PENDING and task.tier == tier
    if pending_here:
        required = task.required_approvals
        if required > 1:
            got = task.approvals_at(tier)
            note = f"*{len(got)} of {required}* approvals"
            if got:
                note += " — approved by " + " and ".join(person(p) for p in got)
            blocks.append(_context(note))
        blocks.append(
            {
                "type": "actions",
                "block_id": "taskjuice_decision",
                "elements": [
                    _approve_button(task, content_hash),
                    _deny_button(task, content_hash),
                    inbox_button,
                ],
            }
        )
        text = f"Approval needed: {mrkdwn(summary, 300)}"
    elif task.status is TaskStatus.PENDING and task.tier > tier:
        names = _names(escalated_to or task.tier_approvers(task.tier))
        blocks.append(
            {
                "type": "section",
                "text": _text(f"⤴️ *Escalated* to {names} — nobody answered in time"),
            }
        )
        blocks.append({"type": "actions", "elements": [inbox_button]})
        text = f"Escalated: {mrkdwn(summary, 300)}"
    else:
        line = outcome_line(task) or "This request is no longer waiting for you."
        blocks.append({"type": "section", "text": _text(cut(line, 3000))})
        blocks.append({"type": "actions", "elements": [inbox_button]})
        text = f"{task.status.value.capitalize()}: {mrkdwn(summary, 300)}"
    return text, blocks


def _approve_button(task: TaskView, content_hash: str) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": APPROVE_ACTION,
        "style": "primary",
        "text": {"type": "plain_text", "text": "Approve"},
        "value": button_value(task, content_hash),
    }
    if task.reversibility is Reversibility.IRREVERSIBLE:
        button["confirm"] = {
            "title": {"type": "plain_text", "text": "Approve an irreversible action?"},
            "text": _text(
                cut(
                    "This action cannot be undone once it runs: " + mrkdwn(task.summary, 200),
                    300,
                )
            ),
            "confirm": {"type": "plain_text", "text": "Approve"},
            "deny": {"type": "plain_text", "text": "Cancel"},
            "style": "danger",
        }
    return button


def _deny_button(task: TaskView, content_hash: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": DENY_ACTION,
        "style": "danger",
        "text": {"type": "plain_text", "text": "Deny"},
        "value": button_value(task, content_hash),
    }


def deny_modal(task: TaskView, private_metadata: str) -> dict[str, Any]:
    """The modal that asks for an optional reason before denying."""
    return {
        "type": "modal",
        "callback_id": DENY_MODAL,
        "private_metadata": private_metadata[:3000],
        "title": {"type": "plain_text", "text": "Deny request"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": _text(f"*{mrkdwn(task.summary, 2900)}*")},
            {
                "type": "input",
                "block_id": "reason",
                "optional": True,
                "label": {"type": "plain_text", "text": "Reason (optional)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "reason",
                    "multiline": True,
                    "max_length": 2000,
                },
            },
        ],
    }


def notice_view(title: str, text: str) -> dict[str, Any]:
    """A modal that only explains something (e.g. why a denial did not count)."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": cut(title, 24)},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [{"type": "section", "text": _text(cut(text, 3000))}],
    }
