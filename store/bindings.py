"""Which TaskJuice workspace each Slack team's installation is bound to, and whether it is
live: binding, revoking, and reading a binding from either side."""

from __future__ import annotations

import asyncpg

__all__ = ["bind_workspace", "binding_of", "lock_status", "mark_revoked", "workspaces_of_team"]


async def bind_workspace(
    conn: asyncpg.Connection,
    enterprise_id: str | None,
    team_id: str | None,
    *,
    workspace: str,
    installed_by_user_id: str,
    installed_by_email: str | None,
    bound_team_id: str | None = None,
) -> bool:
    """Bind the team to `workspace` (unbinding whichever team had it) and mark it active.

    `bound_team_id` is the team of an org-wide install the workspace is bound to (default:
    the installation's own team)."""
    async with conn.transaction():
        found = await conn.fetchval(
            "SELECT id FROM slack_installations"
            " WHERE coalesce(enterprise_id, '') = coalesce($1, '')"
            " AND coalesce(team_id, '') = coalesce($2, '') FOR UPDATE",
            enterprise_id,
            team_id,
        )
        if found is None:
            return False
        await conn.execute(
            "UPDATE slack_installations SET workspace = NULL, bound_team_id = NULL,"
            " updated_at = now()"
            " WHERE workspace = $3 AND NOT (coalesce(enterprise_id, '') = coalesce($1, '')"
            " AND coalesce(team_id, '') = coalesce($2, ''))",
            enterprise_id,
            team_id,
            workspace,
        )
        done: str = await conn.execute(
            "UPDATE slack_installations SET workspace = $3, installed_by_user_id = $4,"
            " installed_by_email = $5, bound_team_id = coalesce($6, team_id),"
            " status = 'active', revoked_reason = NULL,"
            " updated_at = now() WHERE coalesce(enterprise_id, '') = coalesce($1, '')"
            " AND coalesce(team_id, '') = coalesce($2, '')",
            enterprise_id,
            team_id,
            workspace,
            installed_by_user_id,
            installed_by_email,
            bound_team_id,
        )
    return done == "UPDATE 1"


async def mark_revoked(
    conn: asyncpg.Connection, enterprise_id: str | None, team_id: str | None, reason: str
) -> str | None:
    """Mark the team's installation revoked and forget its dead tokens; the binding stays.

    Returns the bound workspace, if any.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE slack_installations SET status = 'revoked', revoked_reason = $3,"
            " bot_token = NULL, bot_refresh_token = NULL, bot_token_expires_at = NULL,"
            " bot_token_issued_at = NULL, incoming_webhook_url = NULL, updated_at = now()"
            " WHERE coalesce(enterprise_id, '') = coalesce($1, '')"
            " AND coalesce(team_id, '') = coalesce($2, '') RETURNING id, workspace",
            enterprise_id,
            team_id,
            reason,
        )
        if row is None:
            return None
        await conn.execute(
            "UPDATE slack_installers SET user_token = NULL, user_refresh_token = NULL,"
            " user_token_expires_at = NULL WHERE installation_id = $1",
            row["id"],
        )
    workspace: str | None = row["workspace"]
    return workspace


async def binding_of(conn: asyncpg.Connection, workspace: str) -> asyncpg.Record | None:
    """What the platform sees of the team bound to `workspace`."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT coalesce(bound_team_id, team_id) AS team_id, team_name, enterprise_id,"
        " installed_by_user_id, installed_by_email, installed_at, status, revoked_reason,"
        " incoming_webhook_channel_id, team_id AS installation_team_id, is_enterprise_install"
        " FROM slack_installations WHERE workspace = $1",
        workspace,
    )
    return row


async def workspaces_of_team(conn: asyncpg.Connection, team_id: str) -> list[str]:
    """The TaskJuice workspaces bound to the Slack team `team_id` by a live installation."""
    rows = await conn.fetch(
        "SELECT workspace FROM slack_installations"
        " WHERE coalesce(bound_team_id, team_id) = $1 AND workspace IS NOT NULL"
        " AND status = 'active' ORDER BY workspace",
        team_id,
    )
    return [r["workspace"] for r in rows]


async def lock_status(
    conn: asyncpg.Connection, enterprise_id: str | None, team_id: str | None
) -> str | None:
    """The installation's status, its row locked for the caller's transaction."""
    status: str | None = await conn.fetchval(
        "SELECT status FROM slack_installations"
        " WHERE coalesce(enterprise_id, '') = coalesce($1, '')"
        " AND coalesce(team_id, '') = coalesce($2, '') FOR UPDATE",
        enterprise_id,
        team_id,
    )
    return status
