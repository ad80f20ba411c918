"""Tenancy: which Slack team a TaskJuice workspace is bound to, and the Web API client that
speaks for a team.

Two modes (settings): single-workspace mode has one bot token for one Slack team, and every
TaskJuice workspace routes into it; distributed mode has one installation per Slack team
(bot/slack/installations.py), each bound to one TaskJuice workspace by an install link.

Everything that calls Slack for a workspace asks `SlackTeams.team_of_workspace()` for the team
and `SlackTeams.client_for()` for that team's client; nothing else holds a token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import aiohttp
import asyncpg
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import BotError
from bot.outbox import consequences
from bot.platform import callbacks
from bot.slack.installations import PostgresInstallationStore, PostgresOAuthStateStore
from bot.slack.refresh import refresh_due, refresh_if_due
from store import alerts as routing_store
from store import bindings
from store import installations as queries
from store.database import Connections

__all__ = [
    "BindingStatus",
    "Installer",
    "RevocationHook",
    "SlackBinding",
    "SlackTeams",
    "TeamNotInstalled",
    "binding",
    "iso",
    "workspace_view",
]

log = logging.getLogger("taskjuice.slack")

TeamKey = tuple[str, str | None]  # (team_id, enterprise_id)


class BindingStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Installer:
    """Who installed the app for a workspace."""

    slack_user_id: str
    email: str | None

    def as_json(self) -> dict[str, str | None]:
        return {"slack_user_id": self.slack_user_id, "email": self.email}


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackBinding:
    """The Slack team a TaskJuice workspace is bound to (distributed mode)."""

    workspace: str
    team_id: str
    team_name: str | None
    enterprise_id: str | None
    installed_by: Installer | None
    installed_at: datetime
    status: BindingStatus
    revoked_reason: str | None

    def as_json(self) -> dict[str, Any]:
        """The API's `slack` object (DESIGN.md §6)."""
        return {
            "team_id": self.team_id,
            "team_name": self.team_name,
            "enterprise_id": self.enterprise_id,
            "installed_by": None if self.installed_by is None else self.installed_by.as_json(),
            "installed_at": iso(self.installed_at),
            "status": self.status.value,
        }


def iso(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as the API writes times."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def workspace_view(pool: Connections | asyncpg.Pool, workspace: str) -> dict[str, Any]:
    """What `GET /api/v1/workspaces/{workspace}` shows: the routing and the bound team."""
    async with pool.acquire() as conn:
        routing = await routing_store.routing(conn, workspace)
        bound = await binding(conn, workspace)
    return routing | {"slack": None if bound is None else bound.as_json()}


async def binding(
    pool_or_conn: Connections | asyncpg.Pool | asyncpg.Connection, workspace: str
) -> SlackBinding | None:
    """The team bound to `workspace`, or None (none bound, or single-workspace mode)."""
    if hasattr(pool_or_conn, "acquire"):
        async with pool_or_conn.acquire() as conn:
            row = await bindings.binding_of(conn, workspace)
    else:
        row = await bindings.binding_of(pool_or_conn, workspace)
    if row is None:
        return None
    user = row["installed_by_user_id"]
    return SlackBinding(
        workspace=workspace,
        team_id=row["team_id"],
        team_name=row["team_name"],
        enterprise_id=row["enterprise_id"],
        installed_by=None if user is None else Installer(user, row["installed_by_email"]),
        installed_at=row["installed_at"],
        status=BindingStatus(row["status"]),
        revoked_reason=row["revoked_reason"],
    )


class TeamNotInstalled(BotError):
    """The app has no live installation for that Slack team."""

    status = 404


# Called inside the revocation's transaction with the binding as it now stands (revoked):
# the place for what else a revoked team's workspace needs (giving up its queued Slack work,
# delivering its pending approvals by email).
RevocationHook = Callable[[asyncpg.Connection, SlackBinding], Awaitable[None]]


class SlackTeams:
    """The Slack teams this process speaks for and one Web API client per team, all on the
    process's one HTTP session. Built once by the app factory.

    Single-workspace mode: `single` is the one client, of the one team. Distributed mode:
    `store` holds each team's (encrypted) token; a team's client is cached and rebuilt when
    its token changes, and a rotating token is refreshed before it is handed out.
    """

    def __init__(
        self,
        *,
        pool: Connections,
        session: aiohttp.ClientSession,
        api_url: str,
        single: AsyncWebClient | None = None,
        store: PostgresInstallationStore | None = None,
        states: PostgresOAuthStateStore | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        if (single is None) == (store is None):
            raise ValueError("SlackTeams needs either the single client or the store")
        self.pool = pool
        self.session = session
        self.api_url = api_url
        self.single = single
        self.store = store
        self.states = states
        self.rotator: AsyncTokenRotator | None = None
        if store is not None:
            self.rotator = AsyncTokenRotator(
                client_id=client_id or "",
                client_secret=client_secret or "",
                client=self.new_client(None),
            )
        self.revocation_hooks: list[RevocationHook] = []
        self._clients: dict[tuple[str | None, str | None], AsyncWebClient] = {}
        self._single_team: TeamKey | None = None

    @property
    def distributed(self) -> bool:
        return self.store is not None

    def new_client(self, token: str | None) -> AsyncWebClient:
        """A Web API client on the shared session; the outbox owns retries, so a blind
        retry never posts twice."""
        return AsyncWebClient(
            token=token,
            base_url=self.api_url,
            session=self.session,
            timeout=10,
            retry_handlers=[],
        )

    # --- which team, which client ----------------------------------------------------------

    async def team_of_workspace(self, workspace: str) -> TeamKey | None:
        """(team_id, enterprise_id) of the team `workspace` speaks to in Slack, or None when
        it has none (distributed mode: no binding, or the installation is revoked)."""
        if self.single is not None:
            if self._single_team is None:
                answer = await self.single.auth_test()
                self._single_team = (str(answer["team_id"]), answer.get("enterprise_id"))
            return self._single_team
        found = await binding(self.pool, workspace)
        if found is None or found.status is not BindingStatus.ACTIVE:
            return None
        return found.team_id, found.enterprise_id

    async def client_for(self, team_id: str, enterprise_id: str | None = None) -> AsyncWebClient:
        """The client carrying `team_id`'s bot token (refreshed first when due). Raises
        TeamNotInstalled when the team has no live installation."""
        client, _ = await self.client_of(team_id, enterprise_id)
        return client

    async def client_of(
        self, team_id: str, enterprise_id: str | None = None
    ) -> tuple[AsyncWebClient, bool]:
        """`client_for()`, and whether its token is an org-wide (Enterprise Grid) one, whose
        calls about one team must name it (`team_id`)."""
        if self.single is not None:
            return self.single, False
        found = await self.bot_for(team_id, enterprise_id)
        if found is None:
            raise TeamNotInstalled(f"The app is not installed in Slack team {team_id}.")
        key, bot = found
        client = self._clients.get(key)
        if client is None or client.token != bot.bot_token:
            client = self._clients[key] = self.new_client(bot.bot_token)
        return client, key[1] is None

    async def bot_for(
        self, team_id: str | None, enterprise_id: str | None = None
    ) -> tuple[tuple[str | None, str | None], Bot] | None:
        """The installation key and bot serving `team_id` (its own install, else its
        organisation's org-wide one), its rotating token refreshed first when due."""
        assert self.store is not None and self.rotator is not None
        store = self.store
        async with self.pool.acquire() as conn:
            found = await store.read_serving_bot(conn, enterprise_id, team_id)
        if found is None:
            return None
        bot, issued_at = found
        ent, team, org_wide = bot.enterprise_id, bot.team_id, bot.is_enterprise_install
        expires_at = bot.bot_token_expires_at
        if expires_at is not None and refresh_due(expires_at, issued_at, store.clock()):
            refreshed = await refresh_if_due(
                store,
                self.rotator,
                enterprise_id=ent,
                team_id=team,
                is_enterprise_install=org_wide,
            )
            if refreshed is None:
                return None
            bot = refreshed
        return (ent, team), bot

    # --- binding and unbinding -------------------------------------------------------------

    async def install_link(self, workspace: str, public_url: str) -> tuple[str, datetime]:
        """A single-use link (valid 30 minutes) that starts an install binding the Slack
        team to `workspace`, and when it expires. The workspace is created if new."""
        assert self.states is not None
        async with self.pool.acquire() as conn, conn.transaction():
            await routing_store.set_routing(conn, workspace, {})
        state, expires_at = await self.states.issue_install_link_state(workspace)
        return f"{public_url}/slack/install?state={state}", expires_at

    async def complete_install(
        self,
        installation: Installation,
        *,
        workspace: str,
        installer_email: str | None,
        bound_team_id: str | None,
    ) -> SlackBinding:
        """Save `installation` and bind its team to `workspace`, in one transaction with
        `slack.installed` and the alerts channel picked on Slack's consent screen."""
        assert self.store is not None
        async with self.pool.acquire() as conn, conn.transaction():
            await self.store.write_installation(conn, installation)
            await bindings.bind_workspace(
                conn,
                installation.enterprise_id,
                None if installation.is_enterprise_install else installation.team_id,
                workspace=workspace,
                installed_by_user_id=installation.user_id,
                installed_by_email=installer_email,
                bound_team_id=bound_team_id,
            )
            if installation.incoming_webhook_channel_id:
                await routing_store.set_routing(
                    conn, workspace, {"slack_channel": installation.incoming_webhook_channel_id}
                )
            bound = await binding(conn, workspace)
            assert bound is not None
            await consequences.workflow_callback(
                conn,
                callbacks.slack_installed(workspace, bound.as_json(), datetime.now(UTC)),
            )
        log.info(
            "Slack team bound to a workspace",
            extra={"event": "slack.installed", "workspace": workspace, "team_id": bound.team_id},
        )
        return bound

    async def revoke(self, team_id: str | None, enterprise_id: str | None, reason: str) -> None:
        """Mark the installation serving the team revoked (its tokens erased, its binding
        kept) and queue `slack.uninstalled`, once, however many signals say so; then run
        the revocation hooks in the same transaction."""
        if self.store is None:
            return
        workspace = None
        async with self.pool.acquire() as conn, conn.transaction():
            serving = await queries.serving_key(conn, enterprise_id, team_id)
            if serving is None:
                return
            ent, team, _ = serving
            self._clients.pop((ent, team), None)
            if await bindings.lock_status(conn, ent, team) != BindingStatus.ACTIVE:
                return  # already revoked: said once
            workspace = await bindings.mark_revoked(conn, ent, team, reason)
            if workspace is not None:
                bound = await binding(conn, workspace)
                assert bound is not None
                await consequences.workflow_callback(
                    conn,
                    callbacks.slack_uninstalled(
                        workspace, reason, bound.as_json(), datetime.now(UTC)
                    ),
                )
                for hook in self.revocation_hooks:
                    await hook(conn, bound)
        log.warning(
            "Slack installation revoked",
            extra={
                "event": "slack.revoked",
                "team_id": team_id,
                "enterprise_id": enterprise_id,
                "reason": reason,
                "workspace": workspace,
            },
        )

    async def disconnect(self, workspace: str) -> bool:
        """Revoke the token of the team bound to `workspace` at Slack (best effort), forget
        the installation and its binding, and queue `slack.uninstalled` (`disconnected`).
        False when nothing is bound."""
        assert self.store is not None
        async with self.pool.acquire() as conn:
            row = await bindings.binding_of(conn, workspace)
        if row is None:
            return False
        ent = row["enterprise_id"]
        team = None if row["is_enterprise_install"] else row["installation_team_id"]
        async with self.pool.acquire() as conn:
            found = await self.store.read_bot(conn, ent, team)
        if found is not None:
            try:
                await self.new_client(found[0].bot_token).auth_revoke()
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning(
                    "auth.revoke failed; the token is forgotten anyway",
                    extra={"event": "slack.revoke_failed", "error": type(exc).__name__},
                )
        async with self.pool.acquire() as conn, conn.transaction():
            await queries.delete_installation(conn, ent, team)
            await consequences.workflow_callback(
                conn,
                callbacks.slack_uninstalled(workspace, "disconnected", None, datetime.now(UTC)),
            )
        self._clients.pop((ent, team), None)
        log.info(
            "Slack disconnected from a workspace",
            extra={"event": "slack.disconnected", "workspace": workspace},
        )
        return True
