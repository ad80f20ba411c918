"""The app factory: one pool, one HTTP client session, the workers, and every route."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from bot import effects
from bot.app_keys import METRICS, POOL, SETTINGS
from bot.callbacks import CallbackSender, callback_body
from bot.config import Settings
from bot.effects import Fanout
from bot.metrics import Metrics
from bot.outbox import Dispatcher, Handler
from bot.sweeper import Sweeper
from handlers import health
from handlers.api import api_app
from store.database import connect, create_pool, wait_for_database
from store.migrate import apply_migrations
from store.outbox import OutboxItem

__all__ = ["DISPATCHER", "build_app", "prepare_database"]

log = logging.getLogger("taskjuice.app")

DISPATCHER = web.AppKey("dispatcher", Dispatcher)


async def prepare_database(database_url: str) -> list[str]:
    """Wait for PostgreSQL, then apply missing migrations (safe from many replicas)."""
    await wait_for_database(database_url)
    conn = await connect(database_url)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


def build_app(settings: Settings, database_url: str, *, workers: bool = True) -> web.Application:
    """The whole service as one aiohttp application; `workers=False` serves HTTP only."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_lifecycle(database_url, workers))
    health.add_routes(app)
    app.add_subapp("/api/v1", api_app())
    return app


def _lifecycle(database_url: str, workers: bool):  # type: ignore[no-untyped-def]
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        await prepare_database(database_url)
        pool = await create_pool(database_url)
        app[POOL] = pool
        session = aiohttp.ClientSession()
        if not settings.slack_enabled:
            log.info(
                "Slack delivery is off: SLACK_BOT_TOKEN is not set",
                extra={"event": "slack.disabled"},
            )
        dispatcher = _dispatcher(app, pool, database_url, session)
        app[DISPATCHER] = dispatcher
        sweeper = Sweeper(pool=pool, metrics=app[METRICS], interval=settings.sweep_interval)
        running = (
            [asyncio.create_task(dispatcher.run()), asyncio.create_task(sweeper.run())]
            if workers
            else []
        )
        log.info(
            "taskjuice-bot ready",
            extra={"event": "service.ready", "host": settings.host, "port": settings.port},
        )
        try:
            yield
        finally:
            sweeper.stop()
            dispatcher.stop()
            await asyncio.gather(*running, return_exceptions=True)
            await session.close()
            await pool.close()
            log.info("taskjuice-bot stopped", extra={"event": "service.stopped"})

    return lifecycle


def _dispatcher(
    app: web.Application, pool: object, database_url: str, session: aiohttp.ClientSession
) -> Dispatcher:
    settings = app[SETTINGS]
    callbacks = CallbackSender(
        session,
        url=settings.callback_url,
        key=settings.callback_key,
        timeout=settings.callback_timeout,
    )
    fanout = Fanout(app[POOL], channels=[])

    async def send_callback(item: OutboxItem) -> None:
        await callbacks.send(item.message_id, await callback_body(app[POOL], item.payload))

    handlers: dict[str, Handler] = {
        effects.CALLBACK: send_callback,
        effects.TASK_CHANGED: fanout.task,
        effects.ALERT_CHANGED: fanout.alert,
    }
    return Dispatcher(
        pool=app[POOL],
        database_url=database_url,
        handlers=handlers,
        metrics=app[METRICS],
        lease=settings.outbox_lease,
        max_age=settings.outbox_max_age,
        retry_base=settings.outbox_retry_base,
    )
