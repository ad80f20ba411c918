"""The task view as `store.tasks` reads it, for tests that need one without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from bot.task_view import TaskView

AT = datetime(2025, 3, 4, 14, 2, tzinfo=UTC)
TASK_ID = UUID("00000000-0000-4000-8000-000000000001")
DANA = {"email": "dana@acme.test", "slack_user_id": "U0DANA"}


def view_row(**changes: Any) -> dict[str, Any]:
    """An approved one-tier task's JSON (Dana approved it by email reply), with `changes`."""
    row: dict[str, Any] = {
        "id": str(TASK_ID),
        "workspace": "acme",
        "run_id": "run_1",
        "workflow": {"id": "wf", "name": "Refunds"},
        "step": None,
        "summary": "Refund <b>$40</b>",
        "details": {},
        "reversibility": "recoverable",
        "approvers": [DANA],
        "required_approvals": 1,
        "requested_by": None,
        "allow_self_approval": False,
        "timeout_policy": "deny",
        "escalation": [],
        "remind_before": None,
        "deliver": {},
        "status": "approved",
        "resolution": "proceed",
        "tier": 0,
        "expires_at": "2025-03-04T14:02:00Z",
        "created_at": "2025-03-04T13:02:00.123456Z",
        "finished_at": "2025-03-04T14:02:00Z",
        "decisions": [
            {
                "id": 1,
                "tier": 0,
                "action": "approve",
                "via": "email_reply",
                "by": DANA,
                "reason": None,
                "client": {},
                "at": "2025-03-04T14:02:00Z",
            }
        ],
        "deliveries": [],
    }
    return row | changes


def task_view(**changes: Any) -> TaskView:
    """`view_row(**changes)` as the record renderers read."""
    return TaskView.from_row(view_row(**changes))
