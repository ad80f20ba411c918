"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot import health
from bot.errors import DATABASE_ERRORS
from bot.runtime.keys import METRICS, POOL

__all__ = ["READINESS", "Readiness", "add_routes"]


class Connection(Protocol):
    """A long-lived connection that readiness depends on (the Slack Socket Mode client)."""

    async def is_connected(self) -> bool: ...


@dataclass(slots=True, kw_only=True)
class Readiness:
    """What /readyz checks besides the database, set up by the app's start-up."""

    # Socket Mode: Slack's clicks and commands arrive only while this is connected.
    slack_socket: Connection | None = None
    # A worker-only process: due outbox work waiting longer than this means it is not keeping
    # up (or not working at all), although its database answers.
    outbox_max_age: float | None = None


READINESS = web.AppKey("readiness", Readiness)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The database answers, Socket Mode (if used) is connected, and a worker keeps up with
    the outbox; a load balancer should send traffic here only then. A 503 says why."""
    checks = request.config_dict.get(READINESS) or Readiness()
    body: dict[str, Any] = {}
    problems: list[str] = []
    try:
        async with asyncio.timeout(2):
            age = await health.check_database(
                request.config_dict[POOL], outbox_age=checks.outbox_max_age is not None
            )
        if age is not None and checks.outbox_max_age is not None:
            body["outbox_oldest_due_seconds"] = round(age, 1)
            body["outbox_max_age_seconds"] = checks.outbox_max_age
            if age > checks.outbox_max_age:
                problems.append(
                    f"outbox work has been due for {age:.0f} s,"
                    f" longer than READY_MAX_OUTBOX_AGE ({checks.outbox_max_age:g} s)"
                )
        body["database"] = "ok"
    except DATABASE_ERRORS:
        body["database"] = "unreachable"
        problems.append("the database does not answer")
    if checks.slack_socket is not None:
        connected = await checks.slack_socket.is_connected()
        body["slack_socket_mode"] = "connected" if connected else "disconnected"
        if not connected:
            problems.append("the Slack Socket Mode connection is down")
    if problems:
        return web.json_response({"status": "unavailable", **body, "reasons": problems}, status=503)
    return web.json_response({"status": "ready", **body})


async def metrics(request: web.Request) -> web.Response:
    registry = request.config_dict[METRICS]
    try:
        async with asyncio.timeout(2):
            stats = await health.outbox_stats(request.config_dict[POOL])
    except DATABASE_ERRORS:
        pass  # the gauges keep their last values; the counters are still worth scraping
    else:
        registry.outbox_depth.set(stats.pending)
        registry.outbox_oldest_age.set(stats.oldest_age)
        registry.outbox_dead.set(stats.dead)
        registry.outbox_queue_depth.clear()
        registry.outbox_queue_oldest_age.clear()
        for queue in stats.queues:
            labels = (queue.tenant, str(queue.priority))
            registry.outbox_queue_depth.labels(*labels).set(queue.depth)
            registry.outbox_queue_oldest_age.labels(*labels).set(queue.oldest_age)
    return web.Response(body=registry.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
