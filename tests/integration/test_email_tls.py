"""Outgoing mail over STARTTLS and implicit TLS, with a login, to a server whose certificate the
bot must verify."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme

from bot.devkit.mail_catcher import MailCatcher
from tests.conftest import Service, approval_body, start_mail_service
from tests.support import CallbackReceiver, eventually

LOGIN = ("taskjuice-bot", "not-a-real-password")


@pytest.fixture
def authority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[trustme.CA]:
    """A private CA; the process's default trust store is pointed at it, as an operator would
    point SSL_CERT_FILE at a corporate CA."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    yield ca


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def serve_mail(
    database_url: str, receiver: CallbackReceiver, catcher: MailCatcher, mode: str
) -> Service:
    return await start_mail_service(
        database_url,
        receiver,
        catcher,
        smtp_tls=mode,
        smtp_username=LOGIN[0],
        smtp_password=LOGIN[1],
    )


@pytest.fixture(params=["starttls", "tls"])
async def secure_catcher(
    request: pytest.FixtureRequest, authority: trustme.CA
) -> AsyncIterator[tuple[str, MailCatcher]]:
    sink = MailCatcher(
        tls=server_context(authority), implicit_tls=request.param == "tls", credentials=LOGIN
    )
    await sink.start()
    yield request.param, sink
    await sink.stop()


async def test_mail_goes_out_encrypted_and_logged_in(
    database_url: str, receiver: CallbackReceiver, secure_catcher: tuple[str, MailCatcher]
) -> None:
    mode, catcher = secure_catcher
    service = await serve_mail(database_url, receiver, catcher, mode)
    try:
        body = approval_body(approvers=[{"email": "dana@acme.test"}], reversibility="recoverable")
        status, _ = await service.request("POST", "/api/v1/approvals", json=body)
        assert status == 201
        [mail] = await eventually(lambda: catcher.to("dana@acme.test"), what="the request mail")
        assert mail.encrypted and mail.login == LOGIN[0]
        assert mail.message["Subject"].startswith("Approval needed")
    finally:
        await service.close()


async def test_an_untrusted_certificate_is_refused_and_the_mail_waits(
    database_url: str, receiver: CallbackReceiver, authority: trustme.CA
) -> None:
    # The server's certificate comes from a CA the bot does not trust.
    catcher = MailCatcher(tls=server_context(trustme.CA()), credentials=LOGIN)
    await catcher.start()
    service = await serve_mail(database_url, receiver, catcher, "starttls")
    try:
        body = approval_body(approvers=[{"email": "dana@acme.test"}], reversibility="recoverable")
        status, _ = await service.request("POST", "/api/v1/approvals", json=body)
        assert status == 201

        async def refused() -> list[dict[str, object]]:
            _, page = await service.request("GET", "/api/v1/outbox?status=pending")
            return [
                item
                for item in page["items"]
                if "SMTP unreachable" in str(item.get("last_error") or "")
            ]

        await eventually(refused, what="the delivery failing on the certificate, kept for retry")
        assert catcher.messages == []
    finally:
        await service.close()
        await catcher.stop()
