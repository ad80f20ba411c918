"""Whether a request reached its approvers, and what to do when it did not (docs/contract.md §8).

Run by the sweeper, batch by batch, over the watched tiers whose time to look has come (a
failed delivery makes its tier due at once; otherwise at half of DELIVERY_GRACE and at the
grace's end). For each approver of the tier not yet reached:

* Slack failed for good (not in the team, the team gone), or still not delivered at half the
  grace (erring, answering 429, or held by the shared Slack budget) → the request by email,
  when they have an address (given, or the Slack user cache's);
* email failed for good (refused, bounced), or still not delivered at half the grace (SMTP
  unreachable or answering 4xx) → a Slack DM.

A channel the request turned off is used for this unless `deliver.fallback` is false. Each
fallback is planned through the deliveries' once-per-approver-and-channel rule, so nobody gets
a second copy on a channel, and the copy decides through the one decision path like any other.
When nobody of the tier was reached by the grace's end, or every channel of every approver has
failed for good, the platform is told once (`approval.undeliverable`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.mail.delivery import REQUEST
from bot.outbox.consequences import CALLBACK
from bot.outbox.deliveries import queue_planned
from bot.platform.callbacks import _iso, approval_undeliverable
from bot.runtime.metrics import Metrics
from bot.slack.delivery import POST
from store import deliveries, outbox
from store.database import Connections
from store.deliveries import Watched

__all__ = ["DeliveryWatch", "approver_channels"]

log = logging.getLogger(__name__)

CHANNELS = ("slack", "email")


@dataclass(frozen=True, slots=True)
class ChannelState:
    """One channel's state for one approver: delivered, pending, failed or off."""

    status: str
    error: str | None = None
    at: Any = None


def approver_channels(watched: Watched, approver_id: int) -> dict[str, ChannelState]:
    """Each channel's state for an approver of the tier; a post in a Slack channel shows the
    request to every approver of the tier."""
    states = {}
    for channel in CHANNELS:
        mine = [
            d
            for d in watched.deliveries
            if d["channel"] == channel
            and (
                d["approver_id"] == approver_id or (channel == "slack" and d["approver_id"] is None)
            )
        ]
        sent = [d for d in mine if d["status"] == "sent"]
        queued = [d for d in mine if d["status"] == "queued"]
        if sent:
            states[channel] = ChannelState("delivered", None, sent[0]["sent_at"])
        elif queued:
            last = queued[-1]
            states[channel] = ChannelState("pending", last["last_error"], last["error_at"])
        elif mine:
            last = mine[-1]
            states[channel] = ChannelState("failed", last["last_error"], last["error_at"])
        else:
            states[channel] = ChannelState("off")
    return states


@dataclass(slots=True, kw_only=True)
class DeliveryWatch:
    """Looks at due watched tiers: fails approvers over, announces undeliverable tiers."""

    pool: Connections
    metrics: Metrics
    slack: bool  # whether this service sends Slack messages at all
    mail: bool  # and mail
    batch: int = 250

    async def check_due(self) -> dict[str, int]:
        totals = {"failover_email": 0, "failover_slack": 0, "undeliverable": 0}
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                keys = await deliveries.due_watches(conn, self.batch)
                if not keys:
                    break
                found = await deliveries.watch_facts(conn, keys)
                to_mail: list[tuple[Any, int, int]] = []
                to_slack: list[tuple[Any, int, int]] = []
                settled: list[tuple[Any, int, Any, bool]] = []
                for watched in found:
                    mail, dm, check_at, announce = self._look(watched)
                    to_mail += [(watched.task_id, watched.tier, a) for a in mail]
                    to_slack += [(watched.task_id, watched.tier, a) for a in dm]
                    if announce:
                        body = approval_undeliverable(watched, self._attempts(watched))
                        await outbox.enqueue(
                            conn,
                            CALLBACK,
                            {"body": body},
                            task_id=watched.task_id,
                            ordering_key=f"callback:{watched.task_id}",
                            message_id=f"msg_undeliverable_{watched.task_id.hex}_{watched.tier}",
                        )
                        totals["undeliverable"] += 1
                        self.metrics.undeliverable.inc()
                        log.warning(
                            "request reached nobody",
                            extra={
                                "event": "approval.undeliverable",
                                "task": str(watched.task_id),
                                "tier": watched.tier,
                            },
                        )
                    settled.append((watched.task_id, watched.tier, check_at, announce))
                await deliveries.emails_from_slack_cache(conn, [a for _, _, a in to_mail])
                mailed = await deliveries.plan_for(conn, to_mail, channel="email")
                await queue_planned(conn, REQUEST, mailed, channel="mail", origin="failover")
                posted = await deliveries.plan_for(conn, to_slack, channel="slack")
                await queue_planned(conn, POST, posted, channel="slack", origin="failover")
                await deliveries.settle_watches(conn, settled)
            totals["failover_email"] += len(mailed)
            totals["failover_slack"] += len(posted)
            self.metrics.failovers.labels("email").inc(len(mailed))
            self.metrics.failovers.labels("slack").inc(len(posted))
            if len(keys) < self.batch:
                break
        return totals

    def _look(self, w: Watched) -> tuple[list[int], list[int], Any, bool]:
        """(approvers to mail, approvers to DM, next look or None, announce now)."""
        if w.status != "pending" or w.task_tier != w.tier:
            return [], [], None, False
        fallback = w.deliver.get("fallback", True)
        may_mail = self.mail and (w.deliver.get("email", True) or fallback)
        may_slack = self.slack and (w.deliver.get("slack", True) or fallback)
        transient_over = w.now >= w.failover_at
        mail: list[int] = []
        dm: list[int] = []
        reached = open_ = 0
        for approver_id, (email, _, cached) in w.approvers.items():
            states = approver_channels(w, approver_id)
            if any(s.status == "delivered" for s in states.values()):
                reached += 1
                continue

            def failing(state: ChannelState) -> bool:
                # Still pending at half the grace counts as a transient failure, whatever
                # held it: errors, 429s, or Slack's budget shared by every replica.
                return state.status == "failed" or (state.status == "pending" and transient_over)

            slack, mailed = states["slack"], states["email"]
            if failing(slack) and mailed.status == "off" and may_mail and (email or cached):
                mail.append(approver_id)
            elif failing(mailed) and slack.status == "off" and may_slack:
                dm.append(approver_id)
            elif not any(s.status == "pending" for s in states.values()):
                continue  # every channel of this approver has failed for good
            open_ += 1
        nobody = reached == 0
        announce = (
            nobody
            and w.undeliverable_at is None
            and (w.now >= w.grace_at or (open_ == 0 and not mail and not dm))
        )
        if open_ == 0:
            return mail, dm, None, announce
        step = max(timedelta(seconds=1), (w.grace_at - w.started_at) / 10)
        if w.now < w.failover_at:
            check_at = w.failover_at
        elif nobody and w.undeliverable_at is None and not announce and w.now < w.grace_at:
            check_at = min(w.grace_at, w.now + step)
        else:
            check_at = w.now + step
        return mail, dm, check_at, announce

    def _attempts(self, w: Watched) -> list[dict[str, Any]]:
        """`data.attempts`: each approver's channels, with their last errors."""
        attempts = []
        for approver_id, (email, slack_user, _) in w.approvers.items():
            states = approver_channels(w, approver_id)
            attempts.append(
                {
                    "approver": {"email": email, "slack_user_id": slack_user},
                    "channels": [
                        {
                            "channel": channel,
                            "status": state.status,
                            "error": state.error,
                            "at": _iso(state.at) if state.at else None,
                        }
                        for channel, state in states.items()
                    ],
                }
            )
        return attempts
