"""Tenant rules for what comes in from Slack: whose click, command or modal counts, and who
may route a workspace's alerts (DESIGN.md §6).

A Slack person is named by the payload Slack signed: their user id, their own team (`user.team_id`,
which for a Slack Connect guest is not the team whose channel they clicked in) and, in an
Enterprise Grid organisation, its enterprise id. They act for a TaskJuice workspace only when
their team is the one the workspace is bound to (single-workspace mode: the one team). Nothing
here matches a person by email: a person of another team is refused before any matching.
Every doubt (no binding, Slack unreachable, an answer that does not say) refuses.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.slack.teams import BindingStatus, SlackTeams, TeamKey, TeamNotInstalled, binding
from store import bindings

__all__ = [
    "ADMIN_CHECK_SECONDS",
    "Member",
    "RouteRight",
    "may_route",
    "team_of",
    "viewer_workspaces",
    "works_for",
]

log = logging.getLogger(__name__)

# users.info is asked before a command's acknowledgement, which Slack wants within 3 s.
ADMIN_CHECK_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Member:
    """A Slack person as a signed payload names them."""

    user_id: str
    team_id: str | None
    enterprise_id: str | None = None


async def team_of(teams: SlackTeams, workspace: str) -> TeamKey | None:
    """The team bound to `workspace`, or None (none bound, revoked, or Slack cannot say which
    team the single token is for: refused rather than guessed)."""
    try:
        return await teams.team_of_workspace(workspace)
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning(
            "cannot tell which Slack team a workspace is bound to",
            extra={"event": "slack.team_unknown", "error": type(exc).__name__},
        )
        return None


def _same_team(bound: TeamKey | None, who: Member) -> bool:
    if bound is None or not who.team_id or who.team_id != bound[0]:
        return False
    # Team ids are unique across Slack; an enterprise named on both sides must agree too.
    return not (bound[1] and who.enterprise_id and who.enterprise_id != bound[1])


async def works_for(teams: SlackTeams, workspace: str, who: Member) -> bool:
    """Whether `who` is a member of the Slack team bound to `workspace`."""
    return _same_team(await team_of(teams, workspace), who)


async def viewer_workspaces(teams: SlackTeams, who: Member) -> list[str] | None:
    """The workspaces whose tasks `who` may see in App Home and `/taskjuice approvals`: None
    for all of them (single-workspace mode, a member of the one team), else those bound to
    their team (none for anyone else)."""
    if not teams.distributed:
        return None if _same_team(await team_of(teams, ""), who) else []
    if not who.team_id:
        return []
    async with teams.pool.acquire() as conn:
        return await bindings.workspaces_of_team(conn, who.team_id)


class RouteRight(enum.StrEnum):
    """Whether someone may route a workspace's alerts from Slack, and if not, why."""

    ALLOWED = "allowed"
    OTHER_TEAM = "other_team"
    NOT_ADMIN = "not_admin"
    UNKNOWN = "unknown"
    """Slack could not say whether they are an admin: refused, and they may try again."""


async def may_route(
    teams: SlackTeams, workspace: str, who: Member, *, anyone: bool = False
) -> RouteRight:
    """Whether `who` may subscribe a channel to `workspace`'s alerts or unsubscribe it: only
    in the team bound to it, and only its admins and owners (asked of Slack with that team's
    token, within a bound) or the person who installed the app; in single-workspace mode
    admins and owners, or any member when `anyone` (SLACK_SUBSCRIBE_ANYONE)."""
    bound = await team_of(teams, workspace)
    if not _same_team(bound, who):
        return RouteRight.OTHER_TEAM
    assert bound is not None
    if teams.distributed:
        found = await binding(teams.pool, workspace)
        if (
            found is not None
            and found.status is BindingStatus.ACTIVE
            and found.installed_by is not None
            and found.installed_by.slack_user_id == who.user_id
        ):
            return RouteRight.ALLOWED
    elif anyone:
        return RouteRight.ALLOWED
    return await _admin(teams, bound, who)


async def _admin(teams: SlackTeams, bound: TeamKey, who: Member) -> RouteRight:
    try:
        async with asyncio.timeout(ADMIN_CHECK_SECONDS):
            client = await teams.client_for(*bound)
            answer = await client.users_info(user=who.user_id)
    except (SlackApiError, aiohttp.ClientError, TimeoutError, TeamNotInstalled) as exc:
        log.warning(
            "cannot tell whether a Slack user is an admin; refused",
            extra={"event": "slack.admin_unknown", "error": type(exc).__name__},
        )
        return RouteRight.UNKNOWN
    user = answer.get("user")
    if not isinstance(user, dict) or user.get("id") != who.user_id:
        return RouteRight.UNKNOWN
    # Slack says which team the person belongs to: a Slack Connect guest is not an admin here.
    if user.get("team_id") != bound[0]:
        return RouteRight.OTHER_TEAM
    if user.get("is_admin") is True or user.get("is_owner") is True:
        return RouteRight.ALLOWED
    return RouteRight.NOT_ADMIN
