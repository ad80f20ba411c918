"""Slack delivery: plans messages for task and alert changes, and sends them from the outbox.

A change queues one outbox item per Slack message to post or update. Items about one message
share an ordering key, so a post always completes before its updates; every post and update
renders the task as it stands when it is sent, so a late update can never show stale state.
At most one update of a message waits at a time, so a burst of votes becomes one `chat.update`
carrying the latest state (`store.slack.queue_updates`). A post whose answer was lost is looked
for in one narrow `conversations.history` read before it is posted again (`_find_lost`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain import Actor, DeliveryStatus, TaskStatus
from bot.outbox.consequences import TaskChange
from bot.outbox.deliveries import NEW_MESSAGE, give_up, queue, retrying
from bot.outbox.dispatcher import GiveUp, RetryLater
from bot.slack.alert_blocks import alert_message
from bot.slack.blocks import approval_message
from bot.slack.egress import Permit, SlackBudget
from bot.slack.home import home_view, pending_approvals
from bot.slack.lookups import Lookups
from bot.slack.teams import SlackTeams, TeamNotInstalled
from bot.slack.tenancy import Member, viewer_workspaces
from bot.task_view import TaskView
from store import alerts as alert_store
from store import deliveries, outbox, tasks
from store import slack as store
from store.database import Connections
from store.deliveries import Delivery
from store.outbox import OutboxItem

__all__ = ["SLACK_KINDS", "SlackChannel", "SlackSender", "Speaker", "queue_home"]

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

# A lost post (contract §7): conversations.history is read at most once a minute per team and
# shows at most 15 messages (Slack's 2025 limits for apps outside the Marketplace), so the
# read asks for a narrow window around the lost attempt, widened by this margin for the
# difference between our clock and Slack's.
HISTORY_LIMIT = 15
LOST_POST_MARGIN = 10.0
# How long after a lost attempt the bot keeps waiting for its history read (the budget allows
# one a minute per team); after that it posts again and accepts a rare duplicate.
LOST_POST_PATIENCE = 150.0


def _answer_lost(exc: BaseException | None) -> bool:
    """Did the request reach Slack with its answer lost (the post may have taken effect)?
    A connection that never opened sent nothing; any answer from Slack is a clear one."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False
    return isinstance(
        exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)
    )


def _failure(exc: Exception) -> Exception:
    """The outbox's view of a Slack failure."""
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        # A 5xx from a proxy carries a plain-text body, not Slack's JSON.
        data = exc.response.data
        error = str(data.get("error", "")) if isinstance(data, dict) else ""
        if status == 429:
            retry = exc.response.headers.get("Retry-After", "1")
            return RetryLater("slack ratelimited", delay=float(retry) if retry.isdigit() else 1.0)
        if error in _PERMANENT:
            return GiveUp(f"slack: {error}")
        return RetryLater(f"slack: {error or f'HTTP {status}'}")
    return RetryLater(f"slack unreachable: {type(exc).__name__}")


async def queue_home(conn: asyncpg.Connection, user: str, team_id: str | None = None) -> None:
    """Refresh `user`'s App Home (in `team_id`, when known) once everything this transaction
    writes is committed."""
    payload = {"user": user} | ({"team_id": team_id} if team_id else {})
    await outbox.enqueue_unless_waiting(conn, HOME, payload, ordering_key=f"{HOME}:{user}")


# How long one chat.postMessage can run at most (the client's timeout, with room): the span a
# lost post is looked for in.
_POST_AT_MOST = timedelta(seconds=15)
# An update whose permit took longer than this renders the task again before it leaves.
_RENDER_AGAIN_AFTER = 0.05


def shown_digest(text: str, blocks: Sequence[dict[str, Any]]) -> str:
    """A digest of what a message shows, to tell an update that would change nothing."""
    body = json.dumps([text, blocks], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


# Errors that say the team's installation is gone: it is revoked (distributed mode).
_REVOKED = {"invalid_auth", "account_inactive", "token_revoked"}
# Methods that, called with an org-wide Enterprise Grid token, must name the team they are for.
_NEEDS_TEAM = {
    "users.lookupByEmail",
    "users.info",
    "conversations.open",
    "conversations.history",
    "chat.postMessage",
    "chat.postEphemeral",
}


@dataclass(frozen=True, slots=True)
class Speaker:
    """The team a Slack call is for, with the client carrying that team's token."""

    team_id: str
    enterprise_id: str | None
    client: AsyncWebClient
    org_wide: bool = False

    def args(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.org_wide and method in _NEEDS_TEAM:
            return kwargs | {"team_id": self.team_id}
        return kwargs


@dataclass(slots=True)
class SlackChannel:
    """Turns task and alert changes into Slack outbox items (the channel plugin)."""

    pool: Connections
    # Distributed mode: a workspace without an active Slack installation gets no Slack work.
    distributed: bool = False
    # An update queued while another of the same message is in flight, or within this many
    # seconds of the last one sent, waits until then: a burst of votes becomes one update.
    update_settle: float = 1.0

    async def tasks_changed(
        self, conn: asyncpg.Connection, item: OutboxItem, changes: Sequence[TaskChange]
    ) -> None:
        # Approvers who use the App Home see it change, whichever channel the change came by.
        for team, user in await store.home_viewers(conn, [change.task_id for change in changes]):
            await queue_home(conn, user, team if self.distributed else None)
        if self.distributed:
            unserved = await store.unserved_tasks(conn, list({c.task_id for c in changes}))
            changes = [change for change in changes if change.task_id not in unserved]
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
            await store.queue_updates(
                conn,
                UPDATE,
                [
                    (d.id, d.task_id)
                    for d in shown
                    if (below := updated[d.task_id]) is None or d.tier < below
                ],
                change_id=item.message_id,
                settle=self.update_settle,
            )

    async def alert_changed(
        self, conn: asyncpg.Connection, item: OutboxItem, alert_id: int, event: str
    ) -> None:
        if self.distributed:
            alert = await alert_store.get(conn, alert_id)
            if alert is None or not await store.workspace_served(conn, alert["workspace"]):
                return
        await outbox.enqueue(
            conn,
            ALERT,
            {"alert_id": alert_id},
            ordering_key=f"slack-alert:{alert_id}",
            message_id=f"{item.message_id}:{ALERT}:{alert_id}",
        )


@dataclass(slots=True, kw_only=True)
class SlackSender:
    """Sends Slack outbox items, each with the token of the team it is for (`SlackTeams`:
    the one client in single-workspace mode, the bound team's in distributed mode)."""

    pool: Connections
    teams: SlackTeams
    app_url: str
    budget: SlackBudget  # the shared egress budget: every call passes it (see `_call`)
    lookups: Lookups = field(init=False)  # one lookup of a person at a time

    def __post_init__(self) -> None:
        self.lookups = Lookups(self.pool)

    def handlers(self) -> dict[str, Any]:
        return {
            POST: self.post,
            UPDATE: self.update,
            EPHEMERAL: self.ephemeral,
            ALERT: self.alert,
            HOME: self.home,
        }

    # --- which team ------------------------------------------------------------------------

    async def speaker(self, team_id: str, enterprise_id: str | None) -> Speaker:
        """The team's client (its rotating token refreshed first when due)."""
        try:
            client, org_wide = await self.teams.client_of(team_id, enterprise_id)
        except TeamNotInstalled as exc:
            raise GiveUp(f"slack: the app is not installed in team {team_id}") from exc
        return Speaker(team_id, enterprise_id, client, org_wide)

    async def speaker_of_workspace(self, workspace: str) -> Speaker:
        """The team bound to `workspace`; GiveUp when it has none (distributed mode)."""
        try:
            team = await self.teams.team_of_workspace(workspace)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            raise _failure(exc) from exc
        if team is None:
            raise GiveUp(f"slack: workspace {workspace} has no connected Slack team")
        return await self.speaker(*team)

    async def speaker_of_user(self, user: str, payload: dict[str, Any]) -> Speaker:
        """The team of work queued for a Slack user: named in the payload, else the one team
        (single-workspace mode), else the team the bot last met the user in."""
        team = payload.get("team_id")
        if not self.teams.distributed:
            return await self.speaker_of_workspace("")
        found: tuple[str, str | None] | None
        async with self.pool.acquire() as conn:
            if team:
                enterprise = payload.get("enterprise_id")
                if enterprise is None:
                    enterprise = await store.enterprise_of_team(conn, str(team))
                found = (str(team), enterprise)
            else:
                found = await store.team_of_user(conn, user)
        if found is None:
            raise GiveUp(f"slack: no team known for user {user}")
        return await self.speaker(*found)

    # --- calls -----------------------------------------------------------------------------

    async def _call(self, speaker: Speaker, method: str, **kwargs: Any) -> Any:
        permits = await self._egress_permit(speaker, method, kwargs)
        return await self._send(speaker, method, kwargs, permits)

    async def _get(self, speaker: Speaker, method: str, **params: Any) -> Any:
        permits = await self._egress_permit(speaker, method, params)
        return await self._send(speaker, method, params, permits, http_verb="GET")

    async def _send(
        self,
        speaker: Speaker,
        method: str,
        args: dict[str, Any],
        permits: Sequence[Permit],
        *,
        http_verb: str = "POST",
    ) -> Any:
        """The call, its permits already taken; whatever Slack answers, it has received the
        call, and the permits count until now (bot/slack/egress.py)."""
        args = speaker.args(method, args)
        try:
            if http_verb == "GET":
                answer = await speaker.client.api_call(method, http_verb="GET", params=args)
            else:
                answer = await speaker.client.api_call(method, json=args)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            if isinstance(exc, SlackApiError):
                self.budget.answered(permits)
            await self._egress_refused(speaker, method, exc)
            await self._revoked(speaker, exc)
            raise _failure(exc) from exc
        self.budget.answered(permits)
        return answer

    async def _revoked(self, speaker: Speaker, exc: Exception) -> None:
        """Distributed mode: a call answered `invalid_auth`, `account_inactive` or
        `token_revoked` revokes the team's installation (its queued Slack work is given up
        by the revocation hooks) and gives this item up."""
        if not self.teams.distributed or not isinstance(exc, SlackApiError):
            return
        error = str(exc.response.get("error", "")) if exc.response.data else ""
        if error not in _REVOKED:
            return
        await self.teams.revoke(speaker.team_id, speaker.enterprise_id, "invalid_auth")
        raise GiveUp(f"slack: {error}; the team's installation is revoked") from exc

    # Every Web API call of the sender passes the shared egress budget (bot/slack/egress.py):
    # a permit from the team's budget before it, and a 429 after it blocks the method in that
    # team for every replica.

    async def _egress_permit(
        self, speaker: Speaker, method: str, args: dict[str, Any]
    ) -> tuple[Permit, ...]:
        channel = args.get("channel") if method == "chat.postMessage" else None
        return await self.budget.permit(speaker.team_id, method, channel=channel)

    async def _egress_refused(self, speaker: Speaker, method: str, exc: Exception) -> None:
        if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
            retry = str(exc.response.headers.get("Retry-After", "1"))
            delay = float(retry) if retry.isascii() and retry.isdigit() else 1.0
            await self.budget.ratelimited(speaker.team_id, method, delay)

    async def user_for(self, speaker: Speaker, email: str) -> str:
        """The Slack user of an email address in the speaker's team, cached in the database."""
        async with self.pool.acquire() as conn:
            cached = await store.user_of_email(conn, speaker.team_id, email)
        if cached:
            return cached
        async with self.lookups.one(speaker.team_id, f"email:{email.lower()}"):
            async with self.pool.acquire() as conn:  # the claim's last holder may have cached it
                cached = await store.user_of_email(conn, speaker.team_id, email)
            if cached:
                return cached
            answer = await self._get(speaker, "users.lookupByEmail", email=email)
            user = answer["user"]
            async with self.pool.acquire() as conn:
                await store.cache_user(conn, speaker.team_id, user["id"], email, user.get("tz"))
        return str(user["id"])

    async def _recipient_channel(self, speaker: Speaker, delivery: Delivery) -> str:
        if delivery.slack_channel:
            return delivery.slack_channel
        user = delivery.approver_slack_user_id
        if user is None:
            assert delivery.approver_email is not None
            user = await self.user_for(speaker, delivery.approver_email)
        async with self.pool.acquire() as conn:
            known = await store.dm_channel_of(conn, speaker.team_id, user)
        if known:
            return known
        async with self.lookups.one(speaker.team_id, f"dm:{user}"):
            async with self.pool.acquire() as conn:
                known = await store.dm_channel_of(conn, speaker.team_id, user)
            if known:
                return known
            opened = await self._call(speaker, "conversations.open", users=user)
            channel = str(opened["channel"]["id"])
            async with self.pool.acquire() as conn:
                await store.remember_dm_channel(conn, speaker.team_id, user, channel)
        return channel

    async def _render(
        self, speaker: Speaker, delivery: Delivery
    ) -> tuple[TaskView, str, list[dict[str, Any]]] | None:
        """The task as it stands, and the message showing it to this delivery."""
        async with self.pool.acquire() as conn:
            shown = await tasks.shown_view(conn, delivery.task_id)
            if shown is None:
                return None
            view = await self._known_users(conn, speaker.team_id, shown[0])
        digest = shown[1]
        mention = escalated_to = None
        if delivery.approver_id is None:  # a channel post mentions the tier's approvers
            mention = await self._people(speaker, view, delivery.tier)
        if view.status is TaskStatus.PENDING and view.tier > delivery.tier:
            escalated_to = await self._people(speaker, view, view.tier)
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

    async def _known_users(self, conn: asyncpg.Connection, team: str, view: TaskView) -> TaskView:
        """Show deciders known by email as Slack users when the cache knows them (no calls)."""
        known: dict[str, str] = {}
        for entry in view.decisions or ():
            who = entry.by
            if team and who and who.email and not who.slack_user_id:
                user = await store.user_of_email(conn, team, who.email)
                if user:
                    known[who.email] = user
        return view.with_slack_users(known)

    async def _people(self, speaker: Speaker, view: TaskView, tier: int) -> list[Actor]:
        shown = []
        for who in view.tier_approvers(tier):
            if not who.slack_user_id and who.email:
                with contextlib.suppress(GiveUp):  # not in this Slack workspace: by email
                    who = replace(who, slack_user_id=await self.user_for(speaker, who.email))
            shown.append(who)
        return shown

    async def _find_lost(self, speaker: Speaker, channel: str, delivery_id: int) -> str | None:
        """After a post whose answer was lost: the ts of that post, if Slack has it.

        Only on that path (a plain retry of a clear failure reads nothing): one
        `conversations.history` read of at most 15 messages in a narrow window around the lost
        attempts, paced by the team's budget (1 a minute by default); the post is known by its
        metadata. When the window holds more than 15 messages, or the read cannot be made
        within `LOST_POST_PATIENCE`, the bot posts again and accepts a rare duplicate."""
        async with self.pool.acquire() as conn:
            lost = await store.lost_post(conn, delivery_id)
        if lost is None:
            return None
        first, last, age = lost
        if age > LOST_POST_PATIENCE:
            log.warning(
                "slack post reposted without looking for the lost one",
                extra={"event": "slack.lost_post_reposted", "delivery": delivery_id},
            )
            return None
        history = await self._get(
            speaker,
            "conversations.history",
            channel=channel,
            limit=HISTORY_LIMIT,
            oldest=f"{first.timestamp() - LOST_POST_MARGIN:.6f}",
            latest=f"{last.timestamp() + LOST_POST_MARGIN:.6f}",
            inclusive="true",
            include_all_metadata="true",
        )
        for message in history.get("messages", []):
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if (
                meta.get("event_type") == METADATA_EVENT
                and payload.get("delivery_id") == delivery_id
            ):
                return str(message["ts"])
        if history.get("has_more"):
            log.warning(
                "slack lost post not found among the window's first messages; posting again",
                extra={"event": "slack.lost_post_reposted", "delivery": delivery_id},
            )
        async with self.pool.acquire() as conn:
            await store.lost_post_settled(conn, delivery_id)
        return None

    # --- the outbox kinds ------------------------------------------------------------------

    async def post(self, item: OutboxItem) -> None:
        async with self.pool.acquire() as conn:
            delivery = await deliveries.delivery(conn, int(item.payload["delivery_id"]))
        if delivery is None or delivery.status is not DeliveryStatus.QUEUED:
            return
        try:
            speaker = await self.speaker_of_workspace(delivery.workspace)
            rendered = await self._render(speaker, delivery)
            if rendered is None:
                return
            task, text, blocks = rendered
            if task.status is not TaskStatus.PENDING or task.tier != delivery.tier:
                async with self.pool.acquire() as conn:
                    await deliveries.mark_failed(conn, delivery.id, "request ended before delivery")
                return
            channel = await self._recipient_channel(speaker, delivery)
            # Only a retry can follow a lost post (an item that merely waited its turn is not
            # counted as attempted), so a first attempt asks nothing more of the database.
            found = (
                await self._find_lost(speaker, channel, delivery.id) if item.attempts > 1 else None
            )
            if found is not None:
                async with self.pool.acquire() as conn:
                    await deliveries.mark_posted(
                        conn,
                        delivery.id,
                        team_id=speaker.team_id,
                        channel=channel,
                        ts=found,
                        shown=None,  # rendered by an earlier attempt: not known
                    )
                return
            started = datetime.now(UTC)
            # Marked before the call: should this process die while Slack has the post, the
            # retry knows where to look for it (a clear failure below unmarks it).
            async with self.pool.acquire() as conn:
                await store.post_lost(conn, delivery.id, started, started + _POST_AT_MOST)
            try:
                answer = await self._call(
                    speaker,
                    "chat.postMessage",
                    channel=channel,
                    text=text,
                    blocks=blocks,
                    unfurl_links=False,
                    unfurl_media=False,
                    metadata={
                        "event_type": METADATA_EVENT,
                        "event_payload": {
                            "task_id": str(delivery.task_id),
                            "delivery_id": delivery.id,
                        },
                    },
                )
            except RetryLater as exc:
                if not _answer_lost(exc.__cause__):  # Slack answered: nothing to look for
                    async with self.pool.acquire() as conn:
                        await store.lost_post_settled(conn, delivery.id)
                raise
        except GiveUp as exc:
            await give_up(self.pool, delivery.id, exc.message, channel="slack")
            return
        except RetryLater as exc:
            if not exc.quiet:  # Slack erring or rate-limiting: shown, and counted for failover
                await retrying(self.pool, delivery.id, exc.message)
            raise
        async with self.pool.acquire() as conn:
            await deliveries.mark_posted(
                conn,
                delivery.id,
                team_id=speaker.team_id,
                channel=str(answer["channel"]),
                ts=str(answer["ts"]),
                shown=shown_digest(text, blocks),
            )

    async def update(self, item: OutboxItem) -> None:
        async with self.pool.acquire() as conn:
            delivery = await deliveries.delivery(conn, int(item.payload["delivery_id"]))
        if delivery is None or delivery.status is not DeliveryStatus.SENT or not delivery.slack_ts:
            return
        try:
            speaker = await self.speaker_of_workspace(delivery.workspace)
            if delivery.slack_team_id and delivery.slack_team_id != speaker.team_id:
                return  # posted in a team the workspace is no longer bound to
            rendered = await self._render(speaker, delivery)
            if rendered is None:
                return
            shown = shown_digest(*rendered[1:])
            if shown == delivery.slack_shown:
                return  # the message already shows this: an earlier update carried the change
            waited = time.monotonic()
            permits = await self._egress_permit(speaker, "chat.update", {})
            if time.monotonic() - waited > _RENDER_AGAIN_AFTER:
                # The permit took a while: votes may have landed meanwhile, and the message
                # should show them (a later update of this burst then finds nothing new).
                rendered = await self._render(speaker, delivery)
                if rendered is None:
                    return
                shown = shown_digest(*rendered[1:])
            _, text, blocks = rendered
            args = {"channel": delivery.slack_channel, "ts": delivery.slack_ts}
            await self._send(
                speaker, "chat.update", args | {"text": text, "blocks": blocks}, permits
            )
        except GiveUp:
            return  # the message was deleted in Slack, or its team is gone: nothing to update
        async with self.pool.acquire() as conn:
            await store.message_updated(conn, delivery.id, shown)

    async def ephemeral(self, item: OutboxItem) -> None:
        payload = item.payload
        try:
            speaker = await self.speaker_of_user(str(payload["user"]), payload)
            await self._call(
                speaker,
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
        try:
            speaker = await self.speaker_of_workspace(alert["workspace"])
        except GiveUp as exc:
            log.warning(
                "slack alert not delivered",
                extra={"event": "slack.alert_failed", "alert": alert_id, "error": exc.message},
            )
            return
        text, blocks, colour = alert_message(alert, app_url=self.app_url)
        attachments = [{"color": colour, "blocks": blocks, "fallback": text}]
        same_team = alert.get("slack_team_id") in (None, speaker.team_id)
        if alert["slack_ts"] and same_team:
            with contextlib.suppress(GiveUp):
                await self._call(
                    speaker,
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
        try:
            answer = await self._call(
                speaker,
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
                conn,
                alert_id,
                team_id=speaker.team_id,
                channel=str(answer["channel"]),
                ts=str(answer["ts"]),
            )

    async def home(self, item: OutboxItem) -> None:
        user = str(item.payload["user"])
        try:
            speaker = await self.speaker_of_user(user, item.payload)
        except GiveUp:
            return
        # Only the requests of workspaces bound to the viewer's own team (tenant isolation).
        member = Member(user, speaker.team_id, speaker.enterprise_id)
        workspaces = await viewer_workspaces(self.teams, member)
        views, hashes = await pending_approvals(
            self.pool, speaker.team_id, user, workspaces=workspaces
        )
        await self._call(
            speaker,
            "views.publish",
            user_id=user,
            view=home_view(views, hashes, app_url=self.app_url),
        )
