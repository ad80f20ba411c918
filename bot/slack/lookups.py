"""One lookup of a Slack identity at a time, in this process and across every replica.

Several deliveries to one person (four requests to one approver, say) would each call
`users.lookupByEmail` and `conversations.open` before the first answer is cached: Tier 3
calls, 50 a minute per team, spent several times over for one person — in a fan-out, the
difference between one minute and two. So a lookup is taken in turn: in this process, callers
of one (team, person) queue on a lock, and the next finds the cache the first filled; across
replicas, the lookup is claimed in the database first (`slack_lookups`): the caller that holds
the claim calls Slack and caches the answer; callers on other replicas go back to the outbox
until the claim ends, and find the cache when they come back. A claim whose holder waits for
the team's budget lasts as long as that wait, and is the holder's again when it comes back
for its slot (the claim is made in the outbox item's name, and lasts a few seconds past the
slot, so a holder that comes back late still finds it); a claim whose holder died lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bot.outbox.dispatcher import RetryLater, current_item, lease_left, waiting
from store import slack as store
from store.database import Connections

__all__ = ["CLAIM_SECONDS", "TURN_WAIT", "Lookups"]

# How long a claim lasts for a call made now: longer than the holder may wait in the process
# for its permit (up to 3 s, bot/slack/egress.py) and then call, so the claim does not lapse
# while its holder waits; a slow answer past it costs at worst a second lookup; a holder that
# died holds the others no longer than this.
CLAIM_SECONDS = 6.0
# How long a caller waits for its turn in this process before going back to the outbox.
TURN_WAIT = 1.0
# Other replicas look again this often while a call is under way.
AFTER_HOLDER = 0.5
# A holder waiting for the budget keeps its claim this long past the moment it is due back
# (a little before its slot): a busy replica may take a while to bring it back, and
# another caller that took the claim over meanwhile would be a newcomer to the budget, placed
# behind every slot already promised — for a Tier 3 method, the next minute.
HOLDER_GRACE = AFTER_HOLDER + CLAIM_SECONDS


@dataclass(slots=True)
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    callers: int = 0


@dataclass(slots=True)
class Lookups:
    """This process's side: a turn per (team, key) here, a claim in the database."""

    pool: Connections
    _turns: dict[tuple[str, str], _Turn] = field(default_factory=dict)

    @asynccontextmanager
    async def one(self, team_id: str, key: str) -> AsyncIterator[None]:
        """Hold the one lookup of `key` in `team_id` for the body (which checks the cache
        first, since the previous holder may have filled it), or raise RetryLater (quiet)
        until the replica that holds it is done."""
        turn = self._turns.setdefault((team_id, key), _Turn())
        turn.callers += 1
        try:
            try:
                with waiting() if turn.lock.locked() else contextlib.nullcontext():
                    async with asyncio.timeout(min(TURN_WAIT, lease_left() / 2)):
                        await turn.lock.acquire()
            except TimeoutError:
                # The caller ahead is slow (Slack timing out, a budget wait): this item goes
                # back to the outbox rather than hold a dispatcher slot behind it.
                raise RetryLater(
                    f"slack: {key} is being looked up", delay=AFTER_HOLDER, quiet=True
                ) from None
            try:
                async with self._claimed(team_id, key):
                    yield
            finally:
                turn.lock.release()
        finally:
            turn.callers -= 1
            if turn.callers == 0:
                del self._turns[(team_id, key)]

    @asynccontextmanager
    async def _claimed(self, team_id: str, key: str) -> AsyncIterator[None]:
        # An outbox item's claim is its own: one it kept while it waited for the budget is
        # still its own when it comes back for its slot.
        item = current_item.get()
        token = secrets.token_hex(8) if item is None else f"item:{item.id}"
        async with self.pool.acquire() as conn:
            left = await store.claim_lookup(conn, team_id, key, token, CLAIM_SECONDS)
        if left > 0:
            if left > CLAIM_SECONDS:
                # A holder waiting for the budget, due back HOLDER_GRACE before the claim ends
                # and calling soon after: come back half a second after it.
                delay = max(AFTER_HOLDER, left - HOLDER_GRACE + AFTER_HOLDER)
            else:  # a call under way: look again shortly
                delay = min(left, AFTER_HOLDER)
            raise RetryLater(f"slack: {key} is being looked up", delay=delay, quiet=True)
        try:
            yield
        except RetryLater as exc:
            if exc.quiet and exc.delay is not None:  # waiting for the budget: so does the claim
                async with self.pool.acquire() as conn:
                    await store.extend_lookup(conn, team_id, key, token, exc.delay + HOLDER_GRACE)
                raise
            await self._release(team_id, key, token)
            raise
        except BaseException:
            await self._release(team_id, key, token)
            raise
        await self._release(team_id, key, token)

    async def _release(self, team_id: str, key: str, token: str) -> None:
        async with self.pool.acquire() as conn:
            await store.release_lookup(conn, team_id, key, token)
