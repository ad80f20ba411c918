"""App Home and `/taskjuice` answers: the person's pending approvals, and help."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.slack.blocks import approval_message, cut
from bot.task_view import TaskView
from store import slack as slack_store
from store import tasks
from store.database import Connections

__all__ = ["HELP_TEXT", "approvals_blocks", "home_view", "pending_approvals"]

HELP_TEXT = (
    "*TaskJuice approvals*\n"
    "• `/taskjuice approvals` — your pending approvals\n"
    "• `/taskjuice subscribe <workspace>` — send that workspace's alerts (spend cap, "
    "reauthorization, throughput breaker) to this channel\n"
    "• `/taskjuice unsubscribe` — stop sending alerts to this channel\n"
    "• `/taskjuice help` — this message\n"
    "Approval requests arrive as direct messages; decide with their buttons."
)


async def pending_approvals(
    pool: Connections, team_id: str, user_id: str, *, workspaces: Sequence[str] | None = None
) -> tuple[list[TaskView], list[str]]:
    """The person's pending requests (by Slack user, or by their cached email) with the
    content hash each message's buttons carry. `workspaces`, when given, are the only
    workspaces whose requests are listed: those bound to the viewer's Slack team
    (`bot.slack.tenancy.viewer_workspaces`)."""
    views: list[TaskView] = []
    hashes: list[str] = []
    if workspaces is not None and not workspaces:
        return views, hashes
    async with pool.acquire() as conn:
        email = await slack_store.email_of(conn, team_id, user_id)
        for task_id in await slack_store.pending_for(conn, user_id, email, workspaces=workspaces):
            shown = await tasks.shown_view(conn, task_id)
            if shown is not None:
                views.append(shown[0])
                hashes.append(shown[1])
    return views, hashes


def approvals_blocks(
    views: list[TaskView], hashes: list[str], *, app_url: str, limit: int = 45
) -> list[dict[str, Any]]:
    """Each pending request with its buttons, separated by dividers, within `limit` blocks."""
    if not views:
        return [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "🎉 Nothing is waiting for your approval."},
            }
        ]
    blocks: list[dict[str, Any]] = []
    for view, digest in zip(views, hashes, strict=True):
        _, shown = approval_message(view, tier=view.tier, app_url=app_url, content_hash=digest)
        if len(blocks) + len(shown) + 1 > limit:
            blocks.append(
                {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": "_More requests are waiting: see the Approvals inbox._",
                        }
                    ],
                }
            )
            break
        blocks += [*shown, {"type": "divider"}]
    return blocks


def home_view(views: list[TaskView], hashes: list[str], *, app_url: str) -> dict[str, Any]:
    """The App Home tab: the person's pending approvals with working buttons."""
    count = len(views)
    title = (
        "Nothing waiting for you"
        if count == 0
        else ("1 approval waiting for you" if count == 1 else f"{count} approvals waiting for you")
    )
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": cut(title, 150)}},
            *approvals_blocks(views, hashes, app_url=app_url, limit=95),
        ],
    }
