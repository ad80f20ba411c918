"""`taskjuice-bot dev`: the bot with stand-ins for Slack, mail and the platform, on loopback.

Everything runs in one process and one event loop: the Slack Web API double, a mail catcher,
a callback receiver, an embedded PostgreSQL and the bot itself, with a dev console at /dev.
`serve` never starts any of it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bot import approvals
from bot.devkit.callback_receiver import PlatformReceiver
from bot.devkit.mail_catcher import MailCatcher
from bot.devkit.slack_api import SlackApiDouble
from bot.errors import SettingsError
from bot.platform.validation import parse_new_approval
from bot.runtime.config import Settings, load_settings
from bot.runtime.keys import POOL
from store import alerts

__all__ = ["DevWorld", "dev_environment", "require_loopback", "seed", "start_world"]

log = logging.getLogger(__name__)

SIGNING_SECRET = "dev-signing-secret-not-for-production"  # noqa: S105 (dev mode only)
CALLBACK_SECRET = "whsec_ZGV2LWNhbGxiYWNrLXNlY3JldC1rZXk="  # noqa: S105 (dev mode only)
API_TOKEN = "dev-api-token"  # noqa: S105 (dev mode only)
REPLY_DOMAIN = "reply.taskjuice.localhost"

PEOPLE = (
    ("U0DANA001", "dana", "dana@acme.test", "approver"),
    ("U0LEE0001", "lee", "lee@acme.test", "approver"),
    ("U0OPS0001", "ops", "ops@acme.test", "requester"),
    ("U0CFO0001", "cfo", "cfo@acme.test", "escalation approver"),
    ("U0MAL0001", "mallory", "mallory@acme.test", "not an approver"),
)
CHANNELS = (("C0ALERTS1", "alerts"), ("C0APPROV1", "approvals"))


@dataclass
class DevWorld:
    """The stand-ins dev mode runs beside the bot."""

    slack: SlackApiDouble
    mail: MailCatcher
    platform: PlatformReceiver


def require_loopback(url: str) -> None:
    """Dev mode serves fake Slack and mail: refuse anything but a loopback address."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SettingsError(f"PUBLIC_URL must be a loopback address in dev mode, not {host!r}")


async def start_world(host: str = "127.0.0.1") -> DevWorld:
    slack = SlackApiDouble(team_id="T0TASKJ01", team_name="Acme (dev)")
    for user_id, name, email, _ in PEOPLE:
        slack.add_user(user_id, name, email)
    for channel_id, name in CHANNELS:
        slack.add_channel(channel_id, name)
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
        "SLACK_BOT_TOKEN": world.slack.token,
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
)


async def seed(app: web.Application) -> None:
    """A few realistic requests and alert routing, so the console is never empty."""
    pool = app[POOL]
    async with pool.acquire() as conn:
        await alerts.set_routing(
            conn, "acme", {"slack_channel": "C0ALERTS1", "alert_emails": ["ops@acme.test"]}
        )
    for number, body in enumerate(SEEDS):
        new = parse_new_approval(body, allow_proceed_irreversible=False)
        await approvals.create(
            pool, new, idempotency_key=f"dev-seed-{number}", request_hash=str(number)
        )
    log.info("dev seeds in place", extra={"event": "dev.seeded", "requests": len(SEEDS)})
