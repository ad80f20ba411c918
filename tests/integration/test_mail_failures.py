"""Never a 500, never a lost mail: bodies read whole, hostile header values cleaned before
they reach our answer, Mailgun tokens spent only after handling, and database or reader
failures answered with 'try again later'."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator

import aiohttp
import aiosmtplib
import asyncpg
import pytest

from bot.devkit.mail_catcher import MailCatcher
from bot.mail.reply_worker import ReadTooLong, ReplyReaders
from tests.conftest import MAILGUN_KEY, Service
from tests.integration.test_email_replies import (
    _listener_port,
    _mailgun_form,
    post_raw,
    reply,
    request,
    status_of,
)
from tests.support import eventually

MAILGUN = "/email/inbound/mailgun/mime"


async def _answers(catcher: MailCatcher, text: str) -> list[str]:
    found = await eventually(
        lambda: [m for m in catcher.to("dana@acme.test") if text in m.text()], what="the answer"
    )
    return [m.raw.decode("utf-8", "replace") for m in found]


@pytest.mark.parametrize(
    ("message_id", "subject"),
    [
        ("<a\x00b@acme.test>", "Re: fine"),
        ("<ok.1@acme.test>", "Re: x\x00y"),
        ("=?utf-8?q?<a=0D=0ABcc:_mallory@evil.test>?=", "Re: x"),
        ("<a@acme.test>\r\n Bcc: mallory@evil.test", "=?utf-8?q?Re:_x=0D=0ABcc:_m@evil.test?="),
    ],
)
async def test_hostile_message_ids_and_subjects_never_block_the_answer(
    mail_service: Service, catcher: MailCatcher, message_id: str, subject: str
) -> None:
    task_id, mail = await request(mail_service, catcher)
    raw = (
        reply(mail, "deny")
        .replace(b"Subject: ", b"X-Old-Subject: ")
        .replace(b"Message-ID: ", b"X-Old-Message-ID: ")
    )
    raw = f"Message-ID: {message_id}\r\nSubject: {subject}\r\n".encode() + raw
    status, body = await post_raw(mail_service, raw)
    assert (status, body) == (200, {"outcome": "decided"})
    assert (await status_of(mail_service, task_id))["status"] == "denied"
    [answer] = await _answers(catcher, "Denied: your reply was recorded")
    assert "mallory" not in answer.lower() and "\x00" not in answer
    assert (await post_raw(mail_service, raw))[1] == {"outcome": "duplicate"}


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for at in range(0, len(data), 16 * 1024):
        yield data[at : at + 16 * 1024]


async def test_a_large_reply_is_read_whole_not_cut(
    mail_service: Service, catcher: MailCatcher
) -> None:
    task_id, mail = await request(mail_service, catcher)
    to = mail.message["Reply-To"].addresses[0].addr_spec
    attachment = "QUJD" * (1_500_000 // 4)
    raw = (
        f"From: Dana <dana@acme.test>\r\nTo: {to}\r\nSubject: Re: x\r\n"
        f"Message-ID: <big.{time.time_ns()}@acme.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        f"\r\n{attachment}\r\n--b\r\nContent-Type: text/plain\r\n\r\napprove\r\n--b--\r\n"
    ).encode()
    status, body = await mail_service.request(
        "POST",
        "/email/inbound",
        data=_chunks(raw),
        token="test-inbound-secret",
        headers={"Content-Type": "message/rfc822"},
    )
    assert (status, body) == (200, {"outcome": "decided"})
    assert (await status_of(mail_service, task_id))["status"] == "approved"


async def test_a_non_ascii_mailgun_signature_is_refused_not_a_crash(
    mail_service: Service, catcher: MailCatcher
) -> None:
    _, mail = await request(mail_service, catcher)
    to = mail.message["Reply-To"].addresses[0].addr_spec
    form = aiohttp.FormData()
    for name, value in (
        ("timestamp", str(int(time.time()))),
        ("token", "t" * 50),
        ("signature", "é" * 64),
        ("recipient", to),
        ("body-mime", reply(mail, "yes").decode()),
    ):
        form.add_field(name, value)
    async with aiohttp.ClientSession() as http:
        async with http.post(mail_service.base_url + MAILGUN, data=form) as response:
            assert response.status == 401
        weird = aiohttp.FormData()
        ts, token = "²", "u" * 50
        signature = hmac.new(MAILGUN_KEY.encode(), (ts + token).encode(), hashlib.sha256)
        for name, value in (
            ("timestamp", ts),
            ("token", token),
            ("signature", signature.hexdigest()),
        ):
            weird.add_field(name, value)
        async with http.post(mail_service.base_url + MAILGUN, data=weird) as response:
            assert response.status == 401


@pytest.fixture
async def failing_claims(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """A real database error while a reply is recorded (a trigger that raises)."""
    await pool.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'disk full (test)'; END $$;"
        " CREATE TRIGGER refuse BEFORE INSERT ON inbound_messages"
        " FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    yield pool


async def _repair(pool: asyncpg.Pool) -> None:
    await pool.execute("DROP TRIGGER refuse ON inbound_messages")


async def test_a_database_error_is_try_again_later_on_every_door(
    mail_service: Service, catcher: MailCatcher, failing_claims: asyncpg.Pool
) -> None:
    task_id, mail = await request(mail_service, catcher)
    to = mail.message["Reply-To"].addresses[0].addr_spec
    raw = reply(mail, "deny")
    status, body = await post_raw(mail_service, raw)
    assert status == 503 and body["error"], body
    with pytest.raises(aiosmtplib.SMTPDataError) as later:
        await aiosmtplib.send(
            raw, sender="dana@acme.test", recipients=[to], port=_listener_port(mail_service)
        )
    assert later.value.code == 451
    form_token = "r" * 40
    async with aiohttp.ClientSession() as http:
        url = mail_service.base_url + MAILGUN
        async with http.post(url, data=_mailgun_form(raw, to, token=form_token)) as response:
            assert response.status == 503
        await _repair(failing_claims)
        # The same token again: the first post was never handled, so it is not a replay.
        async with http.post(url, data=_mailgun_form(raw, to, token=form_token)) as response:
            assert response.status == 200
            # decided at the first try (the record failed after it); now answered once
            assert (await response.json())["outcome"] == "not_recorded"
        async with http.post(url, data=_mailgun_form(raw, to, token=form_token)) as response:
            assert response.status == 401 and "already used" in await response.text()
    assert (await status_of(mail_service, task_id))["status"] == "denied"
    assert (await post_raw(mail_service, raw))[1] == {"outcome": "duplicate"}
    answers = await _answers(catcher, "Nothing was changed by your reply")
    assert len(answers) == 1


async def test_a_job_past_the_time_limit_is_stopped_and_the_pool_recovers() -> None:
    readers = ReplyReaders(workers=1, time_limit=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(ReadTooLong):
            await readers.run(time.sleep, 30)
        assert time.monotonic() - started < 20  # worker start-up included
        assert await readers.run(len, b"abc") == 3
    finally:
        readers.close()
