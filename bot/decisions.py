"""The one decision path: every channel's approve/deny, and every other end of a task.

`decide()` authorizes the person against the current tier, applies the self-approval rule and
the quorum — both by person, not by name: an email and a Slack user the bot knows to be one
person are one voter (see `bot.people`) — and records the audit row, the outcome and the
outbox rows in one statement. It reads the task in one statement and writes only if the
task's version is unchanged, so of concurrent deciders of one task exactly one write wins
each round and the others look again at what it did: a later vote counts towards the same
quorum, a click after the end is told who ended it. No lock is held between the two
statements. Decisions arriving together share those two statements (see `_Batch`). Slack is
never asked inside them: a person the cache cannot place is looked up between rounds.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import asyncpg

from bot.domain import (
    Actor,
    ApprovalTask,
    Approver,
    AuditAction,
    Channel,
    Decision,
    Outcome,
    Resolution,
    TaskStatus,
)
from bot.errors import NotFound
from bot.people import Learned, Links, Person, directory_for, same
from bot.runtime.metrics import Metrics
from store import sweep, tasks
from store.database import DATABASE_ERRORS

__all__ = ["DecisionResult", "Preview", "Verdict", "cancel", "decide", "preview"]

log = logging.getLogger(__name__)

MAX_REASON = 2000
_NO_SUCH_TASK = "No such approval task."


class Verdict(enum.StrEnum):
    """What became of one person's decision."""

    DECIDED = "decided"
    COUNTED = "counted"
    ALREADY_FINISHED = "already_finished"
    ALREADY_VOTED = "already_voted"
    NOT_APPROVER = "not_approver"
    SELF_APPROVAL = "self_approval"
    STALE = "stale"
    UNRESOLVED = "unresolved"
    """The bot cannot tell whether this person is the requester or has already voted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionResult:
    """The verdict, the task as it now stands, and the audit row that explains it."""

    verdict: Verdict
    task: ApprovalTask
    decision: Decision | None = None
    approvals: int = 0
    webhook_id: str | None = None
    ask: tuple[Actor, ...] = ()
    """People (the voter first) whom Slack could place where the bot's cache cannot; the
    verdict might differ once it has."""

    @property
    def changed(self) -> bool:
        return self.verdict in (Verdict.DECIDED, Verdict.COUNTED)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Request:
    """One person's approve or deny, as a channel hands it over."""

    task_id: UUID
    actor: Actor
    outcome: Outcome
    via: Channel
    reason: str | None
    client: dict[str, Any] | None
    content_hash: str | None
    tier: int | None
    learned: Learned | None = None

    @property
    def reader(self) -> tasks.Reader:
        """Whose read this is: it brings what the Slack user cache knows of the actor."""
        return tasks.Reader(
            self.task_id, self.actor.slack_team_id, self.actor.slack_user_id, self.actor.email
        )


@dataclass(frozen=True, slots=True)
class _Ruling:
    """A decision that holds against the task as read: written only if the task is unchanged."""

    write: tasks.DecisionWrite
    verdict: Verdict
    task: ApprovalTask
    approvals: int = 0

    def result(self, recorded: tuple[Decision, str | None]) -> DecisionResult:
        decision, webhook_id = recorded
        return DecisionResult(
            verdict=self.verdict,
            task=self.task,
            decision=decision,
            approvals=self.approvals,
            webhook_id=webhook_id,
        )


async def decide(
    pool: asyncpg.Pool,
    *,
    task_id: UUID,
    actor: Actor,
    outcome: Outcome,
    via: Channel,
    reason: str | None = None,
    client: dict[str, Any] | None = None,
    content_hash: str | None = None,
    tier: int | None = None,
    metrics: Metrics | None = None,
) -> DecisionResult:
    """Record one person's approve or deny; see `Verdict` for what can come of it.

    `content_hash` and `tier`, when given, are what the person was shown: if the task has
    changed since (different content, or escalated to another tier), nothing is recorded.

    The actor is one person whatever name they come by: an email and a Slack user that the
    Slack user cache (or an approver or audit row) ties together are the same voter, and the
    same requester. When what the bot knows cannot tell, Slack is asked once about the actor,
    outside any statement (`bot.people.SlackDirectory`); if it cannot answer either, an
    approval is refused (`Verdict.UNRESOLVED`) rather than counted as a new person.

    Decisions arriving while others are being written are read and written together, one
    statement each for the whole batch (see `_Batch`); each is judged on its own.
    """
    request = _Request(
        task_id=task_id,
        actor=actor,
        outcome=outcome,
        via=via,
        reason=reason.strip()[:MAX_REASON] or None if reason else None,
        client=client,
        content_hash=content_hash,
        tier=tier,
    )
    result = await _settle(pool, request, metrics)
    if result.ask:
        directory = directory_for(pool)
        learned = await directory.look_up(result.ask) if directory is not None else None
        if learned is not None:
            result = await _settle(pool, replace(request, learned=learned), metrics)
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class Preview:
    """What a decision would come to now, judged by the rules `decide()` applies, without
    writing anything."""

    verdict: Verdict
    """DECIDED or COUNTED when it would be recorded; otherwise the refusal it would meet."""
    task: ApprovalTask
    decision: Decision | None = None
    """The audit row that ended the task, or the person's own earlier vote."""
    overdue: bool = False
    """The deadline has passed: the timeout policy applies before anything else (and the
    verdict is the one the task meets as it stands, before the policy)."""


async def preview(
    pool: asyncpg.Pool,
    *,
    task_id: UUID,
    actor: Actor,
    outcome: Outcome,
    via: Channel,
    content_hash: str | None = None,
    tier: int | None = None,
) -> Preview:
    """What `decide()` with these arguments would come to now (read only: one statement,
    no timeout policy applied, Slack never asked). Raises NotFound for no such task."""
    request = _Request(
        task_id=task_id,
        actor=actor,
        outcome=outcome,
        via=via,
        reason=None,
        client=None,
        content_hash=content_hash,
        tier=tier,
    )
    async with pool.acquire() as conn:
        (context,) = await tasks.load_for_decisions(conn, [request.reader])
    if context is None:
        raise NotFound(_NO_SUCH_TASK)
    judged = _judge(context, request)
    if isinstance(judged, _Ruling):
        return Preview(verdict=judged.verdict, task=context.task, overdue=context.task.overdue)
    return Preview(
        verdict=judged.verdict,
        task=context.task,
        decision=judged.decision,
        overdue=context.task.overdue,
    )


async def _settle(pool: asyncpg.Pool, request: _Request, metrics: Metrics | None) -> DecisionResult:
    result = await _Batch.submit(pool, request, metrics)
    if result is not None:
        return result
    via, outcome = request.via, request.outcome

    # The batch could not settle it (a lost race, an overdue task, an error): alone, as before.
    async def attempt(conn: asyncpg.Connection) -> DecisionResult | None:
        context = await _load_current(conn, request.reader)
        ruling = _judge(context, request)
        if isinstance(ruling, DecisionResult):
            return ruling
        (recorded,) = await tasks.record_decisions(conn, [ruling.write])
        if recorded is None:
            return None  # someone else changed the task since we read it
        _count(metrics, via, outcome.value)
        return ruling.result(recorded)

    return await _until_settled(pool, request.task_id, attempt)


def _judge(context: tasks.DecisionContext, request: _Request) -> DecisionResult | _Ruling:
    """What `request` comes to against the task as read: a refusal, or a write to try.

    The one copy of the rules: pure (it reads and writes nothing), so `decide()` writes
    what it rules and `preview()` only reports it."""
    task = context.task
    if task.status is not TaskStatus.PENDING:
        return DecisionResult(verdict=Verdict.ALREADY_FINISHED, task=task, decision=context.final)
    if (request.content_hash is not None and request.content_hash != task.content_hash) or (
        request.tier is not None and request.tier != task.tier
    ):
        return DecisionResult(verdict=Verdict.STALE, task=task)
    actor = request.actor
    links = Links.of(
        [*context.links, *((a.email, a.slack_user_id) for a in context.approvers)]
        + [(v.actor.email, v.actor.slack_user_id) for v in context.votes if v.actor],
        request.learned,
    )
    voter = links.of_actor(actor)
    asking = request.learned is None  # Slack is asked once, between the two rounds
    ask = [actor] if asking and not voter.complete else []
    approver = next((a for a in context.approvers if _names(a, voter)), None)
    if approver is None:
        return DecisionResult(verdict=Verdict.NOT_APPROVER, task=task, ask=tuple(ask))
    voter = links.person(
        emails=[*voter.emails, approver.email],
        slack_ids=[*voter.slack_ids, approver.slack_user_id],
    )
    approving = request.outcome is Outcome.APPROVE
    requester = task.requested_by
    others: list[Actor] = []
    if approving and requester is not None and not task.allow_self_approval:
        self_vote = same(voter, links.of_actor(requester))
        if self_vote:
            return DecisionResult(verdict=Verdict.SELF_APPROVAL, task=task)
        if self_vote is None:
            others.append(requester)
    approvals = sum(1 for v in context.votes if v.action is AuditAction.APPROVE)
    for vote in context.votes:
        one = vote.approver_id == approver.id or same(voter, links.of_actor(vote.actor))
        if one:
            return DecisionResult(
                verdict=Verdict.ALREADY_VOTED, task=task, decision=vote, approvals=approvals
            )
        if one is None and vote.actor is not None:
            others.append(vote.actor)
    if others and approving:
        # Counting it could count one person twice, or let the requester approve: refuse.
        # (A deny ends the task the safe way whoever sends it, so it is not held back.)
        if asking:
            ask += [_one_name(o) for o in others]
        return DecisionResult(
            verdict=Verdict.UNRESOLVED, task=task, approvals=approvals, ask=tuple(ask)
        )
    who = (
        actor
        if actor.email or not voter.emails
        else replace(actor, email=min(voter.emails) if len(voter.emails) == 1 else None)
    )

    approvals += request.outcome is Outcome.APPROVE
    if request.outcome is Outcome.DENY:
        ending: tuple[TaskStatus, Resolution] | None = (TaskStatus.DENIED, Resolution.DENY)
    elif approvals >= task.required_approvals:
        ending = (TaskStatus.APPROVED, Resolution.PROCEED)
    else:
        ending = None
    person = Actor(
        email=approver.email or who.email,
        slack_user_id=approver.slack_user_id or who.slack_user_id,
        slack_team_id=approver.slack_team_id or who.slack_team_id,
    )
    write = tasks.DecisionWrite(
        task_id=task.id,
        tier=task.tier,
        version=context.version,
        action=AuditAction(request.outcome.value),
        via=request.via,
        actor=person,
        approver_id=approver.id,
        reason=request.reason,
        client=request.client,
        ending=(ending[0].value, ending[1].value) if ending else None,
        event=ending[0].value if ending else "vote",
    )
    return _Ruling(
        write,
        Verdict.DECIDED if ending else Verdict.COUNTED,
        _with(task, *ending) if ending else task,
        approvals,
    )


# A decision waiting for the writer: the request, where to count it, where its result goes.
_Waiting = tuple[_Request, Metrics | None, "asyncio.Future[DecisionResult | None]"]


class _Batch:
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
        cls, pool: asyncpg.Pool, request: _Request, metrics: Metrics | None
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
                            future.set_exception(NotFound(_NO_SUCH_TASK))
                        continue
                    if context.task.overdue:
                        continue  # alone, after its timeout policy applies
                    judged = _judge(context, request)
                    if isinstance(judged, _Ruling):
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
                _count(metrics, request.via, request.outcome.value)
                if not future.done():
                    future.set_result(ruling.result(recorded))


_open: dict[int, _Batch] = {}  # by id() of the pool: an asyncpg pool takes no weak reference
_writers: set[asyncio.Task[None]] = set()


async def cancel(
    pool: asyncpg.Pool,
    task_id: UUID,
    *,
    reason: str | None = None,
    metrics: Metrics | None = None,
) -> DecisionResult:
    """The run was cancelled on the platform: end the task `cancelled` (resolution deny)."""

    async def attempt(conn: asyncpg.Connection) -> DecisionResult | None:
        context = await _load_current(conn, tasks.Reader(task_id))
        task = context.task
        if task.status is not TaskStatus.PENDING:
            return DecisionResult(
                verdict=Verdict.ALREADY_FINISHED, task=task, decision=context.final
            )
        ruling = _Ruling(
            tasks.DecisionWrite(
                task_id=task.id,
                tier=task.tier,
                version=context.version,
                action=AuditAction.CANCEL,
                via=Channel.API,
                actor=None,
                approver_id=None,
                reason=reason.strip()[:MAX_REASON] if reason else None,
                client=None,
                ending=(TaskStatus.CANCELLED.value, Resolution.DENY.value),
                event=TaskStatus.CANCELLED.value,
            ),
            Verdict.DECIDED,
            _with(task, TaskStatus.CANCELLED, Resolution.DENY),
        )
        (recorded,) = await tasks.record_decisions(conn, [ruling.write])
        if recorded is None:
            return None
        _count(metrics, Channel.API, "cancel")
        return ruling.result(recorded)

    return await _until_settled(pool, task_id, attempt)


# Optimistic attempts before a decision takes the row lock; each lost race means another
# decision of the same task was written in between, so this is reached only under a storm.
_OPTIMISTIC_ATTEMPTS = 5


async def _until_settled(
    pool: asyncpg.Pool,
    task_id: UUID,
    attempt: Callable[[asyncpg.Connection], Awaitable[DecisionResult | None]],
) -> DecisionResult:
    """Read, judge, write-if-unchanged; again on a lost race. Two statements, no lock, no
    transaction in the usual case. After a few lost races, the attempt runs holding the
    task's row lock, where no other decision can slip in between, so it always settles."""
    async with pool.acquire() as conn:
        for _ in range(_OPTIMISTIC_ATTEMPTS):
            result = await attempt(conn)
            if result is not None:
                return result
        async with conn.transaction():
            await tasks.lock(conn, task_id)
            result = await attempt(conn)
        if result is None:  # pragma: no cover - the lock makes a lost race impossible
            raise RuntimeError(f"task {task_id} changed under its row lock")
        return result


async def _load_current(conn: asyncpg.Connection, reader: tasks.Reader) -> tasks.DecisionContext:
    """Read the task; if its tier has run out, apply the timeout policy first.

    The database clock decides: a click one millisecond after the deadline meets the task as
    the sweeper would leave it, whether or not a sweeper has run yet.
    """
    (context,) = await tasks.load_for_decisions(conn, [reader])
    if context is None:
        raise NotFound(_NO_SUCH_TASK)
    if context.task.overdue:
        async with conn.transaction():
            await sweep.expire_due(conn, limit=1, task_id=reader.task_id)
        (context,) = await tasks.load_for_decisions(conn, [reader])
        assert context is not None
    return context


def _one_name(actor: Actor) -> Actor:
    """The name of a person Slack is best asked about: their Slack user, else their email."""
    if actor.slack_user_id:
        return Actor(slack_user_id=actor.slack_user_id, slack_team_id=actor.slack_team_id)
    return Actor(email=actor.email)


def _names(approver: Approver, person: Person) -> bool:
    """Whether the approver row names this person (by either of its names)."""
    email = approver.email.lower() if approver.email else None
    return email in person.emails or approver.slack_user_id in person.slack_ids


def _with(task: ApprovalTask, status: TaskStatus, resolution: Resolution) -> ApprovalTask:
    return replace(task, status=status, resolution=resolution)


def _count(metrics: Metrics | None, via: Channel, action: str) -> None:
    if metrics is not None:
        metrics.decisions.labels(via.value, action).inc()
