"""The timeout sweeper: applies deny, proceed and escalate when a tier runs out, and sends
reminders. Any number of replicas may sweep one database; each task changes exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.runtime.metrics import Metrics
from store import idempotency, outbox, statistics, sweep
from store.database import DATABASE_ERRORS, Connections

if TYPE_CHECKING:
    from bot.failover import DeliveryWatch

__all__ = ["BATCH", "Sweeper"]

# Tasks per batch transaction: large enough to amortise the statement, small enough that a
# batch (and the row locks it holds) lasts a few tens of milliseconds.
BATCH = 250

log = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class Sweeper:
    """Sweeps due tasks in bounded batches, each in its own short transaction."""

    pool: Connections
    metrics: Metrics
    interval: float = 1.0
    batch: int = BATCH
    keep_idempotency_keys: float = 7 * 86400.0
    keep_sent: float = 7 * 86400.0
    statistics_every: float = 10.0
    # Whether requests reached their approvers (failover, approval.undeliverable); None: off.
    deliveries: DeliveryWatch | None = None
    _stopping: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _next_housekeeping: float = field(init=False, default=0.0)
    _next_statistics: float = field(init=False, default=0.0)

    async def run(self) -> None:
        """Sweep until `stop()`; at start it catches up on everything already overdue."""
        while not self._stopping.is_set():
            try:
                await self.sweep_once()
            except DATABASE_ERRORS as exc:
                log.warning(
                    "sweep failed", extra={"event": "sweep.failed", "error": type(exc).__name__}
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    def stop(self) -> None:
        self._stopping.set()

    async def sweep_once(self) -> dict[str, int]:
        """Expire and remind everything due now, batch by batch; returns counts by action."""
        totals: dict[str, int] = {}
        while not self._stopping.is_set():
            started = time.perf_counter()
            async with self.pool.acquire() as conn, conn.transaction():
                counts = await sweep.expire_due(conn, limit=self.batch)
            self.metrics.sweep_batch_seconds.observe(time.perf_counter() - started)
            for action, n in counts.items():
                totals[action] = totals.get(action, 0) + n
                self.metrics.decisions.labels("timeout", action).inc(n)
            if sum(counts.values()) < self.batch:
                break
        while not self._stopping.is_set():
            async with self.pool.acquire() as conn, conn.transaction():
                reminded = await sweep.remind_due(conn, limit=self.batch)
            totals["remind"] = totals.get("remind", 0) + reminded
            if reminded < self.batch:
                break
        if self.deliveries is not None and not self._stopping.is_set():
            totals |= {k: n for k, n in (await self.deliveries.check_due()).items() if n}
        if time.monotonic() >= self._next_statistics:
            # A table that outgrew its statistics is analyzed now rather than at autovacuum's
            # next visit (see store.statistics); every connection then plans for its new size.
            self._next_statistics = time.monotonic() + self.statistics_every
            async with self.pool.acquire() as conn:
                analyzed = await statistics.refresh_outgrown(conn)
            for table in analyzed:
                self.metrics.statistics_refreshed.labels(table).inc()
            if analyzed:
                log.info(
                    "statistics refreshed",
                    extra={"event": "statistics.refreshed", "tables": analyzed},
                )
        if time.monotonic() >= self._next_housekeeping:
            # Hourly: Idempotency-Key replays are kept for a week, then forgotten; so are sent
            # outbox items (in short batches), or the table would grow without end.
            self._next_housekeeping = time.monotonic() + 3600
            async with self.pool.acquire() as conn:
                totals["idempotency_keys_pruned"] = await idempotency.forget_older_than(
                    conn, self.keep_idempotency_keys
                )
                totals["outbox_pruned"] = 0
                while not self._stopping.is_set():
                    pruned = await outbox.forget_sent(conn, self.keep_sent)
                    totals["outbox_pruned"] += pruned
                    if pruned < 5000:
                        break
        if any(totals.values()):
            log.info("sweep applied timeouts", extra={"event": "sweep.done", **totals})
        return totals
