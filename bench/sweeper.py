"""Sweeper throughput: expire N overdue tasks (with their audit and outbox rows) with 1 and 2
worker processes; report tasks per second and the longest batch transaction."""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from typing import Any

from bench.workload import insert_overdue_tasks
from bot.sweeper import BATCH
from store import sweep
from store.database import connect, create_pool

__all__ = ["run"]


async def _worker(url: str, batch: int, ready: Any, go: Any) -> list[float]:
    pool = await create_pool(url, min_size=1, max_size=1)
    durations: list[float] = []
    try:
        ready.put(True)
        await asyncio.to_thread(go.wait)  # every worker connected before the clock starts
        while True:
            started = time.perf_counter()
            async with pool.acquire() as conn, conn.transaction():
                counts = await sweep.expire_due(conn, limit=batch)
            durations.append(time.perf_counter() - started)
            if sum(counts.values()) < batch:
                return durations
    finally:
        await pool.close()


def _process(url: str, batch: int, ready: Any, go: Any, results: Any) -> None:
    results.put(asyncio.run(_worker(url, batch, ready, go)))


async def _one_run(url: str, tasks: int, workers: int, batch: int) -> dict[str, float]:
    conn = await connect(url)
    try:
        await conn.execute("TRUNCATE tasks, approver_tiers, approvers, decisions, outbox CASCADE")
        await insert_overdue_tasks(conn, tasks, policies=("deny", "proceed", "escalate"))
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    ctx = multiprocessing.get_context("spawn")
    results, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_process, args=(url, batch, ready, go, results)) for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        await asyncio.to_thread(ready.get)  # every worker connected before the clock starts
    started = time.perf_counter()
    go.set()
    durations = [await asyncio.to_thread(results.get) for _ in procs]
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    conn = await connect(url)
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM tasks WHERE status = 'pending' AND expires_at <= now()"
        )
        rows = await conn.fetchval("SELECT count(*) FROM outbox WHERE kind = 'callback'")
    finally:
        await conn.close()
    assert left == 0, f"{left} overdue tasks left"
    assert rows == tasks, f"{rows} callbacks queued for {tasks} tasks"
    longest = max(d for ds in durations for d in ds)
    return {"tasks_per_s": tasks / elapsed, "seconds": elapsed, "longest_batch_ms": longest * 1e3}


async def run(url: str, *, tasks: int, repeats: int, batch: int = BATCH) -> dict[str, Any]:
    """Median figures over `repeats` runs for 1 and 2 workers."""
    figures: dict[str, Any] = {"tasks": tasks, "batch": batch}
    for workers in (1, 2):
        runs = [await _one_run(url, tasks, workers, batch) for _ in range(repeats)]
        figures[f"workers_{workers}"] = {
            key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]
        } | {"longest_batch_ms_max": round(max(r["longest_batch_ms"] for r in runs), 1)}
    return figures
