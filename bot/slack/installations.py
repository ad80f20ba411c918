"""Slack installations in PostgreSQL: the installation and OAuth state stores Bolt's OAuth
flow uses in distributed mode, tokens encrypted through `bot.slack.tokens.TokenCipher`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bot.slack.tokens import TokenCipher
from store import installations as queries
from store import oauth_states
from store.database import Connections

__all__ = [
    "STATE_LIFETIME_MINUTES",
    "PostgresInstallationStore",
    "PostgresOAuthStateStore",
    "team_key",
]

log = logging.getLogger(__name__)

STATE_LIFETIME_MINUTES = 30  # the migration's default for slack_oauth_states.expires_at


def _when(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC)


def team_key(
    enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None
) -> tuple[str | None, str | None]:
    """The key of the row that holds a team's installation: an org-wide install is one row
    for the whole organisation, whatever team asks."""
    return enterprise_id, (None if is_enterprise_install else team_id)


class PostgresInstallationStore(AsyncInstallationStore):
    """Bolt's installation store on asyncpg: one live row per Slack team, tokens encrypted."""

    def __init__(
        self,
        connections: Connections,
        cipher: TokenCipher,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connections = connections
        self.cipher = cipher
        self.clock = clock

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        async with self.connections.acquire() as conn, conn.transaction():
            await self.write_installation(conn, installation)

    async def write_installation(
        self, conn: asyncpg.Connection, installation: Installation
    ) -> None:
        """Save `installation` on `conn`, inside the caller's transaction (e.g. with the
        binding it makes)."""
        enterprise_id, team_id = team_key(
            installation.enterprise_id, installation.team_id, installation.is_enterprise_install
        )
        row = {
            **self._bot_row(installation.to_bot() if installation.bot_token else None),
            "enterprise_id": enterprise_id,
            "enterprise_name": installation.enterprise_name,
            "enterprise_url": installation.enterprise_url,
            "team_id": team_id,
            "team_name": installation.team_name,
            "is_enterprise_install": bool(installation.is_enterprise_install),
            "app_id": installation.app_id,
            "user_id": installation.user_id,
            "token_type": installation.token_type,
            "incoming_webhook_url": self.cipher.encrypt(installation.incoming_webhook_url),
            "incoming_webhook_channel": installation.incoming_webhook_channel,
            "incoming_webhook_channel_id": installation.incoming_webhook_channel_id,
            "incoming_webhook_configuration_url": installation.incoming_webhook_configuration_url,
            "installed_at": _when(installation.installed_at),
            "user_token": self.cipher.encrypt(installation.user_token),
            "user_scopes": list(installation.user_scopes or []),
            "user_refresh_token": self.cipher.encrypt(installation.user_refresh_token),
            "user_token_expires_at": _when(installation.user_token_expires_at),
        }
        async with conn.transaction():
            installation_id = await queries.save_installation(conn, row)
            await queries.save_installer(conn, installation_id, row)

    async def async_save_bot(self, bot: Bot) -> None:
        async with self.connections.acquire() as conn:
            await self.write_bot(conn, bot)

    async def write_bot(self, conn: asyncpg.Connection, bot: Bot) -> None:
        """Save `bot` on `conn` (inside the caller's transaction or lock, if any)."""
        if not bot.bot_token:
            return  # as slack-sdk's stores do: a bot without a token is nothing to keep
        enterprise_id, team_id = team_key(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
        row = {
            **self._bot_row(bot),
            "enterprise_id": enterprise_id,
            "enterprise_name": bot.enterprise_name,
            "team_id": team_id,
            "team_name": bot.team_name,
            "is_enterprise_install": bool(bot.is_enterprise_install),
            "app_id": bot.app_id,
            "installed_at": _when(bot.installed_at),
        }
        await queries.save_bot(conn, row)

    def _bot_row(self, bot: Bot | None) -> dict[str, Any]:
        if bot is None:
            names = ("bot_id", "bot_user_id", "bot_token", "bot_refresh_token")
            return {
                **dict.fromkeys(names),
                "bot_scopes": [],
                "bot_token_expires_at": None,
                "bot_token_issued_at": None,
            }
        expires_at = bot.bot_token_expires_at
        return {
            "bot_id": bot.bot_id,
            "bot_user_id": bot.bot_user_id,
            "bot_scopes": list(bot.bot_scopes or []),
            "bot_token": self.cipher.encrypt(bot.bot_token),
            "bot_refresh_token": self.cipher.encrypt(bot.bot_refresh_token),
            "bot_token_expires_at": _when(expires_at),
            # used only when the expiry changed, i.e. for a newly issued token
            "bot_token_issued_at": None if expires_at is None else _when(self.clock()),
        }

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        key = team_key(enterprise_id, team_id, is_enterprise_install)
        # Shared lock: wait out a refresh in flight, then read the token it saved.
        async with self.connections.acquire() as conn, queries.team_lock(conn, *key, shared=True):
            found = await self.read_bot(conn, *key)
        return None if found is None else found[0]

    async def read_bot(
        self, conn: asyncpg.Connection, enterprise_id: str | None, team_id: str | None
    ) -> tuple[Bot, float | None] | None:
        """The team's bot and when its rotating token was issued (None: unknown)."""
        return self._bot_of(await queries.find_installation(conn, enterprise_id, team_id))

    async def read_serving_bot(
        self, conn: asyncpg.Connection, enterprise_id: str | None, team_id: str | None
    ) -> tuple[Bot, float | None] | None:
        """`read_bot` of the installation serving `team_id` (its own, else its organisation's
        org-wide one), waiting out a refresh in flight, in one round trip."""
        return self._bot_of(await queries.serving_installation(conn, enterprise_id, team_id))

    def _bot_of(self, row: asyncpg.Record | None) -> tuple[Bot, float | None] | None:
        if row is None or row["bot_token"] is None:
            return None
        bot = Bot(
            app_id=row["app_id"],
            enterprise_id=row["enterprise_id"],
            enterprise_name=row["enterprise_name"],
            team_id=row["team_id"],
            team_name=row["team_name"],
            bot_token=self.cipher.decrypt(row["bot_token"]),  # type: ignore[arg-type]
            bot_id=row["bot_id"],
            bot_user_id=row["bot_user_id"],
            bot_scopes=list(row["bot_scopes"]),
            bot_refresh_token=self.cipher.decrypt(row["bot_refresh_token"]),
            bot_token_expires_at=row["bot_token_expires_at"],
            is_enterprise_install=row["is_enterprise_install"],
            installed_at=row["installed_at"],
        )
        issued = row["bot_token_issued_at"]
        return bot, (None if issued is None else issued.timestamp())

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        key = team_key(enterprise_id, team_id, is_enterprise_install)
        async with self.connections.acquire() as conn, queries.team_lock(conn, *key, shared=True):
            row = await queries.find_installation(conn, *key)
            if row is None:
                return None
            # No user asked for: the latest installer's own install.
            installer_id = user_id if user_id is not None else row["user_id"]
            installer = None
            if installer_id is not None:
                installer = await queries.find_installer(conn, row["id"], installer_id)
        if user_id is not None and installer is None:
            return None
        decrypt = self.cipher.decrypt
        return Installation(
            app_id=row["app_id"],
            enterprise_id=row["enterprise_id"],
            enterprise_name=row["enterprise_name"],
            enterprise_url=row["enterprise_url"],
            team_id=row["team_id"],
            team_name=row["team_name"],
            bot_token=decrypt(row["bot_token"]),
            bot_id=row["bot_id"],
            bot_user_id=row["bot_user_id"],
            bot_scopes=list(row["bot_scopes"]),
            bot_refresh_token=decrypt(row["bot_refresh_token"]),
            bot_token_expires_at=row["bot_token_expires_at"],
            user_id=installer["user_id"] if installer else row["user_id"],
            user_token=decrypt(installer["user_token"]) if installer else None,
            user_scopes=list(installer["user_scopes"]) if installer else [],
            user_refresh_token=decrypt(installer["user_refresh_token"]) if installer else None,
            user_token_expires_at=installer["user_token_expires_at"] if installer else None,
            incoming_webhook_url=decrypt(row["incoming_webhook_url"]),
            incoming_webhook_channel=row["incoming_webhook_channel"],
            incoming_webhook_channel_id=row["incoming_webhook_channel_id"],
            incoming_webhook_configuration_url=row["incoming_webhook_configuration_url"],
            is_enterprise_install=row["is_enterprise_install"],
            token_type=row["token_type"],
            installed_at=installer["installed_at"] if installer else row["installed_at"],
        )

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        async with self.connections.acquire() as conn:
            await queries.clear_bot(conn, enterprise_id, team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        async with self.connections.acquire() as conn:
            if user_id is None:
                await queries.delete_installation(conn, enterprise_id, team_id)
            else:
                await queries.delete_installer(conn, enterprise_id, team_id, user_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        async with self.connections.acquire() as conn:
            await queries.delete_installation(conn, enterprise_id, team_id)


class PostgresOAuthStateStore(AsyncOAuthStateStore):
    """OAuth `state` values in PostgreSQL: unguessable, single use, valid 30 minutes by the
    database clock, each carrying the TaskJuice workspace its install link was made for."""

    def __init__(self, connections: Connections) -> None:
        self.connections = connections

    @property
    def logger(self) -> logging.Logger:
        return log

    async def issue_install_link_state(self, workspace: str | None) -> tuple[str, datetime]:
        """A new state for an install link of `workspace`, and when it expires."""
        state = secrets.token_urlsafe(32)
        async with self.connections.acquire() as conn:
            expires_at = await oauth_states.issue_state(conn, state, workspace)
        return state, expires_at

    async def consume(self, state: str) -> str | None:
        """Use up `state`: the workspace it was issued for, or None (unknown, expired, used,
        or issued with no workspace)."""
        async with self.connections.acquire() as conn:
            row = await oauth_states.consume_state(conn, state)
        return None if row is None else row["workspace"]

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        """A state for Bolt's own install page: it binds no workspace."""
        state, _ = await self.issue_install_link_state(kwargs.get("workspace"))
        return state

    async def async_consume(self, state: str) -> bool:
        async with self.connections.acquire() as conn:
            return await oauth_states.consume_state(conn, state) is not None
