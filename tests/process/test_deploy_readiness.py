"""Readiness that means it (Socket Mode connected, workers keeping up with the outbox), and
replicas that leave migrations to their own step (MIGRATE_ON_START=false)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from bot.devkit.slack_api import SlackApiDouble
from bot.runtime.app import SchemaBehind, build_app
from store import outbox
from store.migrate import MIGRATION_LOCK, migration_files
from tests.conftest import Service, make_settings, slack_settings, start_service
from tests.support import (
    CallbackReceiver,
    ServiceProcess,
    eventually,
    free_port,
    run_bot_cli,
    service_env,
    with_database,
)


async def readiness(svc: Service) -> tuple[int, dict[str, Any]]:
    status, body = await svc.request("GET", "/readyz", token=None)
    return status, body


async def start(app: web.Application) -> Service:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return Service(app, runner, f"http://127.0.0.1:{runner.addresses[0][1]}")


# --- Socket Mode ----------------------------------------------------------------------------


async def test_readiness_follows_the_socket_mode_connection(
    database_url: str, receiver: CallbackReceiver, slack: SlackApiDouble
) -> None:
    settings = slack_settings(
        receiver, slack, slack_app_token=slack.app_token, slack_signing_secret=None
    )
    svc = await start_service(settings, database_url)
    try:
        status, body = await readiness(svc)
        assert (status, body["slack_socket_mode"]) == (200, "connected")
        status, _ = await svc.request("GET", "/healthz", token=None)
        assert status == 200

        await slack.socket_down()

        async def unready() -> dict[str, Any] | None:
            status, body = await readiness(svc)
            return body if status == 503 else None

        body = await eventually(unready, timeout=10, what="/readyz 503")
        assert body["slack_socket_mode"] == "disconnected" and body["database"] == "ok"
        assert body["reasons"] == ["the Slack Socket Mode connection is down"]
        # Liveness knows nothing of Slack: restarting the process would not bring Slack back.
        status, _ = await svc.request("GET", "/healthz", token=None)
        assert status == 200

        slack.socket_up()

        async def ready() -> bool:
            status, body = await readiness(svc)
            return status == 200 and body["slack_socket_mode"] == "connected"

        # the client retries every ping interval (10 s)
        await eventually(ready, timeout=30, interval=0.1, what="/readyz 200 again")
    finally:
        await svc.close()


async def test_readiness_in_http_mode_does_not_mention_socket_mode(
    slack_service: Service,
) -> None:
    status, body = await readiness(slack_service)
    assert status == 200 and "slack_socket_mode" not in body


# --- a worker-only process and the outbox ---------------------------------------------------


@pytest.fixture
async def worker_only(database_url: str, receiver: CallbackReceiver) -> AsyncIterator[Service]:
    """A process that serves only health and metrics (`edges=False`); it sends nothing here
    (`workers=False`), so the outbox items a test writes stay due."""
    settings = make_settings(receiver.url, ready_max_outbox_age=60.0)
    svc = await start(build_app(settings, database_url, workers=False, edges=False))
    yield svc
    await svc.close()


async def due_item(conn: asyncpg.Connection, *, due_for: float, **kwargs: Any) -> str:
    """An outbox item that has been due for `due_for` seconds (negative: due in the future)."""
    message_id = await outbox.enqueue(conn, "callback", {"event": "test"}, **kwargs)
    await conn.execute(
        "UPDATE outbox SET next_attempt_at = now() - make_interval(secs => $2),"
        " created_at = now() - interval '1 hour' WHERE message_id = $1",
        message_id,
        due_for,
    )
    return message_id


async def test_a_worker_is_unready_while_due_work_waits_longer_than_the_threshold(
    worker_only: Service, receiver: CallbackReceiver, database_url: str, pool: asyncpg.Pool
) -> None:
    status, body = await readiness(worker_only)
    assert status == 200 and body["outbox_oldest_due_seconds"] == 0
    async with pool.acquire() as conn:
        recent = await due_item(conn, due_for=30)
    status, body = await readiness(worker_only)
    assert status == 200 and 30 <= body["outbox_oldest_due_seconds"] < 60

    async with pool.acquire() as conn:
        stale = await due_item(conn, due_for=600)
    status, body = await readiness(worker_only)
    assert status == 503
    assert body["outbox_oldest_due_seconds"] >= 600 and body["outbox_max_age_seconds"] == 60
    assert body["database"] == "ok"
    [reason] = body["reasons"]
    assert "READY_MAX_OUTBOX_AGE (60 s)" in reason

    # A web process with the same backlog still takes requests: sending is not its job.
    web_svc = await start_service(make_settings(receiver.url), database_url, workers=False)
    try:
        status, body = await readiness(web_svc)
        assert status == 200 and "outbox_oldest_due_seconds" not in body
    finally:
        await web_svc.close()

    async with pool.acquire() as conn:
        await conn.execute("UPDATE outbox SET status = 'done' WHERE message_id = $1", stale)
    status, body = await readiness(worker_only)
    assert status == 200 and body["outbox_oldest_due_seconds"] < 60
    assert recent  # still pending, and young enough


async def test_work_waiting_out_a_backoff_or_behind_its_predecessor_is_not_due(
    worker_only: Service, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        # Slack is down: the message's post is retrying later, its update waits behind it.
        await due_item(conn, due_for=-120, ordering_key="slack:C1:task-1")
        await due_item(conn, due_for=900, ordering_key="slack:C1:task-1")
    status, body = await readiness(worker_only)
    assert status == 200 and body["outbox_oldest_due_seconds"] == 0


async def test_readiness_says_when_the_database_is_away(
    database_url: str, receiver: CallbackReceiver, server_url: str
) -> None:
    svc = await start(
        build_app(make_settings(receiver.url), database_url, workers=False, edges=False)
    )
    try:
        admin = await asyncpg.connect(server_url)
        try:
            name = urlsplit(database_url).path.lstrip("/")
            await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            status, body = await readiness(svc)
            assert status == 503 and body["database"] == "unreachable"
            assert body["reasons"] == ["the database does not answer"]
            await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        finally:
            await admin.close()
        await eventually(lambda: _status(svc), what="/readyz 200 again")
    finally:
        await svc.close()


async def _status(svc: Service) -> bool:
    status, _ = await readiness(svc)
    return status == 200


# --- migrations as their own step -----------------------------------------------------------


async def test_without_migrate_on_start_a_replica_never_takes_the_migration_lock(
    database_url: str, receiver: CallbackReceiver, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as holder:
        # A migration job is running: it holds the lock that migrating at start-up waits for.
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        before = await holder.fetch("SELECT * FROM schema_migrations ORDER BY version")
        try:
            settings = replace(make_settings(receiver.url), migrate_on_start=False)
            svc = await start_service(settings, database_url)
            try:
                status, _ = await readiness(svc)
                assert status == 200
            finally:
                await svc.close()
            after = await holder.fetch("SELECT * FROM schema_migrations ORDER BY version")
            assert after == before
        finally:
            await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def test_a_schema_newer_than_this_version_is_accepted(
    database_url: str, receiver: CallbackReceiver, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_from_a_newer.sql')"
        )
    settings = replace(make_settings(receiver.url), migrate_on_start=False)
    svc = await start_service(settings, database_url)
    try:
        assert (await readiness(svc))[0] == 200
    finally:
        await svc.close()


@pytest.fixture
async def empty_database(server_url: str) -> AsyncIterator[str]:
    name = f"taskjuice_empty_{free_port()}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield with_database(server_url, name)
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def test_a_schema_lacking_a_migration_is_refused_in_process(
    empty_database: str, receiver: CallbackReceiver
) -> None:
    settings = replace(make_settings(receiver.url), migrate_on_start=False)
    with pytest.raises(SchemaBehind) as caught:
        await start(build_app(settings, empty_database))
    assert migration_files()[0][1] in caught.value.message


async def test_migrate_first_then_replicas_that_do_not_migrate(
    tmp_path: Path, empty_database: str, receiver: CallbackReceiver
) -> None:
    env = service_env(empty_database, receiver.url, free_port(), MIGRATE_ON_START="false")

    def cli(*command: str) -> subprocess.CompletedProcess[str]:
        return run_bot_cli(*command, env=env, cwd=tmp_path)

    refused = cli("serve")
    assert refused.returncode == 2
    # the JSON log lines before it aside, one plain line says what is wrong and what to do
    [line] = [x for x in refused.stderr.splitlines() if x.startswith("taskjuice-bot:")]
    assert "MIGRATE_ON_START is false" in line and "taskjuice-bot migrate" in line
    assert "Traceback" not in refused.stderr
    conn = await asyncpg.connect(empty_database)
    try:  # the refusing replica changed nothing: not even the migrations table exists
        assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None
    finally:
        await conn.close()

    migrated = cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert migration_files()[-1][1] in migrated.stdout

    for command in (("serve", "--no-workers"), ("worker",)):
        proc = ServiceProcess(
            env=service_env(empty_database, receiver.url, free_port(), MIGRATE_ON_START="false"),
            log_path=tmp_path / f"{command[0]}.log",
            command=command,
        )
        await proc.start()  # returns once /readyz answers 200
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(proc.base_url + "/readyz") as answer,
            ):
                assert answer.status == 200
        finally:
            assert await proc.terminate() == 0
        assert "migration.applied" not in proc.log_path.read_text()
