"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from bot.config import Settings
from bot.metrics import Metrics

__all__ = ["METRICS", "POOL", "SETTINGS", "WORK_POOL"]

SETTINGS = web.AppKey("settings", Settings)
# Connections for requests, and for background work (outbox dispatcher, sweeper).
POOL = web.AppKey("pool", asyncpg.Pool)
WORK_POOL = web.AppKey("work_pool", asyncpg.Pool)
METRICS = web.AppKey("metrics", Metrics)
