"""Socket Mode as the double plays it: `apps.connections.open` and the WebSocket the app keeps
open, envelopes sent down it and the acknowledgements that come back, and outages.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from bot.devkit.slack.state import DoubleState

__all__ = ["SocketMode"]


class SocketMode(DoubleState):
    """The Socket Mode connection: hello, envelopes in, acknowledgements out."""

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.url.replace("http://", "ws://").removesuffix("/api/") + "/socket"}

    async def socket_connected(self) -> None:
        await self._socket_connected.wait()

    async def socket_down(self) -> None:
        """Slack's Socket Mode service goes away: open connections are closed and new ones
        refused until `socket_up()`."""
        self._socket_refused = True
        self._socket_connected.clear()
        for ws in list(self._sockets):
            await ws.close()

    def socket_up(self) -> None:
        self._socket_refused = False

    async def socket_send(self, kind: str, payload: dict[str, Any]) -> str:
        """Deliver an envelope (`interactive`, `slash_commands`, `events_api`) to the app."""
        envelope_id = f"env-{next(self._clock)}"
        await self._socket_queue.put(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": True,
            }
        )
        return envelope_id

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if self._socket_refused:
            return web.Response(status=503, text="socket mode is down")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        await ws.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0TASKJ01"}}
        )
        self._socket_connected.set()

        async def pump() -> None:
            while True:
                await ws.send_json(await self._socket_queue.get())

        sender = asyncio.create_task(pump())
        try:
            async for message in ws:
                if message.type.name == "TEXT":
                    ack = json.loads(message.data)
                    if "envelope_id" in ack:
                        self.socket_acks[ack["envelope_id"]] = ack.get("payload")
                        self.changed.set()
        finally:
            sender.cancel()
            self._sockets.discard(ws)
        return ws
