"""Slack egress within Slack's published limits, shared by every replica (contract §7).

Before each Web API call the sender takes a permit from the (team, method) budget, and for
`chat.postMessage` also one from the (team, channel) budget (the pace `SLACK_POST_INTERVAL`).
The budgets live in PostgreSQL (`slack_budgets`, migration 0014), so all replicas together
keep to them; a 429 blocks the (team, method) for every replica for its `Retry-After`.

Batching, and what it costs in exactness. Asking the database for every call would add a
round trip per call, so a process takes a small *lease* of permits in one statement — as many
as callers are waiting for that budget in this process, at most a tenth of the limit — and
hands them out locally. A permit granted at time g may be used until g + `hold`, so the ledger
counts it until g + `hold` (the latest Slack can receive its call), and a permit frees a window
of `seconds` after that: "at most `count` calls in any window of `seconds`" then holds whenever
a call leaves within its hold. Whatever Slack answers, it has received the call: the sender
reports each answer (`answered()`), and the entry is lowered to the answer's time with this
process's next ask of that budget (migration 0021; no round trip of its own), so a call
answered at once costs its window and not its hold. What remains of the price: permits a
process leased but did not use in time (they lapse; the ledger still counts them), and the
holds of calls whose answer is not reported before the permit would free (the last calls of a
burst, with no ask after them). The hold is 2% of the window (at least 0.25 s, at most 2 s).
The per-channel pace (`SLACK_POST_INTERVAL`, one post per interval) is leased one at a time,
after the team's permit so that only the call itself follows it, with a hold of a quarter of
the interval: what a busy replica's call may lose on its way to Slack must stay within the
hold, or two replicas' posts land in one interval. A 429 reaches the other replicas through the
database: a permit another process leased just before may still be used within its hold — at
most a tenth of the limit, for at most 2 s.

A call that finds no permit is promised a slot of its own (migration 0020): the next one that
no caller as urgent or more was promised, so callers turned away come back one per freeing
permit, in turn, instead of all at the first one to free (where one would win and the rest go
round again, each round costing a claim and a render). It waits for its slot when that is
within `max_wait` (3 s: a person's next DMs, one pace apart), giving its dispatcher slot back
meanwhile (`waiting`); otherwise the item goes back to the outbox, due half of `max_wait`
before its slot (`RetryLater`, not counted as an attempt), so a team that has spent its budget
holds nothing in any process. The slot is promised to the outbox item, so it is still the
item's when it comes back, on whichever replica. A promise is advice, not a reservation: a
permit free when asked for is granted. Once answers reported since a promise free a permit
before the slot, the caller first in line comes for that permit; a caller back after its slot
(a busy process brings items back late) that finds its permit taken goes before the promises
of its own urgency, not behind them all (migration 0021).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.outbox.dispatcher import RetryLater, current_item, lease_left, waiting
from bot.runtime.metrics import Metrics
from store import egress as queries
from store.database import DATABASE_ERRORS, Connections
from store.outbox import OutboxItem

__all__ = [
    "DEFAULT_LIMITS",
    "POST_MESSAGE",
    "Limit",
    "Permit",
    "SlackBudget",
    "limits_with",
]

log = logging.getLogger(__name__)

POST_MESSAGE = "chat.postMessage"
CHANNEL_SCOPE = "chat.postMessage/channel"  # the metrics label of the per-channel pace
_KEEP_HELD = 10_000  # budgets this process keeps in memory before it forgets the idle ones


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `count` calls in any window of `seconds`."""

    count: int
    seconds: float


_TIER_3 = Limit(50, 60.0)
_TIER_4 = Limit(100, 60.0)

# Slack's published tiers for the methods the bot calls (per app, per team). chat.postMessage's
# entry is the team-wide cap; its per-channel pace is SLACK_POST_INTERVAL.
DEFAULT_LIMITS: Mapping[str, Limit] = {
    "chat.update": _TIER_3,
    "conversations.open": _TIER_3,
    "users.lookupByEmail": _TIER_3,
    # Tier 3 on paper, but since 2025 one a minute (and 15 messages) for apps distributed
    # outside the Marketplace: the bot reads it only to find a post whose answer was lost.
    "conversations.history": Limit(1, 60.0),
    "chat.postEphemeral": _TIER_4,
    "users.info": _TIER_4,
    "views.open": _TIER_4,
    "views.publish": _TIER_4,
    POST_MESSAGE: Limit(600, 60.0),
}


def limits_with(overrides: tuple[tuple[str, int, float], ...]) -> dict[str, Limit]:
    """The published defaults with `SLACK_RATE_LIMITS`' entries over them."""
    return dict(DEFAULT_LIMITS) | {m: Limit(count, seconds) for m, count, seconds in overrides}


def hold_for(limit: Limit) -> float:
    """How long a leased permit stays usable (see the module's docstring)."""
    return min(2.0, max(0.25, limit.seconds * 0.02))


def pace_hold(interval: float) -> float:
    """How long a channel's one permit stays usable: a quarter of the pace interval, so that a
    call delayed on its way by a busy process still lands a whole interval after the last."""
    return interval * 0.25


@dataclass(frozen=True, slots=True)
class Permit:
    """A permit taken from the (team, scope) budget `key`: its entry in the ledger, when this
    process asked for it (monotonic) and how long it may wait for its call."""

    key: tuple[str, str]
    counted_until: datetime
    asked: float
    hold: float

    @property
    def expires(self) -> float:
        return self.asked + self.hold


@dataclass(slots=True)
class _Held:
    """This process's side of one (team, scope) budget: permits leased and not used yet, and
    the calls Slack answered since this process last asked the ledger."""

    answered: collections.deque[queries.Answered]
    permits: collections.deque[Permit] = field(default_factory=collections.deque)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0

    @property
    def idle(self) -> bool:
        return not (self.waiting or self.lock.locked() or self.permits or self.answered)


@dataclass(slots=True, kw_only=True)
class SlackBudget:
    """This process's side of the shared budget: leases permits and hands them out."""

    pool: Connections
    metrics: Metrics
    limits: Mapping[str, Limit] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    post_interval: float = 1.0
    max_wait: float = 3.0
    _held: dict[tuple[str, str], _Held] = field(default_factory=dict)

    async def permit(
        self, team: str, method: str, *, channel: str | None = None
    ) -> tuple[Permit, ...]:
        """Return the permits of a call of `method` for `team` (posting to `channel`) once it
        is within every budget; raises RetryLater (quiet) when the wait would be longer than
        `max_wait`. Report the call's answer with `answered()`."""
        taken: list[Permit] = []
        limit = self.limits.get(method)
        if limit is not None:
            taken.append(await self._take(team, method, limit, label=method, hold=hold_for(limit)))
        if method == POST_MESSAGE and channel:
            # Last, so that nothing but the call itself stands between this permit, with its
            # short hold, and Slack's clock.
            pace = Limit(1, self.post_interval)
            hold = pace_hold(self.post_interval)
            try:
                taken.append(
                    await self._take(
                        team, f"channel:{channel}", pace, label=CHANNEL_SCOPE, hold=hold
                    )
                )
            except RetryLater:
                # The channel is not ready: the team's permit goes back for the next caller
                # (a burst to one channel must not spend the team's cap one pace at a time).
                if taken and taken[0].expires > time.monotonic():
                    self._held[(team, method)].permits.appendleft(taken[0])
                raise
        return tuple(taken)

    def answered(self, permits: Sequence[Permit]) -> None:
        """Slack answered the call `permits` were taken for, so it had received it: each counts
        until now rather than until its hold ends. The ledger learns it with this process's
        next ask of that budget (migration 0021), which adds no round trip."""
        now = time.monotonic()
        for permit in permits:
            early = permit.expires - now
            held = self._held.get(permit.key)
            if early > 0 and held is not None:
                at = permit.counted_until - timedelta(seconds=early)
                held.answered.append(queries.Answered(permit.counted_until, at))

    async def ratelimited(self, team: str, method: str, retry_after: float) -> None:
        """Slack answered 429: block (team, method) for every replica for `retry_after`."""
        self.metrics.slack_ratelimited.labels(method).inc()
        held = self._held.get((team, method))
        if held is not None:
            held.permits.clear()
        try:
            async with self.pool.acquire() as conn:
                await queries.block(conn, team, method, retry_after)
        except DATABASE_ERRORS as exc:
            log.warning(
                "slack 429 not shared with the other replicas",
                extra={"event": "slack.block_failed", "error": type(exc).__name__},
            )

    async def _take(
        self, team: str, scope: str, limit: Limit, *, label: str, hold: float
    ) -> Permit:
        """A permit of (team, scope)."""
        held = self._held_of((team, scope), limit)
        item = current_item.get()
        waited = False
        # Waited for here: up to `max_wait`, and never past half of what is left of the
        # item's claim (another replica would send it again).
        patience = min(self.max_wait, lease_left() / 2)
        deadline = time.monotonic() + patience
        while True:
            if (permit := self._use_held(held)) is not None:
                return permit
            held.waiting += 1
            try:
                async with held.lock:
                    if (permit := self._use_held(held)) is not None:
                        return permit
                    want = max(1, min(held.waiting, limit.count // 10))
                    asked = time.monotonic()
                    lease = await self._lease(team, scope, limit, hold, want, item, held)
                    wait = max(lease.wait, 0.01)
                    if lease.granted and lease.counted_until is not None:
                        self.metrics.slack_permits.labels(label).inc(lease.granted)
                        permit = Permit((team, scope), lease.counted_until, asked, hold)
                        held.permits.extend([permit] * (lease.granted - 1))
                        return permit
            finally:
                held.waiting -= 1
            if not waited:
                waited = True
                self.metrics.slack_permit_waits.labels(label).inc()
            if time.monotonic() + wait > deadline:
                # Back a little before the slot, to be ready for it and wait for it here.
                early = max(0.0, wait - patience / 2)
                raise RetryLater(f"slack budget: {label} for {team}", delay=early, quiet=True)
            with waiting():
                await asyncio.sleep(wait)

    def _held_of(self, key: tuple[str, str], limit: Limit) -> _Held:
        held = self._held.get(key)
        if held is None:
            if len(self._held) >= _KEEP_HELD:
                # One per channel posted to would add up: forget the budgets with nothing
                # pending here (the ledger has them).
                self._held = {k: h for k, h in self._held.items() if not h.idle}
            # Only the last `count` answers can matter to the window.
            held = self._held[key] = _Held(collections.deque(maxlen=limit.count))
        return held

    @staticmethod
    def _use_held(held: _Held) -> Permit | None:
        now = time.monotonic()
        while held.permits and held.permits[0].expires <= now:
            held.permits.popleft()
        return held.permits.popleft() if held.permits else None

    async def _lease(
        self,
        team: str,
        scope: str,
        limit: Limit,
        hold: float,
        want: int,
        item: OutboxItem | None,
        held: _Held,
    ) -> queries.Lease:
        answered = list(held.answered)
        held.answered.clear()  # lost if the ask fails: the permits then count their whole hold
        try:
            async with self.pool.acquire() as conn:
                return await queries.take(
                    conn,
                    team,
                    scope,
                    count=limit.count,
                    seconds=limit.seconds,
                    hold=hold,
                    want=want,
                    priority=0 if item is None else item.priority,
                    item=None if item is None else item.id,
                    answered=answered,
                )
        except DATABASE_ERRORS as exc:
            raise RetryLater(f"slack budget unavailable: {type(exc).__name__}") from exc
