"""The task view record, without a database: what `from_row` reads into typed fields, and
that `as_json()` writes the API's JSON back exactly (values and order)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.domain import (
    Actor,
    AlertKind,
    AuditAction,
    Channel,
    ConnectionState,
    DeliveryStatus,
    Resolution,
    Reversibility,
    SpendStage,
    TaskStatus,
    ThroughputState,
    TimeoutPolicy,
)
from bot.task_view import AuditEntry, DeliveryEntry, EscalationTier, TaskView
from tests.task_views import AT, TASK_ID, view_row

CFO = {"email": "cfo@acme.test", "slack_user_id": "U0CFO", "slack_team_id": "T01"}
SLACK_DELIVERY = {
    "channel": "slack",
    "purpose": "request",
    "tier": 0,
    "status": "sent",
    "slack_team_id": "T01",
    "slack_channel": "D0DANA",
    "slack_ts": "1712345678.000100",
    "at": "2025-03-04T13:02:01.500000Z",
}
FAILED_MAIL = {
    "channel": "email",
    "purpose": "reminder",
    "tier": 1,
    "status": "failed",
    "last_error": "recipient refused: 550",
    "mail_to": "cfo@acme.test",
    "at": "2025-03-04T13:30:00Z",
}


def _same(row: dict[str, Any]) -> TaskView:
    view = TaskView.from_row(row)
    assert json.dumps(view.as_json()) == json.dumps(row)
    return view


def test_an_approved_task_reads_into_typed_fields() -> None:
    view = TaskView.from_row(view_row())
    assert view == TaskView(
        id=TASK_ID,
        workspace="acme",
        run_id="run_1",
        workflow={"id": "wf", "name": "Refunds"},
        step=None,
        summary="Refund <b>$40</b>",
        details={},
        reversibility=Reversibility.RECOVERABLE,
        approvers=(Actor(email="dana@acme.test", slack_user_id="U0DANA"),),
        required_approvals=1,
        requested_by=None,
        allow_self_approval=False,
        timeout_policy=TimeoutPolicy.DENY,
        escalation=(),
        remind_before=None,
        deliver={},
        status=TaskStatus.APPROVED,
        resolution=Resolution.PROCEED,
        tier=0,
        expires_at=AT,
        created_at=datetime(2025, 3, 4, 13, 2, 0, 123456, tzinfo=UTC),
        finished_at=AT,
        decisions=(
            AuditEntry(
                id=1,
                tier=0,
                action=AuditAction.APPROVE,
                via=Channel.EMAIL_REPLY,
                by=Actor(email="dana@acme.test", slack_user_id="U0DANA"),
                reason=None,
                client={},
                at=AT,
            ),
        ),
        deliveries=(),
    )
    assert view.as_json() == view_row()


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="approved"),
        pytest.param(
            {
                "status": "pending",
                "resolution": None,
                "finished_at": None,
                "step": "Issue refund",
                "details": {"amount": "4000.00", "lines": 3, "note": None},
                "requested_by": {"email": "ops@acme.test", "slack_team_id": "T01"},
                "required_approvals": 2,
                "timeout_policy": "escalate",
                "remind_before": 300,
                "deliver": {"slack": True, "email": False, "slack_channel": None},
                "escalation": [
                    {"approvers": [CFO], "expires_in": 600},
                    {"approvers": [{"slack_user_id": "U0CEO"}], "expires_in": None},
                ],
                "decisions": [],
                "deliveries": [SLACK_DELIVERY, FAILED_MAIL],
            },
            id="pending with tiers and deliveries",
        ),
        pytest.param(
            {
                "status": "pending",
                "resolution": None,
                "finished_at": None,
                "tier": 1,
                "escalation": [{"approvers": [CFO], "expires_in": 600}],
                "decisions": [
                    {
                        "id": 7,
                        "tier": 0,
                        "action": "escalate",
                        "via": "timeout",
                        "by": None,
                        "reason": None,
                        "client": {},
                        "at": "2025-03-04T14:02:00.000001Z",
                    }
                ],
            },
            id="escalated",
        ),
        pytest.param(
            {
                "status": "cancelled",
                "resolution": "deny",
                "reversibility": "irreversible",
                "decisions": [
                    {
                        "id": 9,
                        "tier": 0,
                        "action": "cancel",
                        "via": "api",
                        "by": None,
                        "reason": "run cancelled",
                        "client": {},
                        "at": "2025-03-04T14:02:00Z",
                    }
                ],
            },
            id="cancelled",
        ),
        pytest.param(
            {
                "status": "denied",
                "resolution": "deny",
                "decisions": [
                    {
                        "id": 3,
                        "tier": 0,
                        "action": "deny",
                        "via": "slack",
                        "by": CFO,
                        "reason": "<not now>",
                        "client": {"ip": "192.0.2.7"},
                        "at": "2025-03-04T14:02:00Z",
                    }
                ],
            },
            id="denied",
        ),
    ],
)
def test_as_json_gives_back_the_row_exactly(changes: dict[str, Any]) -> None:
    _same(view_row(**changes))


def test_a_listing_item_has_no_audit_or_deliveries_and_keeps_them_out() -> None:
    row = view_row()
    del row["decisions"], row["deliveries"]
    view = _same(row)
    assert view.decisions is None and view.deliveries is None
    assert list(view.as_json())[-1] == "finished_at"


def test_people_and_deliveries_leave_out_what_they_do_not_have() -> None:
    view = TaskView.from_row(
        view_row(
            approvers=[{"email": "dana@acme.test"}, {"slack_user_id": "U0LEE"}],
            requested_by={"email": "ops@acme.test", "slack_team_id": "T01", "slack_user_id": "U0"},
            deliveries=[FAILED_MAIL],
        )
    )
    assert view.approvers == (Actor(email="dana@acme.test"), Actor(slack_user_id="U0LEE"))
    shown = view.as_json()
    assert shown["approvers"] == [{"email": "dana@acme.test"}, {"slack_user_id": "U0LEE"}]
    # The requester is stored as jsonb, which keeps the shorter key first.
    assert list(shown["requested_by"]) == ["email", "slack_team_id", "slack_user_id"]
    assert view.deliveries == (
        DeliveryEntry(
            channel="email",
            purpose="reminder",
            tier=1,
            status=DeliveryStatus.FAILED,
            last_error="recipient refused: 550",
            mail_to="cfo@acme.test",
            at=datetime(2025, 3, 4, 13, 30, tzinfo=UTC),
        ),
    )
    assert shown["deliveries"] == [FAILED_MAIL]


def test_tiers_votes_and_known_slack_users() -> None:
    view = TaskView.from_row(
        view_row(
            status="pending",
            tier=1,
            escalation=[{"approvers": [CFO], "expires_in": 600}],
            decisions=[
                {**view_row()["decisions"][0], "by": {"email": "dana@acme.test"}},
                {**view_row()["decisions"][0], "id": 2, "tier": 1, "by": CFO},
            ],
        )
    )
    assert view.escalation == (EscalationTier(approvers=(Actor(**CFO),), expires_in=600),)
    assert view.tier_approvers(1) == (Actor(**CFO),)
    assert view.tier_approvers(2) == ()
    assert view.approvals_at(0) == [Actor(email="dana@acme.test")]
    assert view.approvals_at(1) == [Actor(**CFO)]
    known = view.with_slack_users({"dana@acme.test": "U0DANA", "cfo@acme.test": "U0OTHER"})
    assert known.approvals_at(0) == [Actor(email="dana@acme.test", slack_user_id="U0DANA")]
    assert known.approvals_at(1) == [Actor(**CFO)]  # a known Slack user is kept
    assert view.approvals_at(0) == [Actor(email="dana@acme.test")]  # the record is unchanged


def test_alert_stages_and_states_are_the_contract_words() -> None:
    assert [s.value for s in SpendStage] == ["soft", "hard", "cleared"]
    assert [s.value for s in ConnectionState] == ["error", "active"]
    assert [s.value for s in ThroughputState] == ["tripped", "cleared"]
    assert [k.value for k in AlertKind] == [
        "spend.soft",
        "spend.hard",
        "connection",
        "connection.summary",
        "throughput",
    ]
