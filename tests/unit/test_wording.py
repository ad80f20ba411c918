"""The bot's words, written once: outcomes, channels and badges in each channel's style.

Pure functions, no database: each test pins the exact words a person reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from bot import wording
from bot.decisions import DecisionResult, Verdict
from bot.domain import (
    Actor,
    ApprovalTask,
    Channel,
    Decision,
    Resolution,
    Reversibility,
    TaskStatus,
    TimeoutPolicy,
)
from bot.mail.compose import MailComposer
from bot.slack.blocks import approval_message
from bot.task_view import TaskView
from bot.wording import PAGE, PLAIN, SLACK
from tests.task_views import task_view

AT = datetime(2025, 3, 4, 14, 2, tzinfo=UTC)
STAMP = int(AT.timestamp())
DANA = {"email": "dana@acme.test", "slack_user_id": "U0DANA"}
TASK_ID = UUID("00000000-0000-4000-8000-000000000001")


def test_every_channel_has_one_name() -> None:
    assert {c.value: wording.channel(c) for c in Channel} == {
        "slack": "Slack",
        "email_link": "email link",
        "email_reply": "email reply",
        "timeout": "the timeout policy",
        "api": "the platform",
    }


def test_badges_in_each_style() -> None:
    assert [wording.badge(r, SLACK) for r in Reversibility] == [
        "🟢 *Safe* — no lasting effect",
        "🟡 *Recoverable* — this action can be undone",
        "🔴 *Irreversible* — this action cannot be undone",
    ]
    assert [wording.badge(r, PLAIN) for r in Reversibility] == [
        "Safe: no lasting effect.",
        "Recoverable: this action can be undone.",
        "Irreversible: this action cannot be undone.",
    ]
    # Pages and templates read the plain words; Jinja's autoescape makes them HTML.
    assert wording.badge("irreversible", PAGE) == wording.badge("irreversible", PLAIN)


def test_outcome_labels_and_past_tense() -> None:
    actions = ["approve", "deny", "cancel", "expire", "proceed"]
    assert [wording.outcome_label(a, PLAIN) for a in actions] == [
        "Approved",
        "Denied",
        "Cancelled",
        "Expired — denied by the timeout policy",
        "Expired — allowed to proceed by the timeout policy",
    ]
    assert wording.outcome_label("approve", SLACK) == "✅ *Approved*"
    assert [wording.past(a) for a in [*actions, "escalate"]] == [
        "approved",
        "denied",
        "cancelled",
        "expired",
        "expired",
        "escalated",
    ]


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        (PLAIN, "Already approved by dana@acme.test via email link at 2025-03-04 14:02 UTC."),
        (SLACK, f"Already approved by <@U0DANA> via email link at <!date^{STAMP}^{{time}}|"),
    ],
)
def test_already_decided(style: wording.Style, expected: str) -> None:
    assert wording.ended("approve", "email_link", DANA, AT, style).startswith(expected)


def test_endings_by_the_timeout_policy_and_cancellation() -> None:
    assert wording.ended("expire", "timeout", None, AT, PLAIN) == (
        "This request already expired at 2025-03-04 14:02 UTC and was denied by its timeout policy."
    )
    assert wording.ended("proceed", "timeout", None, AT, PLAIN).endswith(
        "was allowed to proceed by its timeout policy."
    )
    assert wording.ended("cancel", "api", None, AT, PLAIN) == (
        "This request was cancelled at 2025-03-04 14:02 UTC: the run was cancelled."
    )


def test_recorded_decisions() -> None:
    assert wording.link_recorded("approved") == "Approved. The workflow will continue."
    assert wording.link_recorded("denied") == "Denied. The step will not run."
    assert wording.reply_recorded("approved") == (
        "Approved: your reply was recorded and the workflow will continue."
    )
    assert wording.reply_recorded("denied") == (
        "Denied: your reply was recorded and the step will not run."
    )
    assert wording.votes_recorded(2) == "Your approval is recorded. 2 more approval(s) needed."


def test_requester_is_the_platform_when_nobody_is_named() -> None:
    assert wording.requester(None, PLAIN) == "the platform"
    assert wording.requester({"email": None, "slack_user_id": None}, SLACK) == "the platform"
    assert wording.requester({"email": "a<b@acme.test"}, SLACK) == "a&lt;b@acme.test"
    assert wording.requester({"email": "a<b@acme.test"}, PLAIN) == "a<b@acme.test"


def test_slack_escapes_what_a_person_wrote_and_plain_does_not() -> None:
    assert wording.mrkdwn("<!channel> & co") == "&lt;!channel&gt; &amp; co"
    assert wording.person({"email": "<@U1>"}) == "&lt;@U1&gt;"
    assert wording.mrkdwn("é<" * 10, 12).endswith("…") and len(wording.mrkdwn("é<" * 10, 12)) <= 12


def _view(**changes: Any) -> TaskView:
    return task_view(**changes)


def test_outcome_line_in_each_style() -> None:
    view = _view()
    assert wording.outcome_line(view, SLACK) == (
        f"✅ *Approved* by <@U0DANA> via email reply · <!date^{STAMP}^"
        "{date_short_pretty} at {time}|2025-03-04 14:02 UTC>"
    )
    assert wording.outcome_line(view, PLAIN) == (
        "Approved by dana@acme.test via email reply · 2025-03-04 14:02 UTC"
    )
    denied = _view(
        status="denied",
        decisions=[{**view.as_json()["decisions"][0], "action": "deny", "reason": "<not now>"}],
    )
    assert wording.outcome_line(denied, SLACK).endswith("\n>&lt;not now&gt;")
    assert wording.outcome_line(denied, PLAIN).endswith("\nReason: <not now>")
    assert wording.outcome_line(_view(status="pending", decisions=[])) == ""


def test_the_slack_message_and_the_mail_read_the_same_badge() -> None:
    _, blocks = approval_message(
        _view(status="pending", decisions=[]), tier=0, app_url="x", content_hash="h"
    )
    contexts = [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]
    assert wording.badge("recoverable", SLACK) in contexts
    assert "Requested by the platform" in contexts
    mail = MailComposer(mail_from="bot@acme.test", app_url="x", reply_domain=None).request(
        _view(status="pending", decisions=[]),
        kind="request",
        to="dana@acme.test",
        message_id="<m@acme.test>",
        approve_url="a",
        deny_url="d",
        reply_token=None,
    )
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    assert wording.badge("recoverable", PLAIN) in text.get_content()
    assert "<strong>Recoverable</strong> — this action can be undone." in html.get_content()
    assert "Refund &lt;b&gt;$40&lt;/b&gt;" in html.get_content()


def _result(verdict: Verdict, action: str = "approve", **changes: Any) -> DecisionResult:
    task = ApprovalTask(
        id=TASK_ID,
        workspace="acme",
        run_id="run_1",
        summary="s",
        reversibility=Reversibility.SAFE,
        status=TaskStatus.APPROVED,
        resolution=Resolution.PROCEED,
        timeout_policy=TimeoutPolicy.DENY,
        required_approvals=2,
        allow_self_approval=False,
        requested_by=None,
        tier=0,
        tier_count=1,
        expires_at=AT,
        content_hash="h",
    )
    decision = Decision(
        id=1,
        task_id=TASK_ID,
        tier=0,
        action=action,
        via=Channel.SLACK,
        actor=Actor(email="dana@acme.test", slack_user_id="U0DANA"),
        reason=None,
        decided_at=AT,
    )
    return DecisionResult(verdict=verdict, task=task, decision=decision, **changes)


def test_explanations() -> None:
    view = _view(required_approvals=2)
    assert wording.explain(None, view) == (
        "This button is no longer valid: the request could not be found."
    )
    assert wording.explain(_result(Verdict.ALREADY_FINISHED), view, PLAIN) == (
        "Already approved by dana@acme.test via Slack at 2025-03-04 14:02 UTC."
    )
    assert wording.explain(_result(Verdict.ALREADY_VOTED, approvals=1), view, PLAIN) == (
        "You already approved this request at 2025-03-04 14:02 UTC; it is waiting for "
        "1 more approval(s)."
    )
    assert wording.explain(_result(Verdict.NOT_APPROVER), view, SLACK) == (
        "Only the approvers of this request can decide it: <@U0DANA>."
    )
    assert wording.explain(_result(Verdict.SELF_APPROVAL), view) == (
        "You asked for this approval, so you cannot approve it yourself."
    )
