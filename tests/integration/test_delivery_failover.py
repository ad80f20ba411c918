"""Whether a request reached anyone (docs/contract.md §8): failover between Slack and email,
bounces, `approval.undeliverable`, and the timeout of a tier that reached nobody."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest

from bot.devkit.mail_catcher import MailCatcher
from bot.devkit.slack.calls import Fault
from bot.devkit.slack_api import SlackApiDouble
from bot.runtime.keys import SETTINGS
from tests.conftest import (
    REPLY_DOMAIN,
    Service,
    approval_body,
    mail_settings,
    start_on_free_ports,
)
from tests.slack_support import DANA, LEE, SIGNING_SECRET, workspace
from tests.support import CallbackReceiver, eventually

GRACE = 2.0


@pytest.fixture
async def double() -> AsyncIterator[SlackApiDouble]:
    slack = workspace()
    await slack.start()
    yield slack
    await slack.stop()


@pytest.fixture
async def both(
    database_url: str, receiver: CallbackReceiver, catcher: MailCatcher, double: SlackApiDouble
) -> AsyncIterator[Service]:
    """The bot with Slack (the double) and email (the catcher), and a short DELIVERY_GRACE."""
    svc = await start_both(database_url, receiver, catcher, double)
    yield svc
    await svc.close()


async def start_both(
    database_url: str,
    receiver: CallbackReceiver,
    catcher: MailCatcher,
    double: SlackApiDouble,
    **changes: Any,
) -> Service:
    """`both`'s service, with changes; the caller closes it."""
    return await start_on_free_ports(
        lambda port: mail_settings(
            receiver,
            catcher,
            port,
            slack_bot_token=double.token,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=double.url,
            slack_post_interval=0.05,
            delivery_grace=GRACE,
            **changes,
        ),
        database_url,
    )


async def create(service: Service, **changes: Any) -> dict[str, Any]:
    status, task = await service.request("POST", "/api/v1/approvals", json=approval_body(**changes))
    assert status == 201, task
    return dict(task)


async def view(service: Service, task_id: str) -> dict[str, Any]:
    status, task = await service.request("GET", f"/api/v1/approvals/{task_id}")
    assert status == 200
    return dict(task)


async def stays(check: Any, *, seconds: float) -> None:
    """`check` holds throughout the next `seconds` (a bound on something not happening)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check()
        await asyncio.sleep(0.05)


def callbacks(receiver: CallbackReceiver, kind: str) -> list[dict[str, Any]]:
    return [a.json for a in receiver.delivered if a.json["type"] == kind]


async def test_slack_failing_the_whole_window_sends_each_approver_one_mail_after_half_the_grace(
    both: Service, catcher: MailCatcher, double: SlackApiDouble, receiver: CallbackReceiver
) -> None:
    double.fail("chat.postMessage", Fault(kind="http", status=503, times=100_000))
    started = time.monotonic()
    task = await create(
        both,
        approvers=[{"email": "dana@acme.test"}, {"email": "lee@acme.test"}],
        deliver={"slack": True, "email": False},
    )
    await eventually(lambda: len(catcher.messages) == 2, timeout=15, what="two failover mails")
    assert time.monotonic() - started >= GRACE / 2 - 0.2  # transient: not before half the grace
    assert sorted(m.message["To"] for m in catcher.messages) == ["dana@acme.test", "lee@acme.test"]
    for mail in catcher.messages:  # the envelope sender names the delivery, for bounces
        local, _, domain = mail.mail_from.partition("@")
        assert local.startswith("bounce+") and domain == REPLY_DOMAIN
    # Slack is still failing well past the grace: nobody gets a second mail, and since the
    # mails reached them, the platform is not told the request was undeliverable.
    await stays(lambda: len(catcher.messages) == 2, seconds=GRACE * 1.5)
    assert callbacks(receiver, "approval.undeliverable") == []
    shown = await view(both, task["id"])
    slack = [d for d in shown["deliveries"] if d["channel"] == "slack"]
    mail = [d for d in shown["deliveries"] if d["channel"] == "email"]
    assert {d["status"] for d in slack} == {"queued"} and len(slack) == 2
    assert all("503" in d["last_error"] for d in slack)
    assert {d["status"] for d in mail} == {"sent"} and all(d.get("sent_at") for d in mail)
    assert [(r["reached"], r["via"]) for r in shown["reach"]] == [(True, "email")] * 2
    assert all(r["channels"]["slack"]["status"] == "pending" for r in shown["reach"])
    _, metrics = await both.request("GET", "/metrics", token=None)
    assert 'taskjuice_delivery_failovers_total{channel="email"} 2.0' in str(metrics)


async def test_a_post_held_by_the_slack_budget_past_half_the_grace_fails_over_to_email(
    database_url: str, receiver: CallbackReceiver, catcher: MailCatcher, double: SlackApiDouble
) -> None:
    # Slack never errs here: the shared budget (one post a minute for the team) holds the
    # second approver's DM back, which is rate-limiting all the same.
    service = await start_both(
        database_url,
        receiver,
        catcher,
        double,
        slack_rate_limits=(("chat.postMessage", 1, 60.0),),
    )
    try:
        started = time.monotonic()
        task = await create(
            service,
            approvers=[{"email": "dana@acme.test"}, {"email": "lee@acme.test"}],
            deliver={"slack": True, "email": False},
        )
        [post] = await eventually(lambda: double.calls_to("chat.postMessage"), what="one DM")
        [mail] = await eventually(lambda: catcher.messages, timeout=15, what="the failover mail")
        assert time.monotonic() - started >= GRACE / 2 - 0.2
        posted_to = {DANA: "dana@acme.test", LEE: "lee@acme.test"}[
            double.calls_to("conversations.open")[0].args["users"]
        ]
        assert mail.message["To"] != posted_to  # the one Slack did not reach
        await stays(lambda: len(catcher.messages) == 1, seconds=GRACE)
        assert all(c.answer == "ok" for c in double.calls_to("chat.postMessage"))
        assert post.answer == "ok"
        shown = await view(service, task["id"])
        assert sorted((r["reached"], r["via"]) for r in shown["reach"]) == [
            (True, "email"),
            (True, "slack"),
        ]
        assert callbacks(receiver, "approval.undeliverable") == []
    finally:
        await service.close()


async def test_smtp_refusing_for_now_the_whole_window_sends_the_approver_a_slack_dm(
    both: Service, catcher: MailCatcher, double: SlackApiDouble, receiver: CallbackReceiver
) -> None:
    catcher.refuse = "451 4.3.0 Try again later"
    started = time.monotonic()
    task = await create(
        both,
        approvers=[{"email": "dana@acme.test", "slack_user_id": DANA}],
        deliver={"slack": False, "email": True},
    )
    [post] = await eventually(
        lambda: double.calls_to("chat.postMessage"), timeout=15, what="the failover DM"
    )
    assert time.monotonic() - started >= GRACE / 2 - 0.2  # transient: not before half the grace
    assert post.args["channel"].startswith("D")
    await stays(lambda: len(double.calls_to("chat.postMessage")) == 1, seconds=GRACE)
    assert catcher.messages == []
    shown = await view(both, task["id"])
    [mail] = [d for d in shown["deliveries"] if d["channel"] == "email"]
    assert mail["status"] == "queued" and "451" in mail["last_error"]
    assert [(r["reached"], r["via"]) for r in shown["reach"]] == [(True, "slack")]
    assert callbacks(receiver, "approval.undeliverable") == []


async def test_an_approver_no_channel_reaches_is_announced_once_and_proceed_is_denied(
    both: Service, catcher: MailCatcher, double: SlackApiDouble, receiver: CallbackReceiver
) -> None:
    task = await create(
        both,
        approvers=[{"slack_user_id": "U0GHOST01"}],  # not in the team, and no address
        reversibility="safe",
        timeout_policy="proceed",
        expires_in=5,
    )
    announced = await eventually(
        lambda: callbacks(receiver, "approval.undeliverable"), timeout=10, what="undeliverable"
    )
    body = announced[0]["data"]
    assert body["id"] == task["id"] and body["tier"] == 0 and body["status"] == "pending"
    [attempt] = body["attempts"]
    assert attempt["approver"] == {"email": None, "slack_user_id": "U0GHOST01"}
    channels = {c["channel"]: c for c in attempt["channels"]}
    assert (
        channels["slack"]["status"] == "failed" and "user_not_found" in channels["slack"]["error"]
    )
    assert channels["email"]["status"] == "off"
    expired = await eventually(
        lambda: callbacks(receiver, "approval.expired"), timeout=15, what="the timeout"
    )
    data = expired[0]["data"]
    assert (data["status"], data["resolution"], data["reason"]) == (
        "expired",
        "deny",
        "undeliverable",
    )
    assert len(callbacks(receiver, "approval.undeliverable")) == 1
    shown = await view(both, task["id"])
    assert shown["status"] == "expired" and shown["resolution"] == "deny"
    assert shown["decisions"][-1]["reason"] == "undeliverable"
    assert catcher.messages == []


async def test_a_proceed_request_that_reached_someone_still_proceeds(
    both: Service, catcher: MailCatcher, receiver: CallbackReceiver
) -> None:
    task = await create(
        both,
        approvers=[{"email": "dana@acme.test"}],
        reversibility="safe",
        timeout_policy="proceed",
        expires_in=4,
    )
    expired = await eventually(
        lambda: callbacks(receiver, "approval.expired"), timeout=15, what="the timeout"
    )
    assert expired[0]["data"]["resolution"] == "proceed" and expired[0]["data"]["reason"] is None
    assert callbacks(receiver, "approval.undeliverable") == []
    shown = await view(both, task["id"])
    assert sorted(d["channel"] for d in shown["deliveries"]) == ["email", "slack"]
    assert len(catcher.to("dana@acme.test")) == 1


def dsn(to: str, failed: str) -> bytes:
    """A delivery status notification (RFC 3464) as an MTA sends it to the envelope sender."""
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.acme.test>\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.acme.test\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
        "--b1--\r\n"
    ).encode()


async def test_a_bounced_request_mail_sends_the_approver_a_slack_dm(
    both: Service, catcher: MailCatcher, double: SlackApiDouble
) -> None:
    task = await create(
        both, approvers=[{"email": "dana@acme.test"}], deliver={"slack": False, "email": True}
    )
    [mail] = await eventually(lambda: catcher.to("dana@acme.test"), what="the request mail")
    assert double.calls_to("chat.postMessage") == []
    port = both.app[SETTINGS].inbound_smtp_port
    assert port is not None
    await aiosmtplib.send(
        dsn(mail.mail_from, "dana@acme.test"),
        sender="mailer-daemon@mx.acme.test",
        recipients=[mail.mail_from],
        hostname="127.0.0.1",
        port=port,
    )
    [post] = await eventually(lambda: double.calls_to("chat.postMessage"), what="the Slack DM")
    opened = double.calls_to("conversations.open")
    assert opened and opened[0].args.get("users") == DANA
    shown = await view(both, task["id"])
    by_channel = {d["channel"]: d for d in shown["deliveries"]}
    assert by_channel["email"]["status"] == "failed"
    assert "5.1.1" in by_channel["email"]["last_error"]
    # The bounce is handled once: the same notice again sends no second DM.
    await aiosmtplib.send(
        dsn(mail.mail_from, "dana@acme.test"),
        sender="mailer-daemon@mx.acme.test",
        recipients=[mail.mail_from],
        hostname="127.0.0.1",
        port=port,
    )
    await stays(lambda: len(double.calls_to("chat.postMessage")) == 1, seconds=1.0)
    assert post.args["channel"].startswith("D")
