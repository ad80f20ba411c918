"""The batch writer: decisions arriving together are read in one statement and written in
another, each judged on its own exactly as alone."""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

import asyncpg

from bot.decisions.rules import NO_SUCH_TASK, DecisionResult, Request, Ruling, count, judge
from bot.errors import NotFound
from bot.runtime.metrics import Metrics
from store import tasks
from store.database import DATABASE_ERRORS

__all__ = ["Batch"]

log = logging.getLogger(__name__)

# A decision waiting for the writer: the request, where to count it, where its result goes.
_Waiting = tuple[Request, Metrics | None, "asyncio.Future[DecisionResult | None]"]


class Batch:
    """The decisions waiting to be written through one pool, and the writer that takes them.

    A click under load need not cost two statements of its own: the writer reads every task
    waiting in one statement, judges each decision in Python exactly as alone, and writes the
    ones that hold in one conditional statement. It starts when the first decision arrives
    and ends when none is left, so a lone click is written at once and nothing runs idle.
    Decisions on one task never share a batch (the later one waits for the next), and a
    decision the batch cannot settle — its task changed in between, or is overdue, or the
    statement failed — is handed back to be decided alone.
    """

    LIMIT = 64
    LANES = 2  # batches in flight at once: one is judged while the other is in PostgreSQL

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.waiting: list[_Waiting] = []
        self.writers = 0

    @classmethod
    async def submit(
        cls, pool: asyncpg.Pool, request: Request, metrics: Metrics | None
    ) -> DecisionResult | None:
        batch = _open.get(id(pool))
        if batch is None or batch.pool is not pool:
            batch = _open[id(pool)] = cls(pool)
        future: asyncio.Future[DecisionResult | None] = asyncio.get_running_loop().create_future()
        batch.waiting.append((request, metrics, future))
        if batch.writers < cls.LANES:
            batch.writers += 1
            writer = asyncio.create_task(batch._write_all())
            _writers.add(writer)
            writer.add_done_callback(_writers.discard)
        return await future

    async def _write_all(self) -> None:
        try:
            while self.waiting:
                taken: list[_Waiting] = []
                kept: list[_Waiting] = []
                seen: set[UUID] = set()
                for entry in self.waiting:
                    if entry[0].task_id in seen or len(taken) >= self.LIMIT:
                        kept.append(entry)
                    else:
                        seen.add(entry[0].task_id)
                        taken.append(entry)
                self.waiting = kept
                try:
                    await self._write(taken)
                except Exception:
                    # Unforeseen; each of these is decided alone, where the error reaches its
                    # caller, and the writer goes on with the next batch.
                    log.exception("decision batch failed", extra={"event": "decisions.batch_error"})
                finally:
                    for _, _, future in taken:
                        if not future.done():
                            future.set_result(None)  # not settled here: decided alone
        finally:
            self.writers -= 1
            if not self.writers:
                if _open.get(id(self.pool)) is self:
                    del _open[id(self.pool)]
                for _, _, future in self.waiting:
                    if not future.done():
                        future.set_result(None)

    async def _write(self, taken: list[_Waiting]) -> None:
        taken.sort(key=lambda entry: entry[0].task_id)  # one lock order for every batch
        observer = next((m for _, m, _ in taken if m is not None), None)
        if observer is not None:
            observer.decision_batch_size.observe(len(taken))
        try:
            async with self.pool.acquire() as conn:
                contexts = await tasks.load_for_decisions(conn, [r.reader for r, _, _ in taken])
                rulings = []
                for (request, metrics, future), context in zip(taken, contexts, strict=True):
                    if context is None:
                        if not future.done():
                            future.set_exception(NotFound(NO_SUCH_TASK))
                        continue
                    if context.task.overdue:
                        continue  # alone, after its timeout policy applies
                    judged = judge(context, request)
                    if isinstance(judged, Ruling):
                        rulings.append((judged, request, metrics, future))
                    elif not future.done():
                        future.set_result(judged)
                if not rulings:
                    return
                written = await tasks.record_decisions(conn, [r[0].write for r in rulings])
        except DATABASE_ERRORS:
            return  # each undecided one finds out alone, with its own error if it persists
        for (ruling, request, metrics, future), recorded in zip(rulings, written, strict=True):
            if recorded is not None:
                count(metrics, request.via, request.outcome.value)
                if not future.done():
                    future.set_result(ruling.result(recorded))


_open: dict[int, Batch] = {}  # by id() of the pool: an asyncpg pool takes no weak reference
_writers: set[asyncio.Task[None]] = set()
