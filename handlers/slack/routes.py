"""The aiohttp routes of Slack's edge (/slack/events, the OAuth pages) and the check that a
request is signed by Slack."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

__all__ = ["SignatureCheck", "oauth_route", "refusal", "slack_route"]

log = logging.getLogger(__name__)


def slack_route(bolt: AsyncApp, signing_secret: str) -> Any:
    """The aiohttp handler for POST /slack/events (signature checked by `SignatureCheck`)."""

    async def handle(request: web.Request) -> web.Response:
        try:
            bolt_request = await to_bolt_request(request)
            return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

        except Exception as exc:
            # Bolt could not even read the payload; only a correctly signed one earns a 400.
            refused = refusal(
                signing_secret,
                await request.read(),
                request.headers.get("X-Slack-Request-Timestamp", ""),
                request.headers.get("X-Slack-Signature", ""),
            )
            log.warning(
                "unreadable Slack payload",
                extra={
                    "event": "slack.bad_payload",
                    "error": type(exc).__name__,
                    "signed": refused is None,
                },
            )
            return web.Response(status=400 if refused is None else 401)

    return handle


def oauth_route(bolt: AsyncApp) -> Any:
    """The aiohttp handler for GET /slack/install and /slack/oauth_redirect: Bolt's OAuth
    flow (distributed mode)."""

    async def handle(request: web.Request) -> web.Response:
        flow = bolt.oauth_flow
        if flow is None:
            raise web.HTTPNotFound()
        bolt_request = await to_bolt_request(request)
        if request.path == flow.install_path:
            return await to_aiohttp_response(await flow.handle_installation(bolt_request))
        return await to_aiohttp_response(await flow.handle_callback(bolt_request))

    return handle


# Slack's window is five minutes; a timestamp of more digits than "now" is no timestamp.
_WINDOW = 300
_TIMESTAMP_DIGITS = 12
_SIGNATURE = re.compile("v0=[0-9a-f]{64}")


def refusal(secret: str, body: bytes | str, timestamp: str, signature: str) -> str | None:
    """Why a request is not signed by Slack (None when it is): `v0=` and the hex HMAC-SHA256
    of `v0:{timestamp}:{raw body}`, the timestamp within five minutes.

    The header shapes are checked first: slack-sdk's `SignatureVerifier` raises on a timestamp
    of unicode digits (`²`) or of hundreds of digits, on a signature that is not ASCII, and on
    a body that is not UTF-8, where the answer must be a 401.
    """
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _TIMESTAMP_DIGITS):
        return "malformed timestamp"
    if abs(time.time() - int(timestamp)) > _WINDOW:
        return "stale timestamp"
    if not _SIGNATURE.fullmatch(signature):
        return "malformed signature"
    raw = body.encode() if isinstance(body, str) else body
    expected = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + raw, hashlib.sha256)
    if not hmac.compare_digest("v0=" + expected.hexdigest(), signature):
        return "wrong signature"
    return None


class SignatureCheck(AsyncMiddleware):
    """Bolt's request verification, without its two faults: slack-sdk raises (a 500) on some
    malformed headers, and Bolt logs every refused request's whole body at INFO, so anyone
    could fill the logs, and a real payload refused for clock skew would leave its
    `response_url` there. A refusal is one structured line naming the reason, and a 401."""

    def __init__(self, signing_secret: str) -> None:
        self.signing_secret = signing_secret

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse:
        if req.mode == "socket_mode":
            return await next()  # the app token authenticates the socket, as in Bolt
        refused = refusal(
            self.signing_secret,
            req.raw_body,
            _header(req, "x-slack-request-timestamp"),
            _header(req, "x-slack-signature"),
        )
        if refused is None:
            return await next()
        log.info(
            "refused a Slack request that Slack did not sign",
            extra={"event": "slack.unverified", "reason": refused, "bytes": len(req.raw_body)},
        )
        return BoltResponse(status=401, body="")


def _header(req: AsyncBoltRequest, name: str) -> str:
    values = req.headers.get(name) or [""]
    return str(values[0])
