"""One Slack tenant never touches another: clicks, the deny modal, Resume workflow and
`/taskjuice` count only from the Slack team bound to the workspace, and only that team's
admins/owners (or the installer) route its alerts. Two teams on one bot in distributed mode
(installed through the Slack double's OAuth v2 over HTTP), and single-workspace mode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest

from bot.devkit.slack_api import SlackApiDouble
from bot.slack.blocks import DENY_MODAL, button_value
from bot.slack.interactions import FOREIGN_TEXT
from bot.task_view import TaskView
from tests.conftest import (
    Service,
    approval_body,
    slack_settings,
    start_on_free_ports,
    start_service,
)
from tests.distributed_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    distributed_settings,
    install_team,
)
from tests.integration.test_slack_distribution import KEY
from tests.slack_support import (
    ALERTS,
    APPROVALS,
    DANA,
    LEE,
    TEAM,
    SlackUserAgent,
    block_action,
    button,
    sign,
    workspace,
)
from tests.support import CallbackReceiver, eventually

SECRET = "fake-signing-secret-tenants"
BETA = "T0BETA001"
ADMIN, INSTALLER = "U0ADM0001", "U0INS0001"
BEN, EVE = "U0BEN0001", "U0EVE0001"  # Beta's admin; Beta's member who shares Dana's email
BETA_ALERTS = "C0BETAAL1"


def two_teams() -> SlackApiDouble:
    """Acme (the tests' workspace, with an admin and a non-admin installer) and Beta."""
    double = workspace()
    double.client_id, double.client_secret = CLIENT_ID, CLIENT_SECRET
    double.add_user(ADMIN, "admin", "admin@acme.test", is_admin=True)
    double.add_user(INSTALLER, "installer", "installer@acme.test")
    double.add_team(BETA, "Beta", rate_limits=False)
    double.add_user(BEN, "ben", "ben@beta.test", team_id=BETA, is_admin=True)
    double.add_user(EVE, "eve", "dana@acme.test", team_id=BETA)
    double.add_channel(BETA_ALERTS, "beta-alerts", team_id=BETA)
    return double


class Tenant:
    """Someone of one team sending signed requests to the bot."""

    def __init__(self, agent: SlackUserAgent, secret: str) -> None:
        self.agent, self.secret = agent, secret

    async def interact(self, payload: dict[str, Any]) -> tuple[int, str]:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.agent.send(
            body, "application/x-www-form-urlencoded", sign(body, secret=self.secret)
        )

    async def command(self, text: str, user: str, team: str, channel: str) -> str:
        body = urlencode(
            {
                "team_id": team,
                "channel_id": channel,
                "user_id": user,
                "command": "/taskjuice",
                "text": text,
                "api_app_id": "A0TASKJ01",
                "response_url": "http://127.0.0.1:9/commands/1",
                "trigger_id": "1.2.x",
            }
        ).encode()
        status, answer = await self.agent.send(
            body, "application/x-www-form-urlencoded", sign(body, secret=self.secret)
        )
        assert status == 200, answer
        return answer


def click_payload(
    value: str, action: str, *, user: str, user_team: str, team: str, channel: str
) -> dict[str, Any]:
    """A block_actions payload: `team` is whose workspace it happened in, `user_team` the
    clicker's own team (they differ for a Slack Connect guest)."""
    return {
        "type": "block_actions",
        "team": {"id": team},
        "user": {"id": user, "team_id": user_team},
        "api_app_id": "A0TASKJ01",
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": channel},
        "trigger_id": "1.2.trigger",
        "channel": {"id": channel},
        "actions": [{"action_id": action, "block_id": "b", "value": value, "type": "button"}],
    }


@pytest.fixture
async def double() -> AsyncIterator[SlackApiDouble]:
    slack = two_teams()
    await slack.start()
    yield slack
    await slack.stop()


@pytest.fixture
async def distributed(
    database_url: str, receiver: CallbackReceiver, double: SlackApiDouble
) -> AsyncIterator[Service]:
    svc = await start_on_free_ports(
        lambda port: distributed_settings(
            receiver.url,
            port,
            api_url=double.url,
            oauth_url=double.oauth_url,
            signing_secret=SECRET,
            key=KEY,
        ),
        database_url,
    )
    await install_team(svc, double, "acme", TEAM, INSTALLER)
    await install_team(svc, double, "beta", BETA, BEN)
    yield svc
    await svc.close()


@pytest.fixture
async def tenant(distributed: Service) -> AsyncIterator[Tenant]:
    agent = SlackUserAgent(distributed.base_url)
    yield Tenant(agent, SECRET)
    await agent.close()


async def new_task(svc: Service, pool: asyncpg.Pool) -> tuple[str, str]:
    """An approval of acme (approvers: dana by email, lee by Slack id) and its button value."""
    body = approval_body(deliver={"slack": False, "email": False})
    body.pop("requested_by")  # nobody to tell apart from the requester
    status, task = await svc.request("POST", "/api/v1/approvals", json=body)
    assert status == 201, task
    async with pool.acquire() as conn:
        digest = await conn.fetchval("SELECT content_hash FROM tasks WHERE id = $1", task["id"])
    return task["id"], button_value(TaskView.from_row(task), digest)


async def status_of(svc: Service, task_id: str) -> str:
    _, task = await svc.request("GET", f"/api/v1/approvals/{task_id}")
    return str(task["status"])


async def ephemerals(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT payload FROM outbox WHERE kind = 'slack.ephemeral' ORDER BY id"
        )
    return [
        json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"] for r in rows
    ]


async def test_a_click_from_another_team_decides_nothing_and_is_refused_privately(
    distributed: Service, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    task_id, value = await new_task(distributed, pool)
    # Ben, of Beta (installed and bound to "beta"), presses Approve on acme's task in Beta.
    status, _ = await tenant.interact(
        click_payload(
            value, "taskjuice_approve", user=BEN, user_team=BETA, team=BETA, channel=BETA_ALERTS
        )
    )
    assert status == 200
    assert await status_of(distributed, task_id) == "pending"
    [told] = await ephemerals(pool)
    assert told == {"channel": BETA_ALERTS, "user": BEN, "text": FOREIGN_TEXT, "team_id": BETA}

    # Lee, of Acme, decides the same task.
    status, _ = await tenant.interact(
        click_payload(
            value, "taskjuice_approve", user=LEE, user_team=TEAM, team=TEAM, channel=ALERTS
        )
    )
    assert status == 200 and await status_of(distributed, task_id) == "approved"


async def test_a_slack_connect_guest_with_an_approvers_email_is_refused(
    distributed: Service, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    task_id, value = await new_task(distributed, pool)
    # Eve (Beta) shares dana@acme.test and clicks in Acme's channel shared with Beta.
    status, _ = await tenant.interact(
        click_payload(
            value, "taskjuice_approve", user=EVE, user_team=BETA, team=TEAM, channel=ALERTS
        )
    )
    assert status == 200 and await status_of(distributed, task_id) == "pending"
    [told] = await ephemerals(pool)
    assert told["user"] == EVE and told["text"] == FOREIGN_TEXT and told["team_id"] == TEAM
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM decisions WHERE actor_slack_user_id = $1", EVE
            )
            == 0
        )


async def test_a_deny_modal_sent_from_another_team_is_not_recorded(
    distributed: Service, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    task_id, value = await new_task(distributed, pool)
    meta = json.dumps({"v": value, "c": ALERTS, "k": "message"})
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": EVE, "team_id": BETA},
        "api_app_id": "A0TASKJ01",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": DENY_MODAL,
            "private_metadata": meta,
            "state": {
                "values": {"reason": {"reason": {"type": "plain_text_input", "value": "no"}}}
            },
        },
    }
    status, answer = await tenant.interact(payload)
    assert status == 200
    shown = json.loads(answer)
    assert shown["response_action"] == "update" and FOREIGN_TEXT in json.dumps(shown["view"])
    assert await status_of(distributed, task_id) == "pending"


async def test_subscribe_only_in_the_bound_team_by_its_admins_or_the_installer(
    distributed: Service, tenant: Tenant
) -> None:
    async def routed() -> Any:
        _, view = await distributed.request("GET", "/api/v1/workspaces/acme")
        return view["slack_channel"]

    before = await routed()
    # Ben is an admin, of Beta: acme is not Beta's.
    said = await tenant.command("subscribe acme", BEN, BETA, BETA_ALERTS)
    assert "Only the Slack workspace connected" in said and await routed() == before
    # Dana is Acme's, but neither an admin nor the installer.
    said = await tenant.command("subscribe acme", DANA, TEAM, APPROVALS)
    assert "Only an admin or owner" in said and await routed() == before
    said = await tenant.command("unsubscribe", DANA, TEAM, APPROVALS)
    assert await routed() == before
    # Acme's admin, and the (non-admin) installer, may.
    said = await tenant.command("subscribe acme", ADMIN, TEAM, APPROVALS)
    assert "now receives the alerts of *acme*" in said and await routed() == APPROVALS
    said = await tenant.command("subscribe acme", INSTALLER, TEAM, ALERTS)
    assert "now receives the alerts of *acme*" in said and await routed() == ALERTS
    # Beta's admin cannot unsubscribe acme's channel either.
    said = await tenant.command("unsubscribe", BEN, BETA, ALERTS)
    assert "Only the Slack workspace connected" in said and await routed() == ALERTS
    said = await tenant.command("unsubscribe", ADMIN, TEAM, ALERTS)
    assert "no longer receives the alerts of *acme*" in said and await routed() is None


async def test_approvals_list_only_the_viewers_teams_workspaces(
    distributed: Service, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    await new_task(distributed, pool)
    # Lee (Acme) is an approver; Eve (Beta) would match by Lee's id only if ids were shared.
    mine = await tenant.command("approvals", LEE, TEAM, APPROVALS)
    assert "Refund $4,000" in mine
    theirs = await tenant.command("approvals", LEE, BETA, BETA_ALERTS)
    assert "Refund" not in theirs and "Nothing is waiting" in theirs


async def test_resume_only_by_a_member_of_the_bound_team_recorded_with_its_team(
    distributed: Service, tenant: Tenant, receiver: CallbackReceiver, pool: asyncpg.Pool
) -> None:
    status, answer = await distributed.request(
        "POST",
        "/api/v1/events/throughput",
        json={"workspace": "acme", "workflow": {"id": "wf_9", "name": "Sync"}, "state": "tripped"},
    )
    assert status == 202, answer
    alert_id = str(answer["alerts"][0]["alert_id"])
    resume = "taskjuice_resume_workflow"

    refused = click_payload(alert_id, resume, user=EVE, user_team=BETA, team=TEAM, channel=ALERTS)
    assert (await tenant.interact(refused))[0] == 200
    assert any(
        e["user"] == EVE and "another Slack workspace" in e["text"] for e in await ephemerals(pool)
    )
    async with pool.acquire() as conn:
        state = await conn.fetchval("SELECT state FROM alert_state WHERE id = $1", int(alert_id))
    assert state == "tripped"

    accepted = click_payload(alert_id, resume, user=LEE, user_team=TEAM, team=TEAM, channel=ALERTS)
    assert (await tenant.interact(accepted))[0] == 200

    def resumed() -> list[dict[str, Any]]:
        return [a.json for a in receiver.delivered if a.json["type"] == "workflow.resume_requested"]

    [callback] = await eventually(resumed, what="resume callback")
    assert callback["data"]["requested_by"]["slack_user_id"] == LEE
    assert callback["data"]["requested_by"]["slack_team_id"] == TEAM


# --- single-workspace mode ---------------------------------------------------------------


@pytest.fixture
async def connect(double: SlackApiDouble) -> SlackApiDouble:
    """Acme's approvals channel shared with Beta (Slack Connect)."""
    double.share_channel(APPROVALS, BETA)
    return double


async def single(
    database_url: str, receiver: CallbackReceiver, double: SlackApiDouble, **changes: Any
) -> Service:
    return await start_service(slack_settings(receiver, double, **changes), database_url)


async def test_single_mode_a_connect_guest_with_an_approvers_email_is_refused(
    database_url: str, receiver: CallbackReceiver, connect: SlackApiDouble
) -> None:
    svc = await single(database_url, receiver, connect)
    agent = SlackUserAgent(svc.base_url)
    try:
        body = approval_body(deliver={"slack": True, "email": False, "slack_channel": APPROVALS})
        status, task = await svc.request("POST", "/api/v1/approvals", json=body)
        assert status == 201
        [message] = await eventually(lambda: connect.messages.get(APPROVALS), what="the post")
        payload = block_action(message, button(message, "taskjuice_approve"), EVE)
        payload["user"]["team_id"] = BETA  # Eve is Beta's, in Acme's shared channel
        status, _ = await agent.interact(payload)
        assert status == 200
        told = await eventually(
            lambda: [e for e in connect.ephemeral if e.get("user") == EVE], what="the refusal"
        )
        assert FOREIGN_TEXT in json.dumps(told)
        assert await status_of(svc, task["id"]) == "pending"
    finally:
        await agent.close()
        await svc.close()


@pytest.mark.parametrize("anyone", [False, True])
async def test_single_mode_subscribe_needs_an_admin_unless_anyone_may(
    database_url: str, receiver: CallbackReceiver, double: SlackApiDouble, anyone: bool
) -> None:
    svc = await single(database_url, receiver, double, slack_subscribe_anyone=anyone)
    agent = SlackUserAgent(svc.base_url)
    try:
        _, said = await agent.command("subscribe acme", DANA, channel=ALERTS)
        if anyone:
            assert "now receives the alerts of *acme*" in said
        else:
            assert "Only an admin or owner" in said
            _, view = await svc.request("GET", "/api/v1/workspaces/acme")
            assert view["slack_channel"] is None
            _, said = await agent.command("subscribe acme", ADMIN, channel=ALERTS)
            assert "now receives the alerts of *acme*" in said
        _, view = await svc.request("GET", "/api/v1/workspaces/acme")
        assert view["slack_channel"] == ALERTS
    finally:
        await agent.close()
        await svc.close()
