"""Lookups by key that run together: concurrent reads of one kind become one query."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["CoalescingReader"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CoalescingReader(Generic[K, V]):
    """Reads values by key through `fetch`, which answers many keys in one call.

    A lookup made while none is running starts a read on the next turn of the event loop;
    every lookup made until then (an outbox claim starts all its items at once) joins it, and
    lookups made while it runs wait for the next. Nothing waits on a timer. A key `fetch` does
    not answer reads as None; if `fetch` fails, every lookup of that read raises its error.
    """

    def __init__(
        self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]], *, limit: int = 256
    ) -> None:
        self._fetch = fetch
        self._limit = limit
        self._waiting: list[tuple[K, asyncio.Future[V | None]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_all())
        return await future

    async def _read_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
                batch = [(key, future) for key, future in batch if not future.done()]
                if batch:
                    await self._read(batch)
        finally:
            self._reader = None
            leftover, self._waiting = self._waiting, []  # only if the read was cancelled
            for _, future in leftover:
                future.cancel()

    async def _read(self, batch: list[tuple[K, asyncio.Future[V | None]]]) -> None:
        try:
            found = await self._fetch(list(dict.fromkeys(key for key, _ in batch)))
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        for key, future in batch:
            if not future.done():
                future.set_result(found.get(key))
