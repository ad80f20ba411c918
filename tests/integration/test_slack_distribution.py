"""Distributed mode end to end: install links, Bolt's OAuth flow against a Slack stand-in over
HTTP, the binding the platform sees, its callbacks, disconnecting, and per-team clients."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from slack_sdk.oauth.installation_store.models.installation import Installation

from bot.devkit.callback_receiver import PlatformReceiver
from bot.errors import SettingsError
from bot.runtime.config import load_settings
from bot.slack.installations import PostgresInstallationStore, PostgresOAuthStateStore
from bot.slack.teams import BindingStatus, SlackTeams, TeamNotInstalled, binding
from bot.slack.tokens import TokenCipher
from tests.conftest import Service, start_on_free_ports
from tests.distributed_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    distributed_settings,
    fake_key,
    install_link,
)
from tests.distributed_support import Browser as AdminBrowser
from tests.support import (
    API_TOKEN,
    CALLBACK_SECRET,
    CallbackReceiver,
    eventually,
    free_port,
    run_bot_cli,
)

KEY = fake_key("dist")


@dataclass
class Installer:
    """Who clicks Allow on the consent screen, in which team, picking which channel."""

    team_id: str = "T0ALPHA"
    team_name: str = "Alpha"
    user_id: str = "U0ADMIN"
    email: str | None = "admin@alpha.test"
    channel_id: str | None = "C0ALERTS"
    enterprise_id: str | None = None
    org_wide: bool = False


@dataclass
class SlackOAuthStandIn:
    """Slack's consent screen (which always says Allow for `installer`), `oauth.v2.access`
    for codes and refresh tokens, and the few Web API methods an install uses. Each team's
    bot token is `xoxb-fake-<team>-<n>`; a refresh token is spent by its first use."""

    port: int
    installer: Installer = field(default_factory=Installer)
    codes: dict[str, Installer] = field(default_factory=dict)
    tokens: dict[str, Installer] = field(default_factory=dict)
    refresh: dict[str, Installer] = field(default_factory=dict)
    calls: list[tuple[str, str | None]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    rotating: bool = False
    issued: int = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def authorize_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth/v2/authorize"

    def exchanges(self) -> int:
        return sum(1 for method, _ in self.calls if method == "oauth.v2.access")

    def new_token(self, who: Installer) -> dict[str, Any]:
        self.issued += 1
        token = f"xoxb-fake-{who.team_id}-{self.issued}"
        self.tokens[token] = who
        answer: dict[str, Any] = {"access_token": token}
        if self.rotating:
            refresh = f"xoxe-1-fake-refresh-{self.issued}"
            self.refresh[refresh] = who
            answer |= {"refresh_token": refresh, "expires_in": 43200}
        return answer

    async def authorize(self, request: web.Request) -> web.Response:
        query = request.query
        assert query["client_id"] == CLIENT_ID
        assert "incoming-webhook" in query["scope"].split(",")
        code = f"fake-code-{len(self.codes) + 1}"
        self.codes[code] = self.installer
        back = {"code": code} | ({"state": query["state"]} if "state" in query else {})
        raise web.HTTPFound(f"{query['redirect_uri']}?{urlencode(back)}")

    async def api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        form = dict(request.query) | dict(await request.post())
        token = request.headers.get("Authorization", "").removeprefix("Bearer ") or None
        self.calls.append((method, token))
        if method == "oauth.v2.access":
            return web.json_response(self.oauth_access(request, form))
        who = self.tokens.get(token or "")
        if who is None or token in self.revoked:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method == "auth.test":
            return web.json_response(
                {"ok": True, "team_id": who.team_id, "user_id": "U0BOT", "bot_id": "B0BOT"}
            )
        if method == "users.info" and form.get("user") == who.user_id:
            profile = {"email": who.email} if who.email else {}
            user = {"id": who.user_id, "team_id": who.team_id, "profile": profile}
            return web.json_response({"ok": True, "user": user})
        if method == "auth.revoke":
            self.revoked.append(str(token))
            return web.json_response({"ok": True, "revoked": True})
        return web.json_response({"ok": False, "error": "unknown_method"})

    def oauth_access(self, request: web.Request, form: dict[str, Any]) -> dict[str, Any]:
        auth = request.headers.get("Authorization", "").removeprefix("Basic ")
        given = base64.b64decode(auth).decode() if auth else ""
        secret = form.get("client_secret")
        if given != f"{CLIENT_ID}:{CLIENT_SECRET}" and secret != CLIENT_SECRET:
            return {"ok": False, "error": "invalid_client"}
        if form.get("grant_type") == "refresh_token":
            who = self.refresh.pop(str(form.get("refresh_token")), None)
            if who is None:
                return {"ok": False, "error": "invalid_grant"}
            return {"ok": True, "token_type": "bot"} | self.new_token(who)
        who = self.codes.pop(str(form.get("code")), None)
        if who is None:
            return {"ok": False, "error": "invalid_code"}
        team = None if who.org_wide else {"id": who.team_id, "name": who.team_name}
        answer = {
            "ok": True,
            "app_id": "A0FAKE",
            "token_type": "bot",
            "scope": "chat:write,users:read,users:read.email,commands,incoming-webhook",
            "bot_user_id": "U0BOT",
            "team": team,
            "enterprise": {"id": who.enterprise_id, "name": "Org"} if who.enterprise_id else None,
            "is_enterprise_install": who.org_wide,
            "authed_user": {"id": who.user_id},
        } | self.new_token(who)
        if who.channel_id:
            answer["incoming_webhook"] = {
                "channel": "#alerts",
                "channel_id": who.channel_id,
                "url": f"https://hooks.slack.test/services/{who.team_id}/FAKE",
                "configuration_url": "https://slack.test/config",
            }
        return answer


@pytest.fixture
async def slack_oauth() -> AsyncIterator[SlackOAuthStandIn]:
    stand_in = SlackOAuthStandIn(port=free_port())
    app = web.Application()
    app.router.add_get("/oauth/v2/authorize", stand_in.authorize)
    app.router.add_route("*", "/api/{method}", stand_in.api)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", stand_in.port).start()
    yield stand_in
    await runner.cleanup()


@pytest.fixture
async def distributed(
    database_url: str, receiver: CallbackReceiver, slack_oauth: SlackOAuthStandIn
) -> AsyncIterator[Service]:
    svc = await start_on_free_ports(
        lambda port: distributed_settings(
            receiver.url,
            port,
            api_url=slack_oauth.api_url,
            oauth_url=slack_oauth.authorize_url,
            signing_secret="fake-signing-secret",
            key=KEY,
        ),
        database_url,
    )
    yield svc
    await svc.close()


@dataclass
class Browser(AdminBrowser):
    """The admin's browser, which also passes the stand-in's consent screen in one go."""

    last_redirect: str = ""

    async def install(self, link: str) -> tuple[int, str]:
        """Open the link, pass Slack's consent screen, land on the redirect."""
        status, page, location = await self.get(link)
        if status != 302:
            return status, page
        assert location is not None
        status, _, back = await self.get(location)  # Slack's consent screen: Allow
        assert status == 302 and back is not None
        self.last_redirect = back
        status, page, _ = await self.get(back)
        return status, page


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession() as session:
        yield Browser(session)


async def slack_of(svc: Service, workspace: str) -> Any:
    status, body = await svc.request("GET", f"/api/v1/workspaces/{workspace}")
    assert status == 200, body
    return body["slack"]


def slack_callbacks(receiver: CallbackReceiver, kind: str) -> list[dict[str, Any]]:
    return [a.json for a in receiver.delivered if a.json["type"] == kind]


async def test_install_link_binds_the_team_and_the_platform_hears_once(
    distributed: Service,
    browser: Browser,
    receiver: CallbackReceiver,
    slack_oauth: SlackOAuthStandIn,
    pool: asyncpg.Pool,
) -> None:
    link = await install_link(distributed, "acme")
    assert link.startswith(f"{distributed.base_url}/slack/install?state=")
    assert await slack_of(distributed, "acme") is None

    status, page = await browser.install(link)

    assert status == 200 and "Slack is connected" in page
    slack = await slack_of(distributed, "acme")
    assert slack["team_id"] == "T0ALPHA" and slack["team_name"] == "Alpha"
    assert slack["enterprise_id"] is None and slack["status"] == "active"
    assert slack["installed_by"] == {"slack_user_id": "U0ADMIN", "email": "admin@alpha.test"}
    _, workspace = await distributed.request("GET", "/api/v1/workspaces/acme")
    assert workspace["slack_channel"] == "C0ALERTS"  # picked on the consent screen

    await eventually(lambda: slack_callbacks(receiver, "slack.installed"), what="the callback")
    installed = [a for a in receiver.delivered if a.json["type"] == "slack.installed"]
    assert len(installed) == 1
    sent = installed[0]
    verifier = PlatformReceiver(secret=CALLBACK_SECRET)
    assert verifier.verify(
        sent.webhook_id,
        sent.headers["webhook-timestamp"],
        sent.body,
        sent.headers["webhook-signature"],
    )
    assert sent.json["data"] == {"workspace": "acme", "slack": slack}

    # The token is stored encrypted only.
    token = next(iter(slack_oauth.tokens))
    async with pool.acquire() as conn:
        dump = str(await conn.fetchval("SELECT json_agg(t)::text FROM slack_installations t"))
    assert "T0ALPHA" in dump and token not in dump and "hooks.slack.test" not in dump


async def test_reused_tampered_or_expired_state_binds_nothing(
    distributed: Service,
    browser: Browser,
    slack_oauth: SlackOAuthStandIn,
    receiver: CallbackReceiver,
    pool: asyncpg.Pool,
) -> None:
    assert (await browser.install(await install_link(distributed, "acme")))[0] == 200
    replay = browser.last_redirect
    exchanges = slack_oauth.exchanges()

    # Reused: the same redirect again (even with a fresh code) binds nothing more.
    slack_oauth.installer = Installer(team_id="T0EVIL", user_id="U0EVIL", email=None)
    slack_oauth.codes["fake-code-again"] = slack_oauth.installer
    reused = replay.replace(parse_qs(urlsplit(replay).query)["code"][0], "fake-code-again")
    status, page, _ = await browser.get(reused)
    assert status == 400 and "Connect Slack from TaskJuice" in page

    # Tampered: a state one character off.
    link = await install_link(distributed, "beta")
    status, _, location = await browser.get(link)
    assert status == 302 and location is not None
    _, _, back = await browser.get(location)
    assert back is not None
    state = parse_qs(urlsplit(back).query)["state"][0]
    tampered = state[:-1] + ("A" if state[-1] != "A" else "B")
    browser.cookie = tampered
    status, page, _ = await browser.get(back.replace(state, tampered))
    assert status == 400 and "Connect Slack from TaskJuice" in page

    # Expired: its time moved back in the database.
    link = await install_link(distributed, "gamma")
    expired = parse_qs(urlsplit(link).query)["state"][0]
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE slack_oauth_states SET expires_at = now() - interval '1 second'"
            " WHERE state = $1",
            expired,
        )
    status, page = await browser.install(link)
    assert status == 400 and "Connect Slack from TaskJuice" in page
    browser.cookie = expired
    status, page, _ = await browser.get(
        f"{distributed.base_url}/slack/oauth_redirect?code=fake-code-x&state={expired}"
    )
    assert status == 400 and "Connect Slack from TaskJuice" in page

    assert slack_oauth.exchanges() == exchanges  # no code was exchanged for any of them
    assert (await slack_of(distributed, "acme"))["team_id"] == "T0ALPHA"
    assert await slack_of(distributed, "beta") is None
    assert await slack_of(distributed, "gamma") is None
    await eventually(lambda: slack_callbacks(receiver, "slack.installed"), what="the callback")
    assert len(slack_callbacks(receiver, "slack.installed")) == 1


async def test_an_install_not_started_from_a_link_changes_nothing(
    distributed: Service, browser: Browser, slack_oauth: SlackOAuthStandIn, pool: asyncpg.Pool
) -> None:
    assert (await browser.install(await install_link(distributed, "acme")))[0] == 200
    before = await slack_of(distributed, "acme")
    exchanges = slack_oauth.exchanges()
    slack_oauth.installer = Installer(user_id="U0SOMEONE", email="someone@alpha.test")

    # /slack/install opened directly: no trip to Slack at all.
    browser.cookie = None
    status, page, location = await browser.get(f"{distributed.base_url}/slack/install")
    assert status == 400 and location is None and "Connect Slack from TaskJuice" in page
    # Slack's generic Add to Slack, or an admin install: a redirect without a state.
    _, _, back = await browser.get(
        f"{slack_oauth.authorize_url}?"
        + urlencode(
            {
                "client_id": CLIENT_ID,
                "scope": "chat:write,incoming-webhook",
                "redirect_uri": f"{distributed.base_url}/slack/oauth_redirect",
            }
        )
    )
    assert back is not None and "state=" not in back
    status, page, _ = await browser.get(back)
    assert status == 400 and "Connect Slack from TaskJuice" in page
    # A state Bolt's own interface issued (made for no workspace).
    generic = await PostgresOAuthStateStore(pool).async_issue()
    browser.cookie = generic
    status, page, _ = await browser.get(
        f"{distributed.base_url}/slack/oauth_redirect?code=fake-code-1&state={generic}"
    )
    assert status == 400 and "Connect Slack from TaskJuice" in page

    assert slack_oauth.exchanges() == exchanges
    assert await slack_of(distributed, "acme") == before


async def test_disconnect_revokes_forgets_and_tells_the_platform(
    distributed: Service,
    browser: Browser,
    slack_oauth: SlackOAuthStandIn,
    receiver: CallbackReceiver,
    pool: asyncpg.Pool,
) -> None:
    assert (await browser.install(await install_link(distributed, "acme")))[0] == 200
    token = next(iter(slack_oauth.tokens))

    status, body = await distributed.request("DELETE", "/api/v1/workspaces/acme/slack")

    assert status == 200 and body["slack"] is None and body["workspace"] == "acme"
    assert slack_oauth.revoked == [token]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM slack_installations") == 0
    gone = await eventually(
        lambda: slack_callbacks(receiver, "slack.uninstalled"), what="slack.uninstalled"
    )
    assert len(gone) == 1
    assert gone[0]["data"] == {"workspace": "acme", "reason": "disconnected", "slack": None}
    status, body = await distributed.request("DELETE", "/api/v1/workspaces/acme/slack")
    assert status == 404 and set(body) == {"error", "fields"}


async def test_org_wide_install_binds_the_installers_team_of_the_org(
    distributed: Service, browser: Browser, slack_oauth: SlackOAuthStandIn
) -> None:
    slack_oauth.installer = Installer(
        team_id="T0WEST", enterprise_id="E0ORG", org_wide=True, channel_id=None
    )
    assert (await browser.install(await install_link(distributed, "acme")))[0] == 200
    slack = await slack_of(distributed, "acme")
    assert (slack["team_id"], slack["enterprise_id"]) == ("T0WEST", "E0ORG")


async def test_install_link_errors_are_clear(
    distributed: Service, service: Service, receiver: CallbackReceiver
) -> None:
    status, body = await distributed.request(
        "POST", "/api/v1/workspaces/not%20a%20slug/slack/install-link"
    )
    assert status == 422 and "workspace" in body["fields"]
    status, body = await distributed.request(
        "POST", "/api/v1/workspaces/acme/slack/install-link", token=None
    )
    assert status == 401
    # Single-workspace mode (here: Slack off) has no install links.
    status, body = await service.request("POST", "/api/v1/workspaces/acme/slack/install-link")
    assert status == 409 and "SLACK_CLIENT_ID" in body["error"]
    status, body = await service.request("GET", "/api/v1/workspaces/acme")
    assert status == 200 and body["slack"] is None


async def test_client_for_carries_the_teams_token_and_refreshes_a_due_one_first(
    pool: asyncpg.Pool, slack_oauth: SlackOAuthStandIn, receiver: CallbackReceiver
) -> None:
    slack_oauth.rotating = True
    store = PostgresInstallationStore(pool, TokenCipher([KEY]))
    for team in ("T0ONE", "T0TWO"):
        who = Installer(team_id=team)
        minted = slack_oauth.new_token(who)
        await store.async_save(
            Installation(
                team_id=team,
                user_id="U0ADMIN",
                bot_token=minted["access_token"],
                bot_refresh_token=minted["refresh_token"],
                bot_token_expires_in=40,
                bot_id="B0BOT",
                bot_user_id="U0BOT",
            )
        )
    async with pool.acquire() as conn:  # T0ONE: 5 of its 40 seconds left, so due
        await conn.execute(
            "UPDATE slack_installations SET bot_token_expires_at = now() + interval '5 s',"
            " bot_token_issued_at = now() - interval '35 s' WHERE team_id = 'T0ONE'"
        )
    async with aiohttp.ClientSession() as session:
        teams = SlackTeams(
            pool=pool,
            session=session,
            api_url=slack_oauth.api_url,
            store=store,
            states=PostgresOAuthStateStore(pool),
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
        )
        one = await teams.client_for("T0ONE")
        two = await teams.client_for("T0TWO")
        assert slack_oauth.tokens[str(one.token)].team_id == "T0ONE"
        assert one.token == "xoxb-fake-T0ONE-3"  # refreshed before it was handed out
        assert two.token == "xoxb-fake-T0TWO-2"
        assert (await one.auth_test())["team_id"] == "T0ONE"
        assert await teams.client_for("T0ONE") is one  # cached while the token holds
        assert sum(1 for m, _ in slack_oauth.calls if m == "oauth.v2.access") == 1
        with pytest.raises(TeamNotInstalled):
            await teams.client_for("T0NOBODY")

        # Revoked: no client any more, and the platform hears it once, however often told.
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE slack_installations SET workspace = 'acme', bound_team_id = team_id,"
                " installed_by_user_id = 'U0ADMIN' WHERE team_id = 'T0TWO'"
            )
        await teams.revoke("T0TWO", None, "app_uninstalled")
        await teams.revoke("T0TWO", None, "tokens_revoked")
        with pytest.raises(TeamNotInstalled):
            await teams.client_for("T0TWO")
        bound = await binding(pool, "acme")
        assert bound is not None and bound.status is BindingStatus.REVOKED
        assert bound.revoked_reason == "app_uninstalled"
        async with pool.acquire() as conn:
            queued = await conn.fetch(
                "SELECT payload FROM outbox WHERE kind = 'callback'"
                " AND payload->'body'->>'type' = 'slack.uninstalled'"
            )
        assert len(queued) == 1


BASE = {
    "API_TOKENS": API_TOKEN,
    "CALLBACK_URL": "http://127.0.0.1:9/callbacks",
    "CALLBACK_SECRET": CALLBACK_SECRET,
    "TASKJUICE_APP_URL": "http://app.taskjuice.test",
}
DISTRIBUTED = {
    "SLACK_CLIENT_ID": CLIENT_ID,
    "SLACK_CLIENT_SECRET": CLIENT_SECRET,
    "SLACK_SIGNING_SECRET": "fake-signing-secret",
}


def test_both_modes_at_once_stop_start_up_with_one_line(tmp_path: Path) -> None:
    env = (
        {"PATH": "/usr/bin:/bin"}
        | BASE
        | DISTRIBUTED
        | {"SLACK_BOT_TOKEN": "xoxb-fake-single", "SLACK_TOKEN_KEYS": KEY}
    )
    done = run_bot_cli("serve", env=env, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "SLACK_BOT_TOKEN" in lines[0] and "SLACK_CLIENT_ID" in lines[0]
    assert "xoxb-fake-single" not in lines[0] and CLIENT_SECRET not in lines[0]


def test_distributed_mode_names_what_it_lacks_and_a_bad_key() -> None:
    with pytest.raises(SettingsError) as missing:
        load_settings(BASE | {"SLACK_CLIENT_ID": CLIENT_ID}, env_file=None)
    for name in ("SLACK_CLIENT_SECRET", "SLACK_SIGNING_SECRET", "SLACK_TOKEN_KEYS"):
        assert name in missing.value.message
    bad = f"{KEY},not-a-fernet-key"
    with pytest.raises(SettingsError) as malformed:
        load_settings(BASE | DISTRIBUTED | {"SLACK_TOKEN_KEYS": bad}, env_file=None)
    message = malformed.value.message
    assert "SLACK_TOKEN_KEYS" in message and "key 2 of 2" in message
    assert "not-a-fernet-key" not in message and KEY not in message
    settings = load_settings(BASE | DISTRIBUTED | {"SLACK_TOKEN_KEYS": KEY}, env_file=None)
    assert settings.slack_distributed and not settings.slack_enabled
    assert settings.slack_oauth_url == "https://slack.com/oauth/v2/authorize"
    assert "fake-client-secret" not in repr(settings)
