"""A stand-in for the platform's callback endpoint that checks every signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["PlatformReceiver", "ReceivedCallback"]


@dataclass(frozen=True, slots=True)
class ReceivedCallback:
    """One callback as received, with the verdict on its Standard Webhooks signature."""

    webhook_id: str
    timestamp: str
    body: dict[str, Any]
    verified: bool
    received_at: float


@dataclass
class PlatformReceiver:
    """Receives `POST /callbacks` and verifies `webhook-signature` with the shared secret."""

    secret: str
    received: list[ReceivedCallback] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    def verify(self, webhook_id: str, timestamp: str, body: bytes, signature: str) -> bool:
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 300
        offered = [s.partition(",")[2] for s in signature.split() if s.startswith("v1,")]
        return fresh and any(hmac.compare_digest(expected, s) for s in offered)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        try:
            parsed = json.loads(body)
        except ValueError:
            return web.Response(status=400)
        self.received.append(
            ReceivedCallback(
                webhook_id=headers.get("webhook-id", ""),
                timestamp=headers.get("webhook-timestamp", ""),
                body=parsed,
                verified=self.verify(
                    headers.get("webhook-id", ""),
                    headers.get("webhook-timestamp", ""),
                    body,
                    headers.get("webhook-signature", ""),
                ),
                received_at=time.time(),
            )
        )
        return web.Response(status=204)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/callbacks", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}/callbacks"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
