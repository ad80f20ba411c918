"""Reading replies in worker processes, with a time limit, so no mail holds the event loop.

Parsing MIME and reading text are CPU work on input a stranger controls, and a regular
expression holds the interpreter lock for its whole run: a thread would not keep the loop
responsive. A job that overruns its limit has its worker killed; the pool starts afresh.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import weakref
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

__all__ = ["READERS", "ReadTooLong", "ReaderUnavailable", "ReplyReaders"]

T = TypeVar("T")


class ReadTooLong(Exception):
    """Reading the message took longer than any reply may take."""


class ReaderUnavailable(Exception):
    """The reading worker stopped under this job (another job overran); try again later."""


def _ready() -> bool:
    return True


class ReplyReaders:
    """A small process pool, started on first use, shared by every door of this process."""

    def __init__(self, *, workers: int = 2, time_limit: float = 5.0) -> None:
        self.workers = workers
        self.time_limit = time_limit
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._warm: concurrent.futures.Future[bool] | None = None
        # One semaphore per event loop: a job's time counts only once it has a worker.
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.workers)
        return slots

    async def _started(self) -> concurrent.futures.ProcessPoolExecutor:
        pool, warm = self._pool, self._warm
        if pool is None or warm is None:
            pool = self._pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn")
            )
            warm = self._warm = pool.submit(_ready)
        # Starting a worker (and importing the reader) is not the mail's time.
        await asyncio.wait_for(asyncio.wrap_future(warm), 120)
        return pool

    async def run(self, job: Callable[..., T], *args: object) -> T:
        """`job(*args)` in a worker; ReadTooLong past the limit, ReaderUnavailable if the
        worker died under it."""
        async with self._slot():
            try:
                pool = await self._started()
                running = asyncio.get_running_loop().run_in_executor(pool, job, *args)
                return await asyncio.wait_for(running, self.time_limit)
            except TimeoutError:
                self._kill()
                raise ReadTooLong from None
            except BrokenProcessPool as exc:
                self._kill()
                raise ReaderUnavailable from exc

    def _kill(self) -> None:
        """Stop every worker now (a regex cannot be interrupted any other way)."""
        pool, self._pool, self._warm = self._pool, None, None
        if pool is None:
            return
        # ProcessPoolExecutor has no public way to stop a running job before Python 3.14.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool, self._warm = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


READERS = ReplyReaders()
