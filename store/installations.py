"""Slack installation queries: the live row per team, its bot and installers, the installation
serving a team, and the per-team rotation lock.

Token columns hold ciphertexts only; encrypting and decrypting is the caller's business.
Which TaskJuice workspace a team is bound to is in `store.bindings`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

__all__ = [
    "clear_bot",
    "delete_installation",
    "delete_installer",
    "find_installation",
    "find_installer",
    "save_bot",
    "save_installation",
    "save_installer",
    "serving_installation",
    "serving_key",
    "team_lock",
]

# A team's key is (enterprise_id, team_id), either may be NULL: compared through
# coalesce(…, ''), as the unique index slack_installations_team is.


@asynccontextmanager
async def team_lock(
    conn: asyncpg.Connection,
    enterprise_id: str | None,
    team_id: str | None,
    *,
    shared: bool = False,
) -> AsyncIterator[None]:
    """Hold the team's rotation lock for a transaction on `conn`.

    Exclusive for whoever may spend the refresh token, shared for readers: a reader waits
    only while a refresh is in flight, then reads the new token (each statement after the
    wait sees what the refresher committed). The key is `hashtextextended` of the team key,
    a stable 64-bit hash. Two teams whose keys collide merely wait for each other now and
    then; the lock only serialises, and whoever gets it re-reads the row before acting, so a
    collision costs a little latency and never correctness.
    """
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    async with conn.transaction():
        await conn.execute(
            f"SELECT {function}(hashtextextended('slack-team/' || $1 || '/' || $2, 0))",
            enterprise_id or "",
            team_id or "",
        )
        yield


async def save_installation(conn: asyncpg.Connection, row: Mapping[str, Any]) -> int:
    """Make `row` the team's live installation; keep the bound workspace and its status.

    An install without a bot token (user scopes only) keeps the team's current bot.
    """
    installation_id: int = await conn.fetchval(
        """
        INSERT INTO slack_installations (
            enterprise_id, enterprise_name, enterprise_url, team_id, team_name,
            is_enterprise_install, app_id, bot_id, bot_user_id, bot_scopes, bot_token,
            bot_refresh_token, bot_token_expires_at, bot_token_issued_at, user_id, token_type,
            incoming_webhook_url, incoming_webhook_channel, incoming_webhook_channel_id,
            incoming_webhook_configuration_url, installed_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                $18, $19, $20, $21)
        ON CONFLICT ((coalesce(enterprise_id, '')), (coalesce(team_id, ''))) DO UPDATE SET
            enterprise_name = EXCLUDED.enterprise_name,
            enterprise_url = EXCLUDED.enterprise_url,
            team_name = EXCLUDED.team_name,
            is_enterprise_install = EXCLUDED.is_enterprise_install,
            app_id = EXCLUDED.app_id,
            bot_id = coalesce(EXCLUDED.bot_id, slack_installations.bot_id),
            bot_user_id = coalesce(EXCLUDED.bot_user_id, slack_installations.bot_user_id),
            bot_scopes = CASE WHEN EXCLUDED.bot_token IS NULL THEN slack_installations.bot_scopes
                              ELSE EXCLUDED.bot_scopes END,
            bot_token = coalesce(EXCLUDED.bot_token, slack_installations.bot_token),
            bot_refresh_token = CASE WHEN EXCLUDED.bot_token IS NULL
                                     THEN slack_installations.bot_refresh_token
                                     ELSE EXCLUDED.bot_refresh_token END,
            bot_token_expires_at = CASE WHEN EXCLUDED.bot_token IS NULL
                                        THEN slack_installations.bot_token_expires_at
                                        ELSE EXCLUDED.bot_token_expires_at END,
            -- a new rotating token (its expiry changed) is issued now
            bot_token_issued_at = CASE
                WHEN EXCLUDED.bot_token IS NULL THEN slack_installations.bot_token_issued_at
                WHEN slack_installations.bot_token_expires_at
                     IS DISTINCT FROM EXCLUDED.bot_token_expires_at
                THEN EXCLUDED.bot_token_issued_at
                ELSE slack_installations.bot_token_issued_at END,
            user_id = EXCLUDED.user_id,
            token_type = EXCLUDED.token_type,
            incoming_webhook_url = EXCLUDED.incoming_webhook_url,
            incoming_webhook_channel = EXCLUDED.incoming_webhook_channel,
            incoming_webhook_channel_id = EXCLUDED.incoming_webhook_channel_id,
            incoming_webhook_configuration_url = EXCLUDED.incoming_webhook_configuration_url,
            installed_at = EXCLUDED.installed_at,
            updated_at = now()
        RETURNING id
        """,
        *(row[name] for name in _INSTALLATION_FIELDS),
    )
    return installation_id


_INSTALLATION_FIELDS = (
    "enterprise_id",
    "enterprise_name",
    "enterprise_url",
    "team_id",
    "team_name",
    "is_enterprise_install",
    "app_id",
    "bot_id",
    "bot_user_id",
    "bot_scopes",
    "bot_token",
    "bot_refresh_token",
    "bot_token_expires_at",
    "bot_token_issued_at",
    "user_id",
    "token_type",
    "incoming_webhook_url",
    "incoming_webhook_channel",
    "incoming_webhook_channel_id",
    "incoming_webhook_configuration_url",
    "installed_at",
)

_BOT_FIELDS = (
    "enterprise_id",
    "enterprise_name",
    "team_id",
    "team_name",
    "is_enterprise_install",
    "app_id",
    "bot_id",
    "bot_user_id",
    "bot_scopes",
    "bot_token",
    "bot_refresh_token",
    "bot_token_expires_at",
    "bot_token_issued_at",
    "installed_at",
)


async def save_bot(conn: asyncpg.Connection, row: Mapping[str, Any]) -> None:
    """Make `row` the team's bot (a new install, or a refreshed token)."""
    await conn.execute(
        """
        INSERT INTO slack_installations (
            enterprise_id, enterprise_name, team_id, team_name, is_enterprise_install, app_id,
            bot_id, bot_user_id, bot_scopes, bot_token, bot_refresh_token,
            bot_token_expires_at, bot_token_issued_at, installed_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        ON CONFLICT ((coalesce(enterprise_id, '')), (coalesce(team_id, ''))) DO UPDATE SET
            enterprise_name = EXCLUDED.enterprise_name,
            team_name = EXCLUDED.team_name,
            app_id = EXCLUDED.app_id,
            bot_id = EXCLUDED.bot_id,
            bot_user_id = EXCLUDED.bot_user_id,
            bot_scopes = EXCLUDED.bot_scopes,
            bot_token = EXCLUDED.bot_token,
            bot_refresh_token = EXCLUDED.bot_refresh_token,
            bot_token_expires_at = EXCLUDED.bot_token_expires_at,
            bot_token_issued_at = -- a new rotating token (its expiry changed) is issued now
            CASE WHEN slack_installations.bot_token_expires_at
                      IS DISTINCT FROM EXCLUDED.bot_token_expires_at
                 THEN EXCLUDED.bot_token_issued_at
                 ELSE slack_installations.bot_token_issued_at END,
            updated_at = now()
        """,
        *(row[name] for name in _BOT_FIELDS),
    )


async def save_installer(
    conn: asyncpg.Connection, installation_id: int, row: Mapping[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO slack_installers (installation_id, user_id, user_token, user_scopes,"
        " user_refresh_token, user_token_expires_at, installed_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (installation_id, user_id) DO UPDATE SET"
        " user_token = EXCLUDED.user_token, user_scopes = EXCLUDED.user_scopes,"
        " user_refresh_token = EXCLUDED.user_refresh_token,"
        " user_token_expires_at = EXCLUDED.user_token_expires_at,"
        " installed_at = EXCLUDED.installed_at",
        installation_id,
        row["user_id"],
        row["user_token"],
        row["user_scopes"],
        row["user_refresh_token"],
        row["user_token_expires_at"],
        row["installed_at"],
    )


async def find_installation(
    conn: asyncpg.Connection, enterprise_id: str | None, team_id: str | None
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM slack_installations"
        " WHERE coalesce(enterprise_id, '') = coalesce($1, '')"
        " AND coalesce(team_id, '') = coalesce($2, '')",
        enterprise_id,
        team_id,
    )
    return row


async def find_installer(
    conn: asyncpg.Connection, installation_id: int, user_id: str
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM slack_installers WHERE installation_id = $1 AND user_id = $2",
        installation_id,
        user_id,
    )
    return row


async def clear_bot(
    conn: asyncpg.Connection, enterprise_id: str | None, team_id: str | None
) -> None:
    """Forget the team's bot token (the binding stays)."""
    await conn.execute(
        "UPDATE slack_installations SET bot_token = NULL, bot_refresh_token = NULL,"
        " bot_token_expires_at = NULL, bot_token_issued_at = NULL, updated_at = now()"
        " WHERE coalesce(enterprise_id, '') = coalesce($1, '')"
        " AND coalesce(team_id, '') = coalesce($2, '')",
        enterprise_id,
        team_id,
    )


async def delete_installation(
    conn: asyncpg.Connection, enterprise_id: str | None, team_id: str | None
) -> None:
    """Forget the team's installation, its installers and its binding."""
    await conn.execute(
        "DELETE FROM slack_installations WHERE coalesce(enterprise_id, '') = coalesce($1, '')"
        " AND coalesce(team_id, '') = coalesce($2, '')",
        enterprise_id,
        team_id,
    )


async def delete_installer(
    conn: asyncpg.Connection, enterprise_id: str | None, team_id: str | None, user_id: str
) -> None:
    await conn.execute(
        "DELETE FROM slack_installers WHERE user_id = $3 AND installation_id IN"
        " (SELECT id FROM slack_installations"
        "  WHERE coalesce(enterprise_id, '') = coalesce($1, '')"
        "  AND coalesce(team_id, '') = coalesce($2, ''))",
        enterprise_id,
        team_id,
        user_id,
    )


async def serving_key(
    conn: asyncpg.Connection, enterprise_id: str | None, team_id: str | None
) -> tuple[str | None, str | None, bool] | None:
    """The key (enterprise_id, team_id, is_enterprise_install) of the installation that
    serves `team_id`: the team's own install, else its organisation's org-wide install."""
    row = await conn.fetchrow(
        "SELECT enterprise_id, team_id, is_enterprise_install FROM slack_installations"
        " WHERE (coalesce(enterprise_id, '') = coalesce($1, '') AND team_id = $2)"
        " OR ($1 IS NOT NULL AND enterprise_id = $1 AND is_enterprise_install)"
        " ORDER BY is_enterprise_install LIMIT 1",
        enterprise_id,
        team_id,
    )
    if row is None:
        return None
    return row["enterprise_id"], row["team_id"], row["is_enterprise_install"]


async def serving_installation(
    conn: asyncpg.Connection, enterprise_id: str | None, team_id: str | None
) -> asyncpg.Record | None:
    """The installation row that serves `team_id` (as `serving_key` finds it), read under its
    team's shared rotation lock, in one statement (migration 0022): call it outside a
    transaction, so the lock ends with the read."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM taskjuice_serving_installation($1, $2)", enterprise_id, team_id
    )
    return row
