"""Decisions by email reply: the SMTP listener, the webhooks, and reading real replies."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import time
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.devkit.mail_catcher import CaughtMail, MailCatcher
from bot.mail.replies import Reading, first_line, parse, sender, understand
from tests.conftest import INBOUND_SECRET, MAILGUN_KEY, Service, approval_body
from tests.support import ROOT, eventually
from tests.unit.test_mail_reading import BOTTOM_POSTED

CORPUS = ROOT / "tests" / "fixtures" / "replies"
EXPECTED = {
    "gmail_top_approve": "approved",
    "gmail_html_only_deny": "denied",
    "outlook_de_approve": "approved",
    "outlook_en_deny": "denied",
    "apple_mail_approve": "approved",
    "bottom_posted_deny": "denied",
    "french_approve": "approved",
    "spanish_deny": "denied",
    "ambiguous_not_approved": "ambiguous",
    "ambiguous_both": "ambiguous",
    "ambiguous_nicht_genehmigt": "ambiguous",
    "signature_only": "ambiguous",
    "out_of_office": "automatic",
    "outlook_autoreply": "automatic",
    "bounce": "automatic",
    "precedence_bulk": "automatic",
}
_n = itertools.count()


async def request(service: Service, catcher: MailCatcher, **changes: Any) -> tuple[str, CaughtMail]:
    """Create a request for dana alone; return its id and the mail she got."""
    before = len(catcher.to("dana@acme.test"))
    body = approval_body(
        approvers=[{"email": "dana@acme.test"}],
        run_id=f"run-{next(_n)}",
        **({"reversibility": "recoverable"} | changes),
    )
    status, task = await service.request("POST", "/api/v1/approvals", json=body)
    assert status == 201, task
    mails = await eventually(
        lambda: len(catcher.to("dana@acme.test")) > before and catcher.to("dana@acme.test"),
        what="the request mail",
    )
    return str(task["id"]), mails[-1]


def reply(
    mail: CaughtMail,
    text: str,
    *,
    sender: str = "dana@acme.test",
    headers: dict[str, str] | None = None,
) -> bytes:
    original = mail.message
    lines = [
        f"From: Dana Smith <{sender}>",
        f"To: {original['Reply-To']}",
        f"Subject: Re: {original['Subject']}",
        f"Message-ID: <r{next(_n)}.{time.time()}@acme.test>",
        f"In-Reply-To: {original['Message-ID']}",
        "Content-Type: text/plain; charset=utf-8",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + text + "\r\n").encode()


async def status_of(service: Service, task_id: str) -> dict[str, Any]:
    _, view = await service.request("GET", f"/api/v1/approvals/{task_id}")
    return dict(view)


async def post_raw(service: Service, raw: bytes, secret: str = INBOUND_SECRET) -> tuple[int, Any]:
    return await service.request(
        "POST", "/email/inbound", data=raw, token=secret, headers={"Content-Type": "message/rfc822"}
    )


async def test_a_reply_through_the_smtp_listener_decides_and_is_answered(
    mail_service: Service, catcher: MailCatcher, receiver: Any
) -> None:
    task_id, mail = await request(mail_service, catcher)
    raw = reply(mail, "Approved, thanks!\r\n\r\n> Approval needed ... deny")
    settings_port = _listener_port(mail_service)

    to = mail.message["Reply-To"].addresses[0].addr_spec
    for _ in range(2):  # the same message delivered twice decides once
        await aiosmtplib.send(
            raw, sender="dana@acme.test", recipients=[to], hostname="127.0.0.1", port=settings_port
        )
    view = await status_of(mail_service, task_id)
    assert view["status"] == "approved" and view["decisions"][0]["via"] == "email_reply"
    assert len(view["decisions"]) == 1
    answers = await eventually(
        lambda: [
            m
            for m in catcher.to("dana@acme.test")
            if "Approved: your reply was recorded" in m.text()
        ],
        what="the answer",
    )
    answer = answers[0].message
    assert answer["In-Reply-To"].startswith("<r") and answer["Auto-Submitted"] == "auto-generated"
    callback = await eventually(lambda: receiver.delivered, what="callback")
    assert callback[0].json["data"]["via"] == "email_reply"
    await _settled(mail_service)
    assert len([m for m in catcher.to("dana@acme.test") if "your reply" in m.text()]) == 1


def _listener_port(service: Service) -> int:
    from bot.runtime.keys import SETTINGS

    port = service.app[SETTINGS].inbound_smtp_port
    assert port is not None
    return port


async def _settled(service: Service) -> None:
    async def drained() -> bool:
        _, page = await service.request("GET", "/api/v1/outbox?status=pending")
        return not page["items"]

    await eventually(drained, what="the outbox to drain")


async def test_the_listener_refuses_unknown_recipients(mail_service: Service) -> None:
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await aiosmtplib.send(
            b"Subject: x\r\n\r\napprove\r\n",
            sender="x@evil.test",
            recipients=["aaaaaaaaaaaaaaaaaaaaaaaa@reply.acme.test"],
            hostname="127.0.0.1",
            port=_listener_port(mail_service),
        )


async def test_the_raw_webhook_needs_its_secret_and_decides(
    mail_service: Service, catcher: MailCatcher
) -> None:
    task_id, mail = await request(mail_service, catcher)
    raw = reply(mail, "deny")
    assert (await post_raw(mail_service, raw, secret="wrong"))[0] == 401
    assert (await status_of(mail_service, task_id))["status"] == "pending"
    status, body = await post_raw(mail_service, raw)
    assert status == 200 and body == {"outcome": "decided"}
    assert (await status_of(mail_service, task_id))["status"] == "denied"
    status, body = await post_raw(mail_service, raw)
    assert body == {"outcome": "duplicate"}
    status, _ = await mail_service.request(
        "POST",
        "/email/inbound",
        data=b"",
        token=INBOUND_SECRET,
        headers={"Content-Type": "message/rfc822"},
    )
    assert status == 422


def _mailgun_form(
    raw: bytes,
    recipient: str,
    *,
    timestamp: int | None = None,
    token: str | None = None,
    key: str = MAILGUN_KEY,
) -> aiohttp.FormData:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    tok = token or hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:50]
    signature = hmac.new(key.encode(), (ts + tok).encode(), hashlib.sha256).hexdigest()
    form = aiohttp.FormData()
    for name, value in (
        ("timestamp", ts),
        ("token", tok),
        ("signature", signature),
        ("recipient", recipient),
        ("sender", "dana@acme.test"),
    ):
        form.add_field(name, value)
    form.add_field("body-mime", raw.decode(), content_type="text/plain")
    return form


async def test_mailgun_routes_are_verified_and_replays_refused(
    mail_service: Service, catcher: MailCatcher
) -> None:
    task_id, mail = await request(mail_service, catcher)
    to = mail.message["Reply-To"].addresses[0].addr_spec
    raw = reply(mail, "yes")
    url = mail_service.base_url + "/email/inbound/mailgun/mime"
    async with aiohttp.ClientSession() as http:
        for form in (
            _mailgun_form(raw, to, key="wrong-key"),
            _mailgun_form(raw, to, timestamp=int(time.time()) - 3600),
        ):
            async with http.post(url, data=form) as response:
                assert response.status == 401
        assert (await status_of(mail_service, task_id))["status"] == "pending"
        async with http.post(url, data=_mailgun_form(raw, to, token="t" * 40)) as response:
            assert response.status == 200 and (await response.json())["outcome"] == "decided"
        async with http.post(url, data=_mailgun_form(raw, to, token="t" * 40)) as response:
            assert response.status == 401 and "already used" in await response.text()
    assert (await status_of(mail_service, task_id))["status"] == "approved"


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_real_replies_are_read_right(
    mail_service: Service, catcher: MailCatcher, name: str
) -> None:
    task_id, mail = await request(mail_service, catcher)
    text = (CORPUS / f"{name}.eml").read_text(encoding="utf-8")
    text = (
        text.replace("{FROM}", "dana@acme.test")
        .replace("{TO}", mail.message["Reply-To"].addresses[0].addr_spec)
        .replace("{IN_REPLY_TO}", str(mail.message["Message-ID"]))
        .replace("{N}", str(next(_n)))
    )
    status, body = await post_raw(mail_service, text.encode())
    assert status == 200
    view = await status_of(mail_service, task_id)
    expected = EXPECTED[name]
    if expected in ("approved", "denied"):
        assert view["status"] == expected, body
    else:
        assert view["status"] == "pending" and body["outcome"] == expected


async def test_an_ambiguous_reply_gets_an_explanation(
    mail_service: Service, catcher: MailCatcher
) -> None:
    task_id, mail = await request(mail_service, catcher)
    await post_raw(mail_service, reply(mail, "not approved"))
    answer = await eventually(
        lambda: [m for m in catcher.to("dana@acme.test") if "not understood" in m.text()],
        what="the answer",
    )
    assert 'Reply with "approve" or "deny"' in answer[0].text()
    assert (await status_of(mail_service, task_id))["status"] == "pending"


async def test_approving_an_irreversible_action_by_reply_is_refused_but_deny_works(
    mail_service: Service, catcher: MailCatcher
) -> None:
    task_id, mail = await request(mail_service, catcher, reversibility="irreversible")
    status, body = await post_raw(mail_service, reply(mail, "approve"))
    assert body == {"outcome": "refused_irreversible"}
    assert (await status_of(mail_service, task_id))["status"] == "pending"
    await eventually(
        lambda: [
            m for m in catcher.to("dana@acme.test") if "cannot be approved by reply" in m.text()
        ],
        what="the answer",
    )
    status, body = await post_raw(mail_service, reply(mail, "deny"))
    assert (status, body) == (200, {"outcome": "decided"})
    assert (await status_of(mail_service, task_id))["status"] == "denied"


HOSTILE_FROM = [
    "mallory@evil.test",
    "dana@acme.test <mallory@evil.test>",
    '"dana@acme.test" <mallory@evil.test>',
    "dana@acme.test)<mallory@evil.test>",
    "Dana <dana@acme.test>, Mallory <mallory@evil.test>",
    "dana@acme.test, mallory@evil.test",
    "undisclosed: dana@acme.test;",
    "<dana@acme.test> <mallory@evil.test>",
    "dana@acme.test\r\nFrom: mallory@evil.test",
    "dana@acme.test.evil.test",
    "=?utf-8?q?dana=40acme=2Etest?= <mallory@evil.test>",
]


@pytest.mark.parametrize("from_header", HOSTILE_FROM)
async def test_hostile_from_headers_never_authenticate_the_approver(
    mail_service: Service, catcher: MailCatcher, from_header: str
) -> None:
    task_id, mail = await request(mail_service, catcher)
    raw = reply(mail, "approve").replace(
        b"From: Dana Smith <dana@acme.test>", f"From: {from_header}".encode()
    )
    status, body = await post_raw(mail_service, raw)
    assert status == 200 and body["outcome"] == "wrong_sender", body
    assert (await status_of(mail_service, task_id))["status"] == "pending"


async def test_two_from_headers_authenticate_nobody(
    mail_service: Service, catcher: MailCatcher
) -> None:
    task_id, mail = await request(mail_service, catcher)
    raw = reply(mail, "approve", headers={"From": "dana@acme.test"})
    status, body = await post_raw(mail_service, raw)
    assert (status, body["outcome"]) == (200, "wrong_sender")
    assert (await status_of(mail_service, task_id))["status"] == "pending"


async def test_dmarc_must_pass_at_the_trusted_receiver(
    database_url: str, receiver: Any, catcher: MailCatcher
) -> None:
    from tests.conftest import start_mail_service

    svc = await start_mail_service(
        database_url, receiver, catcher, inbound_authserv_id="mx.acme.test"
    )
    try:
        task_id, mail = await request(svc, catcher)
        forged = {"Authentication-Results": "evil.test; dmarc=pass header.from=acme.test"}
        failed = {"Authentication-Results": "mx.acme.test; dmarc=fail header.from=acme.test"}
        for headers in ({}, forged, failed):
            _, body = await post_raw(svc, reply(mail, "approve", headers=headers))
            assert body["outcome"] == "dmarc_failed"
        passed = {
            "Authentication-Results": "mx.acme.test; spf=pass smtp.mailfrom=acme.test;"
            " dmarc=pass header.from=acme.test"
        }

        _, body = await post_raw(svc, reply(mail, "approve", headers=passed))
        assert body["outcome"] == "decided"
        assert (await status_of(svc, task_id))["status"] == "approved"
    finally:
        await svc.close()


def test_the_cve_2023_27043_example_is_not_alice() -> None:
    message = parse(b"From: alice@example.org)<bob@evil.test>\r\nSubject: x\r\n\r\nyes\r\n")
    assert sender(message) is None


_WORDS = st.sampled_from(
    [
        "approve",
        "approved",
        "yes",
        "lgtm",
        "deny",
        "denied",
        "no",
        "reject",
        "genehmigt",
        "abgelehnt",
        "oui",
        "non",
        "aprobado",
        "rechazado",
        "thanks",
        "please",
        "ok",
        "not",
        "maybe",
    ]
)
_QUOTE = st.lists(
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40) | _WORDS,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(
    first=st.lists(_WORDS, min_size=1, max_size=4),
    quoted=_QUOTE,
    style=st.sampled_from(["gmail", "outlook", "angle"]),
)
def test_quoted_text_never_changes_the_outcome(
    first: list[str], quoted: list[str], style: str
) -> None:
    answer = " ".join(first).capitalize()
    bare = parse(f"From: d@acme.test\r\nContent-Type: text/plain\r\n\r\n{answer}\r\n".encode())
    header = {
        "gmail": "On Mon, Nov 24, 2026 at 10:00 AM TaskJuice <approvals@acme.test> wrote:",
        "outlook": "From: TaskJuice <approvals@acme.test>\r\nSent: Monday, November 24, 2026\r\n"
        "To: Dana\r\nSubject: Approval needed",
        "angle": "",
    }[style]
    body = "\r\n".join("> " + q.replace("\r", " ").replace("\n", " ") for q in quoted)
    quoted_mail = parse(
        (
            f"From: d@acme.test\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{answer}\r\n\r\n{header}\r\n{body}\r\n"
        ).encode()
    )
    assert understand(first_line(quoted_mail)) == understand(first_line(bare))


def test_understanding_first_lines() -> None:
    cases = {
        "Approve": Reading.APPROVE,
        "LGTM!": Reading.APPROVE,
        "Sí, aprobado": Reading.APPROVE,
        "Deny.": Reading.DENY,
        "Nein": Reading.DENY,
        "Refusé": Reading.DENY,
        "not approved": Reading.AMBIGUOUS,
        "approve? no": Reading.AMBIGUOUS,
        "no aprobado": Reading.AMBIGUOUS,
        "pas approuvé": Reading.AMBIGUOUS,
        "": Reading.AMBIGUOUS,
        "hmm": Reading.AMBIGUOUS,
        "don't approve": Reading.AMBIGUOUS,
    }
    for line, expected in cases.items():
        assert understand(line) is expected, line


async def test_a_bottom_posted_reply_decides_through_the_webhook(
    mail_service: Service, catcher: MailCatcher
) -> None:
    task_id, mail = await request(mail_service, catcher)
    text = BOTTOM_POSTED["gmail"].replace("\n", "\r\n").replace("Approved", "Denied")
    status, body = await post_raw(mail_service, reply(mail, text))
    assert (status, body) == (200, {"outcome": "decided"})
    assert (await status_of(mail_service, task_id))["status"] == "denied"
