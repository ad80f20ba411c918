"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from bot.runtime.config import Settings
from bot.runtime.metrics import Metrics
from bot.slack.teams import SlackTeams
from store.database import PoolShare

__all__ = ["BACKGROUND_POOL", "METRICS", "POOL", "SETTINGS", "TEAMS"]

SETTINGS = web.AppKey("settings", Settings)
# The process's one pool, and the share of it that background work draws from.
POOL = web.AppKey("pool", asyncpg.Pool)
BACKGROUND_POOL = web.AppKey("background_pool", PoolShare)
METRICS = web.AppKey("metrics", Metrics)
# The Slack teams and their clients; absent while Slack is off.
TEAMS = web.AppKey("teams", SlackTeams)
