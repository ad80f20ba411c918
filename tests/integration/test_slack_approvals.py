"""Approvals in Slack: delivery, decisions by button and modal, and messages kept current."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest

from bot.devkit.slack_api import Fault, SlackApiDouble
from bot.outbox.consequences import Fanout
from bot.runtime.keys import BACKGROUND_POOL, POOL
from bot.slack.delivery import SlackChannel
from store.outbox import OutboxItem
from tests.conftest import Service, TaskFactory
from tests.slack_support import (
    APPROVALS,
    CFO,
    DANA,
    LEE,
    MALLORY,
    OPS,
    SlackUserAgent,
    block_action,
    button,
    buttons,
    sign,
    text_of,
    view_submission,
)
from tests.support import CallbackReceiver, Received, eventually, quiet


def dm(slack: SlackApiDouble, user: str) -> list[dict[str, Any]]:
    return slack.messages.get(slack.dm_channel(user), [])


async def first_dm(slack: SlackApiDouble, user: str) -> dict[str, Any]:
    [message] = await eventually(lambda: dm(slack, user), what=f"a DM to {user}")
    return message


def ephemeral_for(slack: SlackApiDouble, user: str) -> list[str]:
    return [e["text"] for e in slack.ephemeral if e["user"] == user]


async def edited_dm(
    slack: SlackApiDouble, user: str, what: str = "update", *, edits: int = 1
) -> dict[str, Any]:
    """`user`'s first DM, once it has been edited `edits` times or more."""
    message: dict[str, Any] = await eventually(
        lambda: dm(slack, user)[0]["edited"] >= edits and dm(slack, user)[0], what=what
    )
    return message


async def view_of(service: Service, task: dict[str, Any]) -> dict[str, Any]:
    """The request as the API shows it now."""
    _, view = await service.request("GET", f"/api/v1/approvals/{task['id']}")
    return dict(view)


async def test_each_approver_gets_a_dm_with_the_request(
    slack_service: Service, slack: SlackApiDouble, task_factory: TaskFactory
) -> None:
    task = await task_factory(details={"amount": "4000.00", "currency": "USD"})
    for user in (DANA, LEE):
        message = await first_dm(slack, user)
        assert message["blocks"][0] == {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": "Refund $4,000 to customer #881",
                "emoji": False,
            },
        }
        assert buttons(message) == ["taskjuice_approve", "taskjuice_deny"]
        approve = button(message, "taskjuice_approve")
        assert (
            approve["style"] == "primary"
            and "cannot be undone" in approve["confirm"]["text"]["text"]
        )
        rendered = text_of(message)
        for fragment in (
            "Refunds",
            "Issue refund",
            "run_8f2",
            "Irreversible",
            "<!date^",
            "ops@acme.test",
            "/acme/monitoring/approvals",
            "*amount*",
        ):
            assert fragment in rendered, fragment
        assert message["unfurl_links"] is False and message["unfurl_media"] is False
        assert message["metadata"]["event_payload"]["task_id"] == task["id"]
    lookups = slack.calls_to("users.lookupByEmail")
    assert [c.args["email"] for c in lookups] == ["dana@acme.test"]  # lee is known by id

    async def both_recorded() -> bool:
        # Slack shows the DM a moment before the bot has recorded where it went.
        view = await view_of(slack_service, task)
        channels = sorted(d.get("slack_channel", "") for d in view["deliveries"])
        return channels == ["D024BE7LH", "D0DANA001"]

    await eventually(both_recorded, what="both DMs recorded")


async def test_a_channel_request_mentions_its_approvers(
    slack_service: Service, slack: SlackApiDouble, task_factory: TaskFactory
) -> None:
    await task_factory(deliver={"slack": True, "slack_channel": APPROVALS}, reversibility="safe")
    [message] = await eventually(lambda: slack.messages.get(APPROVALS), what="channel post")
    rendered = text_of(message)
    assert f"<@{DANA}>" in rendered and f"<@{LEE}>" in rendered
    assert "Safe" in rendered and "confirm" not in json.dumps(message["blocks"])
    assert dm(slack, DANA) == [] and dm(slack, LEE) == []


async def test_approve_click_decides_and_updates_every_message(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    receiver: CallbackReceiver,
    task_factory: TaskFactory,
) -> None:
    task = await task_factory()
    message = await first_dm(slack, DANA)
    await first_dm(slack, LEE)
    started = time.perf_counter()
    status, _ = await slack_user.click(message, "taskjuice_approve", DANA)
    assert status == 200 and time.perf_counter() - started < 3
    view = await view_of(slack_service, task)
    assert view["status"] == "approved"  # committed before the answer to Slack
    assert [(d["action"], d["via"]) for d in view["decisions"]] == [("approve", "slack")]
    for user in (DANA, LEE):
        updated = await edited_dm(slack, user, f"update of {user}'s DM")
        assert buttons(updated) == []
        assert f"Approved* by <@{DANA}> via Slack" in text_of(updated)
    [callback] = await eventually(lambda: receiver.delivered, what="callback")
    assert callback.json["data"]["decided_by"] == {"email": "dana@acme.test", "slack_user_id": DANA}


async def test_deny_asks_for_a_reason_in_a_modal(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    receiver: CallbackReceiver,
    task_factory: TaskFactory,
) -> None:
    task = await task_factory()
    message = await first_dm(slack, LEE)
    status, _ = await slack_user.click(message, "taskjuice_deny", LEE)
    assert status == 200
    [modal] = await eventually(lambda: slack.views, what="the deny modal")
    assert modal["callback_id"] == "taskjuice_deny_reason"
    still = await view_of(slack_service, task)
    assert still["status"] == "pending"  # opening the modal decides nothing
    status, body = await slack_user.interact(view_submission(modal, LEE, "Wrong <b>customer</b>"))
    assert status == 200 and body == ""
    view = await view_of(slack_service, task)
    assert view["status"] == "denied" and view["decisions"][0]["reason"] == "Wrong <b>customer</b>"
    updated = await edited_dm(slack, DANA)
    assert "Wrong &lt;b&gt;customer&lt;/b&gt;" in text_of(updated)
    [callback] = await eventually(lambda: receiver.delivered, what="callback")
    assert callback.json["type"] == "approval.denied"
    assert callback.json["data"]["reason"] == "Wrong <b>customer</b>"


async def test_a_late_denial_in_the_modal_is_explained_there(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    task_factory: TaskFactory,
) -> None:
    await task_factory()
    lee_message = await first_dm(slack, LEE)
    await slack_user.click(lee_message, "taskjuice_deny", LEE)
    [modal] = await eventually(lambda: slack.views, what="the deny modal")
    await slack_user.click(await first_dm(slack, DANA), "taskjuice_approve", DANA)
    status, body = await slack_user.interact(view_submission(modal, LEE, None))
    answer = json.loads(body)
    assert status == 200 and answer["response_action"] == "update"
    assert "Already approved by" in json.dumps(answer["view"])


async def test_clicks_are_answered_while_background_work_holds_all_its_connections(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    receiver: CallbackReceiver,
    task_factory: TaskFactory,
) -> None:
    task = await task_factory()
    message = await first_dm(slack, DANA)
    background = slack_service.app[BACKGROUND_POOL]
    async with contextlib.AsyncExitStack() as held:
        for _ in range(background.limit):
            await held.enter_async_context(background.acquire())
        status, _ = await asyncio.wait_for(
            slack_user.click(message, "taskjuice_approve", DANA), timeout=3
        )
        assert status == 200
        view = await view_of(slack_service, task)
        assert view["status"] == "approved"
    # The outbox gets its connections back and sends what the click queued.
    [callback] = await eventually(lambda: receiver.delivered, what="callback")
    assert callback.json["type"] == "approval.approved"


async def test_a_quorum_step_updates_the_messages(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    task_factory: TaskFactory,
) -> None:
    task = await task_factory(required_approvals=2)
    await slack_user.click(await first_dm(slack, DANA), "taskjuice_approve", DANA)
    lee_view = await edited_dm(slack, LEE, "quorum update")
    assert "*1 of 2* approvals" in text_of(lee_view) and buttons(lee_view)
    await slack_user.click(lee_view, "taskjuice_approve", LEE)
    view = await view_of(slack_service, task)
    assert view["status"] == "approved"
    final = await edited_dm(slack, DANA, "final update", edits=2)
    assert f"<@{DANA}> and <@{LEE}>" in text_of(final) and buttons(final) == []


@pytest.mark.parametrize(
    ("changes", "clicker", "expected"),
    [
        ({}, MALLORY, "Only the approvers of this request can decide it"),
        (
            {"approvers": [{"email": "ops@acme.test"}, {"email": "dana@acme.test"}]},
            OPS,
            "You asked for this approval",
        ),
    ],
)
async def test_a_refused_click_is_explained_privately_and_changes_nothing(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    changes: dict[str, Any],
    clicker: str,
    expected: str,
    task_factory: TaskFactory,
) -> None:
    task = await task_factory(**changes)
    message = await first_dm(slack, DANA)
    status, _ = await slack_user.click(message, "taskjuice_approve", clicker)
    assert status == 200
    [text] = await eventually(lambda: ephemeral_for(slack, clicker), what="an explanation")
    assert expected in text
    view = await view_of(slack_service, task)
    assert view["status"] == "pending" and view["decisions"] == []


async def test_a_double_click_decides_once(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    receiver: CallbackReceiver,
    task_factory: TaskFactory,
) -> None:
    task = await task_factory()
    message = await first_dm(slack, DANA)
    results = await asyncio.gather(
        *[slack_user.click(message, "taskjuice_approve", DANA) for _ in range(3)]
    )
    assert {status for status, _ in results} == {200}
    view = await view_of(slack_service, task)
    assert len(view["decisions"]) == 1
    texts = await eventually(
        lambda: len(ephemeral_for(slack, DANA)) == 2 and ephemeral_for(slack, DANA),
        what="two explanations",
    )
    assert all(
        t.startswith(f"Already approved by <@{DANA}> via Slack at <!date^") for t in texts
    ), texts
    await eventually(lambda: receiver.delivered, what="callback")
    assert len(receiver.attempts) == 1


async def test_a_click_on_a_stale_message_after_escalation_changes_nothing(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    task_factory: TaskFactory,
) -> None:
    task = await task_factory(
        expires_in=1,
        timeout_policy="escalate",
        escalation=[{"approvers": [{"email": "cfo@acme.test"}], "expires_in": 600}],
    )
    old = copy.deepcopy(await first_dm(slack, DANA))  # as Dana's Slack client still shows it
    cfo_message = await first_dm(slack, CFO)  # posted when the first tier ran out
    updated = await edited_dm(slack, DANA, "escalation note")
    assert f"Escalated* to <@{CFO}>" in text_of(updated), text_of(updated)[-700:]
    assert buttons(updated) == []
    status, _ = await slack_user.click(old, "taskjuice_approve", DANA)  # the old buttons
    assert status == 200
    [text] = await eventually(lambda: ephemeral_for(slack, DANA), what="an explanation")
    assert "escalated" in text
    await slack_user.click(cfo_message, "taskjuice_approve", CFO)
    view = await view_of(slack_service, task)
    assert view["status"] == "approved" and view["decisions"][-1]["by"]["email"] == "cfo@acme.test"


@pytest.mark.parametrize("ending", ["cancel", "expire", "proceed"])
async def test_every_message_is_updated_when_the_task_ends_otherwise(
    slack_service: Service, slack: SlackApiDouble, ending: str, task_factory: TaskFactory
) -> None:
    changes: dict[str, Any] = {"deliver": {"slack": True}}
    if ending != "cancel":
        changes |= {
            "expires_in": 1,
            "timeout_policy": "deny" if ending == "expire" else "proceed",
            "reversibility": "recoverable",
        }
    task = await task_factory(**changes)
    await first_dm(slack, DANA)
    await first_dm(slack, LEE)
    if ending == "cancel":
        await slack_service.request("POST", f"/api/v1/approvals/{task['id']}/cancel")
    label = {
        "cancel": "Cancelled",
        "expire": "denied by the timeout policy",
        "proceed": "allowed to proceed by the timeout policy",
    }[ending]
    for user in (DANA, LEE):
        message = await edited_dm(slack, user)
        assert label in text_of(message) and buttons(message) == []


@pytest.mark.parametrize("ending", ["clicks", "expiry"])
async def test_requests_ended_together_update_each_message_once(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    receiver: CallbackReceiver,
    ending: str,
    task_factory: TaskFactory,
) -> None:
    # Decisions made at once are written, and their messages refreshed, in batches: each
    # message must still be updated once, and Lee's open App Home follow all of them.
    await slack_user.event(
        {"type": "app_home_opened", "user": LEE, "tab": "home", "channel": slack.dm_channel(LEE)}
    )
    changes = {"expires_in": 1, "reversibility": "recoverable"} if ending == "expiry" else {}
    for n in range(6):
        await task_factory(run_id=f"run_{n}", **changes)
    for user in (DANA, LEE):
        await eventually(lambda u=user: len(dm(slack, u)) == 6, what=f"six DMs to {user}")
    await eventually(
        lambda: "6 approvals waiting for you" in json.dumps(slack.home.get(LEE)), what="home"
    )
    if ending == "clicks":
        clicks = [slack_user.click(m, "taskjuice_approve", DANA) for m in dm(slack, DANA)]
        assert {status for status, _ in await asyncio.gather(*clicks)} == {200}
    await eventually(lambda: len(outcomes(receiver)) == 6, what="six callbacks")
    label = f"Approved* by <@{DANA}>" if ending == "clicks" else "denied by the timeout policy"
    every = [(user, n) for user in (DANA, LEE) for n in range(6)]
    await eventually(
        lambda: all(label in text_of(dm(slack, u)[n]) for u, n in every), what="every update"
    )
    await eventually(
        lambda: "Nothing waiting for you" in json.dumps(slack.home.get(LEE)), what="home"
    )
    await quiet(slack_service)
    assert [dm(slack, u)[n]["edited"] for u, n in every] == [1] * 12
    assert len(slack.calls_to("chat.update")) == 12
    assert len(slack.calls_to("chat.postMessage")) == 12
    await handling_changes_again_adds_nothing(slack_service)


async def test_requests_escalated_together_reach_the_next_tier_once_each(
    slack_service: Service,
    slack: SlackApiDouble,
    receiver: CallbackReceiver,
    task_factory: TaskFactory,
) -> None:
    for n in range(6):
        await task_factory(
            run_id=f"run_{n}",
            expires_in=1,
            timeout_policy="escalate",
            escalation=[{"approvers": [{"email": "cfo@acme.test"}], "expires_in": 600}],
        )
    await eventually(lambda: len(dm(slack, CFO)) == 6, what="six DMs to the next tier")
    await eventually(lambda: len(outcomes(receiver)) == 6, what="six escalation callbacks")
    every = [(user, n) for user in (DANA, LEE) for n in range(6)]
    await eventually(
        lambda: all("Escalated* to" in text_of(dm(slack, u)[n]) for u, n in every),
        what="every first-tier message",
    )
    await quiet(slack_service)
    assert [dm(slack, u)[n]["edited"] for u, n in every] == [1] * 12
    assert all(buttons(m) == ["taskjuice_approve", "taskjuice_deny"] for m in dm(slack, CFO))
    tasks_shown = {m["metadata"]["event_payload"]["task_id"] for m in dm(slack, CFO)}
    assert len(tasks_shown) == 6 and len(slack.calls_to("chat.postMessage")) == 18
    await handling_changes_again_adds_nothing(slack_service)


def outcomes(receiver: CallbackReceiver) -> list[Received]:
    """The callbacks that report what became of a request. A one-second tier has a quarter of
    a second to reach somebody (DELIVERY_GRACE's cap), which paced posts may miss: its
    `approval.undeliverable` is information beside them, not one of them."""
    return [c for c in receiver.delivered if c.json["type"] != "approval.undeliverable"]


async def handling_changes_again_adds_nothing(service: Service) -> None:
    """A change item handled again (a worker died before recording it as sent) adds no message
    work; only App Home refreshes, which show the current state, may be queued again."""
    pool = service.app[POOL]
    fanout = Fanout(pool, channels=[SlackChannel(pool)])
    work = "SELECT count(*) FROM outbox WHERE kind <> 'slack.home'"
    async with pool.acquire() as conn:
        queued = await conn.fetchval(work)
        changes = await conn.fetch("SELECT * FROM outbox WHERE kind = 'task.changed'")
    for row in changes:
        await fanout.task(OutboxItem(**{f: row[f] for f in OutboxItem.__slots__}))
    async with pool.acquire() as conn:
        assert await conn.fetchval(work) == queued


HOSTILE = "<!channel> <https://evil.test|click here> & <@U0MAL0001>"


async def test_platform_text_never_pings_or_links_in_slack(
    slack_service: Service, slack: SlackApiDouble, task_factory: TaskFactory
) -> None:
    await task_factory(
        summary=HOSTILE,
        step=HOSTILE,
        run_id=HOSTILE,
        workflow={"id": "wf", "name": HOSTILE},
        details={HOSTILE[:40]: HOSTILE},
        requested_by={"email": "ops@acme.test"},
    )
    message = await first_dm(slack, DANA)
    rendered = json.dumps([b for b in message["blocks"] if b["type"] != "header"]) + message["text"]
    assert "<!channel>" not in rendered and "<https://evil" not in rendered
    assert "<@U0MAL0001>" not in rendered
    assert "&lt;!channel&gt;" in rendered and "&amp;" in rendered
    assert message["blocks"][0]["text"]["type"] == "plain_text"  # shown literally, never parsed


async def test_huge_fields_are_cut_to_slack_limits(
    slack_service: Service, slack: SlackApiDouble, task_factory: TaskFactory
) -> None:
    details = {f"k{i}" * 30: "<" * 1900 for i in range(50)}
    await task_factory(
        summary="S" * 1000,
        step="P" * 500,
        details=details,
        workflow={"id": "wf", "name": "W" * 500},
    )
    message = await first_dm(slack, DANA)
    assert len(message["blocks"][0]["text"]["text"]) <= 150
    for block in message["blocks"]:
        if block.get("fields"):
            assert len(block["fields"]) <= 10
            assert all(len(f["text"]) <= 2000 for f in block["fields"])
        if block.get("text") and block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    assert len(message["blocks"]) <= 50 and len(message["text"]) <= 4000


async def test_forged_or_stale_signatures_are_refused(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    task_factory: TaskFactory,
) -> None:
    task = await task_factory()
    message = await first_dm(slack, DANA)

    forged = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=00"}
    status, _ = await slack_user.click(message, "taskjuice_approve", DANA, headers=forged)
    assert status == 401
    element = button(message, "taskjuice_approve")
    raw = urlencode({"payload": json.dumps(block_action(message, element, DANA))}).encode()
    stale = sign(raw, timestamp=int(time.time()) - 600)
    status, _ = await slack_user.send(raw, "application/x-www-form-urlencoded", stale)
    assert status == 401
    wrong_secret = sign(raw, secret="not-the-signing-secret")
    status, _ = await slack_user.send(raw, "application/x-www-form-urlencoded", wrong_secret)
    assert status == 401
    view = await view_of(slack_service, task)
    assert view["status"] == "pending" and view["decisions"] == []


@pytest.mark.parametrize(
    "payload",
    [
        {
            "type": "block_actions",
            "user": {"id": DANA},
            "actions": [{"action_id": "taskjuice_approve", "value": "not json"}],
        },
        {
            "type": "block_actions",
            "user": {"id": DANA},
            "actions": [
                {"action_id": "taskjuice_approve", "value": '{"t": "x", "r": 0, "h": "h"}'}
            ],
        },
        {
            "type": "block_actions",
            "user": {"id": DANA},
            "actions": [
                {
                    "action_id": "taskjuice_approve",
                    "value": '{"t": "00000000-0000-0000-0000-000000000000", "r": 0, "h": "h"}',
                }
            ],
        },
        {"type": "block_actions", "actions": [{"action_id": "taskjuice_approve", "value": "{}"}]},
        {
            "type": "view_submission",
            "user": {"id": DANA},
            "view": {"callback_id": "taskjuice_deny_reason", "private_metadata": "[[["},
        },
    ],
)
async def test_malformed_payloads_decide_nothing_and_never_fail(
    slack_service: Service,
    slack_user: SlackUserAgent,
    pool: asyncpg.Pool,
    payload: dict[str, Any],
    task_factory: TaskFactory,
) -> None:
    await task_factory()
    status, _ = await slack_user.interact(payload | {"team": {"id": "T0TASKJ01"}})
    assert status in (200, 400)

    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 0


async def test_a_click_with_junk_in_fields_it_does_not_need_still_counts(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    task_factory: TaskFactory,
) -> None:
    # Who clicked which button is intact; where it was clicked is not (a list, a NUL that
    # PostgreSQL cannot store): the decision stands, and nothing fails on the rest.
    task = await task_factory()
    message = await first_dm(slack, DANA)
    approve = button(message, "taskjuice_approve")
    payload = block_action(message, approve, DANA)
    payload["channel"] = [message["channel"]]
    payload["container"] = {"type": "message", "message_ts": "1700000000.0001\x00"}
    status, _ = await slack_user.interact(payload)
    assert status == 200
    view = await view_of(slack_service, task)
    assert view["status"] == "approved"


async def test_a_click_the_service_fails_on_answers_500_and_decides_nothing(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    pool: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
    task_factory: TaskFactory,
) -> None:
    # The payload is fine; the fault is the service's (a row no version of it could write), so
    # it is not reported as an unreadable payload: Slack shows the person it failed.
    task = await task_factory()
    message = await first_dm(slack, DANA)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE tasks SET requested_by = '{\"unheard_of\": 1}' WHERE id = $1", task["id"]
        )
    status, _ = await slack_user.click(message, "taskjuice_approve", DANA)
    assert status == 500
    [failure] = [r for r in caplog.records if getattr(r, "event", "") == "slack.listener_failed"]
    assert failure.levelname == "ERROR" and failure.exc_info is not None
    assert not [r for r in caplog.records if getattr(r, "event", "") == "slack.bad_payload"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 0
        assert await conn.fetchval("SELECT status FROM tasks") == "pending"


@pytest.mark.parametrize("kind", ["ratelimited", "http", "drop", "error"])
async def test_a_failing_post_ends_in_exactly_one_message(
    slack_service: Service, slack: SlackApiDouble, kind: str, task_factory: TaskFactory
) -> None:
    fault = Fault(kind=kind, retry_after=1, status=503, error="internal_error")
    slack.fail("chat.postMessage", fault)
    await task_factory(approvers=[{"email": "dana@acme.test"}])
    await first_dm(slack, DANA)

    async def delivered() -> bool:
        _, page = await slack_service.request("GET", "/api/v1/outbox?status=pending")
        return not [i for i in page["items"] if i["kind"].startswith("slack")]

    await eventually(delivered, timeout=15, what="delivery settled")
    assert len(dm(slack, DANA)) == 1
    answers = [c.answer for c in slack.calls_to("chat.postMessage")]
    if kind == "drop":
        # The post took effect but its answer was lost: found by its metadata, not re-posted.
        assert answers == ["drop"] and slack.calls_to("conversations.history")
    else:
        assert answers == [kind, "ok"]


async def test_an_approver_outside_slack_is_recorded_as_not_delivered(
    slack_service: Service, slack: SlackApiDouble, task_factory: TaskFactory
) -> None:
    task = await task_factory(
        approvers=[{"email": "nobody@elsewhere.test"}, {"email": "dana@acme.test"}]
    )
    await first_dm(slack, DANA)

    async def failed() -> list[dict[str, Any]]:
        view = await view_of(slack_service, task)
        return [d for d in view["deliveries"] if d.get("status") == "failed"]

    await eventually(failed, what="the failed delivery")
    _, dead = await slack_service.request("GET", "/api/v1/outbox?status=dead")
    assert dead["items"] == []


async def test_socket_mode_receives_clicks_without_a_public_endpoint(
    database_url: str, receiver: CallbackReceiver, slack: SlackApiDouble, task_factory: TaskFactory
) -> None:
    from tests.conftest import slack_settings, start_service

    settings = slack_settings(
        receiver, slack, slack_app_token=slack.app_token, slack_signing_secret=None
    )
    svc = await start_service(settings, database_url)
    try:
        await asyncio.wait_for(slack.socket_connected(), 10)
        task = await task_factory(service=svc)
        message = await first_dm(slack, DANA)
        status, _ = await svc.request("POST", "/slack/events", token=None, data=b"{}")
        assert status == 404  # no HTTP endpoint in Socket Mode
        element = button(message, "taskjuice_approve")
        envelope = await slack.socket_send("interactive", block_action(message, element, DANA))
        await eventually(lambda: envelope in slack.socket_acks, what="the envelope's ack")
        view = await view_of(svc, task)
        assert view["status"] == "approved" and view["decisions"][0]["via"] == "slack"
    finally:
        await svc.close()


async def test_a_reminder_reaches_the_approvers_and_is_kept_current(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    task_factory: TaskFactory,
) -> None:
    await task_factory(expires_in=600, remind_before=599)
    reminder = await eventually(
        lambda: len(dm(slack, DANA)) == 2 and dm(slack, DANA)[1], what="the reminder DM"
    )
    assert "Reminder" in text_of(reminder) and buttons(reminder) == [
        "taskjuice_approve",
        "taskjuice_deny",
    ]
    await slack_user.click(reminder, "taskjuice_approve", DANA)
    for message in dm(slack, DANA):
        await eventually(lambda m=message: m["edited"] and not buttons(m), what="updates")


async def test_an_approver_listed_by_email_who_joined_slack_later_can_decide(
    slack_service: Service,
    slack: SlackApiDouble,
    slack_user: SlackUserAgent,
    receiver: CallbackReceiver,
    task_factory: TaskFactory,
) -> None:
    task = await task_factory(
        approvers=[{"email": "newcomer@acme.test"}],
        deliver={"slack": True, "slack_channel": APPROVALS},
        reversibility="safe",
    )
    [message] = await eventually(lambda: slack.messages.get(APPROVALS), what="channel post")
    assert "newcomer@acme.test" in text_of(message)  # not in Slack yet: named by email
    slack.add_user("U0NEW0001", "newcomer", "newcomer@acme.test")  # joins afterwards

    status, _ = await slack_user.click(message, "taskjuice_approve", "U0NEW0001")
    assert status == 200
    view = await view_of(slack_service, task)
    assert view["status"] == "approved"
    [callback] = await eventually(lambda: receiver.delivered, what="callback")
    assert callback.json["data"]["decided_by"] == {
        "email": "newcomer@acme.test",
        "slack_user_id": "U0NEW0001",
    }
    # A person who is not an approver is still refused, after the same one lookup.
    other = await task_factory(approvers=[{"email": "dana@acme.test"}], run_id="run_other")
    dana_dm = await eventually(
        lambda: [m for m in dm(slack, DANA) if other["id"] in json.dumps(m)], what="Dana's DM"
    )
    status, _ = await slack_user.click(dana_dm[0], "taskjuice_approve", MALLORY)
    assert status == 200
    view = await view_of(slack_service, other)
    assert view["status"] == "pending"
    assert slack.calls_to("users.info")[-1].args["user"] == MALLORY
