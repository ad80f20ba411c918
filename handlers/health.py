"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.app_keys import METRICS, POOL
from store import outbox
from store.database import DATABASE_ERRORS

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The database answers; a load balancer should send traffic here only then."""
    try:
        async with asyncio.timeout(2):
            async with request.config_dict[POOL].acquire() as conn:
                await conn.fetchval("SELECT 1")
    except DATABASE_ERRORS:
        return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ready", "database": "ok"})


async def metrics(request: web.Request) -> web.Response:
    registry = request.config_dict[METRICS]
    try:
        async with asyncio.timeout(2):
            async with request.config_dict[POOL].acquire() as conn:
                stats = await outbox.stats(conn)
    except DATABASE_ERRORS:
        pass  # the gauges keep their last values; the counters are still worth scraping
    else:
        registry.outbox_depth.set(stats.pending)
        registry.outbox_oldest_age.set(stats.oldest_age)
        registry.outbox_dead.set(stats.dead)
    return web.Response(body=registry.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
