"""Alerts in a workspace's Slack channel, `/taskjuice`, and App Home."""

from __future__ import annotations

import json
from typing import Any

from bot.devkit.slack_api import SlackApiDouble
from bot.slack.alert_blocks import CAP_REACHED_TEXT
from tests.conftest import Service, approval_body
from tests.slack_support import (
    ALERTS,
    APPROVALS,
    DANA,
    LEE,
    MALLORY,
    SlackUserAgent,
    block_action,
    button,
    text_of,
)
from tests.support import CallbackReceiver, eventually, quiet

ADMIN = "U0ADM0001"


async def route(service: Service, channel: str = ALERTS) -> None:
    status, _ = await service.request(
        "PUT", "/api/v1/workspaces/acme", json={"slack_channel": channel}
    )
    assert status == 200


async def event(service: Service, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = await service.request(
        "POST", f"/api/v1/events/{kind}", json={"workspace": "acme"} | body
    )
    assert status == 202, answer
    return dict(answer)


def posts(slack: SlackApiDouble) -> list[dict[str, Any]]:
    return slack.messages.get(ALERTS, [])


def link_buttons(message: dict[str, Any]) -> list[str]:
    return [
        e["text"]["text"]
        for a in message["attachments"]
        for b in a["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]


SPEND = {"cap": 1000, "currency": "USD", "period": "2026-11"}


async def test_a_soft_threshold_is_announced_once_per_period(
    slack_service: Service, slack: SlackApiDouble
) -> None:
    await route(slack_service)
    first = await event(slack_service, "spend", SPEND | {"spend": 820, "stage": "soft"})
    again = await event(slack_service, "spend", SPEND | {"spend": 830, "stage": "soft"})
    assert first["notified"] and not again["notified"]
    [message] = await eventually(lambda: posts(slack), what="the warning")
    rendered = text_of(message)
    assert "82% of the cap" in rendered and "820.00 USD" in rendered
    assert "1,000.00 USD" in rendered and "Nothing has stopped" in rendered
    assert message["attachments"][0]["color"] == "#ECB22E"
    assert link_buttons(message) == ["Adjust cap"]
    assert "http://app.taskjuice.test/acme/billing" in rendered
    await event(slack_service, "spend", SPEND | {"spend": 950, "stage": "soft"})
    await eventually(lambda: len(posts(slack)) == 2, what="the 90% warning")
    await event(slack_service, "spend", SPEND | {"spend": 990, "stage": "soft"})
    await event(
        slack_service, "spend", SPEND | {"spend": 850, "stage": "soft", "period": "2026-12"}
    )
    await eventually(lambda: len(posts(slack)) == 3, what="next period's warning")
    await quiet(slack_service)
    assert len(posts(slack)) == 3


async def test_cap_reached_has_the_exact_text_and_no_resume_and_is_updated_when_cleared(
    slack_service: Service, slack: SlackApiDouble
) -> None:
    await route(slack_service)
    await event(
        slack_service,
        "spend",
        SPEND | {"spend": 1000, "stage": "hard", "workflow": {"id": "wf_1", "name": "Refunds"}},
    )
    [message] = await eventually(lambda: posts(slack), what="cap reached")
    assert CAP_REACHED_TEXT in text_of(message) and "Refunds" in text_of(message)
    assert link_buttons(message) == ["Adjust cap"]
    again = await event(
        slack_service, "spend", SPEND | {"spend": 1000, "stage": "hard", "workflow": {"id": "wf_1"}}
    )
    assert not again["notified"]
    await event(slack_service, "spend", SPEND | {"spend": 0, "stage": "cleared"})
    await eventually(lambda: message["edited"], what="the update")
    assert len(posts(slack)) == 1
    assert "Spend cap cleared" in text_of(message) and "Resume" not in text_of(message)


async def test_reauth_notices_and_one_summary_updated_in_place(
    slack_service: Service, slack: SlackApiDouble
) -> None:
    await route(slack_service)
    for n in (1, 2, 3):
        await event(
            slack_service,
            "connection",
            {
                "connection": {"id": f"conn_{n}", "app": "Slack", "name": f"Ops workspace {n}"},
                "state": "error",
                "paused_runs": n,
            },
        )
    await quiet(slack_service)
    notices = [m for m in posts(slack) if "reauth required" in m["text"]]
    summaries = [m for m in posts(slack) if "reauthorized" in m["text"]]

    assert len(notices) == 3 and len(summaries) == 1
    assert "3 connections need to be reauthorized" in text_of(summaries[0])
    first = next(m for m in notices if "acme/connections/conn_1" in text_of(m))
    assert first["attachments"][0]["blocks"][0]["text"]["text"] == "Slack reauth required"
    assert link_buttons(first) == ["Reconnect"]
    repeat = await event(
        slack_service,
        "connection",
        {
            "connection": {"id": "conn_1", "app": "Slack", "name": "Ops workspace 1"},
            "state": "error",
            "paused_runs": 1,
        },
    )
    assert not repeat["notified"]
    await event(
        slack_service,
        "connection",
        {
            "connection": {"id": "conn_1", "app": "Slack", "name": "Ops workspace 1"},
            "state": "active",
        },
    )
    await quiet(slack_service)
    assert len(posts(slack)) == 4  # nothing re-posted
    assert "active again" in text_of(first)
    assert "/acme/monitoring/workflow-runs" in text_of(first)

    assert "2 connections need to be reauthorized" in text_of(summaries[0])


async def test_breaker_resume_is_confirmed_and_sent_to_the_platform_once(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    receiver: CallbackReceiver,
) -> None:
    await route(slack_service)
    await event(
        slack_service,
        "throughput",
        {
            "workflow": {"id": "wf_9", "name": "Sync <!here>"},
            "rate": 900,
            "cap": 600,
            "state": "tripped",
        },
    )
    [message] = await eventually(lambda: posts(slack), what="breaker notice")
    rendered = text_of(message)
    assert "tripped the throughput cap (likely a loop or polling misconfig)" in rendered
    assert "<!here>" not in rendered and "&lt;!here&gt;" in rendered
    assert link_buttons(message) == ["Open workflow", "Resume workflow"]
    resume = next(
        e
        for b in message["attachments"][0]["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "taskjuice_resume_workflow"
    )
    assert "trip the breaker again" in resume["confirm"]["text"]["text"]
    for _ in range(2):
        status, _ = await slack_user.interact(block_action(message, resume, LEE))
        assert status == 200
    [callback] = await eventually(lambda: receiver.delivered, what="resume callback")
    assert callback.json["type"] == "workflow.resume_requested"
    assert callback.json["data"]["workflow"]["id"] == "wf_9"
    assert callback.json["data"]["requested_by"]["slack_user_id"] == LEE
    await eventually(lambda: "Resume requested by" in text_of(message), what="update")
    assert link_buttons(message) == ["Open workflow"]
    await quiet(slack_service)
    assert len(receiver.attempts) == 1


async def test_alerts_without_a_routed_channel_post_nothing(
    slack_service: Service, slack: SlackApiDouble
) -> None:
    await event(slack_service, "spend", SPEND | {"spend": 850, "stage": "soft"})
    await quiet(slack_service)
    assert slack.calls_to("chat.postMessage") == []


async def test_subscribe_and_unsubscribe_route_alerts_to_a_channel(
    slack_service: Service, slack: SlackApiDouble, slack_user: SlackUserAgent
) -> None:
    # Only admins and owners route alerts in single-workspace mode (SLACK_SUBSCRIBE_ANYONE off).
    slack.add_user(ADMIN, "admin", "admin@acme.test", is_admin=True)
    status, body = await slack_user.command("subscribe acme", ADMIN, channel=ALERTS)
    assert status == 200 and "now receives the alerts of *acme*" in body
    _, routing = await slack_service.request("PUT", "/api/v1/workspaces/acme", json={})
    assert routing["slack_channel"] == ALERTS and routing["slack_team_id"] == "T0TASKJ01"
    await event(slack_service, "spend", SPEND | {"spend": 850, "stage": "soft"})
    await eventually(lambda: posts(slack), what="routed alert")
    status, body = await slack_user.command("unsubscribe", ADMIN, channel=ALERTS)
    assert "no longer receives the alerts of *acme*" in body
    _, routing = await slack_service.request("PUT", "/api/v1/workspaces/acme", json={})
    assert routing["slack_channel"] is None
    _, body = await slack_user.command("subscribe <!channel>", ADMIN, channel=ALERTS)
    assert "not a workspace name" in body and "<!channel>" not in body


async def test_help_and_the_approvals_list(
    slack_service: Service, slack: SlackApiDouble, slack_user: SlackUserAgent
) -> None:
    status, body = await slack_user.command("help", MALLORY)
    assert status == 200 and "/taskjuice approvals" in body
    await slack_service.request("POST", "/api/v1/approvals", json=approval_body())
    await eventually(lambda: slack.messages.get(slack.dm_channel(DANA)), what="request")
    _, body = await slack_user.command("approvals", DANA)
    answer = json.loads(body)
    assert "Refund $4,000" in json.dumps(answer["blocks"])
    assert "taskjuice_approve" in json.dumps(answer["blocks"])
    _, body = await slack_user.command("approvals", MALLORY)
    assert "Nothing is waiting for your approval" in body


async def test_app_home_lists_pending_approvals_with_working_buttons(
    slack_service: Service, slack: SlackApiDouble, slack_user: SlackUserAgent
) -> None:
    _, task = await slack_service.request("POST", "/api/v1/approvals", json=approval_body())
    status, _ = await slack_user.event(
        {"type": "app_home_opened", "user": LEE, "tab": "home", "channel": slack.dm_channel(LEE)}
    )
    assert status == 200
    home = await eventually(lambda: slack.home.get(LEE), what="the home tab")
    assert home["type"] == "home" and "1 approval waiting for you" in json.dumps(home)
    approve = button(home, "taskjuice_approve")
    payload = block_action({"ts": "", "channel": "", "text": "", "blocks": []}, approve, LEE)
    payload["container"] = {"type": "view", "view_id": "V1"}
    payload.pop("channel")
    status, _ = await slack_user.interact(payload)
    assert status == 200
    _, view = await slack_service.request("GET", f"/api/v1/approvals/{task['id']}")
    assert view["status"] == "approved"
    await eventually(
        lambda: "Nothing waiting for you" in json.dumps(slack.home.get(LEE)),
        what="the home tab refreshed",
    )


async def test_an_open_app_home_follows_requests_decided_and_created_elsewhere(
    slack_service: Service, slack: SlackApiDouble, slack_user: SlackUserAgent
) -> None:
    def home_text() -> str:
        return json.dumps(slack.home.get(LEE))

    await slack_user.event(
        {"type": "app_home_opened", "user": LEE, "tab": "home", "channel": slack.dm_channel(LEE)}
    )
    await eventually(lambda: "Nothing waiting for you" in home_text(), what="the empty home")
    # A new request for Lee appears on the Home without Lee reopening it ...
    _, task = await slack_service.request("POST", "/api/v1/approvals", json=approval_body())
    await eventually(lambda: "1 approval waiting for you" in home_text(), what="the new request")
    # ... and leaves it when Dana decides it in her DM.
    dana = await eventually(lambda: slack.messages.get(slack.dm_channel(DANA)), what="Dana's DM")
    status, _ = await slack_user.click(dana[0], "taskjuice_approve", DANA)
    assert status == 200
    await eventually(lambda: "Nothing waiting for you" in home_text(), what="the home refreshed")
    # Dana never opened her Home: nothing is published to it.
    assert DANA not in slack.home
    _, view = await slack_service.request("GET", f"/api/v1/approvals/{task['id']}")
    assert view["status"] == "approved"


async def test_a_request_in_a_channel_is_posted_once_even_when_slack_was_down(
    slack_service: Service, slack: SlackApiDouble
) -> None:
    from bot.devkit.slack_api import Fault

    slack.fail("auth.test", Fault(kind="http", status=503, times=2))
    await slack_service.request(
        "POST", "/api/v1/approvals", json=approval_body(deliver={"slack_channel": APPROVALS})
    )
    await eventually(lambda: slack.messages.get(APPROVALS), timeout=15, what="the post")
    await quiet(slack_service)
    assert len(slack.messages[APPROVALS]) == 1
