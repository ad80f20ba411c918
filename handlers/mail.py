"""Inbound mail over HTTP: raw messages (bearer secret) and Mailgun routes (HMAC)."""

from __future__ import annotations

import hashlib
import hmac
import time
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bot.errors import DATABASE_ERRORS
from bot.mail.inbound import (
    ReplyNotHandled,
    ReplyOutcome,
    handle_reply,
    spend_webhook_token,
    webhook_token_used,
)
from bot.runtime.keys import METRICS, POOL, SETTINGS

__all__ = ["INBOUND_MAX_BYTES", "add_routes"]

INBOUND_MAX_BYTES = 10 * 1024 * 1024
_MAILGUN_WINDOW = 300
_MAX_FIELDS = 100
_TOO_COMPLEX = (
    "The message is too complex to read as a reply (too many MIME parts, nested too deep,"
    " or too slow to read); nothing was decided."
)


def add_routes(app: web.Application) -> None:
    settings = app[SETTINGS]
    if settings.inbound_webhook_secret:
        app.router.add_post("/email/inbound", inbound_raw)
    if settings.mailgun_signing_key:
        app.router.add_post("/email/inbound/mailgun", inbound_mailgun)
        app.router.add_post("/email/inbound/mailgun/mime", inbound_mailgun)


def _json(status: int, **body: object) -> web.Response:
    return web.json_response(body, status=status)


def _later() -> web.Response:
    """503: nothing was lost or decided twice; the MTA or provider delivers it again."""
    return web.json_response(
        {"error": "The reply could not be handled just now; deliver it again later.", "fields": {}},
        status=503,
        headers={"Retry-After": "30"},
    )


async def _body(request: web.Request) -> bytes | None:
    """The whole body up to the inbound limit (mail may be larger than API bodies), or None.

    `content.read(n)` returns what is buffered, not `n` bytes: read to the end."""
    if request.content_length is not None and request.content_length > INBOUND_MAX_BYTES:
        return None
    chunks, size = [], 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > INBOUND_MAX_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _handled(request: web.Request, raw: bytes, **door: Any) -> ReplyOutcome | None:
    """The outcome, or None when the reply must be delivered again later."""
    try:
        return await handle_reply(
            request.config_dict[POOL],
            request.config_dict[SETTINGS],
            raw,
            metrics=request.config_dict[METRICS],
            **door,
        )
    except ReplyNotHandled:
        return None


async def inbound_raw(request: web.Request) -> web.Response:
    """`POST /email/inbound` with `Content-Type: message/rfc822` and the bearer secret."""
    secret = request.config_dict[SETTINGS].inbound_webhook_secret or ""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.encode("utf-8", "surrogateescape"), secret.encode()
    ):
        return _json(401, error="A valid bearer token is required.", fields={})
    if request.content_type != "message/rfc822":
        return _json(415, error="Send the raw message as message/rfc822.", fields={})
    raw = await _body(request)
    if raw is None:
        return _json(413, error="The message is too large.", fields={})
    if not raw.strip():
        return _json(422, error="The message is empty.", fields={"body": "is empty"})
    outcome = await _handled(request, raw)
    if outcome is None:
        return _later()
    if outcome is ReplyOutcome.TOO_COMPLEX:
        return _json(422, error=_TOO_COMPLEX, fields={"body": "is too complex"})
    return _json(200, outcome=outcome.value)


def _form(content_type: str, body: bytes) -> dict[str, bytes] | None:
    """Fields of a urlencoded or multipart/form-data body (blank ones kept: an empty
    `sender` is a bounce), or None when it has more fields than any Mailgun post."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        try:
            pairs = parse_qsl(
                body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=_MAX_FIELDS
            )
        except ValueError:
            return None
        return {k: v.encode() for k, v in pairs}
    if body.count(b"\n--") > 2 * _MAX_FIELDS + 2:
        return None  # counted before parsing: the parser costs ~0.25 ms per part
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts() if message.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str):
            fields[name] = payload if isinstance(payload, bytes) else b""
    return fields


def _verified(fields: dict[str, bytes], signing_key: str) -> str | None:
    """The Mailgun token if the signature verifies and the timestamp is fresh, else None."""
    timestamp = fields.get("timestamp", b"").decode(errors="replace")
    token = fields.get("token", b"").decode(errors="replace")
    signature = fields.get("signature", b"").decode(errors="replace")
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256)
    # Bytes, not str: compare_digest raises on non-ASCII text.
    if not (
        timestamp.isascii()
        and timestamp.isdigit()
        and token
        and hmac.compare_digest(expected.hexdigest().encode(), signature.encode())
    ):
        return None
    if abs(time.time() - int(timestamp)) > _MAILGUN_WINDOW:
        return None
    return token


async def inbound_mailgun(request: web.Request) -> web.Response:
    """A Mailgun route (forward to `…/email/inbound/mailgun/mime`), HMAC-verified.

    The token is spent only once the reply is handled, so a 503 lets Mailgun retry with
    the same token; the token seen again after that is a replay. Mailgun does not retry 406.
    """
    settings = request.config_dict[SETTINGS]
    raw = await _body(request)
    if raw is None:
        return _json(413, error="The message is too large.", fields={})
    fields = _form(request.headers.get("Content-Type", ""), raw)
    if fields is None:
        return _json(413, error="The form has too many fields.", fields={})
    token = _verified(fields, settings.mailgun_signing_key or "")
    if token is None:
        return _json(401, error="The Mailgun signature does not verify or is stale.", fields={})
    pool = request.config_dict[POOL]
    try:
        used = await webhook_token_used(pool, token)
    except DATABASE_ERRORS:
        return _later()
    if used:
        return _json(401, error="This Mailgun token was already used.", fields={})
    mime = fields.get("body-mime")
    if not mime:
        return _json(
            422,
            error="No body-mime: set the route URL to end in /mime.",
            fields={"body-mime": "is required"},
        )
    recipient = fields.get("recipient", b"").decode(errors="replace")
    outcome = await _handled(
        request,
        mime,
        recipients=[r.strip() for r in recipient.split(",") if r.strip()] or None,
        envelope_from=fields["sender"].decode(errors="replace") if "sender" in fields else None,
    )
    if outcome is None:
        return _later()
    try:
        await spend_webhook_token(pool, token)
    except DATABASE_ERRORS:
        return _later()  # handled; the redelivery is a duplicate and decides nothing twice
    if outcome is ReplyOutcome.TOO_COMPLEX:
        return _json(406, error=_TOO_COMPLEX, fields={"body-mime": "is too complex"})
    return _json(200, outcome=outcome.value)
