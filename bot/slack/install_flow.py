"""Bolt's OAuth v2 flow, bound to install links: only an install started from a link the
platform asked for (`POST /api/v1/workspaces/{workspace}/slack/install-link`) binds a Slack
team, to that link's workspace.

`/slack/install?state=…` (the link) sets the browser's state cookie and goes on to Slack's
consent screen; `/slack/oauth_redirect` consumes the state (single use, 30 minutes), exchanges
the code, and saves and binds in one transaction. `/slack/install` without a live link,
Slack's generic "Add to Slack", an admin install without state, or a tampered, expired or
reused state exchange nothing and bind nothing: a page says to connect from TaskJuice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import resources

from jinja2 import Environment, FileSystemLoader, select_autoescape
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError

from bot.slack.installations import STATE_LIFETIME_MINUTES
from bot.slack.teams import SlackTeams
from store import oauth_states

__all__ = ["BOT_SCOPES", "InstallFlow", "TeamsAuthorize", "install_flow"]

log = logging.getLogger("taskjuice.slack")

# What the bot asks for: manifest.yml lists the same.
BOT_SCOPES = (
    "chat:write",
    "im:write",
    "im:history",
    "channels:history",
    "groups:history",
    "users:read",
    "users:read.email",
    "commands",
    "incoming-webhook",
)

_PAGES = Environment(
    loader=FileSystemLoader(str(resources.files("templates"))),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default=True),
)
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def _page(status: int, title: str, lines: list[str], cookie: str | None = None) -> BoltResponse:
    body = _PAGES.get_template("pages/message.html.j2").render(
        title=title, eyebrow="Slack", lines=lines, inbox_url=None
    )
    headers: dict[str, str | Sequence[str]] = dict(_HEADERS)
    if cookie is not None:
        headers["Set-Cookie"] = [cookie]
    return BoltResponse(status=status, body=body, headers=headers)


def _query(request: AsyncBoltRequest, name: str) -> str | None:
    values = request.query.get(name)
    return values[0] if values else None


class InstallFlow(AsyncOAuthFlow):
    """Bolt's flow with install links in place of Bolt's own install page and states."""

    def __init__(self, *, teams: SlackTeams, settings: AsyncOAuthSettings) -> None:
        super().__init__(client=teams.new_client(None), logger=log, settings=settings)
        self.teams = teams

    def _not_from_link(self, why: str) -> BoltResponse:
        log.info("Slack install not started from an install link", extra={"event": why})
        return _page(
            400,
            "Connect Slack from TaskJuice",
            [
                "This Slack install was not started from TaskJuice, or its link has"
                " expired or was already used, so no TaskJuice workspace was connected.",
                "Open your workspace's settings in TaskJuice and choose Add to Slack there.",
            ],
            self.settings.state_utils.build_set_cookie_for_deletion(),
        )

    async def handle_installation(self, request: AsyncBoltRequest) -> BoltResponse:
        state = _query(request, "state")
        if not state or len(state) > 200:
            return self._not_from_link("slack.install_without_link")
        async with self.teams.pool.acquire() as conn:
            workspace = await oauth_states.live_state_workspace(conn, state)
        if workspace is None:
            return self._not_from_link("slack.install_link_dead")
        url = await self.build_authorize_url(state, request)
        cookie = self.settings.state_utils.build_set_cookie_for_new_state(state)
        return BoltResponse(
            status=302,
            body="",
            headers={"Location": url, "Set-Cookie": [cookie], "Cache-Control": "no-store"},
        )

    async def handle_callback(self, request: AsyncBoltRequest) -> BoltResponse:
        if _query(request, "error") is not None:
            return _page(
                200,
                "Slack was not connected",
                ["The install was cancelled in Slack. Start again from TaskJuice."],
                self.settings.state_utils.build_set_cookie_for_deletion(),
            )
        state = _query(request, "state")
        if not state or len(state) > 200:
            return self._not_from_link("slack.redirect_without_state")
        # The state is used up first, whatever follows: a link works once.
        workspace = None
        assert self.teams.states is not None
        if self.settings.state_utils.is_valid_browser(state, request.headers):
            workspace = await self.teams.states.consume(state)
        if workspace is None:
            return self._not_from_link("slack.redirect_bad_state")
        code = _query(request, "code")
        installation = await self.run_installation(code) if code else None
        if installation is None or not installation.bot_token or not installation.user_id:
            return _page(
                502,
                "Slack was not connected",
                ["Slack did not confirm the install. Start again from TaskJuice."],
                self.settings.state_utils.build_set_cookie_for_deletion(),
            )
        email, user_team = None, installation.team_id
        try:
            answer = await self.teams.new_client(installation.bot_token).users_info(
                user=installation.user_id
            )
            user = answer.get("user") or {}
            email = (user.get("profile") or {}).get("email") or None
            user_team = user.get("team_id") or user_team
        except SlackApiError as exc:
            data = exc.response.data
            log.warning(
                "could not read the installing user",
                extra={
                    "event": "slack.installer_unknown",
                    "error": data.get("error") if isinstance(data, dict) else None,
                    "status": exc.response.status_code,
                },
            )
        if installation.is_enterprise_install and not user_team:
            return _page(
                502,
                "Slack was not connected",
                ["Slack did not say which workspace of the organisation to connect."],
                self.settings.state_utils.build_set_cookie_for_deletion(),
            )
        bound = await self.teams.complete_install(
            installation, workspace=workspace, installer_email=email, bound_team_id=user_team
        )
        name = bound.team_name or installation.enterprise_name or bound.team_id
        return _page(
            200,
            "Slack is connected",
            [
                f"TaskJuice workspace {workspace} now sends its approvals and alerts to the"
                f" Slack workspace {name}.",
                "You can close this page.",
            ],
            self.settings.state_utils.build_set_cookie_for_deletion(),
        )


def install_flow(
    teams: SlackTeams,
    *,
    client_id: str,
    client_secret: str,
    public_url: str,
    authorize_url: str,
) -> InstallFlow:
    """The flow of distributed mode, on the teams' stores."""
    assert teams.store is not None and teams.states is not None
    settings = AsyncOAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=list(BOT_SCOPES),
        user_scopes=[],
        redirect_uri=f"{public_url}/slack/oauth_redirect",
        authorization_url=authorize_url,
        installation_store=teams.store,
        state_store=teams.states,
        state_expiration_seconds=STATE_LIFETIME_MINUTES * 60,
    )
    return InstallFlow(teams=teams, settings=settings)


class TeamsAuthorize(AsyncAuthorize):
    """Authorizes an inbound request with the token `SlackTeams` holds for its team. In place
    of Bolt's own installation-store authorize, which refreshes rotating tokens outside the
    team's lock: here a due token is refreshed under it, as for every outgoing call."""

    def __init__(self, teams: SlackTeams) -> None:
        self.teams = teams

    async def __call__(
        self,
        *,
        context: AsyncBoltContext,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult | None:
        found = await self.teams.bot_for(team_id, enterprise_id)
        if found is None:
            return None
        _, bot = found
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id,
            bot_id=bot.bot_id,
            bot_user_id=bot.bot_user_id,
            bot_token=bot.bot_token,
            bot_scopes=bot.bot_scopes,
            user_id=user_id,
        )
