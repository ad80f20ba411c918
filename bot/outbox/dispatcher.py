"""The outbox dispatcher: claims due items, sends them, retries with backoff, dead-letters."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import math
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bot.domain import OutboxStatus
from bot.errors import BotError
from bot.runtime.metrics import Metrics
from store import outbox as queries
from store.database import DATABASE_ERRORS, Connections, connect
from store.outbox import NOTIFY_CHANNEL, OutboxItem

__all__ = [
    "Dispatcher",
    "GiveUp",
    "Handler",
    "RetryLater",
    "UnattendedWatch",
    "backoff",
    "current_item",
    "lease_left",
    "list_items",
    "retry",
    "waiting",
]

log = logging.getLogger(__name__)

Handler = Callable[[OutboxItem], Awaitable[None]]

# The outbox item this task is sending, for whatever it waits on in line: its priority (work
# outside the outbox, answering a click, is urgent) and its id (a slot or a claim it was given
# before it went back to the outbox is still its own when it returns).
current_item: contextvars.ContextVar[OutboxItem | None] = contextvars.ContextVar(
    "current_item", default=None
)
_current_dispatcher: contextvars.ContextVar[Dispatcher | None] = contextvars.ContextVar(
    "current_dispatcher", default=None
)
# When the claim of the item this task is sending ends (`time.monotonic()`): past it, the
# item is due again, for this dispatcher or another replica's.
_lease_ends: contextvars.ContextVar[float] = contextvars.ContextVar("lease_ends", default=math.inf)


def lease_left() -> float:
    """Seconds left of the claim of the outbox item this task is sending (inf outside one).
    A wait in the process must end well within it, or the item is sent twice."""
    return _lease_ends.get() - time.monotonic()


@contextlib.contextmanager
def waiting() -> Iterator[None]:
    """Around an outbox item's wait for its turn (a permit, another caller's lookup): the
    item gives its dispatcher slot back meanwhile, so the dispatcher claims other work, such
    as items due back for their own turn, rather than leave it behind a line of sleepers. A
    waiting item holds no connection. The dispatcher claims while at most `concurrency` items
    work and `waiting_room` more wait; an item whose wait ends carries on at once (it would
    miss the turn it waited for), so for a moment more than `concurrency` may be working."""
    dispatcher = _current_dispatcher.get()
    if dispatcher is None:
        yield
        return
    dispatcher._waiting += 1
    dispatcher._wakeup.set()
    try:
        yield
    finally:
        dispatcher._waiting -= 1


# A deferred item wakes this process's loop when it comes due, if that is within this many
# seconds (a budget's minute included); later ones are found by polling.
_WAKE_WITHIN = 120.0


class RetryLater(BotError):
    """The receiver is not ready; the item will be tried again later."""

    def __init__(
        self, message: str | None = None, *, delay: float | None = None, quiet: bool = False
    ) -> None:
        super().__init__(message)
        self.delay = delay
        self.quiet = quiet  # an expected wait (pacing), not a failure worth a warning


class GiveUp(BotError):
    """The item can never be sent; it goes to the dead-letter state at once."""


def backoff(attempts: int, *, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential backoff with jitter: about base·2^(n-1), capped, spread over ±50%."""
    delay = min(cap, base * 2 ** max(attempts - 1, 0))
    return random.uniform(delay / 2, delay)


async def list_items(
    pool: asyncpg.Pool, *, status: str, limit: int, after: int | None
) -> list[dict[str, Any]]:
    """A page of outbox items in one status, newest first, after the item id `after`."""
    async with pool.acquire() as conn:
        return await queries.list_items(conn, status=status, limit=limit, after=after)


async def retry(pool: asyncpg.Pool, item_id: int) -> bool:
    """Put a dead-lettered item back in line (False when no such item is dead)."""
    async with pool.acquire() as conn:
        return await queries.retry(conn, item_id)


@dataclass(slots=True, kw_only=True)
class Dispatcher:
    """Sends outbox items in this process; any number of replicas may run one each."""

    pool: Connections
    database_url: str
    handlers: dict[str, Handler]
    metrics: Metrics
    lease: float = 60.0
    max_age: float = 86400.0
    concurrency: int = 32
    waiting_room: int = 224  # items that may wait beyond `concurrency` working (`waiting`)
    poll_interval: float = 1.0
    retry_base: float = 1.0
    shutdown_grace: float = 10.0
    per_tenant: int = 8  # items of one workspace per round of a claim (workspaces take turns)
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _stopping: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _wakeup: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _inflight: dict[int, asyncio.Task[None]] = field(init=False, default_factory=dict)
    _done: list[int] = field(init=False, default_factory=list)
    _turn: str = field(init=False, default="")  # the next claim serves workspaces after this
    _waiting: int = field(init=False, default=0)  # items in flight waiting for their turn

    async def run(self) -> None:
        """Dispatch until `stop()`; survives database outages by polling again."""
        listener = asyncio.create_task(self._listen())
        try:
            while not self._stopping.is_set():
                self._wakeup.clear()
                await self._flush_done()
                working = len(self._inflight) - self._waiting
                room = self.concurrency + self.waiting_room - len(self._inflight)
                free = min(self.concurrency - working, room)
                claimed: list[OutboxItem] = []
                if free > 0:
                    asked = time.monotonic()  # the claims end a lease after this, or later
                    try:
                        async with self.pool.acquire() as conn:
                            claimed = await queries.claim_due(
                                conn,
                                limit=free,
                                lease=self.lease,
                                worker=self.worker,
                                per_tenant=self.per_tenant,
                                after_tenant=self._turn,
                            )
                        self._turn = queries.next_turn(claimed, self._turn)
                    except DATABASE_ERRORS as exc:
                        log.warning(
                            "outbox claim failed",
                            extra={"event": "outbox.claim_failed", "error": type(exc).__name__},
                        )
                for item in claimed:
                    if item.id in self._inflight:
                        # Its lease ran out while it is still being sent here: that send will
                        # record its result; a second one would send it twice.
                        continue
                    task = asyncio.create_task(self._process(item, asked + self.lease))
                    self._inflight[item.id] = task
                    task.add_done_callback(functools.partial(self._finished, item.id))
                if claimed and len(claimed) == free:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.poll_interval)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self._drain()

    def stop(self) -> None:
        """Stop claiming; `run()` returns after in-flight items finish or are released."""
        self._stopping.set()
        self._wakeup.set()

    def _finished(self, item_id: int, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(item_id, None)
        self._wakeup.set()

    async def _flush_done(self) -> None:
        """Record every item sent since the last pass; the next claim then sees them done,
        so the next item of an ordering key is claimable. If this fails, leases resend."""
        if self._done:
            done, self._done = self._done, []
            await self._record(queries.mark_done, done)

    async def _drain(self) -> None:
        if not self._inflight:
            await self._flush_done()
            return
        tasks = list(self._inflight.values())
        _, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace)
        unfinished = [item_id for item_id, t in self._inflight.items() if t in pending]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._flush_done()
        if unfinished:
            with contextlib.suppress(*DATABASE_ERRORS):
                async with self.pool.acquire() as conn:
                    await queries.release(conn, unfinished, self.worker)
            log.info(
                "outbox claims released",
                extra={"event": "outbox.released", "count": len(unfinished)},
            )

    async def _process(self, item: OutboxItem, lease_ends: float) -> None:
        current_item.set(item)  # this item's task only
        _current_dispatcher.set(self)
        _lease_ends.set(lease_ends)
        handler = self.handlers.get(item.kind)
        try:
            if handler is None:
                raise RetryLater(f"no handler for {item.kind} in this process")
            await handler(item)
        except GiveUp as exc:
            await self._failed(item, exc.message, delay=0.0, permanent=True)
        except RetryLater as exc:
            delay = (
                exc.delay if exc.delay is not None else backoff(item.attempts, base=self.retry_base)
            )
            await self._failed(item, exc.message, delay=delay, quiet=exc.quiet)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception(
                "outbox handler crashed",
                extra={"event": "outbox.handler_error", "kind": item.kind, "item": item.id},
            )
            await self._failed(
                item, type(exc).__name__, delay=backoff(item.attempts, base=self.retry_base)
            )
        else:
            self.metrics.deliveries.labels(item.kind, "ok").inc()
            self._done.append(item.id)  # recorded in one statement by the loop, see _flush_done

    async def _failed(
        self,
        item: OutboxItem,
        error: str,
        *,
        delay: float,
        permanent: bool = False,
        quiet: bool = False,
    ) -> None:
        self.metrics.deliveries.labels(item.kind, "deferred" if quiet else "error").inc()
        status = await self._record(
            queries.mark_failed,
            item.id,
            delay=delay,
            error=error,
            max_age=None if permanent else self.max_age,
            attempted=not quiet,  # waiting its turn (pacing, a budget) is not an attempt
        )
        if status == OutboxStatus.PENDING and delay < _WAKE_WITHIN:
            # Claim it again the moment it is due, not at the next poll: an item paced to a
            # channel or waiting for a budget to free goes at once then.
            asyncio.get_running_loop().call_later(delay, self._wakeup.set)
        fields = {"kind": item.kind, "item": item.id, "attempts": item.attempts, "error": error}
        if status == OutboxStatus.DEAD:
            self.metrics.dead_lettered.labels(item.kind).inc()
            log.error("outbox item dead-lettered", extra={"event": "outbox.dead", **fields})
        else:
            (log.debug if quiet else log.warning)(
                "outbox delivery failed; will retry",
                extra={"event": "outbox.retry", "retry_in": round(delay, 2), **fields},
            )

    async def _record(
        self, query: Callable[..., Awaitable[str | None]], *args: object, **kwargs: object
    ) -> str | None:
        """Write an item's result; if the database is away, the lease brings the item back."""
        try:
            async with self.pool.acquire() as conn:
                return await query(conn, *args, **kwargs)
        except DATABASE_ERRORS as exc:
            log.warning(
                "outbox result not recorded",
                extra={"event": "outbox.record_failed", "error": type(exc).__name__},
            )
            return None

    async def _listen(self) -> None:
        """Wake the loop on NOTIFY; reconnect quietly. Polling covers every gap."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self.database_url, timeout=5)
                await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wakeup.set())
                self._wakeup.set()
                while not conn.is_closed():
                    await asyncio.sleep(self.poll_interval * 5)
                    await conn.execute("SELECT 1")
            except DATABASE_ERRORS:
                await asyncio.sleep(self.poll_interval * 2)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)


@dataclass(slots=True, kw_only=True)
class UnattendedWatch:
    """For a process that sends nothing itself (`serve --no-workers`): warns when outbox work
    has been due for a while and nobody has tried it, which means no worker is running."""

    pool: Connections
    every: float = 60.0
    after: float = 120.0
    _stopping: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.every)
            if not self._stopping.is_set():
                await self.check()

    def stop(self) -> None:
        self._stopping.set()

    async def check(self) -> int:
        """Log a warning if work is waiting untried; returns how many items are."""
        try:
            async with self.pool.acquire() as conn:
                waiting, oldest = await queries.untried(conn, self.after)
        except DATABASE_ERRORS:
            return 0  # the database being away is reported where it matters (/readyz, 503s)
        if waiting:
            log.warning(
                "outbox work is waiting and no worker has tried it:"
                " is a `taskjuice-bot worker` running?",
                extra={"event": "outbox.unattended", "waiting": waiting, "oldest": round(oldest)},
            )
        return waiting
