"""Outgoing mail over real SMTP, and the magic-link pages over real HTTP."""

from __future__ import annotations

import logging
import re
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.devkit.mail_catcher import CaughtMail, MailCatcher
from bot.links.tokens import LinkSigner
from bot.runtime.logs import quiet_libraries
from tests.conftest import REPLY_DOMAIN, Service, TaskFactory
from tests.support import eventually, move_deadline


async def mail_to(catcher: MailCatcher, address: str, count: int = 1) -> CaughtMail:
    found = await eventually(
        lambda: len(catcher.to(address)) >= count and catcher.to(address), what=f"mail to {address}"
    )
    return found[count - 1]


def link_of(mail: CaughtMail, intent: str = "approve") -> str:
    return re.search(r"(http://\S+/d/\S+)\?do=" + intent, mail.text()).group(1)  # type: ignore[union-attr]


async def fetch(url: str, method: str = "GET", **kwargs: Any) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kwargs) as response:
        return response.status, await response.text(), dict(response.headers)


def nonce_of(page: str) -> str:
    return re.search(r'name="nonce" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


async def status_of(service: Service, task_id: str) -> dict[str, Any]:
    _, view = await service.request("GET", f"/api/v1/approvals/{task_id}")
    return dict(view)


async def test_each_approver_gets_a_request_mail(
    mail_service: Service, catcher: MailCatcher, task_factory: TaskFactory
) -> None:
    task = await task_factory(
        reversibility="recoverable",
        details={"amount": "4000.00", "note": "<b>VIP</b> & co"},
    )
    mail = await mail_to(catcher, "dana@acme.test")
    message = mail.message
    assert message.get_content_type() == "multipart/alternative"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Subject"] == "Approval needed: Refund $4,000 to customer #881"
    assert re.fullmatch(r"<taskjuice\.request\.\d+@acme\.test>", message["Message-ID"])
    reply_to = message["Reply-To"].addresses[0]
    assert reply_to.domain == REPLY_DOMAIN and len(reply_to.username) == 24
    text, html = mail.text(), mail.html()
    for fragment in (
        "Refunds",
        "Issue refund",
        "run_8f2",
        "Recoverable",
        "ops@acme.test",
        "UTC",
        '"approve" or "deny"',
        "/acme/monitoring/approvals",
    ):
        assert fragment in text, fragment
    assert "&lt;b&gt;VIP&lt;/b&gt; &amp; co" in html and "<b>VIP</b>" not in html
    assert "<img" not in html and "<script" not in html.lower() and "style=" in html
    assert len(link_of(mail)) < 200 and "dana" not in link_of(mail)
    assert mail.rcpt_tos == ("dana@acme.test",)
    view = await status_of(mail_service, task["id"])
    [delivery] = [d for d in view["deliveries"] if d["channel"] == "email"]
    assert delivery["mail_to"] == "dana@acme.test" and delivery["status"] == "sent"
    assert delivery["mail_message_id"] == message["Message-ID"]


async def test_irreversible_mail_says_approval_by_reply_is_not_possible(
    mail_service: Service, catcher: MailCatcher, task_factory: TaskFactory
) -> None:
    await task_factory()
    text = (await mail_to(catcher, "dana@acme.test")).text()
    assert "cannot be undone" in text and "is not possible" in text


async def test_smtp_down_then_back_delivers_every_mail_once(
    mail_service: Service, catcher: MailCatcher, task_factory: TaskFactory
) -> None:
    await catcher.stop()
    await task_factory(approvers=[{"email": "dana@acme.test"}])

    async def retrying() -> bool:
        _, page = await mail_service.request("GET", "/api/v1/outbox?status=pending")
        return any(
            i["kind"] == "mail.request" and i["attempts"] >= 2 and i["last_error"]
            for i in page["items"]
        )

    await eventually(retrying, what="the mail to be retried")
    await catcher.start()
    await mail_to(catcher, "dana@acme.test")

    async def drained() -> bool:
        _, page = await mail_service.request("GET", "/api/v1/outbox?status=pending")
        return not page["items"]

    await eventually(drained, what="the outbox to drain")
    assert len(catcher.to("dana@acme.test")) == 1


async def test_scanners_opening_links_decide_nothing_then_a_person_decides_once(
    mail_service: Service, catcher: MailCatcher, receiver: Any, task_factory: TaskFactory
) -> None:
    task = await task_factory(reversibility="recoverable")
    mail = await mail_to(catcher, "dana@acme.test")
    approve, deny = link_of(mail, "approve"), link_of(mail, "deny")
    for url in (approve, deny, approve + "?do=approve", deny + "?do=deny"):
        for method in ("GET", "HEAD", "GET"):
            status, _, headers = await fetch(url, method)
            assert status == 200 and headers["Referrer-Policy"] == "no-referrer"
    assert (await status_of(mail_service, task["id"]))["status"] == "pending"
    status, page, headers = await fetch(approve + "?do=approve")
    assert "acting as <strong>dana@acme.test</strong>" in page
    for fragment in ("Refunds", "run_8f2", "Recoverable", "UTC", "Approve", "Deny"):
        assert fragment in page
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    form = {"nonce": nonce_of(page), "decision": "approve"}
    status, done, _ = await fetch(approve, "POST", data=form)
    assert status == 200 and "Approved" in done
    view = await status_of(mail_service, task["id"])
    assert view["status"] == "approved" and view["decisions"][0]["via"] == "email_link"
    status, again, _ = await fetch(approve, "POST", data=form)
    assert status == 410 and "Already approved by dana@acme.test via email" in again
    status, page, _ = await fetch(approve)
    assert status == 410
    assert len((await status_of(mail_service, task["id"]))["decisions"]) == 1


async def test_irreversible_approval_needs_the_typed_word(
    mail_service: Service, catcher: MailCatcher, task_factory: TaskFactory
) -> None:
    task = await task_factory()
    url = link_of(await mail_to(catcher, "dana@acme.test"))
    _, page, _ = await fetch(url)
    word = re.search(r'<span class="word">(\w+)</span>', page).group(1)  # type: ignore[union-attr]
    nonce = nonce_of(page)
    for typed in (None, "", "yes", word + "x"):
        form = {"nonce": nonce, "decision": "approve"} | (
            {"confirm_word": typed} if typed is not None else {}
        )
        status, again, _ = await fetch(url, "POST", data=form)
        assert status == 422 and "Type the confirmation word" in again
    assert (await status_of(mail_service, task["id"]))["status"] == "pending"
    status, _, _ = await fetch(
        url, "POST", data={"nonce": nonce, "decision": "approve", "confirm_word": word.upper()}
    )
    assert status == 200
    assert (await status_of(mail_service, task["id"]))["status"] == "approved"


async def test_deny_from_a_link_records_the_reason(
    mail_service: Service, catcher: MailCatcher, receiver: Any, task_factory: TaskFactory
) -> None:
    task = await task_factory()
    url = link_of(await mail_to(catcher, "dana@acme.test"), "deny")
    _, page, _ = await fetch(url)
    status, done, _ = await fetch(
        url, "POST", data={"nonce": nonce_of(page), "decision": "deny", "reason": "Wrong account"}
    )
    assert status == 200 and "Denied" in done
    view = await status_of(mail_service, task["id"])
    assert view["status"] == "denied" and view["decisions"][0]["reason"] == "Wrong account"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.test"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_cross_site_posts_are_refused(
    mail_service: Service, catcher: MailCatcher, headers: dict[str, str], task_factory: TaskFactory
) -> None:
    task = await task_factory(reversibility="safe")
    url = link_of(await mail_to(catcher, "dana@acme.test"))
    _, page, _ = await fetch(url)
    status, _, _ = await fetch(
        url, "POST", data={"nonce": nonce_of(page), "decision": "approve"}, headers=headers
    )
    assert status == 403
    assert (await status_of(mail_service, task["id"]))["status"] == "pending"


async def test_a_post_without_the_pages_nonce_decides_nothing(
    mail_service: Service, catcher: MailCatcher, task_factory: TaskFactory
) -> None:
    task = await task_factory(reversibility="safe")
    url = link_of(await mail_to(catcher, "dana@acme.test"))
    for form in (
        {"decision": "approve"},
        {"decision": "approve", "nonce": "forged.nonce"},
        {"nonce": "x"},
    ):
        status, _, _ = await fetch(url, "POST", data=form)
        assert status in (404, 422)
    assert (await status_of(mail_service, task["id"]))["status"] == "pending"


@pytest.mark.parametrize("mangle", ["tamper", "truncate", "garbage"])
async def test_tampered_links_get_a_clear_404_page(
    mail_service: Service, catcher: MailCatcher, mangle: str, task_factory: TaskFactory
) -> None:
    await task_factory()
    url = link_of(await mail_to(catcher, "dana@acme.test"))
    bad = {
        "tamper": url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"),
        "truncate": url[:-8],
        "garbage": url.rsplit("/", 1)[0] + "/%3Cscript%3E",
    }[mangle]
    status, page, headers = await fetch(bad)
    assert status == 404 and "This link is not valid" in page
    assert headers["Referrer-Policy"] == "no-referrer"


async def test_expired_superseded_and_changed_links_explain_themselves(
    mail_service: Service, catcher: MailCatcher, pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    expired = await task_factory(run_id="r-expired")
    url = link_of(await mail_to(catcher, "dana@acme.test", 1))
    async with pool.acquire() as conn:
        await move_deadline(conn, expired["id"], 0)
    status, page, _ = await fetch(url)
    assert status == 410 and "expire" in page

    await task_factory(run_id="r-changed", reversibility="safe")
    url = link_of(await mail_to(catcher, "dana@acme.test", 2))
    async with pool.acquire() as conn:
        await conn.execute("UPDATE tasks SET content_hash = 'changed' WHERE run_id = 'r-changed'")
    status, page, _ = await fetch(url)
    assert status == 410 and "changed after this email was sent" in page

    await task_factory(
        run_id="r-escalated",
        expires_in=1,
        timeout_policy="escalate",
        escalation=[{"approvers": [{"email": "cfo@acme.test"}], "expires_in": 600}],
    )
    url = link_of(await mail_to(catcher, "dana@acme.test", 3))
    escalated = await mail_to(catcher, "cfo@acme.test")
    assert escalated.message["Subject"].startswith("Escalated to you")
    status, page, _ = await fetch(url)
    assert status == 410 and "escalated" in page


async def test_tokens_never_reach_the_logs(
    mail_service: Service,
    catcher: MailCatcher,
    caplog: pytest.LogCaptureFixture,
    task_factory: TaskFactory,
) -> None:
    quiet_libraries()  # as configure_logging() does in the service
    caplog.set_level(logging.DEBUG)
    await task_factory(reversibility="safe")
    url = link_of(await mail_to(catcher, "dana@acme.test"))
    token = url.rsplit("/", 1)[1]
    _, page, _ = await fetch(url)
    await fetch(url, "POST", data={"nonce": nonce_of(page), "decision": "approve"})
    assert token not in caplog.text


def test_link_keys_rotate_oldest_first() -> None:
    old = LinkSigner(("k-one",))
    rotated = LinkSigner(("k-one", "k-two"))
    retired = LinkSigner(("k-two",))
    token = old.token(42)
    assert rotated.link_id(token) == 42 and retired.link_id(token) is None
    fresh = rotated.token(42)
    assert retired.link_id(fresh) == 42 and old.link_id(fresh) is None
    assert len(fresh) < 40
    assert rotated.nonce_ok(42, rotated.nonce(42)) and not rotated.nonce_ok(43, rotated.nonce(42))


async def test_a_reminder_mail_is_sent_once(
    mail_service: Service, catcher: MailCatcher, task_factory: TaskFactory
) -> None:
    await task_factory(approvers=[{"email": "dana@acme.test"}], expires_in=600, remind_before=599)
    second = await mail_to(catcher, "dana@acme.test", 2)
    assert second.message["Subject"].startswith("Reminder: approval still needed")
    assert link_of(second) == link_of(catcher.to("dana@acme.test")[0])  # the same link
