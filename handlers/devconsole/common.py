"""What the dev console's pages and actions share: the world it shows, whose team a person or
conversation is, people's names, and the bot's platform API as the platform calls it."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web

from bot.runtime.devmode import API_TOKEN, DevWorld
from bot.runtime.keys import SETTINGS

__all__ = ["WORLD", "api", "team_of_channel", "team_of_user", "user_name"]

WORLD = web.AppKey("dev_world", DevWorld)


def user_name(world: DevWorld) -> Any:
    def name(user_id: str) -> str:
        user = world.slack.user(user_id)
        return user.name if user else user_id

    return name


def team_of_user(world: DevWorld, user_id: str) -> str:
    user = world.slack.user(user_id)
    return user.team_id if user else world.slack.team_id


def team_of_channel(world: DevWorld, channel: str, user_id: str) -> str:
    """The team a conversation belongs to: a channel's own team (also for a channel shared
    with others), or for a DM the user's."""
    owner = next((t.id for t in world.slack.teams.values() if channel in t.channels), None)
    return owner or team_of_user(world, user_id)


async def api(
    request: web.Request, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """Call the bot's platform API as the platform does."""
    settings = request.app[SETTINGS]
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            f"http://127.0.0.1:{settings.port}/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        ) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text
