"""Test helpers: polling with a deadline, a platform callback receiver, service processes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import asyncpg
import pytest
from aiohttp import ClientSession, web

from bot.decisions import DecisionResult, decide
from bot.domain import Actor, Channel, Outcome

ROOT = Path(__file__).resolve().parent.parent
API_TOKEN = "test-api-token"
CALLBACK_SECRET = "whsec_dGVzdC1jYWxsYmFjay1zZWNyZXQta2V5"


async def eventually(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def quiet(service: Any) -> None:
    """Wait until the service's outbox has nothing left to send."""

    async def drained() -> bool:
        _, page = await service.request("GET", "/api/v1/outbox?status=pending")
        return not page["items"]

    await eventually(drained, what="the outbox to drain")


@contextlib.asynccontextmanager
async def statement_plans(conn: asyncpg.Connection) -> AsyncIterator[list[str]]:
    """The plans PostgreSQL carries out for the statements run inside, those inside functions
    included (auto_explain); skips the test where the server will not load auto_explain."""
    try:
        await conn.execute("LOAD 'auto_explain'")
    except asyncpg.InsufficientPrivilegeError:
        pytest.skip("auto_explain needs a superuser")
    plans: list[str] = []

    def listen(_: object, message: asyncpg.PostgresLogMessage) -> None:
        plans.append(message.message)

    conn.add_log_listener(listen)
    settings = ("log_min_duration", "log_nested_statements", "log_level")
    await conn.execute(
        "SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;"
        " SET auto_explain.log_level = notice"
    )
    try:
        yield plans
    finally:
        # A round trip after the last statement: its notices have reached the listener.
        await conn.execute("; ".join(f"RESET auto_explain.{name}" for name in settings))
        conn.remove_log_listener(listen)


def unbounded_scans(plan: str, tables: set[str]) -> list[str]:
    """The scans of `tables` in an auto_explain plan that no index condition bounds: each one
    reads the whole table (every time it runs, when it is the inner side of a loop)."""
    lines = plan.splitlines()
    found = []
    for n, line in enumerate(lines):
        scan = re.search(r"Scan (?:using \S+ )?on (\w+)", line)
        if scan is None or scan.group(1) not in tables:
            continue
        details = itertools.takewhile(lambda detail: "->" not in detail, lines[n + 1 :])
        if not any("Index Cond" in d or "Recheck Cond" in d for d in details):
            found.append(line.strip())
    return found


def vote(
    pool: asyncpg.Pool,
    task_id: UUID,
    actor: Actor,
    *,
    outcome: Outcome = Outcome.APPROVE,
    via: Channel = Channel.SLACK,
    **kwargs: Any,
) -> Awaitable[DecisionResult]:
    """`actor`'s decision on the task through `bot.decisions.decide` (approve, in Slack,
    unless told otherwise)."""
    return decide(pool, task_id=task_id, actor=actor, outcome=outcome, via=via, **kwargs)


async def move_deadline(conn: Any, task_id: Any, seconds: float) -> None:
    """Make a pending task's current tier end `seconds` from now (negative: already over),
    on its clock and in what the API shows."""
    await conn.execute(
        "WITH clock AS (UPDATE task_timers SET expires_at = now() + make_interval(secs => $2)"
        " WHERE task_id = $1::uuid RETURNING expires_at)"
        " UPDATE tasks SET expires_at = clock.expires_at FROM clock WHERE id = $1::uuid",
        task_id,
        seconds,
    )


def with_database(url: str, name: str) -> str:
    """The same server URL, naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Received:
    """One callback as the platform received it."""

    headers: dict[str, str]
    body: bytes
    at: float = 0.0

    @property
    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class CallbackReceiver:
    """A real HTTP server standing in for the platform's callback endpoint.

    It records every delivery attempt; `fail_next` makes the next attempts fail, `hang` makes
    requests wait until `release()`.
    """

    attempts: list[Received] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    hanging: asyncio.Event | None = None
    url: str = ""
    _runner: web.AppRunner | None = None

    @property
    def delivered(self) -> list[Received]:
        """Attempts answered 2xx."""
        return [a for a in self.attempts if a.headers.get("x-test-answered") == "200"]

    def hang(self) -> None:
        self.hanging = asyncio.Event()

    def release(self) -> None:
        if self.hanging is not None:
            self.hanging.set()
            self.hanging = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        received = Received(headers=headers, body=body, at=asyncio.get_running_loop().time())
        self.attempts.append(received)
        if self.hanging is not None:
            await self.hanging.wait()
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow platform, not synchronisation
        if self.fail_next > 0:
            self.fail_next -= 1
            received.headers["x-test-answered"] = str(self.fail_status)
            extra = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.Response(status=self.fail_status, headers=extra)
        received.headers["x-test-answered"] = "200"
        return web.Response(status=204)

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/callbacks", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{bound}/callbacks"

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()


def run_bot_cli(
    *command: str, env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """`taskjuice-bot COMMAND…` in a child process, run to its end (within a minute), its
    output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "bot.runtime.cli", *command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def service_env(database_url: str, callback_url: str, port: int, **extra: str) -> dict[str, str]:
    """Environment for a `taskjuice-bot serve` process (fake secrets only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SMTP_"))}
    env.update(
        DATABASE_URL=database_url,
        API_TOKENS=API_TOKEN,
        CALLBACK_URL=callback_url,
        CALLBACK_SECRET=CALLBACK_SECRET,
        TASKJUICE_APP_URL="http://app.taskjuice.test",
        HOST="127.0.0.1",
        PORT=str(port),
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


@dataclass
class ServiceProcess:
    """A real `taskjuice-bot serve` (or `worker`) child process, or another module's
    (`module`) that answers `ready_path` once it is up."""

    env: dict[str, str]
    log_path: Path
    command: tuple[str, ...] = ("serve",)
    proc: subprocess.Popen[bytes] | None = None
    module: str = "bot.runtime.cli"
    ready_path: str = "/readyz"
    cwd: Path | None = None  # the log's folder by default

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    async def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.command],
            cwd=self.cwd or self.log_path.parent,
            env=self.env,
            stdout=log,
            stderr=log,
        )
        async with ClientSession() as session:

            async def ready() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"service exited: {self.log_path.read_text()[-2000:]}")
                try:
                    async with session.get(self.base_url + self.ready_path) as response:
                        return response.status == 200
                except OSError:
                    return False

            await eventually(ready, timeout=30, interval=0.05, what="service ready")

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def terminate(self) -> int:
        """SIGTERM, then wait for the process to exit; returns its exit code."""
        proc = self.proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        await eventually(lambda: proc.poll() is not None, timeout=30, what="service exit")
        return proc.returncode
