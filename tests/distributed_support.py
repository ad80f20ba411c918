"""Distributed mode in tests: its settings (client id/secret, Fernet token keys, a Slack
stand-in's URLs), an admin's browser that keeps Bolt's OAuth state cookie, and installing a
team into a workspace from the platform's install link."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from bot.devkit.slack_api import SlackApiDouble
from bot.runtime.config import Settings
from tests.conftest import Service, make_settings

CLIENT_ID, CLIENT_SECRET = "111.222", "fake-client-secret"
COOKIE = "slack-app-oauth-state"


def fake_key(name: str) -> str:
    """An obviously fake Fernet key (32 bytes, URL-safe base64)."""
    return base64.urlsafe_b64encode(f"fake-token-key-{name}".encode().ljust(32, b".")).decode()


def distributed_changes(
    port: int, *, api_url: str, oauth_url: str, signing_secret: str, key: str
) -> dict[str, Any]:
    """The settings that turn distributed mode on for a bot listening on `port`."""
    return {
        "public_url": f"http://127.0.0.1:{port}",
        "slack_client_id": CLIENT_ID,
        "slack_client_secret": CLIENT_SECRET,
        "slack_signing_secret": signing_secret,
        "slack_token_keys": (key,),
        "slack_api_url": api_url,
        "slack_oauth_url": oauth_url,
    }


def distributed_settings(
    callback_url: str,
    port: int,
    *,
    api_url: str,
    oauth_url: str,
    signing_secret: str,
    key: str,
    **changes: Any,
) -> Settings:
    """The tests' settings in distributed mode, with changes."""
    values = distributed_changes(
        port, api_url=api_url, oauth_url=oauth_url, signing_secret=signing_secret, key=key
    )
    return make_settings(callback_url, **(values | changes))


@dataclass
class Browser:
    """An admin's browser: one hop at a time, keeping Bolt's OAuth state cookie."""

    session: aiohttp.ClientSession
    cookie: str | None = None

    async def get(self, url: str) -> tuple[int, str, str | None]:
        headers = {"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {}
        async with self.session.get(url, headers=headers, allow_redirects=False) as response:
            set_cookie = response.headers.get("Set-Cookie", "")
            if set_cookie.startswith(f"{COOKIE}=") and "deleted" not in set_cookie:
                self.cookie = set_cookie.split(";")[0].partition("=")[2]
            return response.status, await response.text(), response.headers.get("Location")


async def install_link(svc: Service, workspace: str) -> str:
    """The platform asks the bot for `workspace`'s install link."""
    status, body = await svc.request("POST", f"/api/v1/workspaces/{workspace}/slack/install-link")
    assert status == 201, body
    url: str = body["url"]
    return url


async def install_team(
    svc: Service,
    slack: SlackApiDouble,
    workspace: str,
    team: str,
    user: str,
    channel: str | None = None,
    *,
    org_wide: bool = False,
) -> None:
    """Install link -> the double's consent (as `user` of `team`, picking `channel`) -> the
    bot's redirect; the workspace is then bound to `team`, active."""
    async with aiohttp.ClientSession() as session:
        admin = Browser(session)
        url: str | None = await install_link(svc, workspace)
        while url is not None and not url.startswith(slack.oauth_url):
            status, page, url = await admin.get(url)
            assert status in (200, 302), page
        assert url is not None, "the install never reached Slack's consent screen"
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        code = slack.approve(
            team, user, channel, redirect_uri=query["redirect_uri"], enterprise_install=org_wide
        )
        status, page, _ = await admin.get(
            f"{query['redirect_uri']}?code={code}&state={query['state']}"
        )
    assert status == 200 and "Slack is connected" in page, page
    _, shown = await svc.request("GET", f"/api/v1/workspaces/{workspace}")
    assert shown["slack"]["team_id"] == team and shown["slack"]["status"] == "active"
