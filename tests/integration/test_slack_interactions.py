"""The core behind the Slack edge (bot/slack/interactions.py), against a real database:
what a click, the deny modal, a command and App Home come to, and what they queue."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import asyncpg
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot import approvals
from bot.decisions import Verdict
from bot.devkit.slack_api import SlackApiDouble
from bot.domain import Actor
from bot.platform.validation import parse_new_approval
from bot.slack import interactions
from bot.slack.blocks import button_value
from bot.slack.delivery import EPHEMERAL, HOME
from bot.slack.interactions import Button, Click, Command
from bot.slack.teams import SlackTeams
from tests.conftest import approval_body
from tests.task_views import task_view

LEE = Actor(slack_user_id="U024BE7LH", slack_team_id="T0001")
STRANGER = Actor(slack_user_id="U0STRANGER", slack_team_id="T0001")


@pytest.fixture
async def teams(pool: asyncpg.Pool) -> Any:
    """Single-workspace mode: the one team, T0001, played by the Slack double over HTTP."""
    double = SlackApiDouble(team_id="T0001")
    double.add_user("U1", "admin", "admin@acme.test", is_admin=True)
    double.add_user("U2", "member", "member@acme.test")
    await double.start()
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=double.token, base_url=double.url, session=session)
        yield SlackTeams(pool=pool, session=session, api_url=double.url, single=client)
    await double.stop()


async def _task(pool: asyncpg.Pool, **changes: Any) -> dict[str, Any]:
    # The Slack approver is not known by email here: without a requester, nobody could be
    # the same person twice.
    body = approval_body(**changes)
    body.pop("requested_by")
    new = parse_new_approval(body, allow_proceed_irreversible=False)
    view, _ = await approvals.create(pool, new)
    return view


async def _button(pool: asyncpg.Pool, view: dict[str, Any]) -> Button:
    async with pool.acquire() as conn:
        digest = await conn.fetchval("SELECT content_hash FROM tasks WHERE id = $1", view["id"])
    return Button(UUID(view["id"]), view["tier"], digest)


async def _queued(pool: asyncpg.Pool, kind: str) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT payload FROM outbox WHERE kind = $1 ORDER BY id", kind)
    return [
        json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"] for r in rows
    ]


def test_a_button_value_is_read_only_when_it_is_ours() -> None:
    task_id = uuid4()
    ours = button_value(task_view(id=str(task_id), tier=1), "abc")
    assert Button.read(ours) == Button(task_id, 1, "abc")
    assert Button.read(ours.replace(str(task_id), "not-a-uuid")) is None
    assert Button.read("{}") is None
    assert Button.read("") is None


async def test_a_counted_click_in_a_channel_queues_nothing_a_refused_one_is_explained(
    pool: asyncpg.Pool, teams: SlackTeams
) -> None:
    view = await _task(pool)
    button = await _button(pool, view)
    click = Click(
        button=button, actor=LEE, channel="C0APPROVALS", message_ts="1.2", container="message"
    )
    first = await interactions.approve(pool, click, teams=teams)
    assert first is not None and first.verdict is Verdict.DECIDED
    assert await _queued(pool, EPHEMERAL) == []

    again = await interactions.approve(
        pool, Click(button=button, actor=STRANGER, channel="C0APPROVALS"), teams=teams
    )
    assert again is not None and again.verdict is Verdict.ALREADY_FINISHED
    [told] = await _queued(pool, EPHEMERAL)
    assert told["channel"] == "C0APPROVALS" and told["user"] == STRANGER.slack_user_id
    assert "Already approved" in told["text"]


async def test_a_click_on_no_task_is_explained_and_a_click_in_app_home_refreshes_it(
    pool: asyncpg.Pool, teams: SlackTeams
) -> None:
    gone = Click(button=Button(uuid4(), 0, "x"), actor=LEE, channel="C0APPROVALS")
    assert await interactions.approve(pool, gone, teams=teams) is None
    [told] = await _queued(pool, EPHEMERAL)
    assert told["user"] == LEE.slack_user_id and told["text"]

    view = await _task(pool)
    home = Click(button=await _button(pool, view), actor=LEE, container="view")
    result = await interactions.approve(pool, home, teams=teams)
    assert result is not None and result.changed
    assert {"user": LEE.slack_user_id, "team_id": LEE.slack_team_id} in await _queued(pool, HOME)
    assert len(await _queued(pool, EPHEMERAL)) == 1  # no channel: nothing to explain there


async def test_the_deny_modal_closes_on_a_denial_and_says_why_otherwise(
    pool: asyncpg.Pool, teams: SlackTeams
) -> None:
    view = await _task(pool)
    button = await _button(pool, view)
    assert (
        await interactions.deny_form(pool, Click(button=button, actor=LEE), "{}", teams=teams)
        is None
    )
    form = await interactions.deny_form(
        pool, Click(button=button, actor=LEE, trigger_id="trig"), '{"v": "x"}', teams=teams
    )
    assert form is not None and form["private_metadata"] == '{"v": "x"}'

    denied = Click(button=button, actor=LEE, reason="too much")
    assert await interactions.deny_submitted(pool, denied, teams=teams) is None
    notice = await interactions.deny_submitted(pool, denied, teams=teams)
    assert notice is not None and notice["type"] == "modal"
    assert "Already denied" in json.dumps(notice)


async def test_subscribe_follows_the_routing_rules(pool: asyncpg.Pool, teams: SlackTeams) -> None:
    # U1 is an admin of the one team (only admins and owners may route alerts).
    def typed(text: str, channel: str = "C0ALERTS", team: str = "T0001") -> Command:
        return Command(text=text, user="U1", team=team, channel=channel)

    async def say(command: Command) -> str:
        answer = await interactions.command(pool, command, app_url="https://app.test", teams=teams)
        return str(answer["text"])

    assert "not a workspace name" in await say(typed("subscribe bad/name"))
    assert "in the channel" in await say(typed("subscribe acme", channel="D0DIRECT"))
    assert "now receives the alerts of *acme*" in await say(typed("subscribe acme"))
    assert "Only the Slack workspace connected" in await say(
        typed("subscribe acme", team="T0OTHER")
    )
    assert await say(typed("unsubscribe")) == (
        "This channel no longer receives the alerts of *acme*."
    )
    assert await say(typed("unsubscribe")) == "This channel receives no TaskJuice alerts."
    assert "/taskjuice" in await say(typed("what"))


async def test_opening_app_home_remembers_the_viewer_and_refreshes_it(pool: asyncpg.Pool) -> None:
    await interactions.home_opened(pool, "T0001", "U0VIEWER")
    assert {"user": "U0VIEWER"} in await _queued(pool, HOME)
    async with pool.acquire() as conn:
        seen = await conn.fetchval(
            "SELECT home_seen_at IS NOT NULL FROM slack_users WHERE team_id = $1 AND user_id = $2",
            "T0001",
            "U0VIEWER",
        )
    assert seen is True
