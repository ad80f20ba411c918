"""Interactivity, decision pipeline, fan-out and memory, against the bot as a real process."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.harness import (
    CALLBACK_SECRET,
    CLICKER,
    BotProcess,
    bot_argv,
    bot_env,
    click_body,
    free_port,
    median_of,
    pending_tasks,
    percentile,
    postgres_cpu_seconds,
    run_load,
    settle,
    sign,
)
from bot.devkit.callback_receiver import PlatformReceiver
from bot.devkit.mail_catcher import MailCatcher
from bot.devkit.slack_api import SlackApiDouble
from store.database import connect

__all__ = ["run"]


async def _interactivity(
    db: str, apps: dict[str, _App], *, seconds: float, repeats: int
) -> dict[str, Any]:
    """Each app takes the same signed clicks in turn; every ratio is to the bare app's figure
    of the same repetitions."""
    figures: dict[str, Any] = {}
    for connections in (32, 1):
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in apps}
        for _ in range(repeats):
            conn = await connect(db)
            try:
                ids = await pending_tasks(conn, int(seconds * (4000 if connections > 1 else 1500)))
                await settle(conn)
            finally:
                await conn.close()
            bodies = [click_body(i) for i in ids]
            for name, app in apps.items():
                runs[name].append(
                    await _load(app, bodies, connections=connections, seconds=seconds)
                )
        medians = {name: median_of(app_runs) for name, app_runs in runs.items()}
        base = medians["bare_bolt"]["rps"]
        figures[f"concurrency_{connections}"] = medians | {
            f"{name}_ratio": round(medians[name]["rps"] / base, 2) if base else None
            for name in apps
            if name != "bare_bolt"
        }
    return figures


@dataclass
class _App:
    """An app under load, and how to wait until the work its clicks caused is done."""

    process: BotProcess
    settled: Callable[[], Awaitable[None]]


async def _load(
    app: _App, bodies: list[bytes], *, connections: int, seconds: float
) -> dict[str, Any]:
    cpu, postgres_cpu = app.process.cpu_seconds(), postgres_cpu_seconds()
    figures: dict[str, Any] = await asyncio.to_thread(
        run_load, app.process.url, bodies, connections=connections, seconds=seconds
    )
    # Where the CPU goes: the clicks and the work they cause (callbacks, message refreshes),
    # which the same process finishes once the load stops if not before.
    await app.settled()
    clicks = figures["rps"] * seconds
    if clicks and cpu:
        figures["cpu_ms_per_click"] = round((app.process.cpu_seconds() - cpu) * 1e3 / clicks, 3)
        figures["postgres_cpu_ms_per_click"] = round(
            (postgres_cpu_seconds() - postgres_cpu) * 1e3 / clicks, 3
        )
    return figures


async def _nothing_left() -> None:
    return None


async def _floor_called_back(db: str, receiver: PlatformReceiver, timeout: float = 60.0) -> None:
    """Wait until the floor app has sent a callback for every decision it recorded."""
    conn = await connect(db)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recorded = await conn.fetchval("SELECT count(*) FROM bench_floor_decisions")
            sent = sum(1 for c in receiver.received if c.webhook_id.startswith("msg_floor_"))
            if sent >= recorded:
                return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _outbox_drained(db: str, timeout: float = 60.0) -> None:
    """Wait until every outbox item the load queued has been sent."""
    conn = await connect(db)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'pending'"):
                return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _pipeline(
    bot: BotProcess, slack: SlackApiDouble, receiver: PlatformReceiver, count: int
) -> dict[str, Any]:
    """Requests posted as DMs, then clicked: click → commit → chat.update and callback."""
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer bench-token"}) as http:
        for n in range(count):
            async with http.post(
                bot.url + "/api/v1/approvals",
                json={
                    "workspace": "bench",
                    "run_id": f"pipe_{n}",
                    "workflow": {"id": "w", "name": "W"},
                    "summary": f"Pipeline {n}",
                    "reversibility": "safe",
                    "expires_in": 3600,
                    "approvers": [{"slack_user_id": CLICKER}],
                    "deliver": {"email": False},
                },
            ) as response:
                assert response.status == 201
        dm = slack.dm_channel(CLICKER)
        while len(slack.messages.get(dm, [])) < count:
            await asyncio.sleep(0.05)
        messages = list(slack.messages[dm])
        sent: dict[str, float] = {}
        updates_before = len(slack.calls_to("chat.update"))
        callbacks_before = len(receiver.received)
        semaphore = asyncio.Semaphore(8)

        async def click(message: dict[str, Any]) -> None:
            element = next(
                e
                for b in message["blocks"]
                if b["type"] == "actions"
                for e in b["elements"]
                if e["action_id"] == "taskjuice_approve"
            )
            value = json.loads(element["value"])
            body = click_body(value["t"], value["h"])
            async with semaphore:
                sent[value["t"]] = time.time()
                async with http.post(
                    bot.url + "/slack/events", data=body, headers=sign(body, int(time.time()))
                ) as response:
                    assert response.status == 200

        await asyncio.gather(*(click(m) for m in messages))
        deadline = time.time() + 60
        while (
            len(receiver.received) - callbacks_before < count
            or len(slack.calls_to("chat.update")) - updates_before < count
        ):
            if time.time() > deadline:
                break
            await asyncio.sleep(0.02)
    latencies = [
        (c.received_at - sent[c.body["data"]["id"]]) * 1000
        for c in receiver.received[callbacks_before:]
        if c.body["data"]["id"] in sent
    ]
    return {
        "clicks": count,
        "callbacks": len(latencies),
        "chat_updates": len(slack.calls_to("chat.update")) - updates_before,
        "click_to_callback_p50_ms": round(percentile(latencies, 0.5), 1),
        "click_to_callback_p99_ms": round(percentile(latencies, 0.99), 1),
    }


async def _fan_out(db: str, requests: int, approvers: int) -> dict[str, Any]:
    """Requests to many approvers while the double allows one message per second per channel."""
    slack = SlackApiDouble(pace_per_channel=1.0)
    for n in range(approvers):
        slack.add_user(f"U0FAN{n:05d}", f"fan{n}", f"fan{n}@bench.test")
    await slack.start()
    catcher = MailCatcher()
    await catcher.start()
    receiver = PlatformReceiver(secret=CALLBACK_SECRET)
    await receiver.start()
    bot = BotProcess(
        bot_env(
            db,
            slack.url,
            receiver.url,
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(catcher.port),
            SMTP_TLS="none",
            MAIL_FROM="TaskJuice <approvals@bench.test>",
            LINK_SECRETS="bench-link-secret",
        ),
        bot_argv(),
    )
    await bot.start()
    try:
        started = time.time()
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer bench-token"}) as http:
            semaphore = asyncio.Semaphore(16)

            async def create(n: int) -> None:
                async with (
                    semaphore,
                    http.post(
                        bot.url + "/api/v1/approvals",
                        json={
                            "workspace": "bench",
                            "run_id": f"fan_{n}",
                            "workflow": {"id": "w", "name": "Fan-out"},
                            "summary": f"Fan-out {n}",
                            "reversibility": "safe",
                            "expires_in": 3600,
                            "approvers": [{"email": f"fan{n % approvers}@bench.test"}],
                        },
                    ) as response,
                ):
                    assert response.status == 201

            await asyncio.gather(*(create(n) for n in range(requests)))
        deadline = time.time() + 600
        while (
            len(slack.all_messages()) < requests or len(catcher.messages) < requests
        ) and time.time() < deadline:
            await asyncio.sleep(0.1)
        elapsed = time.time() - started
        posts = slack.calls_to("chat.postMessage")
        limited = sum(1 for c in slack.calls if c.answer == "ratelimited")
        return {
            "requests": requests,
            "approvers": approvers,
            "seconds": round(elapsed, 1),
            "dms": len(slack.all_messages()),
            "mails": len(catcher.messages),
            "lost": 2 * requests - len(slack.all_messages()) - len(catcher.messages),
            "slack_calls": len(slack.calls),
            "post_calls": len(posts),
            "ratelimited": limited,
            "ratelimited_percent": round(100 * limited / max(1, len(slack.calls)), 2),
        }
    finally:
        bot.stop()
        await slack.stop()
        await catcher.stop()
        await receiver.stop()


async def _memory(db: str, bot: BotProcess, tasks: int) -> dict[str, Any]:
    conn = await connect(db)
    try:
        await pending_tasks(conn, tasks, approver="U0MEM0001")
    finally:
        await conn.close()
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer bench-token"}) as http:
        for _ in range(20):
            async with http.get(bot.url + "/api/v1/approvals?limit=200&status=pending") as r:
                await r.read()
    await asyncio.sleep(2)  # let the sweeper and dispatcher pass over the backlog
    return {"pending_tasks": tasks, "rss_mb": round(bot.rss_mb(), 1)}


async def run(db: str, *, quick: bool) -> dict[str, Any]:
    slack = SlackApiDouble()
    slack.add_user(CLICKER, "load", "load@bench.test")
    await slack.start()
    receiver = PlatformReceiver(secret=CALLBACK_SECRET)
    await receiver.start()
    env = bot_env(db, slack.url, receiver.url)
    bot = BotProcess(env, bot_argv())
    bare = BotProcess(env | {"PORT": str(free_port())}, [sys.executable, "-m", "bench.bare_bolt"])
    floor = BotProcess(
        env | {"PORT": str(free_port())}, [sys.executable, "-m", "bench.bare_bolt", "--floor"]
    )
    apps = {
        "bot": _App(bot, lambda: _outbox_drained(db)),
        "floor": _App(floor, lambda: _floor_called_back(db, receiver)),
        "bare_bolt": _App(bare, _nothing_left),
    }
    for app in apps.values():
        await app.process.start()
    try:
        results: dict[str, Any] = {
            "interactivity": await _interactivity(
                db, apps, seconds=3 if quick else 8, repeats=1 if quick else 3
            ),
            "pipeline": await _pipeline(bot, slack, receiver, 100 if quick else 300),
            "memory": await _memory(db, bot, 20_000 if quick else 100_000),
        }
    finally:
        for app in apps.values():
            app.process.stop()
        await slack.stop()
        await receiver.stop()
    results["fan_out"] = await _fan_out(db, 400 if quick else 2000, 100 if quick else 500)
    return results
