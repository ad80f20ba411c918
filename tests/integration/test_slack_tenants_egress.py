"""Distributed mode, what leaves for Slack: every call with the token of the team it is for,
org-wide installs naming the team, revoked installations giving up their Slack work and mailing
their pending approvals, and a rotating token refreshed once by two processes.

Everything over HTTP: the bot on 127.0.0.1, the Slack Web API double (installs through its
OAuth v2), the callback receiver and a real SMTP catcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.devkit.mail_catcher import MailCatcher
from bot.devkit.slack_api import Fault, SlackApiDouble
from bot.runtime.config import Settings
from bot.runtime.keys import TEAMS
from store import slack as slack_store
from tests.conftest import Service, approval_body, mail_settings, start_on_free_ports
from tests.distributed_support import distributed_changes, fake_key, install_team
from tests.support import CallbackReceiver, eventually, free_port

SIGNING = "fake-signing-secret-egress"
KEY = fake_key("egress")
SLACK_KINDS = ["slack.post", "slack.update", "slack.ephemeral", "slack.alert", "slack.home"]


@pytest.fixture
async def double() -> AsyncIterator[SlackApiDouble]:
    """Two teams (Alpha, Beta) and an Enterprise Grid organisation's team (Grid)."""
    slack = SlackApiDouble(rate_limits=False)
    slack.add_team("T0ALPHA", "Alpha")
    slack.add_team("T0BETA", "Beta")
    slack.add_team("T0GRID", "Grid", enterprise_id="E0ORG")
    for team, who in (("T0ALPHA", "alpha"), ("T0BETA", "beta"), ("T0GRID", "grid")):
        suffix = who.upper()
        slack.add_user(f"U0ADM{suffix}", "Admin", f"admin@{who}.test", team_id=team, is_admin=True)
        slack.add_user(f"U0APP{suffix}", "Approver", f"approver@{who}.test", team_id=team)
        slack.add_user(f"U0SEC{suffix}", "Second", f"second@{who}.test", team_id=team)
        slack.add_channel(f"C0{suffix}", f"{who}-approvals", team_id=team)
    await slack.start()
    yield slack
    await slack.stop()


def egress_settings(
    receiver: CallbackReceiver, catcher: MailCatcher, double: SlackApiDouble, port: int
) -> Settings:
    """Distributed mode with email on (no inbound listener), talking to the double."""
    slack = distributed_changes(
        port, api_url=double.url, oauth_url=double.oauth_url, signing_secret=SIGNING, key=KEY
    )
    return mail_settings(
        receiver, catcher, port, inbound_smtp_port=None, slack_post_interval=0.05, **slack
    )


@pytest.fixture
async def bot(
    database_url: str, receiver: CallbackReceiver, catcher: MailCatcher, double: SlackApiDouble
) -> AsyncIterator[Service]:
    svc = await start_on_free_ports(
        lambda port: egress_settings(receiver, catcher, double, port), database_url
    )
    yield svc
    await svc.close()


def bot_tokens(double: SlackApiDouble, *, team: str | None = None, org: str | None = None) -> set:
    return {
        t.value
        for t in double.tokens.values()
        if t.kind == "bot"
        and ((team is not None and t.team_id == team) or (org and t.enterprise_id == org))
    }


async def request(svc: Service, workspace: str, **changes: Any) -> str:
    body = approval_body(workspace=workspace, run_id=f"run-{workspace}-{free_port()}", **changes)
    status, created = await svc.request("POST", "/api/v1/approvals", json=body)
    assert status == 201, created
    return str(created["id"])


async def deliveries_of(
    pool: asyncpg.Pool, task_id: str, channel: str | None = None
) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT channel, status, slack_team_id, last_error, mail_to FROM deliveries"
                " WHERE task_id = $1::uuid AND channel = coalesce($2, channel) ORDER BY id",
                task_id,
                channel,
            )
        )


def uninstalled(receiver: CallbackReceiver) -> list[dict[str, Any]]:
    return [r.json for r in receiver.delivered if r.json["type"] == "slack.uninstalled"]


async def test_each_workspaces_request_reaches_only_its_own_team_with_its_token(
    bot: Service, double: SlackApiDouble, pool: asyncpg.Pool
) -> None:
    await install_team(bot, double, "alpha", "T0ALPHA", "U0ADMALPHA", "C0ALPHA")
    await install_team(bot, double, "beta", "T0BETA", "U0ADMBETA", "C0BETA")
    deliver = {"slack": True, "email": False, "slack_channel": None}
    a_dm = await request(
        bot, "alpha", approvers=[{"email": "approver@alpha.test"}], deliver=deliver
    )
    a_post = await request(
        bot,
        "alpha",
        approvers=[{"email": "second@alpha.test"}],
        deliver=deliver | {"slack_channel": "C0ALPHA"},
    )
    b_dm = await request(bot, "beta", approvers=[{"slack_user_id": "U0APPBETA"}], deliver=deliver)
    # Beta's approver named on Alpha's request: looked up in Alpha only, so never reached.
    crossing = await request(
        bot, "alpha", approvers=[{"email": "approver@beta.test"}], deliver=deliver
    )

    # Slack rows only: the crossing approver, whom Slack failed for good, is mailed instead
    # (failover), whenever the sweeper gets to it.
    async def settled() -> bool:
        rows = [
            r for t in (a_dm, a_post, b_dm, crossing) for r in await deliveries_of(pool, t, "slack")
        ]
        return len(rows) == 4 and all(r["status"] != "queued" for r in rows)

    await eventually(settled)
    alpha, beta = bot_tokens(double, team="T0ALPHA"), bot_tokens(double, team="T0BETA")
    assert alpha and beta and not alpha & beta
    posts = double.calls_to("chat.postMessage")
    assert {c.team for c in posts} == {"T0ALPHA", "T0BETA"}
    for call in posts:
        assert call.token in (alpha if call.team == "T0ALPHA" else beta)
    alpha_channels = {m["channel"] for m in double.messages_of("T0ALPHA")}
    assert alpha_channels == {double.dm_channel("U0APPALPHA"), "C0ALPHA"}
    assert {m["channel"] for m in double.messages_of("T0BETA")} == {double.dm_channel("U0APPBETA")}
    for task in (a_dm, a_post):
        [row] = await deliveries_of(pool, task, "slack")
        assert row["status"] == "sent" and row["slack_team_id"] == "T0ALPHA"
    [row] = await deliveries_of(pool, b_dm, "slack")
    assert row["status"] == "sent" and row["slack_team_id"] == "T0BETA"
    [row] = await deliveries_of(pool, crossing, "slack")
    assert row["status"] == "failed" and "users_not_found" in row["last_error"]
    lookups = double.calls_to("users.lookupByEmail")
    assert {c.args["email"]: c.team for c in lookups} == {
        "approver@alpha.test": "T0ALPHA",
        "second@alpha.test": "T0ALPHA",
        "approver@beta.test": "T0ALPHA",
    }
    assert all(c.token in alpha for c in lookups)
    async with pool.acquire() as conn:  # the user cache keeps each answer under its team
        assert await slack_store.user_of_email(conn, "T0ALPHA", "approver@alpha.test")
        assert await slack_store.user_of_email(conn, "T0BETA", "approver@alpha.test") is None


async def test_a_workspace_without_slack_gets_no_slack_work(
    bot: Service, double: SlackApiDouble, pool: asyncpg.Pool, catcher: MailCatcher
) -> None:
    task = await request(bot, "nobody", approvers=[{"email": "approver@alpha.test"}])

    await eventually(lambda: any("approver@alpha.test" in m.rcpt_tos for m in catcher.messages))
    rows = await deliveries_of(pool, task)
    assert [r["channel"] for r in rows] == ["email"]
    assert double.calls_to("chat.postMessage") == []


async def test_an_org_wide_install_names_the_team_on_its_calls(
    bot: Service, double: SlackApiDouble, pool: asyncpg.Pool
) -> None:
    await install_team(bot, double, "grid", "T0GRID", "U0ADMGRID", "C0GRID", org_wide=True)
    deliver = {"slack": True, "email": False, "slack_channel": None}
    dm = await request(bot, "grid", approvers=[{"email": "approver@grid.test"}], deliver=deliver)
    post = await request(
        bot,
        "grid",
        approvers=[{"email": "second@grid.test"}],
        deliver=deliver | {"slack_channel": "C0GRID"},
    )

    async def sent() -> bool:
        rows = [r for t in (dm, post) for r in await deliveries_of(pool, t)]
        return len(rows) == 2 and all(r["status"] == "sent" for r in rows)

    await eventually(sent)
    org_tokens = {t.value for t in double.tokens.values() if t.kind == "bot" and not t.team_id}
    assert org_tokens  # an org-wide token: no team of its own
    for method in ("users.lookupByEmail", "conversations.open", "chat.postMessage"):
        calls = double.calls_to(method)
        assert calls, method
        for call in calls:
            assert call.token in org_tokens
            assert call.args.get("team_id") == "T0GRID", (method, call.args)
    assert {m["channel"] for m in double.messages_of("T0GRID")} == {
        double.dm_channel("U0APPGRID"),
        "C0GRID",
    }


async def dead_slack_items(pool: asyncpg.Pool, task_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT kind, status, last_error FROM outbox"
                " WHERE task_id = $1::uuid AND kind = ANY($2::text[])",
                task_id,
                SLACK_KINDS,
            )
        )


async def test_uninstall_gives_up_slack_work_mails_pending_approvals_and_says_so_once(
    bot: Service,
    double: SlackApiDouble,
    pool: asyncpg.Pool,
    catcher: MailCatcher,
    receiver: CallbackReceiver,
) -> None:
    await install_team(bot, double, "alpha", "T0ALPHA", "U0ADMALPHA", "C0ALPHA")
    await install_team(bot, double, "beta", "T0BETA", "U0ADMBETA", "C0BETA")
    async with pool.acquire() as conn:  # Alpha's profile email of a Slack-only approver
        await slack_store.cache_user(conn, "T0ALPHA", "U0SECALPHA", "second@alpha.test", None)
    # Slack is failing for Alpha: its post stays queued, retried.
    double.fail("chat.postMessage", Fault("http", times=1000, status=503, team="T0ALPHA"))
    slack_only = {"slack": True, "email": False, "slack_channel": None}
    task = await request(
        bot,
        "alpha",
        approvers=[{"email": "approver@alpha.test"}, {"slack_user_id": "U0SECALPHA"}],
        deliver=slack_only,
    )
    other = await request(
        bot, "beta", approvers=[{"email": "approver@beta.test"}], deliver=slack_only
    )

    async def retrying() -> bool:
        async with pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE task_id = $1::uuid AND kind = 'slack.post'"
                    " AND status = 'pending' AND attempts >= 1",
                    task,
                )
            )

    await eventually(retrying)
    # Slack's events come first here: with the tokens dead first, a retry in flight could
    # meet `account_inactive` and revoke as invalid_auth (that path has its own test).
    for kind in ("app_uninstalled", "tokens_revoked"):  # Slack sends both; said once
        event = double.event_request("T0ALPHA", kind, SIGNING)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{bot.base_url}/slack/events", data=event.body, headers=event.headers
            ) as response,
        ):
            assert response.status == 200
    double.uninstall("T0ALPHA")

    items = await dead_slack_items(pool, task)
    assert items and all(i["status"] == "dead" for i in items)
    assert all("revoked (app_uninstalled)" in i["last_error"] for i in items)
    rows = await deliveries_of(pool, task)
    assert [r["status"] for r in rows if r["channel"] == "slack"] == ["failed", "failed"]
    mailed = {"approver@alpha.test", "second@alpha.test"}
    await eventually(lambda: mailed <= {to for m in catcher.messages for to in m.rcpt_tos})
    await eventually(lambda: len(uninstalled(receiver)) == 1)
    [said] = uninstalled(receiver)
    assert said["data"]["workspace"] == "alpha" and said["data"]["reason"] == "app_uninstalled"
    _, shown = await bot.request("GET", "/api/v1/workspaces/alpha")
    assert shown["slack"]["status"] == "revoked"

    # Beta is untouched; new work for Alpha goes nowhere near Slack.
    await eventually(lambda: _sent(pool, other))
    posts_before = len(double.calls_to("chat.postMessage"))
    later = await request(
        bot, "alpha", approvers=[{"email": "approver@alpha.test"}], deliver=slack_only
    )
    await eventually(lambda: _changed_handled(pool, later))
    assert [r for r in await deliveries_of(pool, later) if r["channel"] == "slack"] == []
    assert len(double.calls_to("chat.postMessage")) == posts_before
    assert len(uninstalled(receiver)) == 1
    assert not {to for m in catcher.messages for to in m.rcpt_tos} & {"approver@beta.test"}

    # A new install link restores Slack delivery for new work.
    double.faults.clear()
    await install_team(bot, double, "alpha", "T0ALPHA", "U0ADMALPHA", "C0ALPHA")
    again = await request(
        bot, "alpha", approvers=[{"email": "approver@alpha.test"}], deliver=slack_only
    )
    await eventually(lambda: _sent(pool, again))


async def _sent(pool: asyncpg.Pool, task_id: str) -> bool:
    rows = await deliveries_of(pool, task_id)
    return bool(rows) and all(r["status"] == "sent" for r in rows)


async def _changed_handled(pool: asyncpg.Pool, task_id: str) -> bool:
    async with pool.acquire() as conn:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE kind = 'task.changed' AND status = 'done'"
                " AND payload::text LIKE '%' || $1 || '%'",
                task_id,
            )
        )


async def test_a_call_answered_invalid_auth_revokes_the_team_the_same_way(
    bot: Service,
    double: SlackApiDouble,
    pool: asyncpg.Pool,
    catcher: MailCatcher,
    receiver: CallbackReceiver,
) -> None:
    await install_team(bot, double, "alpha", "T0ALPHA", "U0ADMALPHA", "C0ALPHA")
    for token in bot_tokens(double, team="T0ALPHA"):
        double.revoke(token, "invalid_auth")
    task = await request(
        bot,
        "alpha",
        approvers=[{"email": "approver@alpha.test"}],
        deliver={"slack": True, "email": False, "slack_channel": "C0ALPHA"},
    )

    await eventually(lambda: len(uninstalled(receiver)) == 1)
    [said] = uninstalled(receiver)
    assert said["data"]["reason"] == "invalid_auth"
    [slack_row] = [r for r in await deliveries_of(pool, task) if r["channel"] == "slack"]
    assert slack_row["status"] == "failed" and "invalid_auth" in slack_row["last_error"]
    items = await dead_slack_items(pool, task)
    assert items and all(i["status"] == "dead" for i in items)
    await eventually(lambda: any("approver@alpha.test" in m.rcpt_tos for m in catcher.messages))
    _, shown = await bot.request("GET", "/api/v1/workspaces/alpha")
    assert shown["slack"]["status"] == "revoked"
    answered = [c.answer for c in double.calls_to("chat.postMessage")]
    assert answered == ["invalid_auth"]  # given up at once, never retried


async def test_two_processes_with_a_due_token_spend_its_refresh_token_once(
    database_url: str,
    receiver: CallbackReceiver,
    catcher: MailCatcher,
    double: SlackApiDouble,
    pool: asyncpg.Pool,
) -> None:
    double.token_lifetime = 40
    first = await start_on_free_ports(
        lambda port: egress_settings(receiver, catcher, double, port), database_url
    )
    second = await start_on_free_ports(
        lambda port: egress_settings(receiver, catcher, double, port), database_url
    )
    try:
        await install_team(first, double, "alpha", "T0ALPHA", "U0ADMALPHA", "C0ALPHA")
        [original] = bot_tokens(double, team="T0ALPHA")
        async with pool.acquire() as conn:  # 5 of its 40 seconds left, so due
            await conn.execute(
                "UPDATE slack_installations SET bot_token_expires_at = now() + interval '5 s',"
                " bot_token_issued_at = now() - interval '35 s' WHERE team_id = 'T0ALPHA'"
            )
        deliver = {"slack": True, "email": False, "slack_channel": "C0ALPHA"}
        tasks = await asyncio.gather(
            *(
                request(svc, "alpha", approvers=[{"email": "approver@alpha.test"}], deliver=deliver)
                for svc in (first, second, first, second, first, second)
            )
        )
        # Both processes speak for Alpha at once.
        clients = await asyncio.gather(
            first.app[TEAMS].client_for("T0ALPHA"), second.app[TEAMS].client_for("T0ALPHA")
        )

        async def all_sent() -> bool:
            return all([await _sent(pool, t) for t in tasks])

        await eventually(all_sent)
        refreshes = [
            c
            for c in double.calls_to("oauth.v2.access")
            if c.args.get("grant_type") == "refresh_token"
        ]
        assert len(refreshes) == 1 and refreshes[0].answer == "ok"
        assert clients[0].token == clients[1].token != original
        posts = double.calls_to("chat.postMessage")
        assert len(posts) == 6 and all(c.answer == "ok" for c in posts)
        assert {c.token for c in posts} == {clients[0].token}
        assert uninstalled(receiver) == []
    finally:
        await second.close()
        await first.close()
