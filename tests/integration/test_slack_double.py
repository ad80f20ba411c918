"""The Slack Web API double behaves like Slack where many workspaces and Slack's published
limits matter: teams are isolated, OAuth v2 installs and rotates tokens, uninstalls and
revocations stick, and rate limits refuse calls over sliding windows. Driven with slack-sdk's
real AsyncWebClient over HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.devkit.slack_api import Fault, SlackApiDouble

A, B, ORG_TEAM, ORG = "T0ACME001", "T0BETA001", "T0GRID001", "E0GRID001"
ANNA, BEN, GRETA = "U0ANNA001", "U0BEN0001", "U0GRETA01"
A_GENERAL, B_GENERAL, B_CONNECT, GRID_OPS = "C0AGEN001", "C0BGEN001", "C0BCON001", "C0GOPS001"
REDIRECT = "http://127.0.0.1:9/slack/oauth_redirect"
# Obviously fake: the signing secret of slack-sdk's own signature tests.
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture
async def double() -> AsyncIterator[SlackApiDouble]:
    """Two teams with one person of the same address each, and a Grid organisation."""
    slack = SlackApiDouble(team_id=A, team_name="Acme")
    slack.add_user(ANNA, "anna", "same@example.test", is_admin=True)
    slack.add_channel(A_GENERAL, "general")
    slack.add_team(B, "Beta", "beta")
    slack.add_user(BEN, "ben", "same@example.test", team_id=B, is_owner=True)
    slack.add_channel(B_GENERAL, "general", team_id=B)
    slack.add_channel(B_CONNECT, "shared-with-acme", team_id=B)
    slack.add_team(ORG_TEAM, "Grid Ops", enterprise_id=ORG)
    slack.add_user(GRETA, "greta", "greta@grid.test", team_id=ORG_TEAM)
    slack.add_channel(GRID_OPS, "ops", team_id=ORG_TEAM)
    await slack.start()
    yield slack
    await slack.stop()


def client(slack: SlackApiDouble, token: str) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=slack.url)


async def refused(call: object) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def error_of(call: object) -> str:
    return str((await refused(call)).response["error"])


async def test_teams_are_isolated(double: SlackApiDouble) -> None:
    acme = client(double, double.token)
    beta = client(double, double.issue_token(B).value)

    me_a, me_b = await acme.auth_test(), await beta.auth_test()
    assert (me_a["team_id"], me_b["team_id"]) == (A, B)
    assert me_a["user_id"] != me_b["user_id"] and me_a["bot_id"] != me_b["bot_id"]
    assert me_b["is_enterprise_install"] is False

    # The same address finds each team's own member, with their own team and role.
    found_a = (await acme.users_lookupByEmail(email="same@example.test"))["user"]
    found_b = (await beta.users_lookupByEmail(email="same@example.test"))["user"]
    assert (found_a["id"], found_a["team_id"], found_a["is_admin"]) == (ANNA, A, True)
    assert (found_b["id"], found_b["team_id"], found_b["is_owner"]) == (BEN, B, True)

    assert await error_of(acme.users_info(user=BEN)) == "user_not_found"
    assert await error_of(acme.conversations_open(users=BEN)) == "user_not_found"
    assert await error_of(acme.chat_postMessage(channel=B_GENERAL, text="x")) == (
        "channel_not_found"
    )
    assert await error_of(acme.chat_postMessage(channel=double.dm_channel(BEN), text="x")) == (
        "channel_not_found"
    )
    assert double.messages.get(B_GENERAL, []) == []

    posted = await beta.chat_postMessage(channel=B_GENERAL, text="hello beta")
    assert double.messages_of(B)[0]["ts"] == posted["ts"] and double.messages_of(A) == []
    assert await error_of(acme.chat_update(channel=B_GENERAL, ts=posted["ts"], text="x")) == (
        "channel_not_found"
    )
    assert double.messages[B_GENERAL][0]["text"] == "hello beta"
    assert [c.team for c in double.calls_to("auth.test")] == [A, B]
    assert [c.answer for c in double.calls_to("chat.postMessage", team=B)] == ["ok"]


async def test_slack_connect_user_keeps_their_team(double: SlackApiDouble) -> None:
    acme = client(double, double.token)
    assert await error_of(acme.users_info(user=BEN)) == "user_not_found"
    double.share_channel(B_CONNECT, A)

    ben = (await acme.users_info(user=BEN))["user"]
    assert ben["team_id"] == B
    # Seen in a shared channel, but not a member: not found by address, no DM.
    assert (await acme.users_lookupByEmail(email="same@example.test"))["user"]["id"] == ANNA
    assert await error_of(acme.conversations_open(users=BEN)) == "user_not_found"
    await acme.chat_postMessage(channel=B_CONNECT, text="hi from acme")
    assert await error_of(acme.chat_postMessage(channel=B_GENERAL, text="x")) == (
        "channel_not_found"
    )


async def consent(
    double: SlackApiDouble, decision: str, **query: str
) -> tuple[int, dict[str, list[str]], str]:
    """Open the authorize page as the dev console would and submit its form."""
    params = {
        "client_id": double.client_id,
        "scope": "chat:write,incoming-webhook",
        "state": "fake-state-1",
        "redirect_uri": REDIRECT,
    } | query
    async with aiohttp.ClientSession() as http:
        async with http.get(double.oauth_url, params=params) as page:
            text = await page.text()
            assert page.status == 200, text
        assert f'value="{B}"' in text and f'value="{B_GENERAL}"' in text
        form = {k: v for k, v in params.items()} | {
            "team": B,
            "user": BEN,
            "channel": B_GENERAL,
            "decision": decision,
        }
        async with http.post(double.oauth_url, data=form, allow_redirects=False) as answer:
            location = answer.headers.get("Location", "")
            parts = urlsplit(location)
            return (
                answer.status,
                parse_qs(parts.query),
                f"{parts.scheme}://{parts.netloc}{parts.path}",
            )


async def test_oauth_install_through_the_consent_page(double: SlackApiDouble) -> None:
    status, query, target = await consent(double, "allow")
    assert (status, target, query["state"]) == (302, REDIRECT, ["fake-state-1"])
    [code] = query["code"]

    oauth = AsyncWebClient(base_url=double.url)
    with pytest.raises(SlackApiError) as wrong:
        await oauth.oauth_v2_access(client_id=double.client_id, client_secret="nope", code=code)
    assert wrong.value.response["error"] == "bad_client_secret"
    installed = await oauth.oauth_v2_access(
        client_id=double.client_id,
        client_secret=double.client_secret,
        code=code,
        redirect_uri=REDIRECT,
    )
    assert installed["token_type"] == "bot" and installed["app_id"] == double.app_id
    assert installed["team"] == {"id": B, "name": "Beta"}
    assert installed["enterprise"] is None and installed["is_enterprise_install"] is False
    assert installed["authed_user"] == {"id": BEN}
    assert installed["scope"] == "chat:write,incoming-webhook"
    assert "refresh_token" not in installed.data
    hook = installed["incoming_webhook"]
    assert (hook["channel_id"], hook["channel"]) == (B_GENERAL, "#general")
    assert hook["url"].startswith("https://") and hook["configuration_url"].startswith("https://")

    bot = client(double, installed["access_token"])
    me = await bot.auth_test()
    assert (me["team_id"], me["user_id"]) == (B, installed["bot_user_id"])
    # A code is spent once.
    again = await refused(
        oauth.oauth_v2_access(
            client_id=double.client_id, client_secret=double.client_secret, code=code
        )
    )
    assert again.response["error"] == "invalid_code"


async def test_oauth_consent_denied_and_bad_requests(double: SlackApiDouble) -> None:
    status, query, target = await consent(double, "deny")
    assert (status, target) == (302, REDIRECT)
    assert query == {"error": ["access_denied"], "state": ["fake-state-1"]}
    assert double.grants == {}
    async with aiohttp.ClientSession() as http:
        bad = {"client_id": "someone-else", "redirect_uri": REDIRECT}
        async with http.get(double.oauth_url, params=bad) as page:
            assert page.status == 400 and "invalid_client_id" in await page.text()
        mismatch = {
            "client_id": double.client_id,
            "redirect_uri": REDIRECT,
            "team": A,
            "user": BEN,
            "decision": "allow",
        }
        async with http.post(double.oauth_url, data=mismatch, allow_redirects=False) as answer:
            assert answer.status == 400 and "not a member" in await answer.text()
    assert double.grants == {}


async def exchange(double: SlackApiDouble, code: str) -> dict[str, object]:
    oauth = AsyncWebClient(base_url=double.url)
    answer = await oauth.oauth_v2_access(
        client_id=double.client_id, client_secret=double.client_secret, code=code
    )
    return dict(answer.data)  # type: ignore[arg-type]


async def refresh(double: SlackApiDouble, refresh_token: str) -> dict[str, object]:
    oauth = AsyncWebClient(base_url=double.url)
    answer = await oauth.oauth_v2_access(
        client_id=double.client_id,
        client_secret=double.client_secret,
        grant_type="refresh_token",
        refresh_token=refresh_token,
    )
    return dict(answer.data)  # type: ignore[arg-type]


async def test_rotating_token_expires_and_its_refresh_token_works_once(
    double: SlackApiDouble,
) -> None:
    double.token_lifetime = 40
    first = await exchange(double, double.approve(B, BEN))
    assert first["expires_in"] == 40 and str(first["access_token"]).startswith("xoxe.xoxb-")
    old_token, old_refresh = str(first["access_token"]), str(first["refresh_token"])
    assert (await client(double, old_token).auth_test())["expires_in"] == 40

    second = await refresh(double, old_refresh)
    assert second["team"] == {"id": B, "name": "Beta"} and second["token_type"] == "bot"
    assert second["access_token"] != old_token and second["refresh_token"] != old_refresh
    with pytest.raises(SlackApiError) as reused:
        await refresh(double, old_refresh)
    assert reused.value.response["error"] == "invalid_refresh_token"

    double.advance(41)
    assert await error_of(client(double, old_token).auth_test()) == "token_expired"
    assert await error_of(client(double, str(second["access_token"])).auth_test()) == (
        "token_expired"
    )
    # An expired token's refresh token still refreshes (once).
    third = await refresh(double, str(second["refresh_token"]))
    assert (await client(double, str(third["access_token"])).auth_test())["team_id"] == B


async def test_auth_revoke_and_uninstall(double: SlackApiDouble) -> None:
    first, second = double.issue_token(B).value, double.issue_token(B).value
    beta = client(double, first)
    assert (await beta.auth_revoke(test=True))["revoked"] is False
    assert (await beta.auth_test())["team_id"] == B
    assert (await beta.auth_revoke())["revoked"] is True
    assert await error_of(beta.auth_test()) == "token_revoked"
    assert await error_of(beta.chat_postMessage(channel=B_GENERAL, text="x")) == "token_revoked"

    assert double.uninstall(B) == [second]
    assert await error_of(client(double, second).auth_test()) == "account_inactive"
    assert await error_of(client(double, "xoxb-never-issued").auth_test()) == "invalid_auth"
    # Another team is untouched.
    assert (await client(double, double.token).auth_test())["team_id"] == A
    assert double.messages.get(B_GENERAL, []) == []


@pytest.mark.parametrize("event_type", ["app_uninstalled", "tokens_revoked"])
async def test_signed_install_events_verify_with_slack_sdk(
    double: SlackApiDouble, event_type: str
) -> None:
    request = double.event_request(B, event_type, SIGNING_SECRET)
    verifier = SignatureVerifier(SIGNING_SECRET)
    assert verifier.is_valid_request(request.body, request.headers)
    assert not SignatureVerifier("some-other-fake-secret").is_valid_request(
        request.body, request.headers
    )
    assert not verifier.is_valid_request(request.body + b" ", request.headers)
    payload = json.loads(request.body)
    assert payload["team_id"] == B and payload["event"]["type"] == event_type
    assert payload["type"] == "event_callback" and payload["api_app_id"] == double.app_id
    if event_type == "tokens_revoked":
        assert payload["event"]["tokens"]["bot"] == [double.teams[B].bot_user_id]


async def test_org_wide_install_serves_the_team_named_by_team_id(double: SlackApiDouble) -> None:
    installed = await exchange(double, double.approve(ORG_TEAM, GRETA, enterprise_install=True))
    assert installed["team"] is None and installed["is_enterprise_install"] is True
    assert installed["enterprise"] == {"id": ORG, "name": f"Org {ORG}"}
    org = client(double, str(installed["access_token"]))
    me = await org.auth_test()
    assert me["enterprise_id"] == ORG and me["is_enterprise_install"] is True
    assert (await org.users_lookupByEmail(email="greta@grid.test"))["user"]["team_id"] == ORG_TEAM
    await org.chat_postMessage(channel=GRID_OPS, text="hello", team_id=ORG_TEAM)
    assert await error_of(org.chat_postMessage(channel=B_GENERAL, text="x")) == (
        "channel_not_found"
    )
    assert await error_of(org.auth_test(team_id=B)) == "team_access_not_granted"
    assert double.uninstall(ORG) == [installed["access_token"]]


async def test_sliding_window_is_shared_by_every_caller(double: SlackApiDouble) -> None:
    double.set_limit("chat.update", 3, 60.0)
    one = client(double, double.issue_token(B).value)
    two = client(double, double.issue_token(B).value)
    posted = await one.chat_postMessage(channel=B_GENERAL, text="v0")
    ts = posted["ts"]

    await one.chat_update(channel=B_GENERAL, ts=ts, text="v1")
    double.advance(30)
    await two.chat_update(channel=B_GENERAL, ts=ts, text="v2")
    await one.chat_update(channel=B_GENERAL, ts=ts, text="v3")
    refusal = await refused(two.chat_update(channel=B_GENERAL, ts=ts, text="lost"))
    assert refusal.response.status_code == 429
    assert refusal.response["error"] == "ratelimited"
    assert refusal.response.headers["Retry-After"] == "30"
    assert double.messages[B_GENERAL][0]["text"] == "v3"  # the refused call took no effect
    assert double.messages[B_GENERAL][0]["edited"] == 3
    assert double.rate_limited("chat.update", B) == 1 and double.rate_limited(team=A) == 0

    # The window slides: the first call leaves it after 60 s, the two later ones stay.
    double.advance(31)
    await two.chat_update(channel=B_GENERAL, ts=ts, text="v4")
    again = await refused(one.chat_update(channel=B_GENERAL, ts=ts, text="lost"))
    assert 1 <= int(again.response.headers["Retry-After"]) <= 30
    assert double.rate_limited("chat.update") == 2
    assert double.messages[B_GENERAL][0]["text"] == "v4"
    # Another team has its own window.
    acme = client(double, double.token)
    double.enforce_rate_limits(True, team_id=A)
    a_ts = (await acme.chat_postMessage(channel=A_GENERAL, text="a"))["ts"]
    await acme.chat_update(channel=A_GENERAL, ts=a_ts, text="a1")


async def test_post_message_pace_per_channel_and_team_cap(double: SlackApiDouble) -> None:
    beta = client(double, double.issue_token(B).value)
    await beta.chat_postMessage(channel=B_GENERAL, text="one")
    refusal = await refused(beta.chat_postMessage(channel=B_GENERAL, text="two"))
    assert refusal.response.status_code == 429 and refusal.response.headers["Retry-After"] == "1"
    await beta.chat_postMessage(channel=B_CONNECT, text="other channel")
    assert [m["text"] for m in double.messages[B_GENERAL]] == ["one"]
    double.advance(1.0)
    await beta.chat_postMessage(channel=B_GENERAL, text="two")
    assert double.rate_limited("chat.postMessage", B) == 1

    double.set_limit("chat.postMessage", 3, 60.0)  # the per-team cap
    capped = await refused(beta.chat_postMessage(channel=double.dm_channel(BEN), text="dm"))
    assert capped.response.status_code == 429
    assert int(capped.response.headers["Retry-After"]) >= 58
    assert double.dm_channel(BEN) not in double.messages


async def test_default_team_unlimited_unless_asked(double: SlackApiDouble) -> None:
    acme = client(double, double.token)
    for n in range(3):
        await acme.chat_postMessage(channel=A_GENERAL, text=f"fast {n}")
    assert double.rate_limited() == 0

    strict = SlackApiDouble(rate_limits=True, limits={"users.info": (2, 60.0)})
    strict.add_user(ANNA, "anna")
    await strict.start()
    try:
        lenient = client(strict, strict.token)
        await lenient.users_info(user=ANNA)
        await lenient.users_info(user=ANNA)
        assert (await refused(lenient.users_info(user=ANNA))).response.status_code == 429
        strict.enforce_rate_limits(False)
        await lenient.users_info(user=ANNA)
        assert strict.rate_limited("users.info", strict.team_id) == 1
    finally:
        await strict.stop()


async def test_history_for_apps_outside_the_marketplace(double: SlackApiDouble) -> None:
    beta = client(double, double.issue_token(B).value)
    double.enforce_rate_limits(False, team_id=B)
    for n in range(20):
        await beta.chat_postMessage(channel=B_GENERAL, text=f"m{n}")
    assert len((await beta.conversations_history(channel=B_GENERAL))["messages"]) == 20

    double.history_limited = True
    page = await beta.conversations_history(channel=B_GENERAL, limit=100)
    assert len(page["messages"]) == 15 and page["has_more"] is True
    assert page["messages"][0]["text"] == "m19"
    refusal = await refused(beta.conversations_history(channel=B_GENERAL))
    assert refusal.response.status_code == 429
    assert int(refusal.response.headers["Retry-After"]) == 60
    double.advance(60)
    assert len((await beta.conversations_history(channel=B_GENERAL))["messages"]) == 15


async def test_client_credentials_as_form_fields_and_injected_faults(
    double: SlackApiDouble,
) -> None:
    code = double.approve(B, BEN)
    double.fail("oauth.v2.access", Fault(kind="http", status=503))
    with pytest.raises(SlackApiError) as unavailable:
        await exchange(double, code)
    assert unavailable.value.response.status_code == 503
    # The failed exchange spent nothing: the code still works, credentials in the form.
    form = {"client_id": double.client_id, "client_secret": double.client_secret, "code": code}
    async with (
        aiohttp.ClientSession() as http,
        http.post(double.url + "oauth.v2.access", data=form) as answer,
    ):
        installed = await answer.json()
    assert installed["ok"] is True and installed["team"]["id"] == B

    # A fault for one team leaves the others alone.
    double.fail("auth.test", Fault(kind="error", error="fatal_error", team=B))
    assert (await client(double, double.token).auth_test())["team_id"] == A
    assert await error_of(client(double, installed["access_token"]).auth_test()) == "fatal_error"
    assert (await client(double, installed["access_token"]).auth_test())["team_id"] == B
