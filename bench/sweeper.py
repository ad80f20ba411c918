"""Sweeper throughput: expire N overdue tasks (with their audit and outbox rows) with 1 and 2
worker processes; report tasks per second, the longest batch transaction, and the CPU time
spent per task by the workers and by their PostgreSQL backends."""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from typing import Any

from bench.harness import cpu_seconds, settle
from bot.timeouts import BATCH
from store import sweep
from store.database import connect, create_pool
from store.seed import insert_overdue_tasks

__all__ = ["run"]


async def _worker(url: str, batch: int, ready: Any, go: Any) -> dict[str, Any]:
    pool = await create_pool(url, min_size=1, max_size=1)
    durations: list[float] = []
    commits: list[float] = []  # of each batch, the part spent committing (WAL flush)
    try:
        async with pool.acquire() as conn:
            backend = conn.get_server_pid()
        ready.put(True)
        await asyncio.to_thread(go.wait)  # every worker connected before the clock starts
        cpu, backend_cpu = time.process_time(), cpu_seconds(backend)
        while True:
            started = time.perf_counter()
            async with pool.acquire() as conn, conn.transaction():
                counts = await sweep.expire_due(conn, limit=batch)
                written = time.perf_counter()
            durations.append(time.perf_counter() - started)
            commits.append(time.perf_counter() - written)
            if sum(counts.values()) < batch:
                return {
                    "durations": durations,
                    "commits": commits,
                    "cpu": time.process_time() - cpu,
                    # 0 when the server is not on this machine
                    "postgres_cpu": cpu_seconds(backend) - backend_cpu,
                }
    finally:
        await pool.close()


def _process(url: str, batch: int, ready: Any, go: Any, results: Any) -> None:
    results.put(asyncio.run(_worker(url, batch, ready, go)))


async def _one_run(
    url: str, tasks: int, workers: int, batch: int, *, stale: bool = False
) -> dict[str, float]:
    conn = await connect(url)
    try:
        await conn.execute("TRUNCATE tasks, approver_tiers, approvers, decisions, outbox CASCADE")
        if stale:
            # Statistics taken while nothing was pending, as after a quiet spell: the backlog
            # arrives before autovacuum looks at the tables again.
            await conn.execute("ANALYZE")
        await insert_overdue_tasks(conn, tasks, policies=("deny", "proceed", "escalate"))
        await settle(conn, analyze=not stale)
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
    done = [await asyncio.to_thread(results.get) for _ in procs]
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
    longest = max(d for w in done for d in w["durations"])
    return {
        "tasks_per_s": tasks / elapsed,
        "seconds": elapsed,
        "longest_batch_ms": longest * 1e3,
        "longest_commit_ms": max(c for w in done for c in w["commits"]) * 1e3,
        "batches": sum(len(w["durations"]) for w in done),
        "batches_over_50ms": sum(d > 0.05 for w in done for d in w["durations"]),
        "worker_cpu_us_per_task": sum(w["cpu"] for w in done) / tasks * 1e6,
        "postgres_cpu_us_per_task": sum(w["postgres_cpu"] for w in done) / tasks * 1e6,
    }


async def run(url: str, *, tasks: int, repeats: int, batch: int = BATCH) -> dict[str, Any]:
    """Median figures over `repeats` runs for 1 and 2 workers, and one run of 1 worker whose
    backlog arrived after the tables were analyzed empty."""
    figures: dict[str, Any] = {"tasks": tasks, "batch": batch}
    for workers in (1, 2):
        runs = [await _one_run(url, tasks, workers, batch) for _ in range(repeats)]
        figures[f"workers_{workers}"] = {
            key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]
        } | {
            # Over every run, not the median: the single slowest batch and the commit in it.
            "longest_batch_ms_max": round(max(r["longest_batch_ms"] for r in runs), 1),
            "longest_commit_ms_max": round(max(r["longest_commit_ms"] for r in runs), 1),
            "batches_over_50ms_all_runs": sum(r["batches_over_50ms"] for r in runs),
            "batches_all_runs": sum(r["batches"] for r in runs),
        }
    stale = await _one_run(url, tasks, 1, batch, stale=True)
    figures["stale_statistics_1_worker"] = {
        key: round(stale[key], 1)
        for key in ("tasks_per_s", "seconds", "longest_batch_ms", "batches_over_50ms")
    }
    return figures
