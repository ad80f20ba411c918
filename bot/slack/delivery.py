"""Slack delivery: plans messages for task and alert changes, and sends them from the outbox.

A change queues one outbox item per Slack message to post or update. Items about one message
share an ordering key, so a post always completes before its updates; every post and update
renders the task as it stands when it is sent, so a late update can never show stale state.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain import DeliveryStatus, TaskStatus
from bot.outbox.consequences import TaskChange
from bot.outbox.deliveries import NEW_MESSAGE, give_up, queue
from bot.outbox.dispatcher import GiveUp, RetryLater
from bot.slack.alert_blocks import alert_message
from bot.slack.blocks import approval_message
from bot.slack.egress import SlackBudget
from bot.slack.home import home_view, pending_approvals
from store import alerts as alert_store
from store import deliveries, outbox, tasks
from store import slack as store
from store.database import Connections
from store.deliveries import Delivery
from store.outbox import OutboxItem

__all__ = ["SLACK_KINDS", "SlackChannel", "SlackSender"]

log = logging.getLogger(__name__)

POST, UPDATE, EPHEMERAL, ALERT, HOME = (
    "slack.post",
    "slack.update",
    "slack.ephemeral",
    "slack.alert",
    "slack.home",
)
SLACK_KINDS = (POST, UPDATE, EPHEMERAL, ALERT, HOME)
METADATA_EVENT = "taskjuice_approval"

# Errors that no retry will mend: the delivery is marked failed and the item is done.
_PERMANENT = {
    "users_not_found",
    "user_not_found",
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "account_inactive",
    "cannot_dm_bot",
    "user_is_bot",
    "restricted_action",
    "msg_too_long",
    "invalid_blocks",
    "no_text",
    "message_not_found",
    "cant_update_message",
}
_ENDED = ("approved", "denied", "expired", "cancelled")


def _failure(exc: Exception) -> Exception:
    """The outbox's view of a Slack failure."""
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        error = str(exc.response.get("error", "")) if exc.response.data else ""
        if status == 429:
            retry = exc.response.headers.get("Retry-After", "1")
            return RetryLater("slack ratelimited", delay=float(retry) if retry.isdigit() else 1.0)
        if error in _PERMANENT:
            return GiveUp(f"slack: {error}")
        return RetryLater(f"slack: {error or f'HTTP {status}'}")
    return RetryLater(f"slack unreachable: {type(exc).__name__}")


async def queue_home(conn: asyncpg.Connection, user: str) -> None:
    """Refresh `user`'s App Home once everything this transaction writes is committed."""
    await outbox.enqueue_unless_waiting(conn, HOME, {"user": user}, ordering_key=f"{HOME}:{user}")


@dataclass(slots=True)
class SlackChannel:
    """Turns task and alert changes into Slack outbox items (the channel plugin)."""

    pool: Connections

    async def tasks_changed(
        self, conn: asyncpg.Connection, item: OutboxItem, changes: Sequence[TaskChange]
    ) -> None:
        # Approvers who use the App Home see it change, whichever channel the change came by.
        for user in await store.home_viewers(conn, [change.task_id for change in changes]):
            await queue_home(conn, user)
        wanted: list[deliveries.Planned] = []
        # Tasks whose messages to update, each with the tier they must be below: an escalation
        # updates the earlier tiers' messages and posts the new tier's (so, handled twice, it
        # queues nothing new); other changes update every message.
        updated: dict[UUID, int | None] = {}
        for change in changes:
            state = change.state
            if state is None or not state["deliver"].get("slack", True):
                continue
            if change.event in NEW_MESSAGE and state["status"] == TaskStatus.PENDING:
                wanted.append(
                    deliveries.Planned(
                        task_id=change.task_id,
                        tier=state["tier"],
                        purpose=NEW_MESSAGE[change.event],
                        slack_channel=state["deliver"].get("slack_channel"),
                    )
                )
            if change.event in ("vote", "escalated", *_ENDED):
                escalated = change.event == "escalated" and change.task_id not in updated
                updated[change.task_id] = state["tier"] if escalated else None
        posts = await deliveries.plan(conn, wanted, channel="slack")
        await queue(conn, item, POST, posts, channel="slack")
        if updated:
            shown = await deliveries.deliveries_of(conn, list(updated), "slack")
            await queue(
                conn,
                item,
                UPDATE,
                [
                    (d.id, d.task_id)
                    for d in shown
                    if (below := updated[d.task_id]) is None or d.tier < below
                ],
                channel="slack",
            )

    async def alert_changed(
        self, conn: asyncpg.Connection, item: OutboxItem, alert_id: int, event: str
    ) -> None:
        await outbox.enqueue(
            conn,
            ALERT,
            {"alert_id": alert_id},
            ordering_key=f"slack-alert:{alert_id}",
            message_id=f"{item.message_id}:{ALERT}:{alert_id}",
        )


@dataclass(slots=True, kw_only=True)
class SlackSender:
    """Sends Slack outbox items with the one Web API client of the process."""

    pool: Connections
    client: AsyncWebClient
    app_url: str
    post_interval: float = 1.0
    budget: SlackBudget | None = None  # the shared egress budget (see the hook at _call)
    _team_id: str | None = None
    _next_post: dict[str, float] = field(default_factory=dict)

    def handlers(self) -> dict[str, Any]:
        return {
            POST: self.post,
            UPDATE: self.update,
            EPHEMERAL: self.ephemeral,
            ALERT: self.alert,
            HOME: self.home,
        }

    async def team_id(self) -> str:
        if self._team_id is None:
            try:
                answer = await self.client.auth_test()
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                raise _failure(exc) from exc
            self._team_id = str(answer["team_id"])
        return self._team_id

    def _pace(self, channel: str) -> None:
        """About one message per second per channel; a faster post waits its turn."""
        now = time.monotonic()
        due = self._next_post.get(channel, 0.0)
        if due > now:
            raise RetryLater("pacing the channel", delay=due - now, quiet=True)

        self._next_post[channel] = now + self.post_interval

    async def _call(self, method: str, **kwargs: Any) -> Any:
        team = await self._egress_permit(method, kwargs)
        try:
            return await self.client.api_call(method, json=kwargs)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            await self._egress_refused(team, method, exc)
            raise _failure(exc) from exc

    async def _get(self, method: str, **params: Any) -> Any:
        team = await self._egress_permit(method, params)
        try:
            return await self.client.api_call(method, http_verb="GET", params=params)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            await self._egress_refused(team, method, exc)
            raise _failure(exc) from exc

    # --- egress budget hook (bot/slack/egress.py) -------------------------------------------
    # Every Web API call of the sender passes here: a permit from the team's shared budget
    # before it, and a 429 after it blocks the method for every replica. Both take the team
    # the call is for.

    async def _egress_permit(self, method: str, args: dict[str, Any]) -> str | None:
        if self.budget is None:
            return None
        team = await self.team_id()
        channel = args.get("channel") if method == "chat.postMessage" else None
        await self.budget.permit(team, method, channel=channel)
        return team

    async def _egress_refused(self, team: str | None, method: str, exc: Exception) -> None:
        if self.budget is None or team is None:
            return
        if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
            retry = str(exc.response.headers.get("Retry-After", "1"))
            await self.budget.ratelimited(team, method, float(retry) if retry.isdigit() else 1.0)

    # --- end of the egress budget hook -------------------------------------------------------

    async def user_for(self, email: str) -> str:
        """The Slack user of an email address, cached in the database."""
        team = await self.team_id()
        async with self.pool.acquire() as conn:
            cached = await store.user_of_email(conn, team, email)
        if cached:
            return cached
        answer = await self._get("users.lookupByEmail", email=email)
        user = answer["user"]
        async with self.pool.acquire() as conn:
            await store.cache_user(conn, team, user["id"], email, user.get("tz"))
        return str(user["id"])

    async def _recipient_channel(self, delivery: Delivery) -> str:
        if delivery.slack_channel:
            return delivery.slack_channel
        user = delivery.approver_slack_user_id
        if user is None:
            assert delivery.approver_email is not None
            user = await self.user_for(delivery.approver_email)
        opened = await self._call("conversations.open", users=user)
        return str(opened["channel"]["id"])

    async def _render(
        self, delivery: Delivery
    ) -> tuple[dict[str, Any], str, list[dict[str, Any]]] | None:
        """The task as it stands, and the message showing it to this delivery."""
        async with self.pool.acquire() as conn:
            view = await tasks.task_view(conn, delivery.task_id)
            digest = await tasks.content_hash(conn, delivery.task_id)
            if view is not None:
                await self._known_users(conn, view["decisions"])
        if view is None or digest is None:
            return None
        mention = escalated_to = None
        if delivery.approver_id is None:  # a channel post mentions the tier's approvers
            mention = await self._people(view, delivery.tier)
        if view["status"] == TaskStatus.PENDING and view["tier"] > delivery.tier:
            escalated_to = await self._people(view, view["tier"])
        text, blocks = approval_message(
            view,
            tier=delivery.tier,
            app_url=self.app_url,
            content_hash=digest,
            reminder=delivery.purpose == "reminder",
            mention=mention,
            escalated_to=escalated_to,
        )
        return view, text, blocks

    async def _known_users(self, conn: asyncpg.Connection, audit: list[dict[str, Any]]) -> None:
        """Show deciders known by email as Slack users when the cache knows them (no calls)."""
        team = self._team_id
        for entry in audit:
            who = entry.get("by") or {}
            if team and who.get("email") and not who.get("slack_user_id"):
                user = await store.user_of_email(conn, team, who["email"])
                if user:
                    entry["by"] = who | {"slack_user_id": user}

    async def _people(self, view: dict[str, Any], tier: int) -> list[dict[str, Any]]:

        people = view["approvers"] if tier == 0 else view["escalation"][tier - 1]["approvers"]
        shown = []
        for who in people:
            if not who.get("slack_user_id") and who.get("email"):
                with contextlib.suppress(GiveUp):  # not in this Slack workspace: by email
                    who = who | {"slack_user_id": await self.user_for(who["email"])}
            shown.append(who)
        return shown

    async def _find_posted(self, channel: str, delivery_id: int) -> str | None:
        """After an ambiguous failure: the ts of our earlier post, if Slack has it."""
        history = await self._get(
            "conversations.history", channel=channel, limit=50, include_all_metadata="true"
        )
        for message in history.get("messages", []):
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if (
                meta.get("event_type") == METADATA_EVENT
                and payload.get("delivery_id") == delivery_id
            ):
                return str(message["ts"])
        return None

    async def post(self, item: OutboxItem) -> None:
        async with self.pool.acquire() as conn:
            delivery = await deliveries.delivery(conn, int(item.payload["delivery_id"]))
        if delivery is None or delivery.status is not DeliveryStatus.QUEUED:
            return
        try:
            rendered = await self._render(delivery)
            if rendered is None:
                return
            task, text, blocks = rendered
            if task["status"] != TaskStatus.PENDING or task["tier"] != delivery.tier:
                async with self.pool.acquire() as conn:
                    await deliveries.mark_failed(conn, delivery.id, "request ended before delivery")
                return
            channel = await self._recipient_channel(delivery)
            team = await self.team_id()
            if item.attempts > 1:
                found = await self._find_posted(channel, delivery.id)
                if found is not None:
                    async with self.pool.acquire() as conn:
                        await deliveries.mark_posted(
                            conn, delivery.id, team_id=team, channel=channel, ts=found
                        )
                    return
            self._pace(channel)
            answer = await self._call(
                "chat.postMessage",
                channel=channel,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
                metadata={
                    "event_type": METADATA_EVENT,
                    "event_payload": {"task_id": str(delivery.task_id), "delivery_id": delivery.id},
                },
            )
        except GiveUp as exc:
            await give_up(self.pool, delivery.id, exc.message, channel="slack")
            return
        async with self.pool.acquire() as conn:
            await deliveries.mark_posted(
                conn,
                delivery.id,
                team_id=team,
                channel=str(answer["channel"]),
                ts=str(answer["ts"]),
            )

    async def update(self, item: OutboxItem) -> None:
        async with self.pool.acquire() as conn:
            delivery = await deliveries.delivery(conn, int(item.payload["delivery_id"]))
        if delivery is None or delivery.status is not DeliveryStatus.SENT or not delivery.slack_ts:
            return
        rendered = await self._render(delivery)
        if rendered is None:
            return
        _, text, blocks = rendered
        try:
            await self._call(
                "chat.update",
                channel=delivery.slack_channel,
                ts=delivery.slack_ts,
                text=text,
                blocks=blocks,
            )
        except GiveUp:
            return  # the message was deleted in Slack: nothing left to update

    async def ephemeral(self, item: OutboxItem) -> None:
        payload = item.payload
        try:
            await self._call(
                "chat.postEphemeral",
                channel=payload["channel"],
                user=payload["user"],
                text=payload["text"],
                blocks=payload.get("blocks"),
            )
        except GiveUp:
            return

    async def alert(self, item: OutboxItem) -> None:
        alert_id = int(item.payload["alert_id"])
        async with self.pool.acquire() as conn:
            alert = await alert_store.get(conn, alert_id)
            if alert is None:
                return
            routing = await alert_store.routing(conn, alert["workspace"])
        text, blocks, colour = alert_message(alert, app_url=self.app_url)
        attachments = [{"color": colour, "blocks": blocks, "fallback": text}]
        if alert["slack_ts"]:
            with contextlib.suppress(GiveUp):
                await self._call(
                    "chat.update",
                    channel=alert["slack_channel"],
                    ts=alert["slack_ts"],
                    text=text,
                    attachments=attachments,
                    blocks=[],
                )
            return
        channel = routing.get("slack_channel")
        if not channel:
            return
        team = await self.team_id()
        self._pace(channel)
        try:
            answer = await self._call(
                "chat.postMessage",
                channel=channel,
                text=text,
                attachments=attachments,
                unfurl_links=False,
                unfurl_media=False,
            )
        except GiveUp as exc:
            log.warning(
                "slack alert not delivered",
                extra={"event": "slack.alert_failed", "alert": alert_id, "error": exc.message},
            )
            return
        async with self.pool.acquire() as conn:
            await store.alert_posted(
                conn, alert_id, team_id=team, channel=str(answer["channel"]), ts=str(answer["ts"])
            )

    async def home(self, item: OutboxItem) -> None:
        user = str(item.payload["user"])
        views, hashes = await pending_approvals(self.pool, await self.team_id(), user)
        await self._call(
            "views.publish", user_id=user, view=home_view(views, hashes, app_url=self.app_url)
        )
