"""Settings: read once from the environment (and a `.env` file) at start-up, then passed down."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.errors import SettingsError

__all__ = ["SECRET_SETTINGS", "SETTINGS_HELP", "Settings", "load_settings"]

# Settings that may instead be read from a file named by NAME_FILE (a mounted secret), so the
# value need not sit in the environment. A secret setting joins by being listed here.
SECRET_SETTINGS: tuple[str, ...] = (
    "DATABASE_URL",
    "API_TOKENS",
    "CALLBACK_SECRET",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_CLIENT_SECRET",
    "SLACK_TOKEN_KEYS",
    "LINK_SECRETS",
    "SMTP_PASSWORD",
    "INBOUND_WEBHOOK_SECRET",
    "MAILGUN_SIGNING_KEY",
)


# name, meaning — the table `taskjuice-bot --help` prints and the README repeats.
SETTINGS_HELP: tuple[tuple[str, str], ...] = (
    (
        "DATABASE_URL",
        "PostgreSQL URL; unset -> embedded PostgreSQL under ./.taskjuice/ (query parameters"
        " asyncpg does not know are set on every connection)",
    ),
    ("API_TOKENS", "required: comma-separated bearer tokens accepted by /api/v1"),
    ("CALLBACK_URL", "required: where decisions are POSTed (Standard Webhooks)"),
    ("CALLBACK_SECRET", "required: callback signing secret, whsec_<base64>"),
    ("TASKJUICE_APP_URL", "required: TaskJuice web app base, for Adjust cap/Reconnect/inbox links"),
    ("PUBLIC_URL", "the bot's public base URL for magic links (default http://HOST:PORT)"),
    ("SLACK_BOT_TOKEN", "xoxb-... bot token; unset -> Slack delivery off"),
    ("SLACK_SIGNING_SECRET", "Slack signing secret (required in HTTP mode with a bot token)"),
    ("SLACK_APP_TOKEN", "xapp-... app token: use Socket Mode instead of /slack/events"),
    ("SLACK_API_URL", "Slack Web API base (default https://slack.com/api/)"),
    ("SLACK_POST_INTERVAL", "seconds between posts to one Slack channel (default 1)"),
    (
        "SLACK_RATE_LIMITS",
        "Slack egress limits per team over Slack's published tiers, all replicas together:"
        " method=count/seconds,... (e.g. chat.update=50/60; chat.postMessage sets the team cap)",
    ),
    (
        "SLACK_SUBSCRIBE_ANYONE",
        "single-workspace mode only: true lets any member run /taskjuice subscribe;"
        " default admins/owners",
    ),
    (
        "SLACK_CLIENT_ID",
        "the Slack app's OAuth client id; set -> distributed mode (many Slack workspaces,"
        " each installed from an install link); not with SLACK_BOT_TOKEN",
    ),
    ("SLACK_CLIENT_SECRET", "the Slack app's OAuth client secret (required with SLACK_CLIENT_ID)"),
    (
        "SLACK_TOKEN_KEYS",
        "comma-separated Fernet keys encrypting stored Slack tokens, oldest first; the last"
        " encrypts, all decrypt (required with SLACK_CLIENT_ID)",
    ),
    (
        "SLACK_OAUTH_URL",
        "Slack's OAuth authorize page (default https://slack.com/oauth/v2/authorize)",
    ),
    ("LINK_SECRETS", "comma-separated magic-link secrets, oldest first; the last signs"),
    ("SMTP_HOST", "outgoing mail server; unset -> email delivery off"),
    ("SMTP_PORT", "outgoing mail port (default 587, or 465 with SMTP_TLS=tls)"),
    ("SMTP_USERNAME", "SMTP login"),
    ("SMTP_PASSWORD", "SMTP password"),
    ("SMTP_TLS", "none | starttls | tls (default starttls)"),
    ("MAIL_FROM", "From address of the bot's mail (required with SMTP_HOST)"),
    ("REPLY_DOMAIN", "catch-all domain for per-approver Reply-To; unset -> reply-by-email off"),
    ("INBOUND_SMTP_PORT", "port of the built-in inbound SMTP listener; unset -> off"),
    (
        "INBOUND_SMTP_HOST",
        "listen address of the inbound SMTP listener (default 127.0.0.1: behind the site's MTA)",
    ),
    ("INBOUND_WEBHOOK_SECRET", "bearer secret for POST /email/inbound; unset -> endpoint off"),
    ("INBOUND_AUTHSERV_ID", "trusted Authentication-Results authserv-id; set -> DMARC must pass"),
    ("MAILGUN_SIGNING_KEY", "Mailgun webhook signing key; set -> POST /email/inbound/mailgun"),
    ("HOST", "HTTP listen address (default 127.0.0.1)"),
    ("PORT", "HTTP listen port (default 3000)"),
    ("ALLOW_PROCEED_IRREVERSIBLE", "true lets timeout_policy=proceed gate irreversible actions"),
    ("OUTBOX_MAX_AGE", "seconds an outbox item is retried before dead-lettering (default 86400)"),
    ("OUTBOX_LEASE", "seconds a claimed outbox item is held before another replica may retry (60)"),
    ("OUTBOX_RETRY_BASE", "seconds before the first retry; doubles each time (default 1)"),
    ("SWEEP_INTERVAL", "seconds between timeout sweeps (default 1)"),
    (
        "DELIVERY_GRACE",
        "seconds to reach an approver of a tier before approval.undeliverable (600)",
    ),
    ("CALLBACK_TIMEOUT", "seconds to wait for the platform's callback endpoint (default 10)"),
    ("MAX_BODY_BYTES", "largest accepted request body in bytes (default 262144)"),
    ("TASKJUICE_DATA_DIR", "where the embedded PostgreSQL keeps its data (default ./.taskjuice)"),
    ("LOG_LEVEL", "DEBUG | INFO | WARNING | ERROR (default INFO)"),
    (
        "MIGRATE_ON_START",
        "false -> do not migrate at start-up; refuse to start if the schema is behind (run"
        " `taskjuice-bot migrate` first); default true",
    ),
    (
        "READY_MAX_OUTBOX_AGE",
        "worker processes: /readyz is 503 while due outbox work has waited longer than this"
        " many seconds (default 300)",
    ),
    (
        "NAME_FILE",
        "for each secret (DATABASE_URL, API_TOKENS, CALLBACK_SECRET, SLACK_*_TOKEN,"
        " SLACK_SIGNING_SECRET, LINK_SECRETS, SMTP_PASSWORD, ...): read NAME from this file"
        " (one trailing newline stripped); NAME and NAME_FILE together stop start-up",
    ),
)

_REQUIRED = ("API_TOKENS", "CALLBACK_URL", "CALLBACK_SECRET", "TASKJUICE_APP_URL")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the service is configured with; built once by `load_settings`."""

    database_url: str | None = field(default=None, repr=False)
    data_dir: Path = Path(".taskjuice")
    api_tokens: tuple[str, ...] = ()
    callback_url: str = ""
    callback_secret: str = field(default="", repr=False)
    taskjuice_app_url: str = ""
    public_url: str = ""
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str = "https://slack.com/api/"
    slack_post_interval: float = 1.0
    # SLACK_RATE_LIMITS: (method, count, seconds) over the published defaults
    slack_rate_limits: tuple[tuple[str, int, float], ...] = ()
    slack_subscribe_anyone: bool = False
    slack_client_id: str | None = None
    slack_client_secret: str | None = field(default=None, repr=False)
    slack_token_keys: tuple[str, ...] = field(default=(), repr=False)
    slack_oauth_url: str = "https://slack.com/oauth/v2/authorize"
    link_secrets: tuple[str, ...] = field(default=(), repr=False)
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_tls: str = "starttls"
    mail_from: str | None = None
    reply_domain: str | None = None
    inbound_smtp_port: int | None = None
    inbound_smtp_host: str = "127.0.0.1"
    inbound_webhook_secret: str | None = field(default=None, repr=False)
    inbound_authserv_id: str | None = None
    mailgun_signing_key: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 3000
    allow_proceed_irreversible: bool = False
    outbox_max_age: float = 86400.0
    outbox_lease: float = 60.0
    outbox_retry_base: float = 1.0
    sweep_interval: float = 1.0
    delivery_grace: float = 600.0
    callback_timeout: float = 10.0
    max_body_bytes: int = 262144
    log_level: str = "INFO"
    migrate_on_start: bool = True
    ready_max_outbox_age: float = 300.0

    @property
    def slack_enabled(self) -> bool:
        """Single-workspace mode: one bot token for one Slack team."""
        return bool(self.slack_bot_token)

    @property
    def slack_distributed(self) -> bool:
        """Distributed mode: installed by OAuth in many Slack teams."""
        return bool(self.slack_client_id)

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host)

    @property
    def callback_key(self) -> bytes:
        """The raw HMAC key behind the `whsec_` callback secret."""
        return base64.b64decode(self.callback_secret.removeprefix("whsec_"))


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    env_file: Path | None = Path(".env"),
    service: bool = True,
) -> Settings:
    """Build Settings from the environment over an optional `.env` file.

    `service=False` reads only what the database needs (for `taskjuice-bot migrate`).
    A secret setting may come from the file its NAME_FILE names (see SECRET_SETTINGS).
    Raises SettingsError whose one-line message names every missing or malformed setting;
    it never carries a setting's value.
    """
    env = _read_dotenv(env_file)
    env.update(os.environ if environ is None else environ)
    env = {k: v.strip() for k, v in env.items() if v is not None and v.strip() != ""}
    reader = _Reader(env)
    _read_secret_files(reader, SECRET_SETTINGS if service else ("DATABASE_URL",))
    values: dict[str, Any] = {
        "database_url": reader.get("DATABASE_URL", _postgres_url),
        "data_dir": Path(env.get("TASKJUICE_DATA_DIR", ".taskjuice")),
        "log_level": reader.get("LOG_LEVEL", _log_level, "INFO"),
        "migrate_on_start": reader.get("MIGRATE_ON_START", _bool, True),
    }
    if service:
        values |= _service_values(reader, env)
    reader.raise_problems()
    return Settings(**{k: v for k, v in values.items() if v is not None})


def _service_values(reader: _Reader, env: dict[str, str]) -> dict[str, Any]:
    for name in _REQUIRED:
        reader.require(name)
    host = reader.get("HOST", str, "127.0.0.1")
    port = reader.get("PORT", _port, 3000)
    smtp_tls = reader.get("SMTP_TLS", _choice("none", "starttls", "tls"), "starttls")
    values: dict[str, Any] = {
        "api_tokens": reader.get("API_TOKENS", _token_list),
        "callback_url": reader.get("CALLBACK_URL", _http_url),
        "callback_secret": reader.get("CALLBACK_SECRET", _whsec),
        "taskjuice_app_url": reader.get("TASKJUICE_APP_URL", _http_url),
        "public_url": reader.get("PUBLIC_URL", _http_url, f"http://{host}:{port}"),
        "slack_bot_token": env.get("SLACK_BOT_TOKEN"),
        "slack_signing_secret": env.get("SLACK_SIGNING_SECRET"),
        "slack_app_token": reader.get("SLACK_APP_TOKEN", _prefixed("xapp-")),
        "slack_api_url": reader.get("SLACK_API_URL", _slash_url, "https://slack.com/api/"),
        "slack_post_interval": reader.get("SLACK_POST_INTERVAL", _positive, 1.0),
        "slack_rate_limits": reader.get("SLACK_RATE_LIMITS", _rate_limits, ()),
        "slack_subscribe_anyone": reader.get("SLACK_SUBSCRIBE_ANYONE", _bool, False),
        "slack_client_id": env.get("SLACK_CLIENT_ID"),
        "slack_client_secret": env.get("SLACK_CLIENT_SECRET"),
        "slack_token_keys": reader.get("SLACK_TOKEN_KEYS", _fernet_keys),
        "slack_oauth_url": reader.get(
            "SLACK_OAUTH_URL", _http_url, "https://slack.com/oauth/v2/authorize"
        ),
        "link_secrets": reader.get("LINK_SECRETS", _token_list),
        "smtp_host": env.get("SMTP_HOST"),
        "smtp_port": reader.get("SMTP_PORT", _port, 465 if smtp_tls == "tls" else 587),
        "smtp_username": env.get("SMTP_USERNAME"),
        "smtp_password": env.get("SMTP_PASSWORD"),
        "smtp_tls": smtp_tls,
        "mail_from": env.get("MAIL_FROM"),
        "reply_domain": env.get("REPLY_DOMAIN"),
        "inbound_smtp_port": reader.get("INBOUND_SMTP_PORT", _port),
        "inbound_smtp_host": reader.get("INBOUND_SMTP_HOST", str, "127.0.0.1"),
        "inbound_webhook_secret": env.get("INBOUND_WEBHOOK_SECRET"),
        "inbound_authserv_id": env.get("INBOUND_AUTHSERV_ID"),
        "mailgun_signing_key": env.get("MAILGUN_SIGNING_KEY"),
        "host": host,
        "port": port,
        "allow_proceed_irreversible": reader.get("ALLOW_PROCEED_IRREVERSIBLE", _bool, False),
        "outbox_max_age": reader.get("OUTBOX_MAX_AGE", _positive, 86400.0),
        "outbox_lease": reader.get("OUTBOX_LEASE", _positive, 60.0),
        "outbox_retry_base": reader.get("OUTBOX_RETRY_BASE", _positive, 1.0),
        "sweep_interval": reader.get("SWEEP_INTERVAL", _positive, 1.0),
        "delivery_grace": reader.get("DELIVERY_GRACE", _positive, 600.0),
        "callback_timeout": reader.get("CALLBACK_TIMEOUT", _positive, 10.0),
        "max_body_bytes": reader.get("MAX_BODY_BYTES", _port_like_int, 262144),
        "ready_max_outbox_age": reader.get("READY_MAX_OUTBOX_AGE", _positive, 300.0),
    }
    if env.get("SLACK_BOT_TOKEN") and not env.get("SLACK_APP_TOKEN"):
        reader.require("SLACK_SIGNING_SECRET", "needed with SLACK_BOT_TOKEN in HTTP mode")
    _slack_mode(reader, env, values)
    if env.get("SMTP_HOST"):
        reader.require("MAIL_FROM", "needed with SMTP_HOST")
        reader.require("LINK_SECRETS", "needed with SMTP_HOST for magic links")
    timeout, lease = values["callback_timeout"], values["outbox_lease"]
    if timeout is not None and lease is not None and timeout >= lease:
        reader.problem("OUTBOX_LEASE", "must be longer than CALLBACK_TIMEOUT")
    return values


def _slack_mode(reader: _Reader, env: dict[str, str], values: dict[str, Any]) -> None:
    """Single-workspace mode (SLACK_BOT_TOKEN) or distributed mode (SLACK_CLIENT_ID), never
    both; distributed mode needs its credentials and the keys that encrypt stored tokens."""
    if not env.get("SLACK_CLIENT_ID"):
        return
    if env.get("SLACK_BOT_TOKEN"):
        reader.problem(
            "SLACK_BOT_TOKEN",
            "and SLACK_CLIENT_ID are both set (single-workspace and distributed mode; set one)",
        )
    for name in ("SLACK_CLIENT_SECRET", "SLACK_SIGNING_SECRET", "SLACK_TOKEN_KEYS"):
        reader.require(name, "needed with SLACK_CLIENT_ID")
    if values["slack_subscribe_anyone"]:
        reader.problem("SLACK_SUBSCRIBE_ANYONE", "is for single-workspace mode only")


class _Reader:
    """Collects every problem so the one start-up line names them all."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.problems: dict[str, str] = {}

    def require(self, name: str, why: str = "required") -> None:
        if name not in self.env and f"{name}_FILE" not in self.problems:
            self.problems.setdefault(name, f"missing ({why})")

    def problem(self, name: str, what: str) -> None:
        self.problems.setdefault(name, what)

    def get(self, name: str, parse: Callable[[str], Any], default: Any = None) -> Any:
        raw = self.env.get(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            self.problems.setdefault(name, f"malformed ({exc})")
            return default

    def raise_problems(self) -> None:
        if self.problems:
            listed = "; ".join(f"{name} {what}" for name, what in self.problems.items())
            raise SettingsError(f"invalid settings: {listed}")


def _read_secret_files(reader: _Reader, names: tuple[str, ...]) -> None:
    """Put the content of each NAME_FILE into NAME, less one trailing newline (files written
    by `echo` or an editor end with one). Problems name the settings, never the content."""
    for name in names:
        path = reader.env.get(f"{name}_FILE")
        if path is None:
            continue
        if name in reader.env:
            reader.problem(name, f"and {name}_FILE are both set (set one)")
            continue
        try:
            value = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            reader.problem(f"{name}_FILE", f"cannot be read ({why}: {path})")
            continue
        value = value.removesuffix("\n").removesuffix("\r")
        if value == "":
            reader.problem(f"{name}_FILE", f"names an empty file ({path})")
            continue
        reader.env[name] = value


def _read_dotenv(path: Path | None) -> dict[str, str]:
    if path is None or not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _postgres_url(raw: str) -> str:
    if urlsplit(raw).scheme not in ("postgres", "postgresql"):
        raise ValueError("expected postgresql://...")
    return raw


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http(s) URL")
    return raw.rstrip("/")


def _slash_url(raw: str) -> str:
    return _http_url(raw) + "/"


def _port(raw: str) -> int:
    value = _port_like_int(raw)
    if value > 65535:
        raise ValueError("expected a port number")
    return value


def _port_like_int(raw: str) -> int:
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError("expected a positive whole number")
    return int(raw)


def _positive(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not value > 0:
        raise ValueError("expected a positive number of seconds")
    return value


_METHOD = re.compile(r"[a-z]+(?:\.[a-zA-Z0-9]+)+")


def _rate_limits(raw: str) -> tuple[tuple[str, int, float], ...]:
    """`method=count/seconds,...`: at most `count` calls in any window of `seconds`."""
    limits: dict[str, tuple[str, int, float]] = {}
    for entry in (e.strip() for e in raw.split(",")):
        method, equals, rate = entry.partition("=")
        count, slash, seconds = rate.strip().partition("/")
        method, count, seconds = method.strip(), count.strip(), seconds.strip()
        if not equals or not slash or not _METHOD.fullmatch(method):
            raise ValueError(f"expected method=count/seconds, got {entry[:40]!r}")
        if not count.isdigit() or int(count) <= 0:
            raise ValueError(f"{method}: expected a positive whole count")
        try:
            window = float(seconds)
        except ValueError:
            raise ValueError(f"{method}: expected a number of seconds") from None
        if not 0 < window <= 86400:
            raise ValueError(f"{method}: expected seconds between 0 and 86400")
        if method in limits:
            raise ValueError(f"{method} is given twice")
        limits[method] = (method, int(count), window)
    return tuple(limits.values())


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _token_list(raw: str) -> tuple[str, ...]:
    tokens = tuple(t.strip() for t in raw.split(",") if t.strip())
    if not tokens:
        raise ValueError("expected at least one value")
    return tokens


def _fernet_keys(raw: str) -> tuple[str, ...]:
    """Keys TokenCipher accepts; its refusal names the key's position, never its value."""
    from bot.slack.installations import TokenCipher

    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    try:
        TokenCipher(keys)
    except SettingsError as exc:
        raise ValueError(exc.message.removeprefix("SLACK_TOKEN_KEYS: ")) from None
    return keys


def _whsec(raw: str) -> str:
    if not raw.startswith("whsec_"):
        raise ValueError("expected whsec_<base64>")
    try:
        key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("expected whsec_<base64>") from None
    if len(key) < 16:
        raise ValueError("the key must be at least 16 bytes")
    return raw


def _log_level(raw: str) -> str:
    return _choice("DEBUG", "INFO", "WARNING", "ERROR")(raw.upper())


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError("expected one of " + ", ".join(allowed))
        return raw

    return parse


def _prefixed(prefix: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not raw.startswith(prefix):
            raise ValueError(f"expected {prefix}...")
        return raw

    return parse
