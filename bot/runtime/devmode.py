"""`taskjuice-bot dev`: the bot with stand-ins for Slack, mail and the platform, on loopback.

Everything runs in one process and one event loop: the Slack Web API double, a mail catcher,
a callback receiver, an embedded PostgreSQL and the bot itself, with a dev console at /dev.
`serve` never starts any of it.

The bot runs in distributed mode: the double hosts three Slack teams. At start Acme and Globex
are connected to the TaskJuice workspaces `acme` and `globex` by the real install flow (an
install link from the API, consent in the double, the bot's OAuth redirect); Initech is left
for the console's Connect Slack button. Acme's #acme-globex is shared with Globex (Slack
Connect).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from cryptography.fernet import Fernet

from bot import approvals
from bot.devkit.callback_receiver import PlatformReceiver
from bot.devkit.mail_catcher import MailCatcher
from bot.devkit.slack_api import SlackApiDouble
from bot.errors import SettingsError
from bot.platform.validation import parse_new_approval
from bot.runtime.config import Settings, load_settings
from bot.runtime.keys import POOL, SETTINGS
from store import alerts

__all__ = [
    "PEOPLE",
    "TEAMS",
    "DevTeam",
    "DevWorld",
    "Person",
    "connect_and_seed",
    "dev_environment",
    "require_loopback",
    "seed",
    "start_world",
]

log = logging.getLogger(__name__)

SIGNING_SECRET = "dev-signing-secret-not-for-production"  # noqa: S105 (dev mode only)
CALLBACK_SECRET = "whsec_ZGV2LWNhbGxiYWNrLXNlY3JldC1rZXk="  # noqa: S105 (dev mode only)
API_TOKEN = "dev-api-token"  # noqa: S105 (dev mode only)
REPLY_DOMAIN = "reply.taskjuice.localhost"


@dataclass(frozen=True)
class Person:
    """Someone in one of the dev Slack teams, and what they are for in the console."""

    id: str
    name: str
    email: str
    role: str
    admin: bool = False


@dataclass(frozen=True)
class DevTeam:
    """A Slack team of the double; `workspace` is the TaskJuice workspace it is connected to
    at start (None: left for the console's Connect Slack button)."""

    id: str
    name: str
    domain: str
    workspace: str | None
    people: tuple[Person, ...]
    channels: tuple[tuple[str, str], ...]
    installer: str  # who clicks Allow on the consent screen
    alerts_channel: str  # the channel picked there
    approvers: tuple[dict[str, str], ...]  # of the console's new requests
    requester: str
    escalation: str


ACME = DevTeam(
    id="T0ACME001",
    name="Acme",
    domain="acme",
    workspace="acme",
    people=(
        Person("U0DANA001", "dana", "dana@acme.test", "approver"),
        Person("U0LEE0001", "lee", "lee@acme.test", "approver"),
        Person("U0OPS0001", "ops", "ops@acme.test", "requester"),
        Person("U0CFO0001", "cfo", "cfo@acme.test", "escalation approver"),
        Person("U0MAL0001", "mallory", "mallory@acme.test", "not an approver"),
        Person("U0ADA0001", "ada", "ada@acme.test", "installed the app", admin=True),
    ),
    channels=(("C0ALERTS1", "alerts"), ("C0APPROV1", "approvals"), ("C0PARTNR1", "acme-globex")),
    installer="U0ADA0001",
    alerts_channel="C0ALERTS1",
    approvers=({"email": "dana@acme.test"}, {"slack_user_id": "U0LEE0001"}),
    requester="ops@acme.test",
    escalation="cfo@acme.test",
)
GLOBEX = DevTeam(
    id="T0GLOBEX1",
    name="Globex",
    domain="globex",
    workspace="globex",
    people=(
        Person("U0HANK001", "hank", "hank@globex.test", "approver"),
        Person("U0IVY0001", "ivy", "ivy@globex.test", "requester"),
        Person("U0GINA001", "gina", "gina@globex.test", "installed the app", admin=True),
        Person("U0EVE0001", "eve", "eve@globex.test", "Slack Connect guest in #acme-globex"),
    ),
    channels=(("C0GLXALR1", "globex-alerts"), ("C0GLXOPS1", "ops")),
    installer="U0GINA001",
    alerts_channel="C0GLXALR1",
    approvers=({"email": "hank@globex.test"},),
    requester="ivy@globex.test",
    escalation="gina@globex.test",
)
INITECH = DevTeam(
    id="T0INITEC1",
    name="Initech",
    domain="initech",
    workspace=None,
    people=(
        Person("U0BILL001", "bill", "bill@initech.test", "may install the app", admin=True),
        Person("U0PETE001", "peter", "peter@initech.test", "approver"),
    ),
    channels=(("C0INITAL1", "tps-reports"),),
    installer="U0BILL001",
    alerts_channel="C0INITAL1",
    approvers=({"email": "peter@initech.test"},),
    requester="bill@initech.test",
    escalation="bill@initech.test",
)
TEAMS = (ACME, GLOBEX, INITECH)
PEOPLE = tuple(person for team in TEAMS for person in team.people)
# Slack Connect: Acme's #acme-globex is a channel of Globex too.
SHARED = (("C0PARTNR1", GLOBEX.id),)


@dataclass
class DevWorld:
    """The stand-ins dev mode runs beside the bot, and the TaskJuice workspaces the console
    shows (the seeded ones, and any connected from it)."""

    slack: SlackApiDouble
    mail: MailCatcher
    platform: PlatformReceiver
    workspaces: list[str] = field(
        default_factory=lambda: [t.workspace for t in TEAMS if t.workspace is not None]
    )
    # Where a console click happened (its trigger id -> the team), for the modal it opens.
    triggers: dict[str, str] = field(default_factory=dict)

    def team_of(self, workspace: str) -> DevTeam | None:
        return next((t for t in TEAMS if t.workspace == workspace), None)


def require_loopback(url: str) -> None:
    """Dev mode serves fake Slack and mail: refuse anything but a loopback address."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SettingsError(f"PUBLIC_URL must be a loopback address in dev mode, not {host!r}")


def _slack_world() -> SlackApiDouble:
    first, *others = TEAMS
    slack = SlackApiDouble(
        team_id=first.id, team_name=first.name, team_domain=first.domain, rate_limits=False
    )
    for team in others:
        slack.add_team(team.id, team.name, team.domain, rate_limits=False)
    for team in TEAMS:
        for person in team.people:
            slack.add_user(
                person.id, person.name, person.email, team_id=team.id, is_admin=person.admin
            )
        for channel_id, name in team.channels:
            slack.add_channel(channel_id, name, team_id=team.id)
    for channel_id, team_id in SHARED:
        slack.share_channel(channel_id, team_id)
    return slack


async def start_world(host: str = "127.0.0.1") -> DevWorld:
    slack = _slack_world()
    await slack.start(host)
    mail = MailCatcher(host=host)
    await mail.start()
    platform = PlatformReceiver(secret=CALLBACK_SECRET)
    await platform.start(host)
    return DevWorld(slack=slack, mail=mail, platform=platform)


def dev_environment(
    environ: Mapping[str, str], world: DevWorld, port: int, smtp_in: int
) -> Settings:
    """Settings that point the bot at the stand-ins; the environment may add to them."""
    public = environ.get("PUBLIC_URL") or f"http://127.0.0.1:{port}"
    require_loopback(public)
    env = {
        "API_TOKENS": API_TOKEN,
        "CALLBACK_URL": world.platform.url,
        "CALLBACK_SECRET": CALLBACK_SECRET,
        "TASKJUICE_APP_URL": f"{public}/dev/app",
        "PUBLIC_URL": public,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        # Distributed mode against the double's OAuth v2. The database starts afresh each
        # time, so a key made now encrypts the tokens of this run only (dev mode only).
        "SLACK_CLIENT_ID": world.slack.client_id,
        "SLACK_CLIENT_SECRET": world.slack.client_secret,
        "SLACK_TOKEN_KEYS": Fernet.generate_key().decode(),
        "SLACK_OAUTH_URL": world.slack.oauth_url,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": world.slack.url,
        "SMTP_HOST": world.mail.host,
        "SMTP_PORT": str(world.mail.port),
        "SMTP_TLS": "none",
        "MAIL_FROM": "TaskJuice <approvals@taskjuice.localhost>",
        "LINK_SECRETS": "dev-link-secret-not-for-production",
        "REPLY_DOMAIN": REPLY_DOMAIN,
        "INBOUND_SMTP_PORT": str(smtp_in),
        "SLACK_POST_INTERVAL": "0.2",
    }
    for name in ("DATABASE_URL", "TASKJUICE_DATA_DIR", "LOG_LEVEL", "SWEEP_INTERVAL"):
        if environ.get(name):
            env[name] = environ[name]
    settings = load_settings(env, env_file=None)
    return replace(settings, host="127.0.0.1")


class ConnectFailed(RuntimeError):
    """Dev mode could not connect a seeded workspace to its Slack team."""


async def connect(
    base_url: str, slack: SlackApiDouble, workspace: str, team: DevTeam
) -> dict[str, Any]:
    """Connect `workspace` to `team` the way an admin would: the platform's install link,
    consent in the double (as the team's installer, picking its alerts channel), and the
    bot's OAuth redirect with the state cookie. Returns the binding the API then shows."""
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    api = f"{base_url}/api/v1/workspaces/{workspace}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.post(f"{api}/slack/install-link", headers=auth) as made:
            if made.status != 201:
                raise ConnectFailed(f"install link for {workspace}: {made.status}")
            link = (await made.json())["url"]
        async with http.get(link, allow_redirects=False) as opened:
            if opened.status != 302:
                raise ConnectFailed(f"install link for {workspace} answered {opened.status}")
            cookie = opened.headers["Set-Cookie"].split(";")[0]
            consent = {
                k: v[0] for k, v in parse_qs(urlsplit(opened.headers["Location"]).query).items()
            }
        code = slack.approve(
            team.id,
            team.installer,
            team.alerts_channel,
            scope=consent.get("scope", ""),
            redirect_uri=consent["redirect_uri"],
        )
        async with http.get(
            consent["redirect_uri"],
            params={"code": code, "state": consent["state"]},
            headers={"Cookie": cookie},
            allow_redirects=False,
        ) as landed:
            if landed.status != 200:
                raise ConnectFailed(f"OAuth redirect for {workspace} answered {landed.status}")
        async with http.get(api, headers=auth) as shown:
            view: dict[str, Any] = await shown.json()
    if (view.get("slack") or {}).get("team_id") != team.id:
        raise ConnectFailed(f"{workspace} is not bound to {team.id} after the install")
    return view


async def connect_and_seed(app: web.Application, world: DevWorld) -> None:
    """Once the bot listens: connect the seeded workspaces to their teams, then seed."""
    base = f"http://127.0.0.1:{app[SETTINGS].port}"
    for team in TEAMS:
        if team.workspace is not None:
            await connect(base, world.slack, team.workspace, team)
    await seed(app)


SEEDS: tuple[dict[str, Any], ...] = (
    {
        "workspace": "acme",
        "run_id": "run_seed_digest",
        "workflow": {"id": "wf_digest", "name": "Weekly digest"},
        "step": "Send newsletter",
        "summary": "Send the weekly digest to 1,240 subscribers",
        "details": {"audience": "Newsletter", "recipients": "1,240"},
        "reversibility": "safe",
        "approvers": [{"email": "dana@acme.test"}],
        "requested_by": {"email": "ops@acme.test"},
        "expires_in": 86400,
    },
    {
        "workspace": "acme",
        "run_id": "run_seed_ads",
        "workflow": {"id": "wf_ads", "name": "Ad budget guard"},
        "step": "Pause campaign",
        "summary": "Pause the Black Friday ad campaign",
        "details": {"campaign": "BF-2026", "daily spend": "$2,300"},
        "reversibility": "recoverable",
        "approvers": [{"email": "dana@acme.test"}, {"slack_user_id": "U0LEE0001"}],
        "required_approvals": 2,
        "requested_by": {"email": "ops@acme.test"},
        "expires_in": 7200,
    },
    {
        "workspace": "acme",
        "run_id": "run_seed_refund",
        "workflow": {"id": "wf_refunds", "name": "Refunds"},
        "step": "Issue refund",
        "summary": "Refund $4,000 to customer #881",
        "details": {"amount": "4000.00", "currency": "USD", "customer": "#881"},
        "reversibility": "irreversible",
        "approvers": [{"email": "dana@acme.test"}, {"slack_user_id": "U0LEE0001"}],
        "requested_by": {"email": "ops@acme.test"},
        "expires_in": 900,
        "timeout_policy": "escalate",
        "escalation": [{"approvers": [{"email": "cfo@acme.test"}], "expires_in": 3600}],
    },
    {
        # Posted in #acme-globex, which Globex sees too: a click there by Globex's people
        # is refused, as in real Slack with Slack Connect.
        "workspace": "acme",
        "run_id": "run_seed_partner",
        "workflow": {"id": "wf_partners", "name": "Partner contracts"},
        "step": "Renew contract",
        "summary": "Renew the Globex supply contract for 12 months",
        "details": {"partner": "Globex", "value": "$48,000"},
        "reversibility": "recoverable",
        "approvers": [{"email": "dana@acme.test"}],
        "requested_by": {"email": "ops@acme.test"},
        "expires_in": 86400,
        "deliver": {"slack_channel": "C0PARTNR1"},
    },
    {
        "workspace": "globex",
        "run_id": "run_seed_shipment",
        "workflow": {"id": "wf_shipping", "name": "Warehouse shipping"},
        "step": "Release shipment",
        "summary": "Ship 300 units to the Springfield warehouse",
        "details": {"units": "300", "carrier": "Cypress Freight"},
        "reversibility": "recoverable",
        "approvers": [{"email": "hank@globex.test"}],
        "requested_by": {"email": "ivy@globex.test"},
        "expires_in": 7200,
    },
)

# Alert mail per workspace; the alerts channel is the one picked when it was connected.
ALERT_EMAILS = {"acme": ["ops@acme.test"], "globex": ["ivy@globex.test"]}


async def seed(app: web.Application) -> None:
    """A few realistic requests and alert routing, so the console is never empty."""
    pool = app[POOL]
    async with pool.acquire() as conn:
        for workspace, emails in ALERT_EMAILS.items():
            await alerts.set_routing(conn, workspace, {"alert_emails": emails})
    for number, body in enumerate(SEEDS):
        new = parse_new_approval(body, allow_proceed_irreversible=False)
        await approvals.create(
            pool, new, idempotency_key=f"dev-seed-{number}", request_hash=str(number)
        )
    log.info("dev seeds in place", extra={"event": "dev.seeded", "requests": len(SEEDS)})
