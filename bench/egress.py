"""Slack egress against the double enforcing Slack's published limits (contract §7).

Every scenario gets a fresh database, a fresh Slack double (in this process, on loopback,
`rate_limits=True`: the published tiers for every team), a mail catcher and a callback
receiver, and the bot in distributed mode as real processes on that one database: one
`taskjuice-bot serve`, or one `serve` and two `taskjuice-bot worker`s. Five Slack teams are
connected the way an admin connects them: the install link, consent in the double, the bot's
OAuth redirect.

* fan-out: requests to approvers (by email) spread over the five teams; the time until every DM
  and every mail is delivered, beside the least time the published limits allow for the calls
  that work needs (`fan_out_bound`);
* noisy neighbour: one team's backlog of posts, and new requests for another team arriving
  during its drain: time to their first DM;
* vote burst: requests shown in three DMs each, each approved by its three approvers within a
  second: `chat.update` calls per message, and every message ending in its final state;
* urgent first: App Home refreshes and message updates waiting in one team; refused clicks'
  private answers and new requests' DMs in that team, meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from cryptography.fernet import Fernet

from bench.database import fresh_database
from bench.harness import (
    CALLBACK_SECRET,
    SIGNING_SECRET,
    BotProcess,
    bot_env,
    free_port,
    percentile,
)
from bot.devkit.callback_receiver import PlatformReceiver
from bot.devkit.mail_catcher import MailCatcher
from bot.devkit.slack.limits import CHANNEL_PACE, PUBLISHED, TEAM_CAP
from bot.devkit.slack_api import SlackApiDouble
from bot.devkit.slack_requests import SlackRequests, button, buttons
from store.database import connect

__all__ = ["SCENARIOS", "SIZES", "fan_out_bound", "run"]

TEAMS = tuple(f"T0EGRES{n}" for n in range(1, 6))
API_TOKEN = "bench-token"

# Sizes per mode: fan-out (requests, approvers), noisy neighbour (team A's backlog, team B's
# requests), vote burst (requests), urgent first (App Home refreshes, updates, probes).
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "fan_out": (2000, 500),
        "noisy": (5000, 20),
        "votes": 100,
        "urgent": (2000, 1000, 20),
        "processes": (1, 3),
    },
    "quick": {
        "fan_out": (200, 50),
        "noisy": (1000, 20),
        "votes": 30,
        "urgent": (2000, 1000, 20),
        "processes": (1, 3),
    },
    "tiny": {
        "fan_out": (20, 10),
        "noisy": (100, 5),
        "votes": 5,
        "urgent": (50, 50, 5),
        "processes": (3,),
    },
}


def _workspace(team: str) -> str:
    return "egress-" + team[-1]


# ---------------------------------------------------------------------------------------------
# The least time the published limits allow.


def fan_out_bound(posts_per_approver: Sequence[Sequence[int]]) -> dict[str, Any]:
    """The least seconds, from the first call, in which Slack's published limits let every
    DM of a fan-out be posted, and the figures it follows from.

    `posts_per_approver[t]` lists, for team t, how many DMs each of its approvers (named by
    email) gets. Each approver needs one `users.lookupByEmail` and one `conversations.open`
    (Tier 3 each: `count` per `seconds`, per team, separate budgets, so both can go at once),
    and then their DMs go one per channel pace; every post also counts against the team's
    `chat.postMessage` cap. The i-th call of a sliding-window budget (0-based) can go no
    earlier than floor(i / count) windows in, so the best order looks up the approvers with the
    most DMs first; a team's last DM goes at the latest of (its approver's lookup time +
    (DMs - 1) paces) and (the team's post number P - 1's earliest slot under the cap)."""
    lookup = PUBLISHED["users.lookupByEmail"]
    opening = PUBLISHED["conversations.open"]
    cap = PUBLISHED[TEAM_CAP]
    pace = PUBLISHED[CHANNEL_PACE]
    per_team = []
    for counts in posts_per_approver:
        ordered = sorted(counts, reverse=True)
        by_approver = max(
            (
                max(i // lookup.count * lookup.seconds, i // opening.count * opening.seconds)
                + (k - 1) * pace.seconds / pace.count
                for i, k in enumerate(ordered)
            ),
            default=0.0,
        )
        posts = sum(ordered)
        by_cap = (posts - 1) // cap.count * cap.seconds if posts else 0.0
        per_team.append(
            {
                "approvers": len(ordered),
                "lookups": len(ordered),
                "opens": len(ordered),
                "posts": posts,
                "most_dms_per_channel": ordered[0] if ordered else 0,
                "seconds": max(by_approver, by_cap),
            }
        )
    return {
        "seconds": max((t["seconds"] for t in per_team), default=0.0),
        "limits": {
            "users.lookupByEmail": f"{lookup.count}/{lookup.seconds:g}s per team",
            "conversations.open": f"{opening.count}/{opening.seconds:g}s per team",
            "chat.postMessage": f"{cap.count}/{cap.seconds:g}s per team, "
            f"{pace.count}/{pace.seconds:g}s per channel",
        },
        "teams": per_team,
    }


# ---------------------------------------------------------------------------------------------
# The world of one scenario.


@dataclass
class World:
    slack: SlackApiDouble
    mail: MailCatcher
    platform: PlatformReceiver
    processes: list[BotProcess]
    http: aiohttp.ClientSession
    db: str
    signers: dict[str, SlackRequests] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return self.processes[0].url

    async def create(self, body: dict[str, Any]) -> str:
        async with self.http.post(self.api + "/api/v1/approvals", json=body) as response:
            answer = await response.json()
            if response.status != 201:
                raise RuntimeError(f"create answered {response.status}: {answer}")
            return str(answer["id"])

    async def click(self, team: str, user: str, message: dict[str, Any]) -> int:
        """`user` presses Approve on `message` (as Slack sends it, signed)."""
        element = button(message, "taskjuice_approve")
        signer = self.signers[team]
        payload = signer.block_actions_payload(
            user=user,
            action_id="taskjuice_approve",
            value=element["value"],
            message=message,
            trigger_id=f"{time.time_ns()}.1.trigger",
        )
        body, headers = signer.interaction(payload)
        async with self.http.post(
            self.api + "/slack/events", data=body, headers=headers
        ) as response:
            await response.read()
            return response.status


def _approval(workspace: str, run_id: str, approvers: list[dict[str, str]], **more: Any) -> Any:
    return {
        "workspace": workspace,
        "run_id": run_id,
        "workflow": {"id": "wf_egress", "name": "Egress"},
        "summary": f"Egress {run_id}",
        "reversibility": "safe",
        "expires_in": 3600,
        "approvers": approvers,
    } | more


async def _install(world: World, team: str, installer: str) -> None:
    """Connect the workspace to `team`: install link, consent in the double, OAuth redirect."""
    api = f"{world.api}/api/v1/workspaces/{_workspace(team)}"
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {API_TOKEN}"}, cookie_jar=aiohttp.DummyCookieJar()
    ) as http:
        async with http.post(f"{api}/slack/install-link") as made:
            assert made.status == 201, await made.text()
            link = (await made.json())["url"]
        async with http.get(link, allow_redirects=False) as opened:
            assert opened.status == 302, await opened.text()
            cookie = opened.headers["Set-Cookie"].split(";")[0]
            consent = {
                k: v[0] for k, v in parse_qs(urlsplit(opened.headers["Location"]).query).items()
            }
        code = world.slack.approve(
            team, installer, scope=consent.get("scope", ""), redirect_uri=consent["redirect_uri"]
        )
        async with http.get(
            consent["redirect_uri"],
            params={"code": code, "state": consent["state"]},
            headers={"Cookie": cookie},
            allow_redirects=False,
        ) as landed:
            assert landed.status == 200, await landed.text()


@contextlib.asynccontextmanager
async def _world(
    server: str, slack: SlackApiDouble, processes: int, installers: dict[str, str]
) -> AsyncIterator[World]:
    """The bot as `processes` real processes (one `serve`, the rest `worker`) on a fresh
    database, the stand-ins, and every team of `installers` connected."""
    db = await fresh_database(server, "taskjuice_egress")
    await slack.start()
    mail = MailCatcher()
    await mail.start()
    platform = PlatformReceiver(secret=CALLBACK_SECRET)
    await platform.start()
    env = bot_env(
        db,
        slack.url,
        platform.url,
        SLACK_CLIENT_ID=slack.client_id,
        SLACK_CLIENT_SECRET=slack.client_secret,
        SLACK_TOKEN_KEYS=Fernet.generate_key().decode(),
        SLACK_OAUTH_URL=slack.oauth_url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(mail.port),
        SMTP_TLS="none",
        MAIL_FROM="TaskJuice <approvals@bench.test>",
        LINK_SECRETS="bench-link-secret",
    )
    env.pop("SLACK_BOT_TOKEN")
    serve = BotProcess(env, [*_cli(), "serve"])
    workers = [
        BotProcess(env | {"PORT": str(free_port())}, [*_cli(), "worker"])
        for _ in range(processes - 1)
    ]
    bots = [serve, *workers]
    http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"})
    world = World(slack, mail, platform, bots, http, db)
    try:
        for bot in bots:
            await bot.start()
        for team, installer in installers.items():
            await _install(world, team, installer)
            world.signers[team] = SlackRequests(
                SIGNING_SECRET, team_id=team, team_domain=team.lower(), app_id=slack.app_id
            )
        yield world
    finally:
        await http.close()
        for bot in bots:
            bot.stop()
        await slack.stop()
        await mail.stop()
        await platform.stop()


def _cli() -> list[str]:
    return [sys.executable, "-m", "bot.runtime.cli"]


def _double(teams: Sequence[str]) -> SlackApiDouble:
    slack = SlackApiDouble(rate_limits=True)
    for n, team in enumerate(teams):
        slack.add_team(team, f"Egress {n + 1}")
        slack.add_user(f"U0ADM{team}", "Admin", f"admin@{team.lower()}.test", team_id=team)
    return slack


async def _until(check: Any, timeout: float, what: str, step: float = 0.1) -> float:
    """Poll `check()` until true; the monotonic time it became true. Raises after `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(step)
    return time.monotonic()


def _posted(slack: SlackApiDouble) -> list[Any]:
    return [c for c in slack.calls if c.method == "chat.postMessage" and c.answer == "ok"]


def _ratelimited(slack: SlackApiDouble, since: int = 0) -> dict[str, Any]:
    calls = slack.calls[since:]
    limited = Counter(c.method for c in calls if c.answer == "ratelimited")
    return {
        "slack_calls": len(calls),
        "ratelimited": sum(limited.values()),
        "ratelimited_percent": round(100 * sum(limited.values()) / max(1, len(calls)), 3),
        "ratelimited_by_method": dict(limited),
    }


# ---------------------------------------------------------------------------------------------
# Scenarios.


async def _fan_out(server: str, processes: int, requests: int, approvers: int) -> dict[str, Any]:
    slack = _double(TEAMS)
    team_of = [TEAMS[a % len(TEAMS)] for a in range(approvers)]
    for a, team in enumerate(team_of):
        slack.add_user(f"U0FAN{a:05d}", f"fan{a}", f"fan{a}@{team.lower()}.test", team_id=team)
    installers = {t: f"U0ADM{t}" for t in TEAMS}
    async with _world(server, slack, processes, installers) as world:
        since = len(slack.calls)
        started = time.monotonic()
        semaphore = asyncio.Semaphore(16)

        async def create(n: int) -> None:
            a = n % approvers
            async with semaphore:
                await world.create(
                    _approval(
                        _workspace(team_of[a]),
                        f"fan_{n}",
                        [{"email": f"fan{a}@{team_of[a].lower()}.test"}],
                    )
                )

        await asyncio.gather(*(create(n) for n in range(requests)))
        created = time.monotonic()

        def delivered() -> bool:
            return len(_posted(slack)) >= requests and len(world.mail.messages) >= requests

        with contextlib.suppress(TimeoutError):
            await _until(delivered, 900, "fan-out")
        posts = _posted(slack)
        last_dm = max((c.at for c in posts), default=started)
        finished = time.monotonic()
        await asyncio.sleep(2)  # anything posted twice would show now
        posts = _posted(slack)
        by_delivery = Counter(
            m["metadata"]["event_payload"]["delivery_id"]
            for m in slack.all_messages()
            if m.get("metadata")
        )
        subjects = Counter((tuple(m.rcpt_tos), m.message["Subject"]) for m in world.mail.messages)
        counts = Counter(n % approvers for n in range(requests))
        bound = fan_out_bound(
            [[counts[a] for a in range(approvers) if team_of[a] == t] for t in TEAMS]
        )
        seconds = finished - started
        needed = Counter(c.method for c in slack.calls[since:] if c.answer == "ok")
        return {
            "requests": requests,
            "approvers": approvers,
            "teams": len(TEAMS),
            "seconds": round(seconds, 1),
            "last_dm_seconds": round(last_dm - started, 1),
            "creating_seconds": round(created - started, 1),
            "bound_seconds": bound["seconds"],
            "ratio_to_bound": round(seconds / bound["seconds"], 2) if bound["seconds"] else None,
            "bound": bound,
            "dms": len(by_delivery),
            "mails": len(subjects),
            "lost": 2 * requests - len(by_delivery) - len(subjects),
            "posted_twice": sum(1 for n in by_delivery.values() if n > 1)
            + sum(1 for n in subjects.values() if n > 1),
            "calls_ok_by_method": dict(needed),
        } | _ratelimited(slack, since)


async def _noisy(server: str, processes: int, backlog: int, newcomers: int) -> dict[str, Any]:
    team_a, team_b = TEAMS[0], TEAMS[1]
    slack = _double((team_a, team_b))
    a_users = [f"U0NA{n:04d}" for n in range(50)]
    b_users = [f"U0NB{n:04d}" for n in range(newcomers)]
    for user in a_users:
        slack.add_user(user, user, None, team_id=team_a)
    for user in b_users:
        slack.add_user(user, user, None, team_id=team_b)
    installers = {team_a: f"U0ADM{team_a}", team_b: f"U0ADM{team_b}"}
    async with _world(server, slack, processes, installers) as world:
        since = len(slack.calls)
        semaphore = asyncio.Semaphore(16)
        no_mail = {"deliver": {"email": False}}

        async def backlog_item(n: int) -> None:
            async with semaphore:
                await world.create(
                    _approval(
                        _workspace(team_a),
                        f"a_{n}",
                        [{"slack_user_id": a_users[n % len(a_users)]}],
                        **no_mail,
                    )
                )

        await asyncio.gather(*(backlog_item(n) for n in range(backlog)))
        conn = await connect(world.db)
        try:
            a_pending = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE status = 'pending' AND tenant = $1",
                _workspace(team_a),
            )
        finally:
            await conn.close()
        asked: dict[str, float] = {}
        for n, user in enumerate(b_users):
            asked[slack.dm_channel(user)] = time.monotonic()
            await world.create(
                _approval(_workspace(team_b), f"b_{n}", [{"slack_user_id": user}], **no_mail)
            )
            await asyncio.sleep(0.5)

        def b_done() -> bool:
            return {c.args.get("channel") for c in _posted(slack)} >= set(asked)

        timed_out = False
        try:
            await _until(b_done, 120, "team B's first DMs")
        except TimeoutError:
            timed_out = True
        first: dict[str, float] = {}
        for call in _posted(slack):
            channel = call.args.get("channel")
            if channel in asked and channel not in first:
                first[channel] = call.at - asked[channel]
        waits = list(first.values())
        a_posted = sum(1 for c in _posted(slack) if c.team == team_a)
        return {
            "backlog_a": backlog,
            "a_pending_when_b_arrived": a_pending,
            "a_posted_by_end": a_posted,
            "b_requests": newcomers,
            "b_reached": len(first),
            "b_timed_out": timed_out,
            "b_first_dm_p50_s": round(percentile(waits, 0.5), 2),
            "b_first_dm_p99_s": round(percentile(waits, 0.99), 2),
            "b_first_dm_max_s": round(max(waits, default=0.0), 2),
        } | _ratelimited(slack, since)


async def _vote_burst(server: str, processes: int, requests: int) -> dict[str, Any]:
    slack = _double(TEAMS)
    pool = {t: [f"U0V{t[-1]}{n:03d}" for n in range(15)] for t in TEAMS}
    for team, users in pool.items():
        for user in users:
            slack.add_user(user, user, None, team_id=team)
    installers = {t: f"U0ADM{t}" for t in TEAMS}
    async with _world(server, slack, processes, installers) as world:
        shown: list[tuple[str, list[str]]] = []  # (team, its three approvers)
        for n in range(requests):
            team = TEAMS[n % len(TEAMS)]
            users = pool[team]
            k = n // len(TEAMS)
            three = [users[(3 * k + i) % len(users)] for i in range(3)]
            task = await world.create(
                _approval(
                    _workspace(team),
                    f"vote_{n}",
                    [{"slack_user_id": u} for u in three],
                    required_approvals=3,
                    deliver={"email": False},
                )
            )
            shown.append((task, [team, *three]))

        def message_of(task: str, user: str) -> dict[str, Any] | None:
            for message in slack.messages.get(slack.dm_channel(user), []):
                meta = (message.get("metadata") or {}).get("event_payload") or {}
                if meta.get("task_id") == task:
                    return message
            return None

        await _until(
            lambda: all(message_of(t, u) for t, (_, *us) in shown for u in us),
            600,
            "the vote burst's DMs",
            step=0.5,
        )
        since = len(slack.calls)
        updates_before = Counter(
            (c.args.get("channel"), c.args.get("ts")) for c in slack.calls_to("chat.update")
        )
        started = time.monotonic()

        async def votes(task: str, team: str, three: list[str]) -> list[int]:
            answers = []
            for i, user in enumerate(three):
                message = message_of(task, user)
                assert message is not None
                answers.append(await world.click(team, user, dict(message)))
                if i < 2:
                    await asyncio.sleep(0.3)
            return answers

        statuses = await asyncio.gather(
            *(votes(task, team, three) for task, (team, *three) in shown)
        )
        voted = time.monotonic() - started
        targets = [(t, u) for t, (_, *us) in shown for u in us]

        def final(task: str, user: str) -> bool:
            message = message_of(task, user)
            if message is None:
                return False
            text = json.dumps(message.get("blocks")) + str(message.get("text"))
            return "taskjuice_approve" not in buttons(message) and "Approved" in text

        timed_out = False
        try:
            settled = await _until(
                lambda: all(final(t, u) for t, u in targets), 900, "final states", step=0.25
            )
        except TimeoutError:
            timed_out, settled = True, time.monotonic()
        await asyncio.sleep(3)  # late updates still count
        per_message = Counter(
            (c.args.get("channel"), c.args.get("ts")) for c in slack.calls_to("chat.update")
        )
        ok_per_message = Counter(
            (c.args.get("channel"), c.args.get("ts"))
            for c in slack.calls_to("chat.update")
            if c.answer == "ok"
        )
        keys = []
        for task, user in targets:
            message = message_of(task, user)
            if message is not None:
                keys.append((message["channel"], message["ts"]))
        calls = [per_message[k] - updates_before[k] for k in keys]
        oks = [ok_per_message[k] for k in keys]
        return {
            "requests": requests,
            "messages": len(targets),
            "clicks_answered_200": sum(1 for s in statuses for a in s if a == 200),
            "votes_seconds": round(voted, 2),
            "settled_seconds": round(settled - started, 1),
            "timed_out": timed_out,
            "final_state_messages": sum(1 for t, u in targets if final(t, u)),
            "updates_per_message_max": max(calls, default=0),
            "updates_per_message_mean": round(sum(calls) / max(1, len(calls)), 2),
            "updates_ok_per_message_max": max(oks, default=0),
            "update_calls_histogram": dict(sorted(Counter(calls).items())),
        } | _ratelimited(slack, since)


async def _urgent(
    server: str, processes: int, homes: int, updates: int, probes: int
) -> dict[str, Any]:
    team = TEAMS[0]
    slack = _double((team,))
    approvers = [f"U0UA{n:04d}" for n in range(max(probes, 10))]
    for user in approvers:
        slack.add_user(user, user, None, team_id=team)
    viewers = [f"U0UH{n:05d}" for n in range(homes)]
    for user in viewers:
        slack.add_user(user, user, None, team_id=team)
    clicker = "U0UREFUSE"
    slack.add_user(clicker, "outsider", None, team_id=team)
    workspace = _workspace(team)
    async with _world(server, slack, processes, {team: f"U0ADM{team}"}) as world:
        no_mail = {"deliver": {"email": False}}
        # Requests whose DMs the refused clicks press on, posted before the backlog.
        clicked = [
            await world.create(
                _approval(workspace, f"shown_{n}", [{"slack_user_id": approvers[n]}], **no_mail)
            )
            for n in range(probes)
        ]
        await _until(lambda: len(_posted(slack)) >= probes, 120, "the clicked requests' DMs")
        # The backlog: App Home refreshes for `homes` viewers and `updates` message updates of
        # messages the double holds, queued as the bot queues them.
        channel = slack.dm_channel(approvers[0])
        planted = []
        for n in range(updates):
            ts = f"{int(time.time())}.{900000 + n:06d}"
            slack.messages[channel].append(
                {"ts": ts, "channel": channel, "team": team, "text": "old", "blocks": [],
                 "attachments": [], "metadata": None, "edited": 0}
            )  # fmt: skip
            planted.append(ts)
        conn = await connect(world.db)
        try:
            async with conn.transaction():
                ids = await conn.fetch(
                    "INSERT INTO deliveries (task_id, channel, status, slack_team_id,"
                    " slack_channel, slack_ts, recipient)"
                    " SELECT $1::uuid, 'slack', 'sent', $2, $3, ts, 'backlog-' || ts"
                    " FROM unnest($4::text[]) AS ts RETURNING id",
                    clicked[0],
                    team,
                    channel,
                    planted,
                )
                await conn.execute(
                    "INSERT INTO outbox (kind, payload, task_id, ordering_key, message_id)"
                    " SELECT 'slack.update', jsonb_build_object('delivery_id', d), $1::uuid,"
                    " 'slack:' || d, 'bench-update:' || d FROM unnest($2::bigint[]) AS d",
                    clicked[0],
                    [r["id"] for r in ids],
                )
                await conn.execute(
                    "INSERT INTO outbox (kind, payload, ordering_key, message_id)"
                    " SELECT 'slack.home', jsonb_build_object('user', u, 'team_id', $1::text),"
                    " 'slack.home:' || u, 'bench-home:' || u FROM unnest($2::text[]) AS u",
                    team,
                    viewers,
                )
        finally:
            await conn.close()
        await asyncio.sleep(2)  # the drain is under way
        since = len(slack.calls)
        clicks: dict[str, float] = {}
        dms: dict[str, float] = {}
        for n in range(probes):
            message = next(
                m
                for m in slack.messages[slack.dm_channel(approvers[n])]
                if ((m.get("metadata") or {}).get("event_payload") or {}).get("task_id")
                == clicked[n]
            )
            clicks[message["channel"]] = time.monotonic()
            await world.click(team, clicker, dict(message))
            await asyncio.sleep(0.25)
            user = approvers[(n + 1) % len(approvers)]
            asked = time.monotonic()
            fresh = await world.create(
                _approval(workspace, f"new_{n}", [{"slack_user_id": user}], **no_mail)
            )
            dms[fresh] = asked
            await asyncio.sleep(0.25)

        def answered() -> tuple[list[float], list[float]]:
            ephemeral: dict[str, float] = {}  # a click's answer goes where it was clicked
            for call in slack.calls_to("chat.postEphemeral"):
                where = str(call.args.get("channel"))
                if call.answer == "ok" and where in clicks and where not in ephemeral:
                    ephemeral[where] = call.at - clicks[where]
            posts: dict[str, float] = {}
            for call in _posted(slack):
                meta = (call.args.get("metadata") or {}).get("event_payload") or {}
                task = meta.get("task_id")
                if task in dms and task not in posts:
                    posts[task] = call.at - dms[task]
            return list(ephemeral.values()), list(posts.values())

        timed_out = False
        try:
            await _until(
                lambda: len(answered()[0]) >= probes and len(answered()[1]) >= probes,
                120,
                "urgent answers",
            )
        except TimeoutError:
            timed_out = True
        click_waits, dm_waits = answered()
        conn = await connect(world.db)
        try:
            left = await conn.fetch(
                "SELECT kind, count(*) AS n FROM outbox WHERE status = 'pending' GROUP BY kind"
            )
        finally:
            await conn.close()
        return {
            "home_refreshes": homes,
            "updates": updates,
            "probes": probes,
            "timed_out": timed_out,
            "private_answers": len(click_waits),
            "private_answer_p50_s": round(percentile(click_waits, 0.5), 2),
            "private_answer_p99_s": round(percentile(click_waits, 0.99), 2),
            "new_dms": len(dm_waits),
            "new_dm_p50_s": round(percentile(dm_waits, 0.5), 2),
            "new_dm_p99_s": round(percentile(dm_waits, 0.99), 2),
            "backlog_left": {r["kind"]: r["n"] for r in left},
        } | _ratelimited(slack, since)


# ---------------------------------------------------------------------------------------------


TARGETS = {
    "fan_out.ratio_to_bound": ("<=", 1.15),
    "fan_out.ratelimited_percent": ("<", 0.5),
    "fan_out.lost": ("==", 0),
    "fan_out.posted_twice": ("==", 0),
    "noisy_neighbour.b_first_dm_p99_s": ("<=", 2.0),
    "vote_burst.updates_per_message_max": ("<=", 2),
    "vote_burst.unfinished_messages": ("==", 0),
    "urgent_first.private_answer_p99_s": ("<=", 1.0),
    "urgent_first.new_dm_p99_s": ("<=", 2.0),
}


def verdicts(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, target, met|missed) for every target, per process count."""
    rows = []
    for procs, scenarios in results.items():
        for name, (op, target) in TARGETS.items():
            scenario, figure = name.split(".")
            value = scenarios.get(scenario, {}).get(figure)
            if value is None:
                continue
            met = {"<=": value <= target, "<": value < target, "==": value == target}[op]
            rows.append(
                (f"{procs}.{name}", str(value), f"{op} {target}", "met" if met else "MISSED")
            )
    return rows


SCENARIOS = ("fan_out", "noisy_neighbour", "vote_burst", "urgent_first")


async def run(server: str, *, mode: str, scenarios: Sequence[str] = SCENARIOS) -> dict[str, Any]:
    sizes = SIZES[mode]
    results: dict[str, Any] = {}
    for processes in sizes["processes"]:
        key = f"{processes}_process" + ("es" if processes > 1 else "")
        figures: dict[str, Any] = {}
        if "fan_out" in scenarios:
            figures["fan_out"] = await _fan_out(server, processes, *sizes["fan_out"])
        if "noisy_neighbour" in scenarios:
            figures["noisy_neighbour"] = await _noisy(server, processes, *sizes["noisy"])
        if "vote_burst" in scenarios:
            votes = await _vote_burst(server, processes, sizes["votes"])
            votes["unfinished_messages"] = votes["messages"] - votes["final_state_messages"]
            figures["vote_burst"] = votes
        if "urgent_first" in scenarios:
            figures["urgent_first"] = await _urgent(server, processes, *sizes["urgent"])
        results[key] = figures
    return results
