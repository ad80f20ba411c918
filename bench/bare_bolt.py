"""The baselines the bot's clicks are measured against, each a Bolt app on aiohttp:

* `python -m bench.bare_bolt`: the bare app, whose action listener only acks;
* `python -m bench.bare_bolt --floor`: the contract's floor, whose listener does the least a
  click asks of any implementation of DESIGN.md: record the decision once (one INSERT, committed
  before the ack), ack, and send the platform one signed callback. It keeps no audit trail, no
  outbox (a callback lost to a crash or a refused POST stays lost) and updates no message; it is
  a yardstick, never a service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.outbox.dispatcher import RetryLater
from bot.platform.callbacks import CallbackSender
from bot.runtime.cli import settle_heap, use_fast_event_loop
from bot.runtime.config import load_settings
from store.database import create_pool

_RECORD = """
    INSERT INTO bench_floor_decisions (task_id, user_id) VALUES ($1, $2)
    ON CONFLICT DO NOTHING RETURNING decided_at
"""
_TABLE = """
    CREATE TABLE IF NOT EXISTS bench_floor_decisions (
        task_id text PRIMARY KEY,
        user_id text NOT NULL,
        decided_at timestamptz NOT NULL DEFAULT now()
    )
"""

Startup = Callable[[web.Application], Awaitable[None]]


def _bare(bolt: AsyncApp) -> list[Startup]:
    @bolt.action(re.compile(".*"))
    async def only_ack(ack: AsyncAck) -> None:
        await ack()

    return []


def _floor(bolt: AsyncApp) -> list[Startup]:
    settings = load_settings(os.environ)
    if not settings.database_url:
        raise SystemExit("the floor records its decisions in $DATABASE_URL's database")
    dsn = settings.database_url
    held: dict[str, Any] = {}
    sending: set[asyncio.Task[None]] = set()
    # The cheapest way to send many: a few at a time on kept-alive connections (about 0.1 ms of
    # CPU each here, against 0.14 ms when every callback of a burst is in flight at once).
    in_flight = asyncio.Semaphore(16)

    async def start(app: web.Application) -> None:
        held["pool"] = await create_pool(dsn, min_size=4, max_size=16)
        await held["pool"].execute(_TABLE)
        session = aiohttp.ClientSession()
        held["sender"] = CallbackSender(
            session, url=settings.callback_url, key=settings.callback_key, timeout=10
        )

        async def close(_: web.Application) -> None:
            await session.close()
            await held["pool"].close()

        app.on_cleanup.append(close)

    async def call_back(task_id: str, user: str, decided_at: Any) -> None:
        stamp = decided_at.isoformat()
        event = {
            "type": "approval.approved",
            "timestamp": stamp,
            "data": {
                "id": task_id,
                "status": "approved",
                "resolution": "proceed",
                "decided_by": {"slack_user_id": user},
                "via": "slack",
                "decided_at": stamp,
            },
        }
        # Sent once, by the bot's own sender; the floor keeps nothing to retry a failure from.
        async with in_flight:
            with contextlib.suppress(RetryLater):
                await held["sender"].send(f"msg_floor_{task_id}", event)

    @bolt.action(re.compile(".*"))
    async def record_and_call_back(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        task_id, user = json.loads(action["value"])["t"], body["user"]["id"]
        decided_at = await held["pool"].fetchval(_RECORD, task_id, user)
        await ack()
        if decided_at is not None:
            task = asyncio.create_task(call_back(task_id, user, decided_at))
            sending.add(task)
            task.add_done_callback(sending.discard)

    return [start]


def main(argv: list[str]) -> None:
    client = AsyncWebClient(
        token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]
    )
    bolt = AsyncApp(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=True,
    )
    startups = (_floor if "--floor" in argv else _bare)(bolt)

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app.router.add_get("/healthz", healthz)
    # The same event loop and collector settings as the bot, so the ratio compares like with like.
    app.on_startup.extend([*startups, settle_heap])
    use_fast_event_loop()
    web.run_app(app, host="127.0.0.1", port=int(os.environ["PORT"]), access_log=None, print=None)


if __name__ == "__main__":
    main(sys.argv[1:])
