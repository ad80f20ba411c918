"""The benchmark's baselines do what the README says, so that the ratios measured against them
mean what they say: the bare app answers signed clicks only, and the contract's floor records
each decision once and calls it back once, signed. The baselines run as the benchmark runs
them, `python -m bench.bare_bolt`, in a process of their own."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from bot.devkit.callback_receiver import PlatformReceiver
from bot.devkit.slack_api import SlackApiDouble
from bot.devkit.slack_requests import SlackRequests
from tests.slack_support import SIGNING_SECRET
from tests.support import CALLBACK_SECRET, ROOT, ServiceProcess, eventually, free_port, service_env

SLACK = SlackRequests(SIGNING_SECRET)


@pytest.fixture
async def platform() -> AsyncIterator[PlatformReceiver]:
    receiver = PlatformReceiver(secret=CALLBACK_SECRET)
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def baseline(
    request: pytest.FixtureRequest,
    database_url: str,
    platform: PlatformReceiver,
    tmp_path: Path,
) -> AsyncIterator[ServiceProcess]:
    slack = SlackApiDouble()
    await slack.start()
    env = service_env(
        database_url,
        platform.url,
        free_port(),
        SLACK_BOT_TOKEN="xoxb-test-token",
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.url,
    )
    process = ServiceProcess(
        env,
        tmp_path / "baseline.log",
        command=tuple(request.param),
        module="bench.bare_bolt",
        ready_path="/healthz",
        cwd=ROOT,  # where `bench` is importable
    )
    try:
        await process.start()
        yield process
    finally:
        await process.terminate()
        await slack.stop()


async def _click(process: ServiceProcess, task_id: str, *, signed_at: float | None = None) -> int:
    value = json.dumps({"t": task_id, "r": 0, "h": "hash"}, separators=(",", ":"))
    payload = SLACK.block_actions_payload(
        user="U0LOAD0001",
        action_id="taskjuice_approve",
        value=value,
        message={"ts": "1.000001", "channel": "D0LOAD0001"},
        with_message=False,
    )
    body, headers = SLACK.interaction(
        payload, timestamp=int(signed_at if signed_at is not None else time.time())
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(process.base_url + "/slack/events", data=body, headers=headers) as response,
    ):
        return response.status


@pytest.mark.parametrize("baseline", [[], ["--floor"]], ids=["bare", "floor"], indirect=True)
async def test_a_baseline_answers_signed_clicks_only(baseline: ServiceProcess) -> None:
    assert await _click(baseline, "task-signed") == 200
    assert await _click(baseline, "task-stale", signed_at=time.time() - 3600) == 401


@pytest.mark.parametrize("baseline", [["--floor"]], ids=["floor"], indirect=True)
async def test_the_floor_records_each_decision_once_and_calls_it_back_once(
    baseline: ServiceProcess, database_url: str, platform: PlatformReceiver
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
