"""The mail doors hold under hostile input: no sender stalls the event loop, limits give a
clear refusal, forged authentication and null senders decide nothing, and the listener is
not public."""

from __future__ import annotations

import asyncio
import copy
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import aiosmtplib
import pytest

from bot.devkit.mail_catcher import MailCatcher
from bot.devkit.slack_api import SlackApiDouble
from bot.runtime.config import load_settings
from tests.conftest import Service, approval_body, start_mail_service
from tests.integration.test_email_replies import (
    _listener_port,
    _mailgun_form,
    post_raw,
    reply,
    request,
    status_of,
)
from tests.slack_support import DANA, SlackUserAgent, block_action, button
from tests.support import CallbackReceiver, eventually


@pytest.fixture
async def both(
    database_url: str, receiver: CallbackReceiver, catcher: MailCatcher, slack: SlackApiDouble
) -> AsyncIterator[Service]:
    """The bot with Slack and email on."""
    svc = await start_mail_service(database_url, receiver, catcher, slack=slack)
    yield svc
    await svc.close()


def many_parts(to: str, parts: int = 25_000) -> bytes:
    """A ~900 KB mail of tiny MIME parts."""
    head = (
        f"From: Dana <dana@acme.test>\r\nTo: {to}\r\nSubject: Re: x\r\n"
        f"Message-ID: <parts.{time.time_ns()}@acme.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    )
    body = "".join("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(parts))
    return (head + body + "--b--\r\n").encode()


def nested(to: str, depth: int = 30) -> bytes:
    head = f"From: Dana <dana@acme.test>\r\nTo: {to}\r\nSubject: Re: x\r\nMIME-Version: 1.0\r\n"
    inner = "Content-Type: text/plain\r\n\r\napprove\r\n"
    for level in range(depth):
        inner = (
            f'Content-Type: multipart/mixed; boundary="n{level}"\r\n\r\n'
            f"--n{level}\r\n{inner}--n{level}--\r\n"
        )
    return (head + inner).encode()


async def _slowest(probe: Callable[[], Awaitable[None]], until: asyncio.Future[Any]) -> float:
    """The longest a probe took, repeated while `until` runs (at least twice)."""
    slowest, rounds = 0.0, 0
    while not until.done() or rounds < 2:
        started = time.monotonic()
        await probe()
        slowest = max(slowest, time.monotonic() - started)
        rounds += 1
        await asyncio.sleep(0.02)
    return slowest


async def test_hostile_mail_never_stalls_health_or_slack_clicks(
    both: Service, catcher: MailCatcher, slack: SlackApiDouble
) -> None:
    status, task = await both.request(
        "POST", "/api/v1/approvals", json=approval_body(reversibility="recoverable")
    )
    assert status == 201, task
    [message] = await eventually(lambda: slack.messages.get(slack.dm_channel(DANA)), what="DM")
    [mail] = await eventually(lambda: catcher.to("dana@acme.test"), what="Dana's mail")
    to = mail.message["Reply-To"].addresses[0].addr_spec
    blank = reply(mail, "approve" + "\r\n" * 20_000 + "thanks")
    agent = SlackUserAgent(both.base_url)
    results: dict[str, Any] = {}

    async def hostile() -> None:
        await aiosmtplib.send(
            blank, sender="dana@acme.test", recipients=[to], port=_listener_port(both)
        )
        results["unknown"] = await post_raw(both, many_parts("x" * 24 + "@reply.acme.test"))
        results["known"] = await post_raw(both, many_parts(to))
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await aiosmtplib.send(
                many_parts(to), sender="dana@acme.test", recipients=[to], port=_listener_port(both)
            )
        results["smtp"] = refused.value.code

    async def health() -> None:
        assert (await both.request("GET", "/healthz", token=None))[0] == 200

    clicks: list[int] = []
    # the first click decides; later ones are told what already happened
    payload = copy.deepcopy(block_action(message, button(message, "taskjuice_approve"), DANA))

    async def click() -> None:
        clicks.append((await agent.interact(payload))[0])

    try:
        running = asyncio.ensure_future(hostile())
        slowest = await asyncio.gather(_slowest(health, running), _slowest(click, running))
        await running
    finally:
        await agent.close()
    assert max(slowest) < 1.0, slowest
    assert set(clicks) == {200}
    assert results["unknown"] == (200, {"outcome": "unknown_recipient"})
    assert results["known"][0] == 422 and "too complex" in results["known"][1]["error"]
    assert results["smtp"] == 554


async def test_too_many_parts_or_too_deep_decides_nothing(
    mail_service: Service, catcher: MailCatcher
) -> None:
    task_id, mail = await request(mail_service, catcher)
    to = mail.message["Reply-To"].addresses[0].addr_spec
    for raw in (many_parts(to, 500), nested(to)):
        status, body = await post_raw(mail_service, raw)
        assert status == 422 and body["fields"] == {"body": "is too complex"}, body
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await aiosmtplib.send(
                raw, sender="dana@acme.test", recipients=[to], port=_listener_port(mail_service)
            )
        assert refused.value.code == 554
    assert (await status_of(mail_service, task_id))["status"] == "pending"
    # A reply with a few parts is still read.
    status, body = await post_raw(mail_service, nested(to, depth=3))
    assert (status, body) == (200, {"outcome": "decided"})


async def test_a_blank_line_flood_is_read_quickly_and_right(
    mail_service: Service, catcher: MailCatcher
) -> None:
    task_id, mail = await request(mail_service, catcher)
    raw = reply(mail, "deny" + " \r\n\t\r\n" * 20_000 + "-- \r\nDana")
    started = time.monotonic()
    status, body = await post_raw(mail_service, raw)
    assert time.monotonic() - started < 5
    assert (status, body) == (200, {"outcome": "decided"})
    assert (await status_of(mail_service, task_id))["status"] == "denied"


def _with_results(raw: bytes, *values: str) -> bytes:
    """The reply with Authentication-Results headers on top, first = topmost (as an MTA adds)."""
    return b"".join(f"Authentication-Results: {v}\r\n".encode() for v in values) + raw


async def test_only_the_topmost_trusted_authentication_results_counts(
    database_url: str, receiver: CallbackReceiver, catcher: MailCatcher
) -> None:
    svc = await start_mail_service(
        database_url, receiver, catcher, inbound_authserv_id="mx.acme.test"
    )
    try:
        task_id, mail = await request(svc, catcher)
        forged = [
            # the receiver's real verdict on top, the sender's own below it
            (
                "mx.acme.test; dmarc=fail header.from=acme.test",
                "mx.acme.test; dmarc=pass header.from=acme.test",
            ),
            ("mx.acme.test; dmarc=pass",),  # no header.from
            ("mx.acme.test; dmarc=pass header.from=evil.test",),
            ("mx.acme.test; dmarc=pass (header.from=acme.test) header.from=evil.test",),
            # the topmost is not the trusted receiver's
            ("evil.test; dmarc=fail", "mx.acme.test; dmarc=pass header.from=acme.test"),
        ]
        for values in forged:
            _, body = await post_raw(svc, _with_results(reply(mail, "approve"), *values))
            assert body["outcome"] == "dmarc_failed", values
        assert (await status_of(svc, task_id))["status"] == "pending"
        good = (
            "mx.acme.test 1; spf=pass smtp.mailfrom=acme.test; dmarc=pass (p=reject)"
            " header.from=acme.test"
        )
        _, body = await post_raw(
            svc, _with_results(reply(mail, "approve"), good, "evil.test; dmarc=fail")
        )
        assert body["outcome"] == "decided"
    finally:
        await svc.close()


async def test_null_senders_and_every_auto_submitted_header_decide_nothing(
    mail_service: Service, catcher: MailCatcher
) -> None:
    task_id, mail = await request(mail_service, catcher)
    to = mail.message["Reply-To"].addresses[0].addr_spec
    # MAIL FROM:<> (aiosmtpd reports it as "<>"): accepted, and a bounce decides nothing
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=_listener_port(mail_service)) as smtp:
        await smtp.mail("")
        await smtp.rcpt(to)
        assert (await smtp.data(reply(mail, "approve"))).code == 250
    # Mailgun posts the null sender as an empty field
    form = _mailgun_form(reply(mail, "approve"), to)
    fields = [f for f in form._fields if f[0]["name"] != "sender"]
    empty = aiohttp.FormData()
    for options, headers, value in fields:
        empty.add_field(options["name"], value, content_type=headers.get("Content-Type"))
    empty.add_field("sender", "")
    async with (
        aiohttp.ClientSession() as http,
        http.post(mail_service.base_url + "/email/inbound/mailgun/mime", data=empty) as response,
    ):
        assert (response.status, await response.json()) == (200, {"outcome": "automatic"})
    twice = reply(mail, "approve", headers={"Auto-Submitted": "no"}).replace(
        b"Content-Type:", b"Auto-Submitted: auto-replied\r\nContent-Type:"
    )
    assert (await post_raw(mail_service, twice))[1] == {"outcome": "automatic"}
    assert (await status_of(mail_service, task_id))["status"] == "pending"


def test_the_listener_address_defaults_to_loopback() -> None:
    env = {
        "API_TOKENS": "t",
        "CALLBACK_URL": "http://127.0.0.1:9/cb",
        "CALLBACK_SECRET": "whsec_dGVzdC1jYWxsYmFjay1zZWNyZXQta2V5",
        "TASKJUICE_APP_URL": "http://app.test",
        "HOST": "0.0.0.0",  # noqa: S104 - the web server public, the listener not
    }
    assert load_settings(env, env_file=None).inbound_smtp_host == "127.0.0.1"
    changed = load_settings(env | {"INBOUND_SMTP_HOST": "10.0.0.5"}, env_file=None)
    assert changed.inbound_smtp_host == "10.0.0.5"


async def test_the_listener_does_not_listen_where_the_web_server_does(
    database_url: str, receiver: CallbackReceiver, catcher: MailCatcher
) -> None:
    svc = await start_mail_service(
        database_url,
        receiver,
        catcher,
        host="0.0.0.0",  # noqa: S104
    )
    try:
        smtp_port = _listener_port(svc)
        with socket.create_connection(("127.0.0.1", smtp_port), timeout=2):
            pass
        # Another address of this machine (all of 127/8 is local): refused.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", smtp_port), timeout=2).close()
    finally:
        await svc.close()
