"""What a revoked Slack installation means for the work of its workspace.

Registered as a revocation hook of `SlackTeams` (distributed mode), so it runs in the same
transaction that marks the installation revoked and queues `slack.uninstalled`, whichever
signal said so (`app_uninstalled`, `tokens_revoked`, or a call answered `invalid_auth`,
`account_inactive` or `token_revoked`):

* the workspace's queued Slack work is given up at once: its pending Slack outbox items are
  dead-lettered (not retried) and its queued Slack deliveries marked failed, each with why;
* its pending approvals are delivered by email to every approver of the current tier who has
  an address (given, or the profile email the team's user cache holds for a Slack approver)
  and has not been mailed that request yet — even where the request asked for Slack only,
  since Slack has failed as a channel.

A new install link for the workspace restores Slack delivery for new work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from bot.mail.delivery import REQUEST
from bot.outbox.deliveries import NEW_MESSAGE, queue_planned
from bot.slack.delivery import SLACK_KINDS
from bot.slack.teams import SlackBinding
from store import deliveries
from store import slack as store

__all__ = ["RevokedTeamWork"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RevokedTeamWork:
    """The revocation hook: give up the team's Slack work, mail its pending approvals."""

    mail: bool  # whether this service sends mail at all

    async def __call__(self, conn: asyncpg.Connection, bound: SlackBinding) -> None:
        reason = bound.revoked_reason or "revoked"
        error = f"slack: the installation in team {bound.team_id} was revoked ({reason})"
        given_up = await store.give_up_team_work(
            conn, list(SLACK_KINDS), bound.workspace, bound.team_id, error
        )
        mailed = await self._mail_pending(conn, bound) if self.mail else 0
        log.warning(
            "Slack work of a revoked team given up",
            extra={
                "event": "slack.work_given_up",
                "workspace": bound.workspace,
                "team_id": bound.team_id,
                "reason": reason,
                "items": given_up,
                "mailed": mailed,
            },
        )

    async def _mail_pending(self, conn: asyncpg.Connection, bound: SlackBinding) -> int:
        pending = await store.pending_tiers(conn, bound.workspace, bound.team_id)
        wanted = [
            deliveries.Planned(task_id=task_id, tier=tier, purpose=NEW_MESSAGE["created"])
            for task_id, tier in pending
        ]
        # Planned once per approver, tier and purpose: whoever was mailed already is skipped.
        planned = await deliveries.plan(conn, wanted, channel="email")
        await queue_planned(conn, REQUEST, planned, channel="mail", origin="slack-revoked")
        return len(planned)
