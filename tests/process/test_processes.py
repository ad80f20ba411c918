"""Real `taskjuice-bot` processes: start-up errors, SIGKILL, SIGTERM, and two replicas."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from bot.outbox.dispatcher import UnattendedWatch
from store import outbox
from tests.conftest import approval_body
from tests.support import (
    API_TOKEN,
    CallbackReceiver,
    ServiceProcess,
    eventually,
    free_port,
    run_bot_cli,
    service_env,
)


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for proc in started:
        proc.kill()


def spawn(
    started: list[ServiceProcess],
    tmp_path: Path,
    database_url: str,
    callback_url: str,
    *command: str,
    **extra: str,
) -> ServiceProcess:
    port = free_port()
    proc = ServiceProcess(
        env=service_env(database_url, callback_url, port, **extra),
        log_path=tmp_path / f"service-{len(started)}.log",
        command=command or ("serve",),
    )
    started.append(proc)
    return proc


async def api(base_url: str, method: str, path: str, body: object = None) -> dict[str, object]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, base_url + path, json=body, headers={"Authorization": f"Bearer {API_TOKEN}"}
        ) as response,
    ):
        assert response.status < 300, await response.text()
        answer: dict[str, object] = await response.json()
        return answer


def test_missing_settings_stop_start_up_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "CALLBACK_SECRET": "not-whsec", "PORT": "http"}
    done = run_bot_cli("serve", env=env, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    for name in ("API_TOKENS", "CALLBACK_URL", "CALLBACK_SECRET", "TASKJUICE_APP_URL", "PORT"):
        assert name in lines[0]
    assert "not-whsec" not in lines[0]


def test_help_explains_every_setting() -> None:
    done = run_bot_cli("--help", check=True)
    for name in (
        "DATABASE_URL",
        "SLACK_BOT_TOKEN",
        "LINK_SECRETS",
        "SMTP_TLS",
        "REPLY_DOMAIN",
        "INBOUND_SMTP_PORT",
        "INBOUND_WEBHOOK_SECRET",
        "PUBLIC_URL",
        "HOST",
        "PORT",
    ):
        assert name in done.stdout


async def test_a_callback_committed_before_a_sigkill_is_sent_after_restart(
    tmp_path: Path,
    database_url: str,
    receiver: CallbackReceiver,
    processes: list[ServiceProcess],
) -> None:
    extra = {"OUTBOX_LEASE": "2", "CALLBACK_TIMEOUT": "1", "OUTBOX_RETRY_BASE": "0.1"}
    first = spawn(processes, tmp_path, database_url, receiver.url, **extra)
    await first.start()
    receiver.hang()
    task = await api(first.base_url, "POST", "/api/v1/approvals", approval_body())
    await api(first.base_url, "POST", f"/api/v1/approvals/{task['id']}/cancel")
    await eventually(lambda: receiver.attempts, what="the callback in flight")
    first.kill()  # the decision is committed; its callback was never answered
    receiver.release()

    second = spawn(processes, tmp_path, database_url, receiver.url, **extra)
    await second.start()
    await eventually(lambda: receiver.delivered, timeout=20, what="callback after restart")
    assert {a.webhook_id for a in receiver.attempts} == {receiver.attempts[0].webhook_id}
    assert json.loads(receiver.delivered[-1].body)["data"]["id"] == task["id"]
    assert "Slack delivery is off" in second.log_path.read_text()


async def test_sigterm_stops_cleanly(
    tmp_path: Path,
    database_url: str,
    receiver: CallbackReceiver,
    processes: list[ServiceProcess],
) -> None:
    proc = spawn(processes, tmp_path, database_url, receiver.url)
    await proc.start()
    assert await proc.terminate() == 0
    events = [
        json.loads(line).get("event")
        for line in proc.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    assert events.count("slack.disabled") == 1 and "service.stopped" in events
    assert '"message": "event loop: uvloop"' in proc.log_path.read_text()  # installed on Linux


async def test_two_processes_never_send_one_outbox_item_twice(
    tmp_path: Path,
    database_url: str,
    receiver: CallbackReceiver,
    pool: asyncpg.Pool,
    processes: list[ServiceProcess],
) -> None:
    receiver.delay = 0.005
    replicas = [spawn(processes, tmp_path, database_url, receiver.url) for _ in range(2)]
    for replica in replicas:
        await replica.start()
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO outbox (kind, payload, message_id) VALUES ('callback', $1, $2)",
            [
                (
                    {"body": {"type": "approval.approved", "timestamp": "t", "data": {"n": n}}},
                    f"msg_{n}",
                )
                for n in range(400)
            ],
        )
        await conn.execute("NOTIFY taskjuice_outbox")
    await eventually(lambda: len(receiver.attempts) >= 400, timeout=60, what="400 deliveries")
    ids = [a.webhook_id for a in receiver.attempts]
    assert len(ids) == len(set(ids)) == 400

    async def all_recorded_done() -> bool:
        async with pool.acquire() as conn:
            return bool(
                await conn.fetchval("SELECT count(*) = 0 FROM outbox WHERE status <> 'done'")
            )

    await eventually(all_recorded_done, what="every item recorded as sent")
    async with pool.acquire() as conn:
        senders = await conn.fetchval(
            "SELECT count(DISTINCT claimed_by) FROM outbox WHERE status = 'done'"
        )
    assert senders == 2
    assert len(receiver.attempts) == 400


async def test_web_processes_leave_the_outbox_to_worker_processes(
    tmp_path: Path,
    database_url: str,
    receiver: CallbackReceiver,
    pool: asyncpg.Pool,
    processes: list[ServiceProcess],
) -> None:
    web = spawn(processes, tmp_path, database_url, receiver.url, "serve", "--no-workers")
    worker = spawn(processes, tmp_path, database_url, receiver.url, "worker")
    await web.start()
    await worker.start()
    task = await api(web.base_url, "POST", "/api/v1/approvals", approval_body())
    await api(web.base_url, "POST", f"/api/v1/approvals/{task['id']}/cancel")
    [callback] = await eventually(lambda: receiver.delivered, timeout=20, what="the callback")
    assert json.loads(callback.body)["data"]["id"] == task["id"]
    async with pool.acquire() as conn:
        senders = await conn.fetch("SELECT DISTINCT claimed_by FROM outbox")
    assert worker.proc is not None and web.proc is not None
    assert {r["claimed_by"].rsplit(":", 1)[1] for r in senders} == {str(worker.proc.pid)}
    # A worker receives nothing: no API, no Slack, no links; health and metrics only.
    async with aiohttp.ClientSession() as session:
        async with session.get(worker.base_url + "/api/v1/approvals") as response:
            assert response.status == 404
        # Both processes took their start-up heap out of the collector's sight.
        for process in (web, worker):
            async with session.get(process.base_url + "/metrics") as response:
                assert response.status == 200
                assert frozen_objects(await response.text()) > 10_000
    assert await web.terminate() == 0 and await worker.terminate() == 0


def frozen_objects(metrics: str) -> float:
    [line] = [x for x in metrics.splitlines() if x.startswith("taskjuice_gc_frozen_objects ")]
    return float(line.split()[1])


async def test_without_a_worker_a_web_process_warns_that_work_waits_untried(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    async with pool.acquire() as conn:
        await outbox.enqueue(conn, "callback", {"body": {"n": 1}}, message_id="msg_untried")
        await outbox.enqueue(conn, "callback", {"body": {"n": 2}}, message_id="msg_retrying")
        await conn.execute("UPDATE outbox SET next_attempt_at = now() - interval '10 minutes'")
        await conn.execute("UPDATE outbox SET attempts = 1 WHERE message_id = 'msg_retrying'")
        await outbox.enqueue(conn, "callback", {"body": {"n": 3}}, message_id="msg_just_queued")
    watch = UnattendedWatch(pool=pool, after=120)
    with caplog.at_level(logging.WARNING, logger="bot.outbox.dispatcher"):
        # Only the item due for ten minutes that nobody tried: one being retried has a worker,
        # one just queued may simply not have been claimed yet.
        assert await watch.check() == 1
    [warning] = [r for r in caplog.records if getattr(r, "event", None) == "outbox.unattended"]
    assert warning.waiting == 1 and warning.oldest >= 600
    assert "taskjuice-bot worker" in warning.getMessage()
    async with pool.acquire() as conn:
        await conn.execute("UPDATE outbox SET attempts = 1")
    assert await watch.check() == 0
