"""One person across email and Slack: who voted, who asked, and whether they are the same.

A person can reach a task under several names: an email address (magic link, email reply) and
a Slack user id (button). What ties the names together is what the bot knows: its Slack user
cache (a Slack user's profile email), an approver row naming both, an audit row that recorded
both. `Links` gathers those ties and `same()` answers with True, False or None — None when the
ties cannot tell, which the decision path treats as "not a new person" for an approval.

When the cache cannot tell, `SlackDirectory.look_up()` asks Slack about the voter and the
people it could not tell them apart from (`users.info` or `users.lookupByEmail`: at most three
calls, at once, under one short deadline) and caches the answers. It is attached
to the pool the channels decide through, so every channel gets the same resolution.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain import Actor
from bot.slack.teams import SlackTeams, TeamNotInstalled
from store import slack as slack_store

__all__ = [
    "Learned",
    "Links",
    "Person",
    "SlackDirectory",
    "attach",
    "detach",
    "directory_for",
    "same",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Person:
    """Every name the bot knows one person by; `no_slack`: Slack has no member with its email."""

    emails: frozenset[str] = frozenset()
    slack_ids: frozenset[str] = frozenset()
    no_slack: bool = False

    @property
    def complete(self) -> bool:
        """Whether both kinds of name are known (or known not to exist)."""
        return bool(self.emails) and (bool(self.slack_ids) or self.no_slack)


def same(a: Person, b: Person) -> bool | None:
    """Whether two people are one: True, False, or None when what is known cannot tell.

    A person has one email and, in one Slack workspace, one Slack user; so two different
    names of the same kind mean two people, and a shared name means one.
    """
    if not (a.emails or a.slack_ids) or not (b.emails or b.slack_ids):
        return False  # nobody: no name to share
    if a.emails & b.emails or a.slack_ids & b.slack_ids:
        return True
    if (a.emails and b.emails) or (a.slack_ids and b.slack_ids):
        return False
    if (a.no_slack and b.slack_ids) or (b.no_slack and a.slack_ids):
        return False
    return None


@dataclass(frozen=True, slots=True)
class Links:
    """Ties between an email and a Slack user that the bot knows of, and emails that Slack
    said no member of the workspace has."""

    pairs: tuple[tuple[str, str], ...] = ()
    without_slack: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls, pairs: Iterable[tuple[str | None, str | None]], learned: Learned | None = None
    ) -> Links:
        known = [(e.lower(), s) for e, s in pairs if e and s]
        if learned is None:
            return cls(tuple(known))
        return cls(tuple(known + list(learned.pairs)), learned.without_slack)

    def person(
        self, *, emails: Iterable[str | None] = (), slack_ids: Iterable[str | None] = ()
    ) -> Person:
        """Everything the given names lead to through the known ties."""
        found_emails = {e.lower() for e in emails if e}
        found_ids = {s for s in slack_ids if s}
        grew = True
        while grew:
            grew = False
            for email, slack_id in self.pairs:
                if (email in found_emails) != (slack_id in found_ids):
                    found_emails.add(email)
                    found_ids.add(slack_id)
                    grew = True
        no_slack = not found_ids and bool(found_emails & self.without_slack)
        return Person(frozenset(found_emails), frozenset(found_ids), no_slack)

    def of_actor(self, actor: Actor | None) -> Person:
        if actor is None:
            return Person()
        return self.person(emails=[actor.email], slack_ids=[actor.slack_user_id])


@dataclass(frozen=True, slots=True)
class Learned:
    """What Slack said: (email, Slack user) ties, and emails no member has."""

    pairs: tuple[tuple[str, str], ...] = ()
    without_slack: frozenset[str] = frozenset()

    def __add__(self, other: Learned) -> Learned:
        return Learned(self.pairs + other.pairs, self.without_slack | other.without_slack)


_NOT_FOUND = {"users_not_found", "user_not_found"}


@dataclass(slots=True)
class SlackDirectory:
    """Asks Slack who people are when the cache cannot tell: a few calls, one short deadline."""

    client: AsyncWebClient
    pool: asyncpg.Pool
    timeout: float = 2.0
    most: int = 3
    # Distributed mode: Slack is asked with the token of the voter's team (the team of the
    # Slack user among the people asked); without one, nobody is asked.
    teams: SlackTeams | None = None

    async def look_up(self, people: Iterable[Actor]) -> Learned | None:
        """What Slack says of at most `most` people, at once, cached for next time; None when
        it said nothing (it failed, or ran out of time)."""
        asked = list(people)[: self.most]
        try:
            async with asyncio.timeout(self.timeout):
                found = await self._client(asked)
                if found is None:
                    return None
                client, scope = found
                answers = await asyncio.gather(*(self._one(client, scope, a) for a in asked))
        except (
            SlackApiError,
            aiohttp.ClientError,
            TimeoutError,
            KeyError,
            TypeError,
            TeamNotInstalled,
        ) as exc:
            log.warning(
                "Slack could not say who a voter is",
                extra={"event": "people.lookup_failed", "error": type(exc).__name__},
            )
            return None
        learned = sum((a for a in answers if a is not None), Learned())
        return learned if learned.pairs or learned.without_slack else None

    async def _client(self, asked: list[Actor]) -> tuple[AsyncWebClient, dict[str, str]] | None:
        """The client to ask with, and the arguments naming the team for an org-wide token."""
        if self.teams is None or not self.teams.distributed:
            return self.client, {}
        team = next((a.slack_team_id for a in asked if a.slack_team_id), None)
        if team is None:
            return None
        async with self.pool.acquire() as conn:
            enterprise = await slack_store.enterprise_of_team(conn, team)
        client, org_wide = await self.teams.client_of(team, enterprise)
        return client, ({"team_id": team} if org_wide else {})

    async def _one(
        self, client: AsyncWebClient, scope: dict[str, str], actor: Actor
    ) -> Learned | None:
        if actor.slack_user_id:
            return await self._by_user(client, scope, actor.slack_user_id, actor.slack_team_id)
        if actor.email:
            return await self._by_email(client, scope, actor.email)
        return None

    async def _by_user(
        self, client: AsyncWebClient, scope: dict[str, str], user_id: str, team_id: str | None
    ) -> Learned | None:
        answer = await client.api_call(
            "users.info", http_verb="GET", params={"user": user_id} | scope
        )
        user: dict[str, Any] = answer.get("user") or {}
        email = (user.get("profile") or {}).get("email")
        if not isinstance(email, str) or not email:
            return None  # a profile without an email rules nobody in or out
        await self._remember(team_id or user.get("team_id"), user_id, email, user.get("tz"))
        return Learned(((email.lower(), user_id),))

    async def _by_email(
        self, client: AsyncWebClient, scope: dict[str, str], email: str
    ) -> Learned | None:
        try:
            answer = await client.api_call(
                "users.lookupByEmail", http_verb="GET", params={"email": email} | scope
            )
        except SlackApiError as exc:
            if exc.response.get("error") in _NOT_FOUND:
                return Learned(without_slack=frozenset({email.lower()}))
            raise
        user: dict[str, Any] = answer["user"]
        user_id = str(user["id"])
        await self._remember(user.get("team_id"), user_id, email, user.get("tz"))
        return Learned(((email.lower(), user_id),))

    async def _remember(self, team: Any, user_id: str, email: str, tz: Any) -> None:
        if not isinstance(team, str) or not team:
            return
        async with self.pool.acquire() as conn:
            await slack_store.cache_user(
                conn, team, user_id, email, tz if isinstance(tz, str) else None
            )


# The directory of each pool that decisions go through (by id(): a pool takes no weak
# reference), so every channel deciding through that pool resolves people the same way.
_directories: dict[int, SlackDirectory] = {}


def attach(directory: SlackDirectory) -> None:
    _directories[id(directory.pool)] = directory


def detach(pool: asyncpg.Pool) -> None:
    _directories.pop(id(pool), None)


def directory_for(pool: asyncpg.Pool) -> SlackDirectory | None:
    directory = _directories.get(id(pool))
    return directory if directory is not None and directory.pool is pool else None
