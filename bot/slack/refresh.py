"""Rotating Slack bot tokens refreshed before they run out, once across every replica."""

from __future__ import annotations

import logging

from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator

from bot.slack.installations import PostgresInstallationStore, team_key
from store import installations as queries

__all__ = ["refresh_due", "refresh_if_due"]

log = logging.getLogger(__name__)

_REFRESH_MARGIN = 120 * 60.0  # seconds


def refresh_due(expires_at: float, issued_at: float | None, now: float) -> bool:
    """Whether a rotating token is due: less than a quarter of its lifetime, or 120 minutes,
    remains, whichever is less (so a 40-second token is refreshed once per lifetime)."""
    margin = _REFRESH_MARGIN
    if issued_at is not None and expires_at > issued_at:
        margin = min(margin, (expires_at - issued_at) / 4)
    return expires_at - now < margin


async def refresh_if_due(
    store: PostgresInstallationStore,
    rotator: AsyncTokenRotator,
    *,
    enterprise_id: str | None,
    team_id: str | None,
    is_enterprise_install: bool | None = False,
) -> Bot | None:
    """The team's bot, its token refreshed first if due; None when the team has no bot.

    Under the team's exclusive lock, so replicas never spend one refresh token twice: whoever
    waited re-reads the row and finds the new token. Raises slack_sdk's
    SlackTokenRotationError when Slack refuses the refresh (e.g. `invalid_grant`).
    """
    key = team_key(enterprise_id, team_id, is_enterprise_install)
    async with store.connections.acquire() as conn, queries.team_lock(conn, *key):
        found = await store.read_bot(conn, *key)
        if found is None:
            return None
        bot, issued_at = found
        expires_at = bot.bot_token_expires_at
        if expires_at is None or not refresh_due(expires_at, issued_at, store.clock()):
            return bot
        # The rotator's own test counts whole minutes before expiry; the rule is ours, and it
        # said "due", so ask it to rotate whatever the time left.
        refreshed = await rotator.perform_bot_token_rotation(
            bot=bot, minutes_before_expiration=10**9
        )
        if refreshed is None:
            return bot
        await store.write_bot(conn, refreshed)
    log.info(
        "slack token refreshed",
        extra={"event": "slack.token_refreshed", "team_id": key[1], "enterprise_id": key[0]},
    )
    return refreshed
