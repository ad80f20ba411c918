"""Inbound mail over HTTP: raw messages (bearer secret) and Mailgun routes (HMAC)."""

from __future__ import annotations

import hashlib
import hmac
import time
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qsl

from aiohttp import web

from bot.app_keys import METRICS, POOL, SETTINGS
from bot.inbound import handle_reply
from store import mail

__all__ = ["INBOUND_MAX_BYTES", "add_routes"]

INBOUND_MAX_BYTES = 10 * 1024 * 1024
_MAILGUN_WINDOW = 300


def add_routes(app: web.Application) -> None:
    settings = app[SETTINGS]
    if settings.inbound_webhook_secret:
        app.router.add_post("/email/inbound", inbound_raw)
    if settings.mailgun_signing_key:
        app.router.add_post("/email/inbound/mailgun", inbound_mailgun)
        app.router.add_post("/email/inbound/mailgun/mime", inbound_mailgun)


def _json(status: int, **body: object) -> web.Response:
    return web.json_response(body, status=status)


async def _body(request: web.Request) -> bytes | None:
    """The body up to the inbound limit (mail may be larger than API bodies)."""
    if request.content_length is not None and request.content_length > INBOUND_MAX_BYTES:
        return None
    data = await request.content.read(INBOUND_MAX_BYTES + 1)
    return None if len(data) > INBOUND_MAX_BYTES else data


async def inbound_raw(request: web.Request) -> web.Response:
    """`POST /email/inbound` with `Content-Type: message/rfc822` and the bearer secret."""
    secret = request.config_dict[SETTINGS].inbound_webhook_secret or ""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), secret.encode()):
        return _json(401, error="A valid bearer token is required.", fields={})
    if request.content_type != "message/rfc822":
        return _json(415, error="Send the raw message as message/rfc822.", fields={})
    raw = await _body(request)
    if raw is None:
        return _json(413, error="The message is too large.", fields={})
    if not raw.strip():
        return _json(422, error="The message is empty.", fields={"body": "is empty"})
    outcome = await handle_reply(
        request.config_dict[POOL],
        request.config_dict[SETTINGS],
        raw,
        metrics=request.config_dict[METRICS],
    )
    return _json(200, outcome=outcome.value)


def _form(content_type: str, body: bytes) -> dict[str, bytes]:
    """Fields of a urlencoded or multipart/form-data body."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {k: v.encode() for k, v in parse_qsl(body.decode("utf-8", "replace"))}
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts() if message.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload
    return fields


async def inbound_mailgun(request: web.Request) -> web.Response:
    """A Mailgun route (forward to `…/email/inbound/mailgun/mime`), HMAC-verified."""
    settings = request.config_dict[SETTINGS]
    raw = await _body(request)
    if raw is None:
        return _json(413, error="The message is too large.", fields={})
    fields = _form(request.headers.get("Content-Type", ""), raw)
    timestamp = fields.get("timestamp", b"").decode(errors="replace")
    token = fields.get("token", b"").decode(errors="replace")
    signature = fields.get("signature", b"").decode(errors="replace")
    key = (settings.mailgun_signing_key or "").encode()
    expected = hmac.new(key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not (timestamp.isdigit() and token and hmac.compare_digest(expected, signature)):
        return _json(401, error="The Mailgun signature does not verify.", fields={})
    if abs(time.time() - int(timestamp)) > _MAILGUN_WINDOW:
        return _json(401, error="The Mailgun timestamp is stale.", fields={})
    async with request.config_dict[POOL].acquire() as conn:
        if not await mail.claim_webhook_token(conn, token):
            return _json(401, error="This Mailgun token was already used.", fields={})
    mime = fields.get("body-mime")
    if not mime:
        return _json(
            422,
            error="No body-mime: set the route URL to end in /mime.",
            fields={"body-mime": "is required"},
        )
    recipient = fields.get("recipient", b"").decode(errors="replace")
    outcome = await handle_reply(
        request.config_dict[POOL],
        settings,
        mime,
        recipients=[r.strip() for r in recipient.split(",") if r.strip()] or None,
        envelope_from=fields["sender"].decode(errors="replace") if "sender" in fields else None,
        metrics=request.config_dict[METRICS],
    )
    return _json(200, outcome=outcome.value)
