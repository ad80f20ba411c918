"""The benchmark's baselines do what the README says, so that the ratios measured against them
mean what they say: the bare app answers signed clicks only, and the contract's floor records
each decision once and calls it back once, signed."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from bench.harness import CALLBACK_SECRET, BotProcess, bot_env, click_body, sign
from bot.devkit.callback_receiver import PlatformReceiver
from bot.devkit.slack_api import SlackApiDouble
from tests.support import eventually


@pytest.fixture
async def platform() -> AsyncIterator[PlatformReceiver]:
    receiver = PlatformReceiver(secret=CALLBACK_SECRET)
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def baseline(
    request: pytest.FixtureRequest, database_url: str, platform: PlatformReceiver
) -> AsyncIterator[BotProcess]:
    slack = SlackApiDouble()
    await slack.start()
    process = BotProcess(
        bot_env(database_url, slack.url, platform.url),
        [sys.executable, "-m", "bench.bare_bolt", *request.param],
    )
    try:
        await process.start()
        yield process
    finally:
        process.stop()
        await slack.stop()


async def _click(process: BotProcess, task_id: str, *, signed_at: float | None = None) -> int:
    body = click_body(task_id)
    headers = sign(body, int(signed_at if signed_at is not None else time.time()))
    async with (
        aiohttp.ClientSession() as http,
        http.post(process.url + "/slack/events", data=body, headers=headers) as response,
    ):
        return response.status


@pytest.mark.parametrize("baseline", [[], ["--floor"]], ids=["bare", "floor"], indirect=True)
async def test_a_baseline_answers_signed_clicks_only(baseline: BotProcess) -> None:
    assert await _click(baseline, "task-signed") == 200
    assert await _click(baseline, "task-stale", signed_at=time.time() - 3600) == 401


@pytest.mark.parametrize("baseline", [["--floor"]], ids=["floor"], indirect=True)
async def test_the_floor_records_each_decision_once_and_calls_it_back_once(
    baseline: BotProcess, database_url: str, platform: PlatformReceiver
) -> None:
    for task_id in ("task-a", "task-b", "task-a"):
        assert await _click(baseline, task_id) == 200

    await eventually(lambda: len(platform.received) >= 2, what="two callbacks")
    conn = await asyncpg.connect(database_url)
    try:
        recorded = await conn.fetch("SELECT task_id FROM bench_floor_decisions ORDER BY task_id")
    finally:
        await conn.close()
    assert [r["task_id"] for r in recorded] == ["task-a", "task-b"]
    assert sorted(c.body["data"]["id"] for c in platform.received) == ["task-a", "task-b"]
    assert all(c.verified for c in platform.received)
