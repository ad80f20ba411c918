"""The dev console at /dev (dev mode only): Slack, mail and the platform in one browser tab.

`pages` renders the console and its panels; `actions` turns what is done there into what Slack,
a mail client or the platform would send the bot; `common` holds what both need.
"""

from __future__ import annotations

from aiohttp import web

from bot.runtime.devmode import DevWorld
from handlers.devconsole import actions, pages
from handlers.devconsole.common import WORLD

__all__ = ["WORLD", "add_routes"]


def add_routes(app: web.Application, world: DevWorld) -> None:
    app[WORLD] = world
    pages.add_routes(app, world)
    actions.add_routes(app)
